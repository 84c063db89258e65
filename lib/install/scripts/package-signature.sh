# shellcheck shell=bash disable=SC2154 # workdir, format, package_name: globals of install-agent.sh
# Signature-pinned packages (cdk-agent-fleet): functions the Linux install script calls when a
# package is pinned by its vendor's OpenPGP key. Inlined into the document after the settings
# header; uses the install script's pkg_field, download, version_matches, vercmp, log and finish.
#
# Only the key pinned at synth counts, never a key the host trusts:
#   RPM  rpmkeys --checksig with a throwaway rpm database (and key ring) in the run's private
#        work directory holding only the pinned key, at _pkgverify_level "signature", so an
#        unsigned package fails too (plain --checksig accepts one whose digests are right);
#   DEB  gpgv over the detached signature, with a key ring made of the pinned key only.
# gpgv is in every Debian and Ubuntu base system (apt verifies its indexes with it); rpmkeys
# comes with rpm.

# Writes the pinned key, as armored in the document, to a file.
signing_key_armored() {
  local name
  name=$(pkg_field SIGNING_KEY)
  printf '%s\n' "${!name}" >"$1"
}

# Armor to binary (gpgv reads binary key rings only): the base64 lines between the blank line
# after the BEGIN line and the checksum (=...) or END line.
dearmor() {
  sed -e '1,/^$/d' -e '/^[=-]/,$d' "$1" | base64 -d
}

# Succeeds when the file carries a signature the pinned key, and only it, verifies.
verify_package_signature() {
  local file=$1 key="$workdir/signing-key.asc" keys="$workdir/signing-keys"
  signing_key_armored "$key"
  install -d -m 700 -- "$keys"
  case "$format" in
    RPM)
      local defines=(--dbpath "$keys" --define "_keyringpath $keys/pubkeys/")
      rpmkeys "${defines[@]}" --import "$key" >&2 || return 1
      rpmkeys "${defines[@]}" --define '_pkgverify_level signature' --checksig "$file" >&2
      ;;
    DEB)
      dearmor "$key" >"$keys/pinned.gpg" || return 1
      if ! download "$workdir/agent.sig" SIGNATURE; then
        log "could not download the package's detached signature"
        finish download-failed 12
      fi
      gpgv --homedir "$keys" --keyring "$keys/pinned.gpg" "$workdir/agent.sig" "$file" >&2
      ;;
    *) return 1 ;;
  esac
}

# Prints "<name> <[epoch:]version-release>" of a package file.
package_file_identity() {
  local name version
  case "$format" in
    RPM) rpm -qp --nosignature --nodigest --qf '%{NAME} %|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}' "$1" 2>/dev/null ;;
    DEB)
      name=$(dpkg-deb -f "$1" Package 2>/dev/null) && version=$(dpkg-deb -f "$1" Version 2>/dev/null) || return 1
      printf '%s %s' "$name" "$version"
      ;;
  esac
}

# Checks a downloaded signed package: its signature, then that it is the agent's package (a
# vendor signs more than one product) and the pinned version, if one is pinned; otherwise its
# own version becomes the one this run installs. Ends the run when any check fails.
check_signed_package() {
  local file=$1 identity name version
  if ! verify_package_signature "$file"; then
    log "the package's signature does not verify with the pinned key (or it has none); nothing installed"
    finish signature-mismatch 16
  fi
  if ! identity=$(package_file_identity "$file") || [[ "$identity" != *' '* ]]; then
    log "could not read the name and version of the signed package; nothing installed"
    finish unexpected-package 17
  fi
  name=${identity%% *} version=${identity#* }
  if [[ "$name" != "$package_name" ]]; then
    log "the signed package is $(printf '%q' "$name"), not $package_name; nothing installed"
    finish unexpected-package 17
  fi
  if [[ -z "$package_version" ]]; then
    package_version=$version
  elif ! version_matches "$version" "$package_version"; then
    log "the signed package is version $(printf '%q' "$version"), not the pinned $package_version; nothing installed"
    finish unexpected-package 17
  fi
}

# Whether version $1 is newer than $2, both [epoch:]version-release, as the package manager
# orders them.
version_newer() {
  local a=$1 b=$2 a_epoch=0 b_epoch=0 order
  case "$format" in
    DEB) dpkg --compare-versions "$a" gt "$b" ;;
    RPM)
      if [[ "$a" == *:* ]]; then a_epoch=${a%%:*} a=${a#*:}; fi
      if [[ "$b" == *:* ]]; then b_epoch=${b%%:*} b=${b#*:}; fi
      [[ "$a_epoch" =~ ^[0-9]+$ && "$b_epoch" =~ ^[0-9]+$ ]] || return 1
      if ((10#$a_epoch != 10#$b_epoch)); then
        ((10#$a_epoch > 10#$b_epoch))
        return
      fi
      order=$(vercmp "${a%-*}" "${b%-*}")
      if [[ "$order" != 0 ]]; then
        [[ "$order" == 1 ]]
        return
      fi
      [[ "$(vercmp "${a##*-}" "${b##*-}")" == 1 ]]
      ;;
    *) return 1 ;;
  esac
}
