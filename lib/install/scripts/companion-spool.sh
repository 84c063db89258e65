# shellcheck shell=bash disable=SC2154 # globals and settings of companion.sh
# The companion's telemetry upload (cdk-agent-fleet). Functions only: the renderer inlines this
# file into the companion after aws-request.sh and s3-download.sh (s3_uri_encode).
#
# The agent writes each file under a name starting with '.' and renames it when complete; the
# companion uploads every other regular file below COMPANION_SPOOL to
# <telemetryPrefix><path in the spool> in the telemetry bucket the last answer named, with the
# KMS encryption headers the bucket policy accepts, and deletes it once S3 has it. A file that
# fails stays for the next run. The spool is bounded (COMPANION_SPOOL_MAX_KB): the oldest files
# go first, and every drop is logged and counted in spool-status.json beside the answer.

# At most this many uploads per run, so that one run stays short.
readonly SPOOL_UPLOADS_PER_RUN=100

# Drops the oldest files while the spool is over its bound; records what was dropped.
spool_bound() {
  local max=$((COMPANION_SPOOL_MAX_KB * 1024)) total=0 entry size name dropped=0 dropped_bytes=0 all=0 all_bytes=0
  local entries=()
  mapfile -t entries < <(find "$COMPANION_SPOOL" -type f -printf '%T@ %s %P\n' | LC_ALL=C sort -n)
  for entry in "${entries[@]}"; do
    size=${entry#* }
    size=${size%% *}
    total=$((total + size))
  done
  for entry in "${entries[@]}"; do
    ((total > max)) || break
    size=${entry#* }
    name=${size#* }
    size=${size%% *}
    rm -f -- "$COMPANION_SPOOL/$name"
    total=$((total - size))
    dropped=$((dropped + 1))
    dropped_bytes=$((dropped_bytes + size))
  done
  if ((dropped > 0)); then
    log "the telemetry spool was over its bound of ${COMPANION_SPOOL_MAX_KB} KB: dropped the $dropped oldest files ($dropped_bytes bytes)"
    all=$(($(state_number dropped-files 0) + dropped))
    all_bytes=$(($(state_number dropped-bytes 0) + dropped_bytes))
    printf '%s' "$all" >"$state/dropped-files"
    printf '%s' "$all_bytes" >"$state/dropped-bytes"
    printf '{"droppedFiles":%s,"droppedBytes":%s,"lastDropAt":"%s"}\n' "$all" "$all_bytes" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$workdir/spool-status"
    write_atomically "$COMPANION_DIR/spool-status.json" 644 "$workdir/spool-status"
  fi
}

# spool_put <file> <bucket> <key>: a signed PutObject; prints the HTTP status.
spool_put() {
  local file=$1 bucket=$2 key=$3 host path status headers="$workdir/s3-request-headers"
  local encryption=(x-amz-server-side-encryption:aws:kms)
  if [[ -n "$COMPANION_KMS_KEY" ]]; then encryption+=("x-amz-server-side-encryption-aws-kms-key-id:$COMPANION_KMS_KEY"); fi
  path="/$(s3_uri_encode "$key")"
  if [[ -n "$COMPANION_S3_ENDPOINT" ]]; then
    host=${COMPANION_S3_ENDPOINT#*://}
    path="/$bucket$path"
  else
    host="s3.$COMPANION_REGION.amazonaws.com"
    if [[ "$COMPANION_REGION" == cn-* ]]; then host+='.cn'; fi
    if [[ "$bucket" == *.* ]]; then path="/$bucket$path"; else host="$bucket.$host"; fi
  fi
  aws_sign_request PUT s3 "$COMPANION_REGION" "$host" "$path" '' "$file" "$headers" "${encryption[@]}"
  status=$(curl -sS --path-as-is --max-redirs 0 --connect-timeout 10 --max-time 300 -H @"$headers" -H 'content-type:' \
    -T "$file" -o "$workdir/s3-response" -w '%{http_code}' "${COMPANION_S3_ENDPOINT:-https://$host}$path") || status=${status:-000}
  rm -f -- "$headers"
  printf '%s' "$status"
}

spool_upload() {
  local answer='' bucket prefix name status sent=0 files=()
  [[ -d "$COMPANION_SPOOL" ]] || return 0
  spool_bound
  mapfile -t files < <(find "$COMPANION_SPOOL" -type f ! -name '.*' -printf '%T@ %P\n' | LC_ALL=C sort -n | cut -d' ' -f2-)
  ((${#files[@]} > 0)) || return 0
  if [[ -f "$COMPANION_DIR/answer.json" ]]; then answer=$(<"$COMPANION_DIR/answer.json"); fi
  bucket=$(aws_json_field "$answer" telemetryBucket) || bucket=''
  prefix=$(aws_json_field "$answer" telemetryPrefix) || prefix=''
  if [[ ! "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ || ! "$prefix" =~ ^[A-Za-z0-9!_.*\'()/:-]+/$ ]]; then
    log "${#files[@]} telemetry files wait in the spool: no answer from the backend has named the bucket and prefix yet"
    return 0
  fi
  if ! aws_instance_profile_credentials; then
    log "${#files[@]} telemetry files wait in the spool: no instance profile credentials to upload them"
    return 0
  fi
  for name in "${files[@]}"; do
    ((sent < SPOOL_UPLOADS_PER_RUN)) || break
    if [[ ! "$name" =~ ^[A-Za-z0-9._/-]{1,512}$ || "$name" == *..* ]]; then
      log "dropped spool file $(printf '%q' "$name"): a name may only use A-Z a-z 0-9 . _ - and /"
      rm -f -- "$COMPANION_SPOOL/$name"
      continue
    fi
    status=$(spool_put "$COMPANION_SPOOL/$name" "$bucket" "$prefix$name")
    if [[ "$status" != '200' ]]; then
      log "S3 answered $status for s3://$bucket/$prefix$name; the spool keeps it for the next run"
      break
    fi
    rm -f -- "$COMPANION_SPOOL/$name"
    sent=$((sent + 1))
  done
  aws_forget_credentials
  if ((sent > 0)); then log "uploaded $sent telemetry files to s3://$bucket/$prefix"; fi
}
