# shellcheck shell=bash disable=SC2034 # read by finish in install-agent.sh
# What install-agent.sh needs of activation.sh when the agent has no activation (cdk-agent-fleet):
# the renderer inlines this file instead, to keep the document small.

activation_state='none'
activation_exit_code=''

activation_before_start() { :; }

finish_installed() {
  finish "$1" 0
}
