# shellcheck shell=bash disable=SC2154 # settings and globals of install-agent.sh
# Installs, updates and removes the host companion with the agent (cdk-agent-fleet). Functions
# only: renderLinuxScript inlines this file. Settings (rendered at synth, see companion-script.ts):
#   COMPANION_URL (empty: the companion is switched off), COMPANION_IDENTITY_URL (empty: no
#   identity-document heartbeats), COMPANION_REGION, COMPANION_INTERVAL,
#   COMPANION_KMS_KEY, COMPANION_SPOOL_MAX_KB, COMPANION_PROGRAM (gzip + base64 of its body),
#   COMPANION_FUNCTIONS (the SigV4 functions of this script it uses, appended with declare -f).
# The program is written with the agent's service and package this run resolved, and the
# fleet's proxy; a systemd timer starts it every minute (it exits at once until it is due).

readonly COMPANION_BIN_DIR='/usr/local/libexec/cdk-agent-fleet'
readonly COMPANION_UNIT='cdk-agent-fleet-companion'
readonly COMPANION_UNIT_DIR='/etc/systemd/system'
readonly COMPANION_HOME='/var/lib/cdk-agent-fleet-companion'
readonly COMPANION_SPOOL_DIR='/var/spool/cdk-agent-fleet'

# Writes <file> from the lines given, atomically, mode 0644.
companion_write_lines() {
  local file=$1
  shift
  printf '%s\n' "$@" >"$file.new"
  chmod 644 -- "$file.new"
  mv -f -- "$file.new" "$file"
}

companion_install() {
  local program="$COMPANION_BIN_DIR/companion" name
  # shellcheck disable=SC2086 # a list of function names
  if ! declare -F $COMPANION_FUNCTIONS >/dev/null; then
    log "the install script lacks a function the companion needs ($COMPANION_FUNCTIONS)"
    return 1
  fi
  install -d -m 755 -- "$COMPANION_BIN_DIR" "$COMPANION_HOME"
  install -d -m 700 -- "$COMPANION_SPOOL_DIR"
  {
    printf '#!/usr/bin/env bash\n'
    for name in URL IDENTITY_URL REGION INTERVAL KMS_KEY SPOOL_MAX_KB; do
      name="COMPANION_$name"
      printf '%s=%q\n' "$name" "${!name}"
    done
    printf 'COMPANION_%s=%q\n' DIR "$COMPANION_HOME" SPOOL "$COMPANION_SPOOL_DIR" SERVICE "$service_name" \
      PACKAGE "$package_name" FORMAT "$format" PROXY "$AGENT_PROXY_URL" IMDS "$IMDS" S3_ENDPOINT ''
    printf 'readonly COMPANION_URL COMPANION_IDENTITY_URL COMPANION_REGION COMPANION_INTERVAL COMPANION_KMS_KEY COMPANION_SPOOL_MAX_KB COMPANION_DIR COMPANION_SPOOL COMPANION_SERVICE COMPANION_PACKAGE COMPANION_FORMAT COMPANION_PROXY COMPANION_IMDS COMPANION_S3_ENDPOINT\n'
    printf '%s' "$COMPANION_PROGRAM" | base64 -d | gzip -dc
    printf "aws_key_id='' aws_secret='' aws_token='' aws_credentials_source=''\n"
    # shellcheck disable=SC2086 # a list of function names
    declare -f $COMPANION_FUNCTIONS
    printf 'main "$@"\n'
  } >"$program.new"
  chmod 700 -- "$program.new"
  mv -f -- "$program.new" "$program"

  companion_write_lines "$COMPANION_UNIT_DIR/$COMPANION_UNIT.service" \
    '[Unit]' \
    'Description=cdk-agent-fleet companion: heartbeat to the fleet backend, telemetry upload' \
    'Wants=network-online.target' 'After=network-online.target' \
    '[Service]' 'Type=oneshot' "ExecStart=$program" \
    'Nice=10' 'IOSchedulingClass=idle' 'TimeoutStartSec=300' \
    'NoNewPrivileges=yes' 'PrivateTmp=yes' 'ProtectHome=yes' 'ProtectSystem=full'
  companion_write_lines "$COMPANION_UNIT_DIR/$COMPANION_UNIT.timer" \
    '[Unit]' 'Description=Starts the cdk-agent-fleet companion every minute; it heartbeats when the backend interval has passed' \
    '[Timer]' 'OnBootSec=1min' 'OnUnitActiveSec=1min' 'RandomizedDelaySec=20s' 'AccuracySec=5s' \
    '[Install]' 'WantedBy=timers.target'
  run_clean systemctl daemon-reload
  run_clean systemctl enable --now "$COMPANION_UNIT.timer" >/dev/null 2>&1
  log "companion installed: heartbeats to $COMPANION_URL every ${COMPANION_INTERVAL}s (or as the backend says)"
}

companion_remove() {
  local unit
  if [[ ! -e "$COMPANION_UNIT_DIR/$COMPANION_UNIT.timer" && ! -e "$COMPANION_BIN_DIR/companion" ]]; then return 0; fi
  run_clean systemctl disable --now "$COMPANION_UNIT.timer" >/dev/null 2>&1 || true
  run_clean systemctl stop "$COMPANION_UNIT.service" >/dev/null 2>&1 || true
  for unit in timer service; do rm -f -- "$COMPANION_UNIT_DIR/$COMPANION_UNIT.$unit"; done
  rm -rf -- "$COMPANION_BIN_DIR" "$COMPANION_HOME"
  # Telemetry not uploaded yet stays, and says so; an empty spool goes.
  if ! rmdir -- "$COMPANION_SPOOL_DIR" 2>/dev/null && [[ -d "$COMPANION_SPOOL_DIR" ]]; then
    log "companion removed; $COMPANION_SPOOL_DIR still holds telemetry that was not uploaded"
  fi
  run_clean systemctl daemon-reload || true
  log "companion removed"
}

# After the run's outcome: the companion goes with the agent, and only where the fleet manages it.
companion_apply() {
  case "$1" in
    installed | upgraded | already-installed | repaired)
      if [[ -n "$COMPANION_URL" ]]; then companion_install; else companion_remove; fi
      ;;
    uninstalled | not-installed | excluded | not-targeted)
      if [[ "$AGENT_ACTION" != 'Verify' ]]; then companion_remove; fi
      ;;
  esac
}
