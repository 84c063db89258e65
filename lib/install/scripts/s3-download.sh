# shellcheck shell=bash disable=SC2154 # workdir, log: globals of install-agent.sh
# S3 downloads without the AWS CLI (cdk-agent-fleet), signed by aws-request.sh. Functions only:
# renderLinuxScript inlines this file after aws-request.sh.
#
# Uses AGENT_S3_ENDPOINT (empty: AWS; tests point it at a server on loopback).

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

# s3_download <s3://bucket/key> <region> <dest-file>: a SigV4-signed GET; 0 on success.
s3_download() {
  local source=$1 region=$2 dest=$3 bucket key path host url
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
  if ! aws_credentials; then
    log "no AWS credentials to read s3://$bucket/$key: the SSM Agent shared no Default Host Management credentials (AWS_SHARED_CREDENTIALS_FILE) and the instance has no usable instance profile"
    return 1
  fi
  log "downloading s3://$bucket/$key, signed with $aws_credentials_source"

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

  aws_sign_request GET s3 "$region" "$host" "$path" '' '' "$headers"
  aws_forget_credentials

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
    log "S3 answered ${status}${code} for s3://$bucket/$key (signed with $aws_credentials_source)"
  fi
  return 1
}
