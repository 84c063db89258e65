# shellcheck shell=bash disable=SC2154 # workdir, IMDS, imds_version, log: globals of install-agent.sh
# S3 downloads without the AWS CLI (cdk-agent-fleet). Functions only: renderLinuxScript inlines
# this file after the settings header of install-agent.sh.
#
# The request is signed here with AWS Signature Version 4 (bash builtins and sha256sum) and sent
# by plain curl, so it works with any curl that reads headers from a file (7.55+), including
# those without --aws-sigv4 (Debian 11, Ubuntu 20.04, RHEL 8). Credentials, in the order the AWS
# SDKs use them under the SSM Agent:
#   1. Default Host Management: the agent writes the role's credentials to a root-only file and
#      points runShellScript at it with AWS_SHARED_CREDENTIALS_FILE (and AWS_PROFILE when set);
#   2. the instance profile, from the instance metadata service.
# The secret key and the session token live only in unexported shell variables, in pipes to
# sha256sum and in a 0600 header file for curl: never in argv or in any environment.
#
# Uses the globals of install-agent.sh: IMDS, imds_version, imds_header_file, workdir, log,
# and AGENT_S3_ENDPOINT (empty: AWS; tests point it at a server on loopback).

s3_key_id=''
s3_secret=''
s3_token=''
s3_credentials_source=''

# The hex SHA-256 of standard input.
s3_sha256() {
  local sum
  sum=$(sha256sum)
  printf '%s' "${sum%% *}"
}

# The hex of a string's bytes, with builtins only (the string may be a secret).
s3_hex() {
  local LC_ALL=C text=$1 hex='' byte i
  for ((i = 0; i < ${#text}; i++)); do
    printf -v byte '%02x' "'${text:i:1}"
    hex+=$byte
  done
  printf '%s' "$hex"
}

# HMAC-SHA256 of a message under a key given in hex; prints the hex MAC. The padded keys go to
# sha256sum through a pipe from the printf builtin, never through argv.
s3_hmac() {
  local key=$1 message=$2 inner_pad='' outer_pad='' escape byte i inner
  if ((${#key} > 128)); then key=$(printf '%b' "$(s3_escapes "$key")" | s3_sha256); fi
  while ((${#key} < 128)); do key+='00'; done
  for ((i = 0; i < 128; i += 2)); do
    byte=$((16#${key:i:2}))
    printf -v escape '\\x%02x' $((byte ^ 0x36))
    inner_pad+=$escape
    printf -v escape '\\x%02x' $((byte ^ 0x5c))
    outer_pad+=$escape
  done
  inner=$({ printf '%b' "$inner_pad"; printf '%s' "$message"; } | s3_sha256)
  { printf '%b' "$outer_pad"; printf '%b' "$(s3_escapes "$inner")"; } | s3_sha256
}

# \xHH escapes for printf %b from a hex string.
s3_escapes() {
  local hex=$1 out='' i
  for ((i = 0; i < ${#hex}; i += 2)); do out+="\\x${hex:i:2}"; done
  printf '%s' "$out"
}

# Percent-encodes an S3 key the way SigV4 wants it for S3: every byte but A-Z a-z 0-9 - . _ ~ and /.
s3_uri_encode() {
  local LC_ALL=C text=$1 out='' char i
  for ((i = 0; i < ${#text}; i++)); do
    char=${text:i:1}
    case "$char" in
      [A-Za-z0-9._~/-]) out+=$char ;;
      *) printf -v char '%%%02X' "'$char" && out+=$char ;;
    esac
  done
  printf '%s' "$out"
}

# The value of a key in one profile of a shared credentials file (INI, as the SSM Agent writes it).
s3_ini_value() {
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
s3_shared_credentials() {
  local file=${AWS_SHARED_CREDENTIALS_FILE:-} profile=${AWS_PROFILE:-default}
  [[ -n "$file" ]] || return 1
  if [[ ! -r "$file" ]]; then
    log "AWS_SHARED_CREDENTIALS_FILE names $file, which cannot be read"
    return 1
  fi
  s3_key_id=$(s3_ini_value "$file" "$profile" aws_access_key_id) || s3_key_id=''
  s3_secret=$(s3_ini_value "$file" "$profile" aws_secret_access_key) || s3_secret=''
  s3_token=$(s3_ini_value "$file" "$profile" aws_session_token) || s3_token=''
  if [[ -z "$s3_key_id" || -z "$s3_secret" ]]; then
    log "$file has no access key in profile $profile"
    return 1
  fi
  s3_credentials_source="the Default Host Management credentials the SSM Agent shared ($file, profile $profile)"
}

# GETs an instance metadata path into a file and prints the HTTP status (000 when unreachable).
s3_imds_get() {
  local args=(-s --noproxy '*' --connect-timeout 2 --max-time 5 -o "$2" -w '%{http_code}')
  if [[ -n "${imds_header_file:-}" && -s "$imds_header_file" ]]; then args+=(-H @"$imds_header_file"); fi
  curl "${args[@]}" "$IMDS$1" || true
}

# A string field of a flat JSON object (the metadata service's credentials document).
s3_json_field() {
  [[ "$1" =~ \"$2\"[[:space:]]*:[[:space:]]*\"([^\"]*)\" ]] || return 1
  printf '%s' "${BASH_REMATCH[1]}"
}

# The instance profile's credentials from the instance metadata service.
s3_instance_profile_credentials() {
  local file="$workdir/imds-credentials" status role document
  if [[ "${imds_version:-none}" == 'none' ]]; then return 1; fi
  status=$(s3_imds_get '/latest/meta-data/iam/security-credentials/' "$file")
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
  status=$(s3_imds_get "/latest/meta-data/iam/security-credentials/$role" "$file")
  document=''
  if [[ -f "$file" ]]; then document=$(<"$file"); fi
  rm -f -- "$file"
  if [[ "$status" != '200' ]]; then
    log "the metadata service answered $status for the credentials of role $role"
    return 1
  fi
  s3_key_id=$(s3_json_field "$document" AccessKeyId) || s3_key_id=''
  s3_secret=$(s3_json_field "$document" SecretAccessKey) || s3_secret=''
  s3_token=$(s3_json_field "$document" Token) || s3_token=''
  document=''
  if [[ -z "$s3_key_id" || -z "$s3_secret" ]]; then
    log "the metadata service gave no access key for role $role"
    return 1
  fi
  s3_credentials_source="the instance profile role $role"
}

# s3_download <s3://bucket/key> <region> <dest-file>: a SigV4-signed GET; 0 on success.
s3_download() {
  local source=$1 region=$2 dest=$3 bucket key path host url amz_date day scope payload_hash
  local canonical_headers signed_headers canonical_request string_to_sign signing_key signature
  local headers="$workdir/s3-request-headers" response="$workdir/s3-response" status code
  bucket=${source#s3://}
  bucket=${bucket%%/*}
  key=${source#s3://"$bucket"/}
  if [[ -z "$bucket" || -z "$key" || "$key" == "$source" ]]; then
    log "not an S3 object URL: $source"
    return 1
  fi
  if [[ ! "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
    log "no usable region for s3://$bucket ($(printf '%q' "$region"))"
    return 1
  fi
  if ! s3_shared_credentials && ! s3_instance_profile_credentials; then
    log "no AWS credentials to read s3://$bucket/$key: the SSM Agent shared no Default Host Management credentials (AWS_SHARED_CREDENTIALS_FILE) and the instance has no usable instance profile"
    return 1
  fi
  log "downloading s3://$bucket/$key, signed with $s3_credentials_source"

  # Virtual-hosted style; path style for bucket names with dots (their TLS name would not match).
  path="/$(s3_uri_encode "$key")"
  if [[ -n "${AGENT_S3_ENDPOINT:-}" ]]; then
    host=${AGENT_S3_ENDPOINT#https://}
    path="/$bucket$path"
  else
    host="s3.$region.amazonaws.com"
    if [[ "$region" == cn-* ]]; then host+='.cn'; fi
    if [[ "$bucket" == *.* ]]; then path="/$bucket$path"; else host="$bucket.$host"; fi
  fi
  url="https://$host$path"

  amz_date=$(date -u +%Y%m%dT%H%M%SZ)
  day=${amz_date%%T*}
  scope="$day/$region/s3/aws4_request"
  payload_hash=$(printf '' | s3_sha256)
  canonical_headers="host:$host"$'\n'"x-amz-content-sha256:$payload_hash"$'\n'"x-amz-date:$amz_date"$'\n'
  signed_headers='host;x-amz-content-sha256;x-amz-date'
  if [[ -n "$s3_token" ]]; then
    canonical_headers+="x-amz-security-token:$s3_token"$'\n'
    signed_headers+=';x-amz-security-token'
  fi
  canonical_request="GET"$'\n'"$path"$'\n\n'"$canonical_headers"$'\n'"$signed_headers"$'\n'"$payload_hash"
  string_to_sign="AWS4-HMAC-SHA256"$'\n'"$amz_date"$'\n'"$scope"$'\n'"$(printf '%s' "$canonical_request" | s3_sha256)"
  signing_key=$(s3_hmac "$(s3_hex "AWS4$s3_secret")" "$day")
  signing_key=$(s3_hmac "$signing_key" "$region")
  signing_key=$(s3_hmac "$signing_key" s3)
  signing_key=$(s3_hmac "$signing_key" aws4_request)
  signature=$(s3_hmac "$signing_key" "$string_to_sign")

  (umask 077 && : >"$headers")
  {
    printf 'x-amz-date: %s\n' "$amz_date"
    printf 'x-amz-content-sha256: %s\n' "$payload_hash"
    if [[ -n "$s3_token" ]]; then printf 'x-amz-security-token: %s\n' "$s3_token"; fi
    printf 'Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s\n' \
      "$s3_key_id" "$scope" "$signed_headers" "$signature"
  } >"$headers"
  s3_secret=''
  s3_token=''

  # The proxy comes from https_proxy (configure_proxy); the signature is good for 15 minutes.
  status=$(curl --proto '=https' --tlsv1.2 -sS --path-as-is --retry 3 --connect-timeout 10 --max-time 900 \
    -H @"$headers" -o "$response" -w '%{http_code}' "$url") || status=${status:-000}
  rm -f -- "$headers"
  if [[ "$status" == '200' ]]; then
    mv -f -- "$response" "$dest"
    return 0
  fi
  code=''
  if [[ -f "$response" && "$(<"$response")" =~ \<Code\>([A-Za-z0-9]+)\</Code\> ]]; then code=" ${BASH_REMATCH[1]}"; fi
  rm -f -- "$response"
  if [[ "$status" == '000' ]]; then
    log "could not reach S3 at $host for s3://$bucket/$key"
  else
    log "S3 answered ${status}${code} for s3://$bucket/$key (signed with $s3_credentials_source)"
  fi
  return 1
}
