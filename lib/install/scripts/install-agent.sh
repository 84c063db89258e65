#!/usr/bin/env bash
# Installs, upgrades, verifies or uninstalls the host security agent on Linux (cdk-agent-fleet).
#
# This file is the body of the aws:runShellScript step of an AgentInstallDocument. At synth
# the construct puts a header of settings right after the first line:
#   AGENT_ACTION, AGENT_PROXY_URL, AGENT_MODE, AGENT_TAG_KEY  document parameters, each
#       checked by SSM against allowedValues or allowedPattern before it reaches this script;
#   AGENT_STATE_DIR, AGENT_HEALTH_WINDOW (seconds the service must stay up), AGENT_LOCK_WAIT
#       and AGENT_PM_WAIT (seconds to wait for another run, for a busy package manager);
#   AGENT_PACKAGES  the keys (RPM_X86_64, DEB_ARM64, ...) of the pinned packages, and for
#       each key PKG_<key>_SOURCE (https:// or s3:// URL), _REGION, _SHA256, _VERSION, _NAME,
#       _SERVICE, all validated at synth, so nobody can point it at another package; a package
#       pinned by its vendor's key also has _SIGNING_KEY (the name of a variable holding the
#       armored key) and, for DEB, _SIGNATURE (its detached signature); its _SHA256 and
#       _VERSION may then be empty (package-signature.sh).
#
# The last line of its output is one JSON object: action, outcome, version, imdsVersion, tag,
# activation, activationExitCode (activation.sh).
# Outcomes and exit statuses are listed in the README ("Install document outcomes").
set -Eeuo pipefail
umask 077

# shellcheck disable=SC2034 # read by aws-request.sh
readonly IMDS='http://169.254.169.254'

imds_version='none'
# shellcheck disable=SC2034 # set and read by aws-request.sh
imds_header_file=''
tag_state='unknown'
format=''
package_name=''
service_name=''
package_version=''
state_dir=''
workdir=''
stop_pid=''
fetched=''
# Set when a newer version than the signed package is installed: never downgraded.
keep_installed=''
interrupted=''
finishing=''
# Set while the host differs from where it was when the run started.
changing=''

log() { printf '%s\n' "$*" >&2; }

# Ends the run with the one JSON line. `version` is always what is installed when the run
# ends (empty when nothing is). Every value comes from a fixed vocabulary, was validated at
# synth, or is a version the package manager reports, so none needs escaping.
finish() {
  trap - ERR
  finishing=1
  local version=''
  # The host companion comes and goes with the agent (companion-install.sh, when the document has it).
  if ! signalled && declare -F companion_apply >/dev/null; then companion_apply "$1" || log "could not update the host companion"; fi
  if [[ -z "$format" ]]; then resolve_package 2>/dev/null || true; fi
  if [[ -n "$format" ]]; then version=$(installed_version) || version=''; fi
  # shellcheck disable=SC2154 # activation_state, activation_exit_code: activation.sh
  printf '{"action":"%s","outcome":"%s","version":"%s","imdsVersion":"%s","tag":"%s","activation":"%s","activationExitCode":"%s"}\n' \
    "$AGENT_ACTION" "$1" "$version" "$imds_version" "$tag_state" "$activation_state" "$activation_exit_code"
  if [[ -n "${AGENT_GATE_SERVICE:-}" ]]; then gate_exit "$1" "$2"; fi
  exit "$2"
}

# The work dir is the supervisor's to remove (it may still write a signal's name there); the
# run leaves its exit status there for the supervisor (see supervise).
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local status=$?
  if [[ -n "$stop_pid" ]]; then kill "$stop_pid" 2>/dev/null || true; fi
  { printf '%s\n' "$status" >"$workdir/status.new" && mv -f -- "$workdir/status.new" "$workdir/status"; } 2>/dev/null || true
}

# TERM and INT (a shutdown, an operator; SSM itself cancels and times out with SIGKILL to the
# process group) reach the supervisor, which leaves the signal's name in the work dir: a
# package manager that is running finishes first, then the run stops at the next
# check_interrupt, rolling back what it changed, and still prints its line.
# signalled: true once that happened, with interrupted set to the signal's name.
signalled() {
  if [[ -z "$interrupted" && -s "$workdir/signal" ]]; then read -r interrupted <"$workdir/signal" || true; fi
  [[ -n "$interrupted" ]]
}

# stoppable <pid>: the one background command (a download, an activation tool) the supervisor
# stops at once on TERM or INT; stoppable '' when it has ended.
stoppable() {
  stop_pid=$1
  # Replaced in one step: the supervisor never reads it half written.
  printf '%s\n' "$1" >"$workdir/stop.new"
  mv -f -- "$workdir/stop.new" "$workdir/stop"
  # A signal the supervisor took before the file was there: it could not stop this one.
  if [[ -n "$1" ]] && signalled; then kill "$1" 2>/dev/null || true; fi
}

check_interrupt() {
  if [[ -n "$finishing" ]] || ! signalled; then return 0; fi
  if [[ -n "$changing" ]]; then
    rollback "interrupted by SIG$interrupted"
  fi
  finish interrupted 40
}

# Package managers and systemctl run with nothing of this run: no lock descriptor, a fresh
# environment, umask 022 and / as working directory, in a session of their own, so a daemon
# a maintainer script starts inherits none of it and a signal to this run's process group
# does not stop a package manager halfway. Their output goes to the log (stderr).
run_clean() {
  (
    trap - TERM INT
    cd / && umask 022
    exec env -i PATH="$PATH" LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive setsid -w "$@"
  ) 9>&- </dev/null >&2
}

configure_proxy() {
  # The instance metadata service is never reached through a proxy.
  no_proxy="169.254.169.254${no_proxy:+,$no_proxy}"
  NO_PROXY="$no_proxy"
  export no_proxy NO_PROXY
  if [[ -n "$AGENT_PROXY_URL" ]]; then
    export https_proxy="$AGENT_PROXY_URL" HTTPS_PROXY="$AGENT_PROXY_URL"
  fi
}

# One run at a time on the host (an association and a manual command may overlap). The lock
# file is never deleted (Uninstall removes only the agent's own state), and a lock taken on a
# file that someone replaced meanwhile is let go and taken again.
take_run_lock() {
  local lock="$AGENT_STATE_DIR/.run.lock" deadline=$((SECONDS + AGENT_LOCK_WAIT)) held
  while :; do
    # Descriptor 9 holds the lock; everything that may outlive the run starts with it closed.
    exec 9>>"$lock"
    if ! flock -w "$((deadline > SECONDS ? deadline - SECONDS : 0))" 9; then
      log "another run held the run lock for ${AGENT_LOCK_WAIT}s"
      finish busy 14
    fi
    # stat's own descriptor 9 is the one this shell holds.
    held=$(stat -L -c '%d:%i' /proc/self/fd/9) || finish failed 1
    if [[ "$held" == "$(stat -c '%d:%i' "$lock" 2>/dev/null)" ]]; then return 0; fi
    if ((SECONDS >= deadline)); then finish busy 14; fi
  done
}

# Sets tag_state to absent, true, false or misconfigured; fails when the tag cannot be read.
read_tag() {
  local status value
  status=$(aws_imds_get "/latest/meta-data/tags/instance/$AGENT_TAG_KEY" "$workdir/tag")
  case "$status" in
    200)
      value=$(<"$workdir/tag")
      case "$value" in
        true | false) tag_state=$value ;;
        *)
          tag_state='misconfigured'
          log "tag $AGENT_TAG_KEY has the value $(printf '%q' "$value"); only true and false mean something"
          ;;
      esac
      ;;
    404)
      tag_state='absent'
      status=$(aws_imds_get '/latest/meta-data/tags/instance' "$workdir/tags")
      if [[ "$status" == '404' ]]; then
        log "no instance tags in the metadata service: either the instance has none, or metadata tags are off (InstanceMetadataTags=enabled), which hides exclusion tags"
      fi
      ;;
    *) return 1 ;;
  esac
}

# What the tag means for this run: proceed, excluded or not-targeted (DESIGN.md, "Tag semantics").
decide() {
  if [[ "$AGENT_ACTION" == 'Uninstall' ]]; then
    echo proceed
    return
  fi
  case "$AGENT_MODE:$tag_state" in
    ALL_INSTANCES:false) echo excluded ;;
    ALL_INSTANCES:*) echo proceed ;;
    TAGGED_ONLY:true) echo proceed ;;
    *) echo not-targeted ;;
  esac
}

detect_format() {
  if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
    echo DEB
  elif command -v rpm >/dev/null && { command -v dnf || command -v yum; } >/dev/null; then
    echo RPM
  else
    return 1
  fi
}

detect_architecture() {
  case "$(uname -m)" in
    x86_64 | amd64) echo X86_64 ;;
    aarch64 | arm64) echo ARM64 ;;
    *) return 1 ;;
  esac
}

# Picks the package for this host's package manager and CPU; fails when the document has none.
resolve_package() {
  local architecture
  if ! format=$(detect_format) || ! architecture=$(detect_architecture); then
    format=''
    log "no supported package manager (rpm with dnf/yum, dpkg with apt) or CPU architecture"
    return 1
  fi
  package_key="${format}_${architecture}"
  if [[ " $AGENT_PACKAGES " != *" $package_key "* ]]; then
    log "the document has no $format package for $architecture"
    format=''
    return 1
  fi
  package_name=$(pkg_field NAME)
  service_name=$(pkg_field SERVICE)
  package_version=$(pkg_field VERSION)
  package_sha256=$(pkg_field SHA256)
  state_dir="$AGENT_STATE_DIR/$service_name"
}

pkg_field() {
  local name="PKG_${package_key}_$1"
  printf '%s' "${!name:-}"
}

# Prints the installed version as the package manager writes it ([epoch:]version-release);
# fails when the package is not installed.
installed_version() {
  local status
  case "$format" in
    RPM) rpm -q --qf '%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}' "$package_name" 2>/dev/null ;;
    DEB)
      # shellcheck disable=SC2016 # dpkg-query's format string, not a shell expansion
      status=$(dpkg-query -W -f='${Status} ${Version}' "$package_name" 2>/dev/null) || return 1
      [[ "$status" == 'install ok installed '* ]] || return 1
      printf '%s' "${status##* }"
      ;;
  esac
}

# Compares two version strings with the package manager's own algorithm: prints -1, 0 or 1.
vercmp() {
  case "$format" in
    RPM) rpm --eval "%{lua: print(rpm.vercmp('$1', '$2'))}" ;;
    DEB)
      if dpkg --compare-versions "$1" lt "$2"; then echo -1
      elif dpkg --compare-versions "$1" gt "$2"; then echo 1
      else echo 0; fi
      ;;
  esac
}

# Whether the installed version is the pinned one, compared as rpm and dpkg compare them:
# epoch (none means 0), version, and the release (revision) only when the pin names one.
# So 1:7.0.0 matches 1:7.0.0-1 and not 7.0.0-1; 1.2.3 matches 1.2.3-4 and not 1.2.30.
version_matches() {
  local installed=$1 wanted=$2 installed_epoch=0 wanted_epoch=0
  if [[ "$installed" == *:* ]]; then installed_epoch=${installed%%:*} installed=${installed#*:}; fi
  if [[ "$wanted" == *:* ]]; then wanted_epoch=${wanted%%:*} wanted=${wanted#*:}; fi
  [[ "$installed_epoch" =~ ^[0-9]+$ && "$wanted_epoch" =~ ^[0-9]+$ ]] || return 1
  ((10#$installed_epoch == 10#$wanted_epoch)) || return 1
  if [[ "$wanted" != *-* ]]; then installed=${installed%-*}; fi
  [[ "$installed" == "$wanted" ]] && return 0
  if [[ "$format" == 'RPM' && "$installed" == *-* && "$wanted" == *-* ]]; then
    # rpm compares version and release one after the other.
    [[ "$(vercmp "${installed%-*}" "${wanted%-*}")" == 0 && "$(vercmp "${installed##*-}" "${wanted##*-}")" == 0 ]]
    return
  fi
  [[ "$(vercmp "$installed" "$wanted")" == 0 ]]
}

# The files whose fcntl locks say the package manager is in use (apt, dnf, unattended-upgrades
# and cloud-init all go through them).
pm_lock_files() {
  case "$format" in
    DEB) echo /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock ;;
    RPM) printf '%s/.rpm.lock\n' "$(rpm --eval '%{_dbpath}')" ;;
  esac
}

# Prints "<pid> (<command>)" of a process holding a package manager lock; fails when none does.
pm_lock_holder() {
  local file inode line field previous pid
  # shellcheck disable=SC2046 # a list of paths without spaces
  for file in $(pm_lock_files); do
    inode=$(stat -c '%i' "$file" 2>/dev/null) || continue
    while read -r line; do
      previous=''
      for field in $line; do
        if [[ "$field" =~ ^[0-9a-f]+:[0-9a-f]+:([0-9]+)$ && "${BASH_REMATCH[1]}" == "$inode" && "$previous" =~ ^[0-9]+$ ]]; then
          pid=$previous
          printf '%s (%s)' "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo unknown)"
          return 0
        fi
        previous=$field
      done
    done </proc/locks
  done
  return 1
}

# Runs a package manager command once the package manager is free, waiting up to
# AGENT_PM_WAIT seconds for it. Returns 75 when it stayed busy (nothing was changed).
pm_run() {
  local deadline=$((SECONDS + AGENT_PM_WAIT)) holder started=$SECONDS waited_log='' status
  while :; do
    if holder=$(pm_lock_holder); then
      if [[ -z "$waited_log" ]]; then
        log "the package manager is busy (lock held by $holder); waiting up to ${AGENT_PM_WAIT}s"
        waited_log=1
      fi
      if ((SECONDS >= deadline)); then
        log "the package manager was still busy after $((SECONDS - started))s (lock held by $holder)"
        return 75
      fi
      sleep 1
      continue
    fi
    if [[ -n "$waited_log" ]]; then log "the package manager is free after $((SECONDS - started))s"; fi
    status=0
    run_clean "$@" 2>"$workdir/pm.err" || status=$?
    cat -- "$workdir/pm.err" >&2
    # dpkg refuses at once (status 2) when apt or another dpkg took its lock meanwhile.
    if ((status == 2)) && [[ "$format" == 'DEB' ]] && grep -q 'lock' "$workdir/pm.err" && ((SECONDS < deadline)); then
      waited_log=''
      sleep 1
      continue
    fi
    return "$status"
  done
}

install_file() {
  case "$format" in
    RPM) pm_run rpm -U --oldpackage --replacepkgs "$1" ;;
    DEB) pm_run dpkg -i --force-confdef --force-confold "$1" ;;
  esac
}

remove_package() {
  case "$format" in
    RPM) pm_run rpm -e "$package_name" ;;
    DEB) pm_run dpkg -r "$package_name" ;;
  esac
}

# Prints "ActiveState NRestarts ActiveEnterTimestampMonotonic" of the service.
service_state() {
  local line active='unknown' restarts='' since=''
  while IFS= read -r line; do
    case "$line" in
      ActiveState=*) active=${line#*=} ;;
      NRestarts=*) restarts=${line#*=} ;;
      ActiveEnterTimestampMonotonic=*) since=${line#*=} ;;
    esac
  done < <(systemctl show -p ActiveState -p NRestarts -p ActiveEnterTimestampMonotonic "$service_name" 2>/dev/null 9>&-)
  printf '%s %s %s' "$active" "$restarts" "$since"
}

# Healthy: once active (within the window), the service stays active for the whole health
# window without systemd restarting it (NRestarts) or starting it anew (active-since), so a
# crash-loop that is active whenever one looks is caught too.
service_healthy() {
  local state first='' waited=0
  while :; do
    state=$(service_state)
    if [[ "$state" == active\ * ]]; then
      if [[ -z "$first" ]]; then
        first=$state waited=0
      elif [[ "$state" != "$first" ]]; then
        log "service $service_name restarted within the health window (ActiveState NRestarts active-since: $first, then $state)"
        return 1
      fi
    elif [[ -n "$first" ]]; then
      log "service $service_name went ${state%% *} ${waited}s after it was active"
      return 1
    fi
    if ((waited >= AGENT_HEALTH_WINDOW)); then
      if [[ -z "$first" ]]; then log "service $service_name is ${state%% *}, not active"; return 1; fi
      return 0
    fi
    sleep 1
    waited=$((waited + 1))
    if [[ -z "$finishing" ]] && signalled; then return 1; fi
  done
}

# (Re)starts the service and checks it over the health window.
service_up() {
  run_clean systemctl enable "$service_name" >/dev/null 2>&1 || log "could not enable $service_name"
  run_clean systemctl restart "$service_name" || log "could not restart $service_name"
  service_healthy
}

# Downloads the package (or another of its fields: SIGNATURE) into a file.
download() {
  local source region
  source=$(pkg_field "${2:-SOURCE}")
  region=$(pkg_field REGION)
  case "$source" in
    s3://*) s3_download "$source" "$region" "$1" ;;
    https://*) curl --proto '=https' --tlsv1.2 -fsSL --retry 3 --connect-timeout 10 --max-time 900 -o "$1" "$source" ;;
    *) return 1 ;;
  esac
}

sha256_of() {
  local sum
  sum=$(sha256sum "$1")
  printf '%s' "${sum%% *}"
}

# Downloads the pinned package into the work dir (once a run) and checks its hash and, when a
# key pins it, its signature. The download runs in the background so that TERM and INT stop
# it at once.
fetch_package() {
  local file="$workdir/agent.pkg" actual status=0
  if [[ -n "$fetched" ]]; then return 0; fi
  (trap - ERR TERM INT && download "$file") &
  stoppable $!
  wait "$stop_pid" || status=$?
  stoppable ''
  check_interrupt
  if ((status != 0)); then
    log "could not download the package"
    finish download-failed 12
  fi
  actual=$(sha256_of "$file")
  if [[ -n "$package_sha256" && "$actual" != "$package_sha256" ]]; then
    log "SHA-256 mismatch: expected $package_sha256, got $actual; nothing installed"
    finish hash-mismatch 13
  fi
  if [[ -n "$(pkg_field SIGNING_KEY)" ]]; then check_signed_package "$file"; fi
  # What the kept copy is checked against later.
  package_sha256=$actual
  fetched=1
}

# A copy of the installed version the package manager left in its cache, if any.
cached_package() {
  local version=${1#*:} candidate
  case "$format" in
    DEB) set -- /var/cache/apt/archives/"${package_name}_${version}"_*.deb /var/cache/apt/archives/"${package_name}_${1/:/%3a}"_*.deb ;;
    RPM) set -- /var/cache/dnf/*/packages/"${package_name}-${version}".*.rpm /var/cache/yum/*/*/*/packages/"${package_name}-${version}".*.rpm ;;
  esac
  for candidate; do
    if [[ -f "$candidate" ]]; then printf '%s' "$candidate"; return 0; fi
  done
  return 1
}

# Before changing an installed agent, finds what can put it back: the package this script
# kept after the last good install, or the package manager's cached copy of what is
# installed. Sets way_back (empty when going back will be impossible).
prepare_way_back() {
  local kept="$state_dir/last-good.pkg" kept_version='' cached
  way_back=''
  if [[ -f "$kept" && -f "$state_dir/last-good.version" && -f "$state_dir/last-good.sha256" ]]; then
    kept_version=$(<"$state_dir/last-good.version")
    if [[ "$(sha256_of "$kept")" != "$(<"$state_dir/last-good.sha256")" ]]; then
      log "the kept copy of $kept_version does not match its recorded SHA-256; not using it"
    elif version_matches "$previous" "$kept_version" || [[ -f "$state_dir/pending" ]]; then
      # After an earlier upgrade that did not finish, the last good version is the way back.
      way_back=$kept way_back_version=$kept_version
      return 0
    fi
  fi
  if cached=$(cached_package "$previous"); then
    cp -- "$cached" "$workdir/previous.pkg"
    way_back="$workdir/previous.pkg" way_back_version=$previous
    log "no kept copy of $previous; the package manager's cached copy is the way back"
    return 0
  fi
  log "no copy of the installed version ($previous) was kept or cached: if this upgrade fails, going back is impossible"
}

# Puts back what was there before a failed install, a service that did not stay up, or an
# interruption. Never returns.
rollback() {
  local reason=$1 status
  log "$reason; rolling back"
  changing=''
  if [[ -z "$previous" ]]; then
    status=0
    run_clean systemctl stop "$service_name" >/dev/null 2>&1 || true
    remove_package || status=$?
    if ((status != 0)); then log "could not remove the failed install of $package_name"; fi
    if ((status == 0)); then rm -f -- "$state_dir/pending"; fi
    if signalled; then finish interrupted 40; fi
    if ((status == 0)); then finish rolled-back 20; fi
    finish rollback-failed 21
  fi
  if [[ -z "$way_back" ]]; then
    log "no copy of $previous to go back to; left as it is, and the next Install tries again"
    if signalled; then finish interrupted 40; fi
    finish rollback-impossible 22
  fi
  if install_file "$way_back" && { signalled || service_up; }; then
    rm -f -- "$state_dir/pending"
    if signalled; then
      run_clean systemctl restart "$service_name" || true
      finish interrupted 40
    fi
    log "went back to $way_back_version"
    finish rolled-back 20
  fi
  if signalled; then finish interrupted 40; fi
  finish rollback-failed 21
}

keep_as_last_good() {
  cp -- "$1" "$state_dir/last-good.pkg.new"
  mv -f -- "$state_dir/last-good.pkg.new" "$state_dir/last-good.pkg"
  printf '%s' "$package_version" >"$state_dir/last-good.version"
  printf '%s' "$package_sha256" >"$state_dir/last-good.sha256"
}

# Installs the downloaded package over whatever is there, with a way back.
install_pinned() {
  local status=0
  if [[ -n "$previous" ]]; then prepare_way_back; fi
  check_interrupt
  printf '%s' "$package_version" >"$state_dir/pending"
  changing=1
  install_file "$workdir/agent.pkg" || status=$?
  if ((status == 75)); then
    changing=''
    rm -f -- "$state_dir/pending"
    finish package-manager-busy 15
  fi
  check_interrupt
  if ((status != 0)); then rollback "the package manager could not install $package_version"; fi
  activation_before_start installed
  if ! service_up; then
    check_interrupt
    rollback "service $service_name did not stay up for ${AGENT_HEALTH_WINDOW}s"
  fi
  changing=''
  keep_as_last_good "$workdir/agent.pkg"
  rm -f -- "$state_dir/pending"
}

# The pinned version is installed: check the service, and repair it when it is not healthy
# (restart it, then reinstall the pinned version).
check_and_repair() {
  local status=0
  if service_healthy; then finish_installed already-installed; fi
  check_interrupt
  activation_before_start repaired
  log "service $service_name is not healthy; restarting it"
  if service_up; then finish_installed repaired; fi
  check_interrupt
  if [[ -n "$keep_installed" ]]; then
    log "service $service_name did not stay up after a restart; the signed package is older than what is installed, so it is not reinstalled"
    finish repair-failed 23
  fi
  log "service $service_name did not stay up after a restart; reinstalling $package_version"
  fetch_package
  install_file "$workdir/agent.pkg" || status=$?
  if ((status == 75)); then finish package-manager-busy 15; fi
  check_interrupt
  if ((status == 0)) && service_up; then
    keep_as_last_good "$workdir/agent.pkg"
    finish_installed repaired
  fi
  check_interrupt
  log "service $service_name is still not healthy after reinstalling $package_version"
  finish repair-failed 23
}

do_install() {
  if [[ -z "$package_version" ]]; then
    # Pinned by a key only: the signed package at the location says which version it is.
    fetch_package
    if [[ -n "$previous" && ! -f "$state_dir/pending" ]] && version_newer "$previous" "$package_version"; then
      log "the installed $previous is newer than the signed package ($package_version); not downgrading it"
      keep_installed=1
      check_and_repair
    fi
  fi
  if [[ -n "$previous" ]] && version_matches "$previous" "$package_version"; then
    if [[ ! -f "$state_dir/pending" ]]; then check_and_repair; fi
    log "an earlier install of $package_version did not finish; installing it again"
  fi
  fetch_package
  install_pinned
  if [[ -n "$previous" ]]; then finish_installed upgraded; fi
  finish_installed installed
}

do_uninstall() {
  local status=0
  if [[ -z "$previous" ]]; then finish not-installed 0; fi
  run_clean systemctl stop "$service_name" >/dev/null 2>&1 || true
  run_clean systemctl disable "$service_name" >/dev/null 2>&1 || true
  remove_package || status=$?
  if ((status == 75)); then finish package-manager-busy 15; fi
  if ((status != 0)); then finish failed 1; fi
  rm -rf -- "$state_dir"
  finish uninstalled 0
}

do_verify() {
  if [[ -z "$previous" ]]; then finish not-installed 32; fi
  if [[ -n "$package_version" ]] && ! version_matches "$previous" "$package_version"; then
    log "installed $previous, expected $package_version"
    finish wrong-version 31
  fi
  if ! systemctl is-active --quiet "$service_name" 9>&-; then finish service-down 30; fi
  finish compliant 0
}

main() {
  local left
  trap cleanup EXIT
  trap 'log "unexpected failure at line $LINENO"; finish failed 1' ERR
  configure_proxy
  take_run_lock
  # Whatever a run killed with SIGKILL left behind. No other run is going on; the work dirs
  # of runs waiting for the lock are named after their supervisors, which are alive.
  for left in "$AGENT_STATE_DIR"/work/*; do
    if [[ "$left" == "$workdir" ]] || { [[ "$left" =~ /run\.([0-9]+)$ ]] && kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; }; then continue; fi
    rm -rf -- "$left"
  done

  if ! aws_imds_connect 300; then
    log "the instance metadata service did not answer"
    if [[ "$AGENT_ACTION" != 'Uninstall' ]]; then finish imds-unavailable 10; fi
  elif ! read_tag; then
    log "could not read tag $AGENT_TAG_KEY from the instance metadata service"
    if [[ "$AGENT_ACTION" != 'Uninstall' ]]; then finish imds-unavailable 10; fi
  fi
  check_interrupt

  case "$(decide)" in
    excluded)
      log "excluded by tag $AGENT_TAG_KEY=false"
      finish excluded 0
      ;;
    not-targeted)
      log "not targeted: mode $AGENT_MODE only manages instances tagged $AGENT_TAG_KEY=true"
      finish not-targeted 0
      ;;
  esac

  if [[ -n "${AGENT_GATE_SERVICE:-}" ]]; then gate_distributor; fi
  if ! resolve_package; then finish unsupported-platform 11; fi
  install -d -m 700 -- "$state_dir"

  previous=$(installed_version) || previous=''
  way_back='' way_back_version=''
  case "$AGENT_ACTION" in
    Install | Reactivate) do_install ;;
    Uninstall) do_uninstall ;;
    Verify) do_verify ;;
    *) finish invalid-action 1 ;;
  esac
}

# A trap bash has to run while it expands a `$( )` is run from inside its parser, which then
# cannot parse it ("trap: line 2: unexpected EOF while looking for matching `)'", bash 5.2)
# and the run dies halfway, without rolling back or printing its line. So the shell that does
# the work traps no signal and ignores TERM and INT (what it starts gets them back); this
# one, its parent, only waits for it, takes TERM and INT, and leaves the signal's name in the
# work dir, where the run reads it at each check (signalled).
# The first signal is all the run needs, and a flood of them makes bash 5.2 run traps inside
# traps until it crashes: the supervisor ignores the ones that follow.
# shellcheck disable=SC2317 # called by the TERM and INT traps
pass_signal() {
  local stop=''
  trap '' TERM INT
  signal_name=$1
  log "received SIG$1"
  # Before the work dir exists supervise writes the name; once the run has ended it is gone.
  if [[ -z "$workdir" ]]; then return 0; fi
  { printf '%s\n' "$1" >"$workdir/signal"; } 2>/dev/null || true
  # What the run started before it could see the name (stoppable checks it after, for what it starts after).
  { read -r stop <"$workdir/stop"; } 2>/dev/null || true
  if [[ -n "$stop" ]]; then kill "$stop" 2>/dev/null || true; fi
}

supervise() {
  local worker status dir
  signal_name=''
  trap 'pass_signal TERM' TERM
  trap 'pass_signal INT' INT
  # Named after this process: a run that finds it knows it is in use while this one lives.
  dir="$AGENT_STATE_DIR/work/run.$$"
  if ! { install -d -m 700 -- "$AGENT_STATE_DIR" "$AGENT_STATE_DIR/work" && rm -rf -- "$dir" && install -d -m 700 -- "$dir"; }; then
    log "could not make the work dir $dir"
    finish failed 1
  fi
  workdir=$dir
  if [[ -n "$signal_name" ]]; then printf '%s\n' "$signal_name" >"$workdir/signal"; fi
  (
    trap '' TERM INT
    main
  ) &
  worker=$!
  # A signal ends wait early (the trap's, or one bash took just before the trap was ignored,
  # which runs no trap at all), so the run is over only once it left its status or is gone.
  while :; do
    status=0
    wait "$worker" || status=$?
    if [[ -e "$workdir/status" ]] || ! kill -0 "$worker" 2>/dev/null; then break; fi
    # Only after a signal, or if bash lost track of the run: never spin.
    sleep 0.1
  done
  # The run is over: a signal now changes nothing, and must not write into what is removed.
  trap '' TERM INT
  # The status the run left: when a signal ends a wait just as the run exits, bash 5.2 may lose
  # the run's status and the next wait answers 255 (1 in about 60 runs under a TERM storm).
  { read -r status <"$workdir/status"; } 2>/dev/null || true
  rm -rf -- "$workdir"
  exit "$status"
}

supervise
