#!/usr/bin/env bash
# The host companion of cdk-agent-fleet: one heartbeat to the fleet's backend, then the
# telemetry spool, then exit. A systemd timer starts it every minute; it does nothing until
# the time the backend asked for (nextHeartbeatSeconds, with jitter) or a backoff has passed.
#
# The renderer puts a header of settings right after the first line (companion.ts):
#   COMPANION_URL  the backend's https://.../v1/heartbeat (baked in at synth);
#   COMPANION_IDENTITY_URL  its https://.../v1/identity-heartbeat, for an instance with no
#       instance profile (empty: such an instance sends no heartbeat);
#   COMPANION_REGION  the backend's Region (the execute-api signing Region);
#   COMPANION_INTERVAL  seconds between heartbeats until the backend says otherwise;
#   COMPANION_DIR  the answer (answer.json, 0644, for the agent) and state/ (0700);
#   COMPANION_SPOOL, COMPANION_SPOOL_MAX_KB  where the agent drops telemetry, and its bound;
#   COMPANION_SERVICE, COMPANION_PACKAGE, COMPANION_FORMAT  the agent's systemd service and
#       package (DEB or RPM), as the install document resolved them;
#   COMPANION_PROXY  the fleet's HTTPS proxy (empty: none); COMPANION_IMDS, COMPANION_S3_ENDPOINT
#       the metadata service and an S3 endpoint (tests point them at loopback).
# Then aws-request.sh (SigV4 with bash and sha256sum, curl sending the headers from a 0600
# file): no AWS CLI, Python or Node on the host, and no secret in argv or the environment.
#
# The last line of its output is one JSON object: outcome, httpStatus, nextRunInSeconds, signer.
set -Eeuo pipefail
umask 077

# shellcheck disable=SC2034 # read by aws-request.sh
IMDS=$COMPANION_IMDS
imds_version='none'
# shellcheck disable=SC2034 # set and read by aws-request.sh
imds_header_file=''
workdir=''
state=''
outcome='failed'
http_status=''
delay=''
signer=''
doc_accountId='' doc_region='' doc_availabilityZone='' doc_instanceId='' doc_instanceType='' doc_imageId='' doc_architecture=''

log() { printf '%s\n' "$*" >&2; }

# shellcheck disable=SC2317 # called by the EXIT trap
companion_cleanup() {
  if [[ -n "$workdir" ]]; then rm -rf -- "$workdir"; fi
}

companion_finish() {
  trap - ERR
  printf '{"outcome":"%s","httpStatus":"%s","nextRunInSeconds":%s,"signer":"%s"}\n' "$outcome" "$http_status" "${delay:-0}" "$signer"
  exit "$1"
}

trap companion_cleanup EXIT
trap 'log "unexpected failure at line $LINENO"; outcome=failed; companion_finish 1' ERR

# A whole number kept in a state file, or the default.
state_number() {
  local value=''
  if [[ -f "$state/$1" ]]; then value=$(<"$state/$1"); fi
  if [[ "$value" =~ ^[0-9]+$ ]]; then printf '%s' "$((10#$value))"; else printf '%s' "$2"; fi
}

# Writes a file atomically (a temporary file in the same directory, then rename).
write_atomically() {
  local target=$1 mode=$2 source=$3
  cp -- "$source" "$target.tmp"
  chmod "$mode" -- "$target.tmp"
  mv -f -- "$target.tmp" "$target"
}

# Next run: the interval, less up to a tenth of it at random, so a fleet spreads out.
schedule() {
  local seconds=$1
  delay=$((seconds - RANDOM % (seconds / 10 + 1)))
  printf '%s' "$(($(date +%s) + delay))" >"$state/next-due"
}

# After a refusal by a busy backend or no answer at all: exponential backoff from 30 s up
# to the interval, never sooner than Retry-After (seconds) says.
schedule_backoff() {
  local retry_after=${1:-} failures interval
  failures=$(($(state_number failures 0) + 1))
  printf '%s' "$failures" >"$state/failures"
  interval=$(state_number interval "$COMPANION_INTERVAL")
  delay=$((failures > 10 ? interval : 30 * (1 << (failures - 1))))
  if ((delay > interval)); then delay=$interval; fi
  delay=$((delay + RANDOM % 15))
  if [[ "$retry_after" =~ ^[0-9]+$ ]] && ((10#$retry_after > delay)); then
    delay=$((10#$retry_after > 3600 ? 3600 : 10#$retry_after))
  fi
  printf '%s' "$(($(date +%s) + delay))" >"$state/next-due"
}

# Sets doc_<field> from the identity document; each value must match what the backend accepts.
read_identity() {
  local document field value pattern
  if [[ "$(aws_imds_get /latest/dynamic/instance-identity/document "$workdir/identity")" != '200' ]]; then return 1; fi
  document=$(<"$workdir/identity")
  for field in accountId region availabilityZone instanceId instanceType imageId architecture; do
    value=$(aws_json_field "$document" "$field") || value=''
    case "$field" in
      accountId) pattern='^[0-9]{12}$' ;;
      region) pattern='^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$' ;;
      availabilityZone) pattern='^[a-z]{2}(-[a-z0-9]+)+[a-z]?$' ;;
      instanceId) pattern='^i-([0-9a-f]{8}|[0-9a-f]{17})$' ;;
      instanceType) pattern='^[a-z0-9-]+\.[a-z0-9-]+$' ;;
      imageId) pattern='^ami-([0-9a-f]{8}|[0-9a-f]{17})$' ;;
      architecture) pattern='^(x86_64|arm64|i386)$' ;;
    esac
    if [[ ! "$value" =~ $pattern ]]; then
      if [[ "$field" == architecture ]]; then value=''; else log "the identity document has no usable $field"; return 1; fi
    fi
    printf -v "doc_$field" '%s' "$value"
  done
}

# Sets service_state (RUNNING, STOPPED, FAILED, NOT_INSTALLED), service_message and
# agent_version (the installed version without its epoch, as the heartbeat's pattern wants it).
read_agent() {
  local line load='' active='' sub='' status version=''
  case "$COMPANION_FORMAT" in
    DEB)
      # shellcheck disable=SC2016 # dpkg-query's format string
      if status=$(dpkg-query -W -f='${Status} ${Version}' "$COMPANION_PACKAGE" 2>/dev/null) \
          && [[ "$status" == 'install ok installed '* ]]; then version=${status##* }; fi
      ;;
    RPM) version=$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$COMPANION_PACKAGE" 2>/dev/null) || version='' ;;
  esac
  version=${version#*:}
  if [[ ! "$version" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$ ]]; then version=''; fi
  while IFS= read -r line; do
    case "$line" in
      LoadState=*) load=${line#*=} ;;
      ActiveState=*) active=${line#*=} ;;
      SubState=*) sub=${line#*=} ;;
    esac
  done < <(systemctl show -p LoadState -p ActiveState -p SubState "$COMPANION_SERVICE" 2>/dev/null || true)
  agent_version=${version:-not-installed}
  service_message="systemd: LoadState=${load:-unknown} ActiveState=${active:-unknown} SubState=${sub:-unknown}"
  service_message=${service_message//[^A-Za-z0-9=: ._-]/}
  if [[ -z "$version" || "$load" == 'not-found' ]]; then
    service_state='NOT_INSTALLED'
  elif [[ "$active" == 'active' || "$active" == 'reloading' ]]; then
    service_state='RUNNING'
  elif [[ "$active" == 'failed' ]]; then
    service_state='FAILED'
  else
    service_state='STOPPED'
  fi
}

# The sensors of the last answer, each with the agent's real state: an ENABLED sensor runs
# only while the agent's service does; a DISABLED one is IDLE.
sensor_states() {
  local answer='' pairs out='' name switch
  if [[ -f "$COMPANION_DIR/answer.json" ]]; then answer=$(<"$COMPANION_DIR/answer.json"); fi
  if [[ "$answer" =~ \"sensors\"[[:space:]]*:[[:space:]]*\{([^}]*)\} ]]; then
    pairs=${BASH_REMATCH[1]}
    while [[ "$pairs" =~ \"([A-Z_]+)\"[[:space:]]*:[[:space:]]*\"(ENABLED|DISABLED)\"(.*) ]]; do
      name=${BASH_REMATCH[1]} switch=${BASH_REMATCH[2]} pairs=${BASH_REMATCH[3]}
      out+=${out:+,}
      if [[ "$switch" == 'DISABLED' ]]; then
        out+="\"$name\":{\"state\":\"IDLE\"}"
      elif [[ "$service_state" == 'RUNNING' ]]; then
        out+="\"$name\":{\"state\":\"RUNNING\"}"
      else
        out+="\"$name\":{\"state\":\"FAILED\",\"message\":\"the agent's service is ${service_state}\"}"
      fi
    done
  fi
  printf '{%s}' "$out"
}

# Writes the heartbeat body; every value was checked against the backend's schema above.
write_body() {
  local architecture=''
  if [[ -n "$doc_architecture" ]]; then architecture=",\"architecture\":\"$doc_architecture\""; fi
  printf '{"agentVersion":"%s","imdsVersion":"%s","identityDocument":{"accountId":"%s","region":"%s","availabilityZone":"%s","instanceId":"%s","instanceType":"%s","imageId":"%s"%s},"agentService":{"state":"%s","message":"%s"},"sensors":%s}' \
    "$agent_version" "$imds_version" "$doc_accountId" "$doc_region" "$doc_availabilityZone" "$doc_instanceId" \
    "$doc_instanceType" "$doc_imageId" "$architecture" "$service_state" "$service_message" "$(sensor_states)" >"$1"
}

# The value of a response header (Retry-After), from curl's dump of the headers.
response_header() {
  local line wanted=${1,,}
  [[ -f "$workdir/response-headers" ]] || return 0
  while IFS= read -r line; do
    line=${line%$'\r'}
    if [[ "${line,,}" == "$wanted:"* ]]; then
      line=${line#*:}
      printf '%s' "${line//[[:space:]]/}"
    fi
  done <"$workdir/response-headers"
}

# Whether the host's curl signs SigV4 itself as the tests verify it: 7.88 and later (7.75 added
# --aws-sigv4; the versions between are not verified here, and take the bash signer).
curl_signs() {
  local version
  version=$(curl --version 2>/dev/null) || return 1
  [[ "$version" =~ ^curl\ ([0-9]+)\.([0-9]+) ]] || return 1
  ((BASH_REMATCH[1] > 7 || (BASH_REMATCH[1] == 7 && BASH_REMATCH[2] >= 88)))
}

# The answer to a heartbeat (in $workdir/answer, the status in http_status): keep it and
# schedule the next one, back off, or log the refusal.
take_answer() {
  local interval message=''
  case "$http_status" in
    200)
      interval=''
      if [[ "$(<"$workdir/answer")" =~ \"nextHeartbeatSeconds\"[[:space:]]*:[[:space:]]*([0-9]{1,6})[,}] ]]; then interval=${BASH_REMATCH[1]}; fi
      if [[ -z "$interval" ]] || ((interval < 60)); then interval=$COMPANION_INTERVAL; fi
      printf '%s' "$interval" >"$state/interval"
      write_atomically "$COMPANION_DIR/answer.json" 644 "$workdir/answer"
      rm -f -- "$state/failures"
      outcome='sent'
      schedule "$interval"
      ;;
    429 | 5?? | 000)
      outcome='backing-off'
      schedule_backoff "$(response_header retry-after)"
      log "the backend answered $http_status; next try in ${delay}s"
      ;;
    *)
      if [[ -f "$workdir/answer" && "$(<"$workdir/answer")" =~ \"message\"[[:space:]]*:[[:space:]]*\"([^\"]{0,300}) ]]; then message=": ${BASH_REMATCH[1]}"; fi
      log "the backend refused the heartbeat with $http_status$message ($1)"
      outcome='refused'
      schedule "$(state_number interval "$COMPANION_INTERVAL")"
      ;;
  esac
}

# post <url> <curl option>...: posts $workdir/body.json; sets http_status.
post() {
  local url=$1 status
  shift
  status=$(curl -sS --max-redirs 0 --connect-timeout 10 --max-time 60 "$@" \
    -H 'content-type: application/json' --data-binary @"$workdir/body.json" \
    -D "$workdir/response-headers" -o "$workdir/answer" -w '%{http_code}' "$url") || status=${status:-000}
  http_status=$status
}

# json_quote <text>: the text as a JSON string (the document and its signature hold no other
# control characters than newlines; 1 for any other).
json_quote() {
  local LC_ALL=C text=$1
  if [[ "${text//[$'\n\r\t']/}" == *[[:cntrl:]]* ]]; then return 1; fi
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\n'/\\n}
  text=${text//$'\r'/\\r}
  text=${text//$'\t'/\\t}
  printf '"%s"' "$text"
}

# No role to sign with: the heartbeat carries the identity document and its signature, byte
# for byte as IMDS served them, to the identity path (README: "Instances without a role").
# It goes straight to the private API's endpoint, over IPv4: the backend binds it to the
# instance's own IPv4 address, and through a proxy it would come from the proxy's.
identity_heartbeat() {
  local document='' signature='' quoted_document quoted_signature body
  signer='identity-document'
  if [[ "$(aws_imds_get /latest/dynamic/instance-identity/signature "$workdir/signature")" != '200' ]]; then
    log "could not read the identity document's signature from the instance metadata service"
    outcome='imds-unavailable'
    schedule_backoff
    return 1
  fi
  # read -d '' keeps every byte, trailing newlines too: the signature covers them.
  IFS= read -r -d '' document <"$workdir/identity" || true
  IFS= read -r -d '' signature <"$workdir/signature" || true
  if ! quoted_document=$(json_quote "$document") || ! quoted_signature=$(json_quote "$signature"); then
    log "the identity document or its signature holds control characters; not sent"
    outcome='imds-unavailable'
    schedule_backoff
    return 1
  fi
  body=$(<"$workdir/body.json")
  printf '%s,"signedIdentityDocument":{"document":%s,"signature":%s}}' "${body%\}}" "$quoted_document" "$quoted_signature" >"$workdir/body.json"
  post "$COMPANION_IDENTITY_URL" --noproxy '*' -4
  take_answer 'authenticated by the signed identity document'
}

heartbeat() {
  local host path signing=()
  host=${COMPANION_URL#*://}
  host=${host%%/*}
  path=/${COMPANION_URL#*://*/}
  if ! aws_imds_connect 60 || ! read_identity; then
    log "could not read the identity document from the instance metadata service"
    outcome='imds-unavailable'
    schedule_backoff
    return 1
  fi
  read_agent
  write_body "$workdir/body.json"
  if ! aws_instance_profile_credentials; then
    if [[ -n "$COMPANION_IDENTITY_URL" ]]; then
      identity_heartbeat
      return
    fi
    # Default Host Management shares its credentials with the SSM Agent's own runs only.
    log "no instance profile credentials: the companion cannot sign a heartbeat. Give the instance an instance profile with the fleet's instance role, or turn on the backend's identityDocumentHeartbeats."
    outcome='no-credentials'
    schedule "$(state_number interval "$COMPANION_INTERVAL")"
    return 1
  fi
  # curl signs itself where it can (far less CPU than bash); the secret goes to it in a 0600
  # config file, never in argv. Elsewhere aws-request.sh signs and curl sends its header file.
  # shellcheck disable=SC2154 # loaded by aws-request.sh
  if curl_signs && [[ "$aws_key_id$aws_secret$aws_token" =~ ^[A-Za-z0-9+/=]+$ ]]; then
    signer='curl'
    (umask 077 && printf 'user = "%s:%s"\n' "$aws_key_id" "$aws_secret" >"$workdir/curl-sigv4")
    if [[ -n "$aws_token" ]]; then printf 'header = "x-amz-security-token: %s"\n' "$aws_token" >>"$workdir/curl-sigv4"; fi
    signing=(-K "$workdir/curl-sigv4" --aws-sigv4 "aws:amz:$COMPANION_REGION:execute-api")
  else
    signer='bash'
    aws_sign_request POST execute-api "$COMPANION_REGION" "$host" "$path" '' "$workdir/body.json" "$workdir/request-headers"
    signing=(-H @"$workdir/request-headers")
  fi
  aws_forget_credentials
  post "$COMPANION_URL" "${signing[@]}"
  rm -f -- "$workdir/request-headers" "$workdir/curl-sigv4"
  # shellcheck disable=SC2154 # set by aws-request.sh
  take_answer "signed with $aws_credentials_source"
}

main() {
  local now due
  if [[ -n "$COMPANION_PROXY" ]]; then export https_proxy="$COMPANION_PROXY" HTTPS_PROXY="$COMPANION_PROXY"; fi
  install -d -m 755 -- "$COMPANION_DIR"
  state="$COMPANION_DIR/state"
  install -d -m 700 -- "$state"
  exec 9>>"$state/lock"
  if ! flock -n 9; then
    outcome='busy'
    companion_finish 0
  fi
  now=$(date +%s)
  due=$(state_number next-due 0)
  if [[ "${1:-}" != '--now' ]] && ((now < due)); then
    outcome='not-due'
    delay=$((due - now))
    companion_finish 0
  fi
  find "$state" -mindepth 1 -maxdepth 1 -name 'run.*' -exec rm -rf -- {} +
  workdir=$(mktemp -d "$state/run.XXXXXXXX")
  heartbeat || true
  spool_upload || true
  if [[ "$outcome" == 'sent' ]]; then companion_finish 0; fi
  companion_finish 2
}
