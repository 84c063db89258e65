#!/usr/bin/env bash
# Installs, upgrades, verifies or uninstalls the host security agent on Linux (cdk-agent-fleet).
#
# This file is the body of the aws:runShellScript step of an AgentInstallDocument. At synth
# the construct puts a header of settings right after the first line:
#   AGENT_ACTION, AGENT_PROXY_URL, AGENT_MODE, AGENT_TAG_KEY  document parameters, each
#       checked by SSM against allowedValues or allowedPattern before it reaches this script;
#   AGENT_STATE_DIR, AGENT_SERVICE_CHECK_ATTEMPTS, AGENT_SERVICE_CHECK_INTERVAL;
#   AGENT_PACKAGES  the keys (RPM_X86_64, DEB_ARM64, ...) of the pinned packages, and for
#       each key PKG_<key>_SOURCE (https:// or s3:// URL), _REGION, _SHA256, _VERSION, _NAME,
#       _SERVICE, all validated at synth, so nobody can point it at another package.
#
# The last line of its output is one JSON object: action, outcome, version, imdsVersion, tag.
set -Eeuo pipefail
umask 077

readonly IMDS='http://169.254.169.254'

imds_version='none'
imds_token=''
imds_header_file=''
tag_state='unknown'
package_version=''
workdir=''

log() { printf '%s\n' "$*" >&2; }

# Ends the run with the one JSON line. Every value comes from a fixed vocabulary or was
# validated at synth, so none needs escaping.
finish() {
  trap - ERR
  printf '{"action":"%s","outcome":"%s","version":"%s","imdsVersion":"%s","tag":"%s"}\n' \
    "$AGENT_ACTION" "$1" "$package_version" "$imds_version" "$tag_state"
  exit "$2"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ -n "$workdir" ]]; then rm -rf -- "$workdir"; fi
}
trap cleanup EXIT
trap 'log "unexpected failure at line $LINENO"; finish failed 1' ERR

configure_proxy() {
  # The instance metadata service is never reached through a proxy.
  no_proxy="169.254.169.254${no_proxy:+,$no_proxy}"
  NO_PROXY="$no_proxy"
  export no_proxy NO_PROXY
  if [[ -n "$AGENT_PROXY_URL" ]]; then
    export https_proxy="$AGENT_PROXY_URL" HTTPS_PROXY="$AGENT_PROXY_URL"
  fi
}

# IMDSv2 first; IMDSv1 only when the token request fails and the instance still answers v1.
imds_connect() {
  local token
  if token=$(curl -sf --noproxy '*' --connect-timeout 2 --max-time 5 -X PUT \
      -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$IMDS/latest/api/token") && [[ -n "$token" ]]; then
    imds_token=$token
    imds_version='v2'
    imds_header_file="$workdir/imds-header"
    (umask 077 && : >"$imds_header_file")
    printf 'X-aws-ec2-metadata-token: %s\n' "$token" >"$imds_header_file"
    return 0
  fi
  if curl -sf --noproxy '*' --connect-timeout 2 --max-time 5 -o /dev/null "$IMDS/latest/meta-data/instance-id"; then
    imds_version='v1'
    log "IMDSv2 token request failed; used IMDSv1, which this instance still allows. Require IMDSv2 (HttpTokens=required)."
    return 0
  fi
  imds_version='none'
  return 1
}

# Fetches an IMDS path into a file and prints the HTTP status (000 when unreachable).
imds_get() {
  local args=(-s --noproxy '*' --connect-timeout 2 --max-time 5 -o "$2" -w '%{http_code}')
  if [[ "$imds_version" == 'v2' ]]; then args+=(-H "X-aws-ec2-metadata-token: $imds_token"); fi
  curl "${args[@]}" "$IMDS$1" || true
}

# Sets tag_state to absent, true, false or misconfigured; fails when the tag cannot be read.
read_tag() {
  local status value
  status=$(imds_get "/latest/meta-data/tags/instance/$AGENT_TAG_KEY" "$workdir/tag")
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
      status=$(imds_get '/latest/meta-data/tags/instance' "$workdir/tags")
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

pkg_field() {
  local name="PKG_${package_key}_$1"
  printf '%s' "${!name:-}"
}

# Prints the installed version of the agent's package; fails when it is not installed.
installed_version() {
  local status
  case "$format" in
    RPM) rpm -q --qf '%{VERSION}-%{RELEASE}' "$package_name" 2>/dev/null ;;
    DEB)
      # shellcheck disable=SC2016 # dpkg-query's format string, not a shell expansion
      status=$(dpkg-query -W -f='${Status} ${Version}' "$package_name" 2>/dev/null) || return 1
      [[ "$status" == 'install ok installed '* ]] || return 1
      printf '%s' "${status##* }"
      ;;
  esac
}

# 1.2.3 matches 1.2.3, 1.2.3-1 (a release) and 2:1.2.3-1 (an epoch), not 1.2.30.
version_matches() {
  local installed=$1 wanted=$2
  if [[ "$wanted" != *:* ]]; then installed=${installed#*:}; fi
  [[ "$installed" == "$wanted" || "$installed" == "$wanted"-* ]]
}

install_file() {
  case "$format" in
    RPM) rpm -U --oldpackage --replacepkgs "$1" ;;
    DEB) DEBIAN_FRONTEND=noninteractive dpkg -i "$1" ;;
  esac
}

remove_package() {
  case "$format" in
    RPM) rpm -e "$package_name" ;;
    DEB) dpkg -r "$package_name" ;;
  esac
}

# The service must be active on two checks in a row: a crash right after start is a failure.
service_up() {
  local attempt active=0
  systemctl enable "$service_name" >/dev/null 2>&1 || log "could not enable $service_name"
  systemctl restart "$service_name" || log "could not restart $service_name"
  for ((attempt = 1; attempt <= AGENT_SERVICE_CHECK_ATTEMPTS; attempt++)); do
    if systemctl is-active --quiet "$service_name"; then
      active=$((active + 1))
      if ((active >= 2)); then return 0; fi
    else
      active=0
    fi
    sleep "$AGENT_SERVICE_CHECK_INTERVAL"
  done
  return 1
}

download() {
  local source region
  source=$(pkg_field SOURCE)
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

# Puts the last good version back after a failed install or a service that did not come up.
rollback() {
  local kept="$state_dir/last-good.pkg" kept_version='' kept_sha=''
  log "$1; rolling back"
  if [[ -z "$previous" ]]; then
    remove_package || log "could not remove the failed install of $package_name"
    systemctl stop "$service_name" >/dev/null 2>&1 || true
    finish rolled-back 1
  fi
  if [[ -f "$kept" && -f "$state_dir/last-good.version" && -f "$state_dir/last-good.sha256" ]]; then
    kept_version=$(<"$state_dir/last-good.version")
    kept_sha=$(<"$state_dir/last-good.sha256")
  fi
  if [[ -z "$kept_version" ]] || ! version_matches "$previous" "$kept_version"; then
    log "no copy of the previous version ($previous) was kept; left as it is"
    finish failed 1
  fi
  if [[ "$(sha256_of "$kept")" != "$kept_sha" ]]; then
    log "the kept copy of $kept_version does not match its recorded SHA-256; not reinstalling it"
    finish rollback-failed 1
  fi
  if install_file "$kept" && service_up; then
    package_version=$kept_version
    finish rolled-back 1
  fi
  finish rollback-failed 1
}

keep_as_last_good() {
  cp -- "$1" "$state_dir/last-good.pkg.new"
  mv -f -- "$state_dir/last-good.pkg.new" "$state_dir/last-good.pkg"
  printf '%s' "$package_version" >"$state_dir/last-good.version"
  printf '%s' "$package_sha256" >"$state_dir/last-good.sha256"
}

do_install() {
  local file="$workdir/agent.pkg" actual
  if [[ -n "$previous" ]] && version_matches "$previous" "$package_version"; then
    finish already-installed 0
  fi
  if ! download "$file"; then
    log "could not download the package"
    finish download-failed 1
  fi
  actual=$(sha256_of "$file")
  if [[ "$actual" != "$package_sha256" ]]; then
    log "SHA-256 mismatch: expected $package_sha256, got $actual; nothing installed"
    finish hash-mismatch 1
  fi
  if ! install_file "$file"; then rollback "the package manager could not install $package_version"; fi
  if ! service_up; then rollback "service $service_name did not come up"; fi
  keep_as_last_good "$file"
  if [[ -n "$previous" ]]; then finish upgraded 0; fi
  finish installed 0
}

do_uninstall() {
  if [[ -z "$previous" ]]; then finish not-installed 0; fi
  package_version=$previous
  systemctl stop "$service_name" >/dev/null 2>&1 || true
  systemctl disable "$service_name" >/dev/null 2>&1 || true
  if ! remove_package; then finish failed 1; fi
  rm -rf -- "$state_dir"
  finish uninstalled 0
}

do_verify() {
  if [[ -z "$previous" ]]; then finish not-installed 1; fi
  if ! version_matches "$previous" "$package_version"; then
    log "installed $previous, expected $package_version"
    finish wrong-version 1
  fi
  if ! systemctl is-active --quiet "$service_name"; then finish service-down 1; fi
  finish compliant 0
}

main() {
  configure_proxy
  workdir=$(mktemp -d)
  chmod 700 "$workdir"

  if ! imds_connect; then
    log "the instance metadata service did not answer"
    if [[ "$AGENT_ACTION" != 'Uninstall' ]]; then finish imds-unavailable 1; fi
  elif ! read_tag; then
    log "could not read tag $AGENT_TAG_KEY from the instance metadata service"
    if [[ "$AGENT_ACTION" != 'Uninstall' ]]; then finish imds-unavailable 1; fi
  fi

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

  local architecture
  if ! format=$(detect_format) || ! architecture=$(detect_architecture); then
    log "no supported package manager (rpm with dnf/yum, dpkg with apt) or CPU architecture"
    finish unsupported-platform 1
  fi
  package_key="${format}_${architecture}"
  if [[ " $AGENT_PACKAGES " != *" $package_key "* ]]; then
    log "the document has no $format package for $architecture"
    finish unsupported-platform 1
  fi
  package_name=$(pkg_field NAME)
  service_name=$(pkg_field SERVICE)
  package_version=$(pkg_field VERSION)
  package_sha256=$(pkg_field SHA256)
  state_dir="$AGENT_STATE_DIR/$service_name"
  install -d -m 700 -- "$AGENT_STATE_DIR" "$state_dir"

  # One run at a time per agent (an association and a manual command may overlap).
  exec 9>"$state_dir/.lock"
  if ! flock -w 600 9; then finish busy 1; fi

  previous=$(installed_version) || previous=''
  case "$AGENT_ACTION" in
    Install) do_install ;;
    Uninstall) do_uninstall ;;
    Verify) do_verify ;;
    *) finish invalid-action 1 ;;
  esac
}

main
