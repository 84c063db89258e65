# shellcheck shell=bash disable=SC2154,SC2034 # globals of install-agent.sh and of its settings header; stop_pid and activation_exit_code are read there
# Activates the agent after a successful Install (cdk-agent-fleet). Functions only: the renderer
# inlines this file after aws-request.sh and json-string.sh; install-agent.sh ends every
# successful Install with finish_installed, and calls activation_before_start before it starts
# the service.
#
# Settings (rendered at synth, validated there):
#   ACTIVATION_ID       a hash of the activation (command, secrets' ARNs, check), never of a
#                       value (without an activation, activation-none.sh replaces this file)
#   ACTIVATION_ARGC     the number of arguments; for each i: ACTIVATION_ARG_<i>_KIND (literal,
#                       value: the secret inside the argument, file: the path of a 0600 file
#                       holding it), _TEXT (the literal, or the text before the secret or path),
#                       _SUFFIX (the text after it), _SECRET (the secret's index)
#   ACTIVATION_STDIN    the index of the secret the command reads on standard input, or empty
#   ACTIVATION_CHECK_ARGC, ACTIVATION_CHECK_<i>, ACTIVATION_CHECK_CONTAINS, ACTIVATION_CHECK_LACKS
#                       a command that tells whether the agent is activated already
#   ACTIVATION_TIMEOUT  seconds the command may take
#   ACTIVATION_BEFORE_START  1: activate before the service is (re)started and health-checked
#   SECRET_<n>_SERVICE (secretsmanager or ssm), _ID (ARN), _REGION, _FIELD (a JSON key, or empty)
#   AGENT_AWS_ENDPOINT  https://host of a stand-in for both services (tests only; empty: AWS)
#
# Secret values live only in unexported variables, in 0600 files in the run's work dir (deleted
# once the command ends) and on the command's standard input. They reach a command line only
# where an argument of kind `value` puts them: the vendor tool's own, never a helper's. What the
# command prints is logged with every secret value replaced.

activation_state='not-run'
activation_exit_code=''
activation_exec_status=0
activation_secrets=()

setting() {
  printf '%s' "${!1:-}"
}

# What was activated last, in the agent's state dir: the activation's hash only.
activation_recorded() {
  [[ -f "$state_dir/activation" && "$(<"$state_dir/activation")" == "$ACTIVATION_ID" ]]
}

activation_record() {
  printf '%s' "$ACTIVATION_ID" >"$state_dir/activation.new"
  mv -f -- "$state_dir/activation.new" "$state_dir/activation"
}

# The regional endpoint of a service (or the tests' stand-in).
aws_service_host() {
  local service=$1 region=$2 host
  if [[ -n "${AGENT_AWS_ENDPOINT:-}" ]]; then
    printf '%s' "${AGENT_AWS_ENDPOINT#https://}"
    return
  fi
  host="$service.$region.amazonaws.com"
  if [[ "$region" == cn-* ]]; then host+='.cn'; fi
  printf '%s' "$host"
}

# secret_fetch <n>: reads secret n with the instance's credentials into activation_secrets[n].
# Secrets Manager GetSecretValue or Parameter Store GetParameter (WithDecryption), signed here.
secret_fetch() {
  local n=$1 service id region field target host what status type
  local body="$workdir/secret-request" headers="$workdir/secret-headers" response="$workdir/secret-response" text
  service=$(setting "SECRET_${n}_SERVICE")
  id=$(setting "SECRET_${n}_ID")
  region=$(setting "SECRET_${n}_REGION")
  field=$(setting "SECRET_${n}_FIELD")
  if [[ ! "$id" =~ ^arn:[A-Za-z0-9:/_+=.@!-]+$ || ! "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
    log "secret $n is not an ARN in a region ($(printf '%q' "$id"), $(printf '%q' "$region"))"
    return 1
  fi
  case "$service" in
    secretsmanager)
      what="Secrets Manager secret $id"
      target='secretsmanager.GetSecretValue'
      printf '{"SecretId":"%s"}' "$id" >"$body"
      ;;
    ssm)
      what="SecureString parameter $id"
      target='AmazonSSM.GetParameter'
      printf '{"Name":"%s","WithDecryption":true}' "$id" >"$body"
      ;;
    *) log "secret $n has an unknown service $(printf '%q' "$service")"; return 1 ;;
  esac
  if ! aws_credentials; then
    log "no AWS credentials to read the $what: the SSM Agent shared no Default Host Management credentials and the instance has no usable instance profile"
    return 1
  fi
  host=$(aws_service_host "$service" "$region")
  aws_sign_request POST "$service" "$region" "$host" / '' "$body" "$headers" \
    'content-type:application/x-amz-json-1.1' "x-amz-target:$target"
  aws_forget_credentials
  status=$(curl --proto '=https' --tlsv1.2 -sS --retry 2 --connect-timeout 10 --max-time 60 \
    -H @"$headers" --data-binary @"$body" -o "$response" -w '%{http_code}' "https://$host/") || status=${status:-000}
  rm -f -- "$headers" "$body"
  text=''
  if [[ -f "$response" ]]; then text=$(<"$response"); fi
  rm -f -- "$response"
  if [[ "$status" != '200' ]]; then
    type=''
    if json_get "$text" __type; then type=" ${json_value##*#}"; fi
    text='' json_value=''
    if [[ "$status" == '000' ]]; then log "could not reach $host for the $what"; else log "$host answered ${status}${type} for the $what (signed with $aws_credentials_source)"; fi
    return 1
  fi
  status=0
  if [[ "$service" == secretsmanager ]]; then json_get "$text" SecretString || status=$?; else json_get "$text" Parameter Value || status=$?; fi
  text=''
  case "$status" in
    0) ;;
    1) log "the answer for the $what holds no string value (a binary secret cannot be used)"; return 1 ;;
    3) log "the $what holds a NUL character, which cannot be passed on"; return 1 ;;
    *) log "the answer for the $what is not JSON this script understands"; return 1 ;;
  esac
  if [[ -n "$field" ]]; then
    status=0
    json_get "$json_value" "$field" || status=$?
    if ((status != 0)); then
      json_value=''
      log "the $what is not a JSON object with a string field $field"
      return 1
    fi
  fi
  activation_secrets[n]=$json_value
  json_value=''
  log "read the $what${field:+ (field $field)}"
}

# The command for the log: literals as they are, secrets by name.
activation_display() {
  local i kind text shown=''
  for ((i = 0; i < ACTIVATION_ARGC; i++)); do
    kind=$(setting "ACTIVATION_ARG_${i}_KIND")
    text=$(setting "ACTIVATION_ARG_${i}_TEXT")
    case "$kind" in
      literal) shown+=" $text" ;;
      value) shown+=" $text<secret $(setting "ACTIVATION_ARG_${i}_SECRET")>$(setting "ACTIVATION_ARG_${i}_SUFFIX")" ;;
      file) shown+=" $text<file of secret $(setting "ACTIVATION_ARG_${i}_SECRET")>$(setting "ACTIVATION_ARG_${i}_SUFFIX")" ;;
    esac
  done
  printf '%s' "${shown# }"
}

# activation_exec <output-file> <stdin-file> <argument>...: runs a command with nothing of this
# run (no lock descriptor, no environment but PATH and LANG, umask 022, / as working directory),
# straight from a fork of this shell, so no helper process ever holds its arguments. Stops it
# after ACTIVATION_TIMEOUT seconds (status 124) and on TERM or INT. Sets activation_exec_status.
activation_exec() {
  local out=$1 input=$2 pid watchdog status=0
  shift 2
  (
    trap - ERR EXIT TERM INT
    cd / && umask 022
    for name in $(compgen -e); do
      if [[ "$name" != PATH ]]; then unset "$name" 2>/dev/null || true; fi
    done
    export LANG=C.UTF-8
    exec "$@"
  ) 9>&- <"$input" >"$out" 2>&1 &
  pid=$!
  stoppable "$pid"
  (
    trap - ERR EXIT TERM INT
    # One second at a time, so that stopping the watchdog leaves no long sleep behind.
    for ((waited = 0; waited < ACTIVATION_TIMEOUT; waited++)); do sleep 1; done
    # The tool and what it started (a vendor script's own children).
    pkill -TERM -P "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null && sleep 5 && kill -KILL "$pid" 2>/dev/null
  ) 9>&- </dev/null >/dev/null 2>&1 &
  watchdog=$!
  wait "$pid" || status=$?
  stoppable ''
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  if ((status == 143 || status == 137)) && ! signalled; then status=124; fi
  activation_exec_status=$status
}

# Logs what a command printed, with every secret value read in this run replaced.
log_redacted() {
  local text='' value
  if [[ -s "$1" ]]; then text=$(<"$1"); fi
  for value in ${activation_secrets[@]+"${activation_secrets[@]}"}; do
    if [[ -n "$value" ]]; then text=${text//"$value"/<redacted>}; fi
  done
  if [[ -n "$text" ]]; then log "$text"; fi
  text=''
}

# Whether the agent says it is activated already (the check command exits 0 and its output
# contains ACTIVATION_CHECK_CONTAINS and lacks ACTIVATION_CHECK_LACKS).
activation_check() {
  local i argv=() out="$workdir/activation-check.out" status text=''
  ((ACTIVATION_CHECK_ARGC > 0)) || return 1
  for ((i = 0; i < ACTIVATION_CHECK_ARGC; i++)); do argv+=("$(setting "ACTIVATION_CHECK_$i")"); done
  if [[ ! -x "${argv[0]}" ]]; then
    log "the activation check ${argv[0]} is not there"
    return 1
  fi
  activation_exec "$out" /dev/null "${argv[@]}"
  status=$activation_exec_status
  check_interrupt
  if [[ -f "$out" ]]; then text=$(<"$out"); fi
  rm -f -- "$out"
  ((status == 0)) || return 1
  if [[ -n "$ACTIVATION_CHECK_CONTAINS" && "$text" != *"$ACTIVATION_CHECK_CONTAINS"* ]]; then return 1; fi
  if [[ -n "$ACTIVATION_CHECK_LACKS" && "$text" == *"$ACTIVATION_CHECK_LACKS"* ]]; then return 1; fi
  return 0
}

# Runs the activation command once: reads its secrets, builds its arguments, runs it. Sets
# activation_state (activated, failed, secret-unavailable) and activation_exit_code.
activation_run() {
  local i n kind text suffix argv=() input=/dev/null files=() out="$workdir/activation.out" status needed=()
  for ((i = 0; i < ACTIVATION_ARGC; i++)); do
    n=$(setting "ACTIVATION_ARG_${i}_SECRET")
    if [[ -n "$n" ]]; then needed+=("$n"); fi
  done
  if [[ -n "$ACTIVATION_STDIN" ]]; then needed+=("$ACTIVATION_STDIN"); fi
  for n in ${needed[@]+"${needed[@]}"}; do
    if [[ -z "${activation_secrets[n]+set}" ]] && ! secret_fetch "$n"; then
      activation_state='secret-unavailable'
      activation_forget
      return 0
    fi
  done
  for ((i = 0; i < ACTIVATION_ARGC; i++)); do
    kind=$(setting "ACTIVATION_ARG_${i}_KIND")
    text=$(setting "ACTIVATION_ARG_${i}_TEXT")
    suffix=$(setting "ACTIVATION_ARG_${i}_SUFFIX")
    n=$(setting "ACTIVATION_ARG_${i}_SECRET")
    case "$kind" in
      literal) argv+=("$text") ;;
      value) argv+=("$text${activation_secrets[n]}$suffix") ;;
      file)
        printf '%s' "${activation_secrets[n]}" >"$workdir/secret-file-$i"
        files+=("$workdir/secret-file-$i")
        argv+=("$text$workdir/secret-file-$i$suffix")
        ;;
    esac
  done
  if [[ -n "$ACTIVATION_STDIN" ]]; then
    printf '%s\n' "${activation_secrets[ACTIVATION_STDIN]}" >"$workdir/secret-stdin"
    files+=("$workdir/secret-stdin")
    input="$workdir/secret-stdin"
  fi
  if [[ ! -x "${argv[0]}" ]]; then
    log "the activation command ${argv[0]} is not there (is it in the agent's package?)"
    argv=()
    activation_forget ${files[@]+"${files[@]}"}
    activation_state='failed' activation_exit_code='127'
    return 0
  fi
  log "activating: $(activation_display)"
  activation_exec "$out" "$input" "${argv[@]}"
  status=$activation_exec_status
  argv=()
  log_redacted "$out"
  rm -f -- "$out"
  activation_forget ${files[@]+"${files[@]}"}
  check_interrupt
  activation_exit_code=$status
  if ((status == 0)); then
    activation_record
    activation_state='activated'
    log "activated (the activation command exited 0)"
  else
    rm -f -- "$state_dir/activation"
    activation_state='failed'
    if ((status == 124)); then log "the activation command did not finish within ${ACTIVATION_TIMEOUT}s"; fi
    log "the activation command exited $status"
  fi
}

# Deletes the secret files and forgets the values.
activation_forget() {
  if (($# > 0)); then rm -f -- "$@"; fi
  activation_secrets=()
}

# Whether to activate, and activating (sets activation_state): always on Reactivate; after
# already-installed or repaired only when the activation was never recorded (or has changed
# since); otherwise unless the check says the agent is activated already.
activation_settle() {
  local outcome=$1
  if [[ "$AGENT_ACTION" == 'Reactivate' ]]; then
    activation_run
  elif [[ ("$outcome" == already-installed || "$outcome" == repaired) ]] && activation_recorded; then
    activation_state='already-activated'
  elif activation_check; then
    log "the agent is activated already (the activation check says so)"
    activation_record
    activation_state='already-activated'
  else
    activation_run
  fi
}

# With ACTIVATION_BEFORE_START (an agent whose service does not stay up until activated): settles
# the activation once a run, after the package is installed and before the service is (re)started
# and health-checked. A failed activation ends the run activation-failed, the package left
# installed and its service unchecked; the next Install activates it and starts the service.
activation_before_start() {
  [[ -n "${ACTIVATION_BEFORE_START:-}" && "$activation_state" == not-run ]] || return 0
  activation_settle "$1"
  case "$activation_state" in
    failed | secret-unavailable)
      changing=''
      rm -f -- "$state_dir/pending"
      finish activation-failed 24
      ;;
  esac
  # A service the package started before it was activated may have hit systemd's start limit.
  run_clean systemctl reset-failed "$service_name" >/dev/null 2>&1 || true
}

# After a successful Install (installed, upgraded, already-installed, repaired): settles the
# activation unless activation_before_start has, then ends the run. An agent activated before
# its service starts is restarted when activated here (it reads what was set at start).
finish_installed() {
  local outcome=$1
  if [[ "$activation_state" == not-run ]]; then
    activation_settle "$outcome"
    if [[ -n "${ACTIVATION_BEFORE_START:-}" && "$activation_state" == activated ]]; then
      log "restarting service $service_name, which reads its activation at start"
      if ! service_up; then
        check_interrupt
        log "service $service_name did not stay up after the activation"
        finish repair-failed 23
      fi
    fi
  fi
  case "$activation_state" in
    failed | secret-unavailable) finish activation-failed 24 ;;
  esac
  finish "$outcome" 0
}
