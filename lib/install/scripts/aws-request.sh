# shellcheck shell=bash disable=SC2154,SC2034 # globals of the script that inlines this; aws_credentials_source is read by callers
# Signed AWS requests without the AWS CLI (cdk-agent-fleet). Functions only: the renderer inlines
# this file after a script's settings header (install-agent.sh; the host companion), and
# s3-download.sh, the activation's secret reads and the companion's heartbeat build on it.
#
# Requests are signed here with AWS Signature Version 4 (bash builtins and sha256sum) and sent
# by plain curl, so it works with any curl that reads headers from a file (7.55+), including
# those without --aws-sigv4 (Debian 11, Ubuntu 20.04, RHEL 8). Credentials, in the order the AWS
# SDKs use them under the SSM Agent:
#   1. Default Host Management: the agent writes the role's credentials to a root-only file and
#      points runShellScript at it with AWS_SHARED_CREDENTIALS_FILE (and AWS_PROFILE when set);
#   2. the instance profile, from the instance metadata service.
# The secret key and the session token live only in unexported shell variables, in pipes to
# sha256sum and in a 0600 header file for curl: never in argv or in any environment.
#
# Uses the globals of the script that inlines it: IMDS, imds_version, imds_header_file, workdir
# and log.

aws_key_id=''
aws_secret=''
aws_token=''
aws_credentials_source=''

# The hex SHA-256 of standard input.
aws_sha256() {
  local sum
  sum=$(sha256sum)
  printf '%s' "${sum%% *}"
}

# The hex of a string's bytes, with builtins only (the string may be a secret).
aws_hex() {
  local LC_ALL=C text=$1 hex='' byte i
  for ((i = 0; i < ${#text}; i++)); do
    printf -v byte '%02x' "'${text:i:1}"
    hex+=$byte
  done
  printf '%s' "$hex"
}

# HMAC-SHA256 of a message under a key given in hex; prints the hex MAC. The padded keys go to
# sha256sum through a pipe from the printf builtin, never through argv.
aws_hmac() {
  local key=$1 message=$2 inner_pad='' outer_pad='' escape byte i inner
  if ((${#key} > 128)); then key=$(printf '%b' "$(aws_escapes "$key")" | aws_sha256); fi
  while ((${#key} < 128)); do key+='00'; done
  for ((i = 0; i < 128; i += 2)); do
    byte=$((16#${key:i:2}))
    printf -v escape '\\x%02x' $((byte ^ 0x36))
    inner_pad+=$escape
    printf -v escape '\\x%02x' $((byte ^ 0x5c))
    outer_pad+=$escape
  done
  inner=$({ printf '%b' "$inner_pad"; printf '%s' "$message"; } | aws_sha256)
  { printf '%b' "$outer_pad"; printf '%b' "$(aws_escapes "$inner")"; } | aws_sha256
}

# \xHH escapes for printf %b from a hex string.
aws_escapes() {
  local hex=$1 out='' i
  for ((i = 0; i < ${#hex}; i += 2)); do out+="\\x${hex:i:2}"; done
  printf '%s' "$out"
}

# The value of a key in one profile of a shared credentials file (INI, as the SSM Agent writes it).
aws_ini_value() {
  local file=$1 profile=$2 wanted=$3 line section='' name value
  while IFS= read -r line || [[ -n "$line" ]]; do
    line=${line%$'\r'}
    if [[ "$line" =~ ^[[:space:]]*\[[[:space:]]*([^]]*[^][:space:]])[[:space:]]*\] ]]; then
      section=${BASH_REMATCH[1]}
      section=${section#profile }
    elif [[ "$section" == "$profile" && "$line" =~ ^[[:space:]]*([A-Za-z0-9_]+)[[:space:]]*[=:][[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
      name=${BASH_REMATCH[1]}
      value=${BASH_REMATCH[2]}
      if [[ "$name" == "$wanted" ]]; then
        if [[ "$value" =~ ^\`(.*)\`$ || "$value" =~ ^\"(.*)\"$ ]]; then value=${BASH_REMATCH[1]}; fi
        printf '%s' "$value"
        return 0
      fi
    fi
  done <"$file"
  return 1
}

# Default Host Management: the credentials file the SSM Agent gave this run, if any.
aws_shared_credentials() {
  local file=${AWS_SHARED_CREDENTIALS_FILE:-} profile=${AWS_PROFILE:-default}
  [[ -n "$file" ]] || return 1
  if [[ ! -r "$file" ]]; then
    log "AWS_SHARED_CREDENTIALS_FILE names $file, which cannot be read"
    return 1
  fi
  aws_key_id=$(aws_ini_value "$file" "$profile" aws_access_key_id) || aws_key_id=''
  aws_secret=$(aws_ini_value "$file" "$profile" aws_secret_access_key) || aws_secret=''
  aws_token=$(aws_ini_value "$file" "$profile" aws_session_token) || aws_token=''
  if [[ -z "$aws_key_id" || -z "$aws_secret" ]]; then
    log "$file has no access key in profile $profile"
    return 1
  fi
  aws_credentials_source="the Default Host Management credentials the SSM Agent shared ($file, profile $profile)"
}

# aws_imds_connect <token-ttl-seconds>: IMDSv2 first; IMDSv1 only when the token request fails
# and the instance still answers v1 (imds_version says which; 'none' when neither answers). The
# token never appears in an argument or the environment of any process: curl writes it to a
# file and reads the header back from a 0600 file (`-H @file`).
aws_imds_connect() {
  local token
  if curl -sf --noproxy '*' --connect-timeout 2 --max-time 5 -X PUT -o "$workdir/imds-token" \
      -H "X-aws-ec2-metadata-token-ttl-seconds: $1" "$IMDS/latest/api/token" && [[ -s "$workdir/imds-token" ]]; then
    token=$(<"$workdir/imds-token")
    rm -f -- "$workdir/imds-token"
    imds_header_file="$workdir/imds-header"
    (umask 077 && printf 'X-aws-ec2-metadata-token: %s\n' "$token" >"$imds_header_file")
    imds_version='v2'
    return 0
  fi
  rm -f -- "$workdir/imds-token"
  if [[ "$(aws_imds_get /latest/meta-data/instance-id /dev/null)" == '200' ]]; then
    imds_version='v1'
    log "the IMDSv2 token request failed; used IMDSv1, which this instance still allows. Require IMDSv2 (HttpTokens=required)."
    return 0
  fi
  imds_version='none'
  return 1
}

# GETs an instance metadata path into a file and prints the HTTP status (000 when unreachable).
aws_imds_get() {
  local args=(-s --noproxy '*' --connect-timeout 2 --max-time 5 -o "$2" -w '%{http_code}')
  if [[ -n "${imds_header_file:-}" && -s "$imds_header_file" ]]; then args+=(-H @"$imds_header_file"); fi
  curl "${args[@]}" "$IMDS$1" || true
}

# A string field of a flat JSON object (the metadata service's credentials document).
aws_json_field() {
  [[ "$1" =~ \"$2\"[[:space:]]*:[[:space:]]*\"([^\"]*)\" ]] || return 1
  printf '%s' "${BASH_REMATCH[1]}"
}

# The instance profile's credentials from the instance metadata service.
aws_instance_profile_credentials() {
  local file="$workdir/imds-credentials" status role document
  if [[ "${imds_version:-none}" == 'none' ]]; then return 1; fi
  status=$(aws_imds_get '/latest/meta-data/iam/security-credentials/' "$file")
  if [[ "$status" != '200' ]]; then
    if [[ "$status" == '404' ]]; then log "the instance has no instance profile"; else log "the metadata service answered $status for the instance profile"; fi
    rm -f -- "$file"
    return 1
  fi
  role=''
  if [[ -f "$file" ]]; then role=$(<"$file"); fi
  role=${role%%$'\n'*}
  if [[ ! "$role" =~ ^[A-Za-z0-9+=,.@_-]+$ ]]; then
    log "the metadata service named no usable instance profile role"
    rm -f -- "$file"
    return 1
  fi
  status=$(aws_imds_get "/latest/meta-data/iam/security-credentials/$role" "$file")
  document=''
  if [[ -f "$file" ]]; then document=$(<"$file"); fi
  rm -f -- "$file"
  if [[ "$status" != '200' ]]; then
    log "the metadata service answered $status for the credentials of role $role"
    return 1
  fi
  aws_key_id=$(aws_json_field "$document" AccessKeyId) || aws_key_id=''
  aws_secret=$(aws_json_field "$document" SecretAccessKey) || aws_secret=''
  aws_token=$(aws_json_field "$document" Token) || aws_token=''
  document=''
  if [[ -z "$aws_key_id" || -z "$aws_secret" ]]; then
    log "the metadata service gave no access key for role $role"
    return 1
  fi
  aws_credentials_source="the instance profile role $role"
}

# Loads credentials (Default Host Management first, then the instance profile); 0 when found.
aws_credentials() {
  aws_shared_credentials || aws_instance_profile_credentials
}

# Forgets the secret key and session token once the requests are signed.
aws_forget_credentials() {
  aws_secret=''
  aws_token=''
}

# aws_sign_request <method> <service> <region> <host> <canonical-path> <canonical-query>
#   <payload-file or ''> <header-file> [name:value ...]
# Writes a 0600 curl header file: x-amz-date, x-amz-content-sha256, the session token, the
# extra headers (lowercase names, signed too) and the Authorization header, with the loaded
# credentials (aws_credentials). The path and query must already be URI-encoded as SigV4 wants.
aws_sign_request() {
  local method=$1 service=$2 region=$3 host=$4 path=$5 query=$6 payload=$7 headers=$8
  shift 8
  local amz_date day scope payload_hash canonical_headers signed_headers canonical_request
  local string_to_sign signing_key signature extra sorted=() name
  amz_date=$(date -u +%Y%m%dT%H%M%SZ)
  day=${amz_date%%T*}
  scope="$day/$region/$service/aws4_request"
  if [[ -n "$payload" ]]; then payload_hash=$(aws_sha256 <"$payload"); else payload_hash=$(printf '' | aws_sha256); fi
  extra=("host:$host" "x-amz-content-sha256:$payload_hash" "x-amz-date:$amz_date" "$@")
  if [[ -n "$aws_token" ]]; then extra+=("x-amz-security-token:$aws_token"); fi
  # SigV4 signs headers sorted by name; the names are lowercase and distinct.
  mapfile -t sorted < <(printf '%s\n' "${extra[@]}" | LC_ALL=C sort -t: -k1,1)
  canonical_headers=''
  signed_headers=''
  for name in "${sorted[@]}"; do
    canonical_headers+="$name"$'\n'
    signed_headers+="${signed_headers:+;}${name%%:*}"
  done
  canonical_request="$method"$'\n'"$path"$'\n'"$query"$'\n'"$canonical_headers"$'\n'"$signed_headers"$'\n'"$payload_hash"
  string_to_sign="AWS4-HMAC-SHA256"$'\n'"$amz_date"$'\n'"$scope"$'\n'"$(printf '%s' "$canonical_request" | aws_sha256)"
  signing_key=$(aws_hmac "$(aws_hex "AWS4$aws_secret")" "$day")
  signing_key=$(aws_hmac "$signing_key" "$region")
  signing_key=$(aws_hmac "$signing_key" "$service")
  signing_key=$(aws_hmac "$signing_key" aws4_request)
  signature=$(aws_hmac "$signing_key" "$string_to_sign")

  (umask 077 && : >"$headers")
  {
    for name in "${sorted[@]}"; do
      if [[ "${name%%:*}" != host ]]; then printf '%s: %s\n' "${name%%:*}" "${name#*:}"; fi
    done
    printf 'Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s\n' \
      "$aws_key_id" "$scope" "$signed_headers" "$signature"
  } >"$headers"
}
