# shellcheck shell=bash disable=SC2154 # AGENT_ACTION, AGENT_GATE_SERVICE: settings of install-agent.sh
# Distributor packages (cdk-agent-fleet): in a document whose package is an SSM Distributor
# package, the Linux script only decides, by the same tag semantics, whether the
# aws:configurePackage step after it runs, and answers Verify itself. Inlined after the
# settings header; install-agent.sh calls gate_distributor once the tag is read, and
# gate_exit from finish.
#
# SSM Agent skips every later step of the document when a step exits 168 (the step counts as
# succeeded) or 169 (failed) (amazon-ssm-agent, agent/contracts/model.go ExitWithSuccess and
# ExitWithFailure, applied in agent/framework/runpluginutil/runpluginutil.go).

# Exits 0 only for `proceeding` (the Distributor step runs next); any other outcome stops the
# document there, as a success when its status is 0 (excluded, not-targeted, compliant) and
# as a failure otherwise.
gate_exit() {
  if [[ "$1" == 'proceeding' ]]; then exit 0; fi
  if (($2 == 0)); then exit 168; fi
  exit 169
}

# Install and Uninstall go on to the Distributor step; Verify checks the service here.
gate_distributor() {
  case "$AGENT_ACTION" in
    Install | Uninstall) finish proceeding 0 ;;
    Verify)
      if ! systemctl cat -- "$AGENT_GATE_SERVICE" >/dev/null 2>&1 9>&-; then finish not-installed 32; fi
      if ! systemctl is-active --quiet -- "$AGENT_GATE_SERVICE" 9>&-; then finish service-down 30; fi
      finish compliant 0
      ;;
  esac
}
