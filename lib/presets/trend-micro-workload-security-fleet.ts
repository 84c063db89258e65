/*
 * Trend Micro Workload Security (Deep Security Agent) on an EC2 fleet. Facts from the vendor:
 * - activation: `dsa_control -a dsm://<host>:<port>/ "tenantID:<id>" "token:<token>" ["policyid:<n>"]`,
 *   Deep Security Help, "Agent settings" (dsa_control usage):
 *   https://help.deepsecurity.trendmicro.com/Manage-Components/System-Settings/ui-admin-settings-agents.html
 *   and Trend's own Ansible role, https://github.com/deep-security/ansible (tasks/activate-linux.yml);
 * - `/opt/ds_agent/dsa_control`, `/opt/ds_agent/dsa_query`: Deep Security 11 "command-line basics",
 *   https://help.deepsecurity.trendmicro.com/11_0/on-premise/ja-jp/command-line-utilities.html;
 * - activated check: `dsa_query -c GetAgentStatus agentCertHash` is not the pre-activation hash
 *   D0:68:DE:48:1B:DC:4D:00:89:07:7F:85:15:20:C5:90:11:EB:56:6A (same Ansible role);
 * - packages: agent.rpm / agent.deb from https://<manager>/software/agent/<platform>/<arch>/<version>/
 *   (https://cloudone.trendmicro.com/docs/workload-security/agent-download-url/), behind your
 *   account: you supply them. No way to pass the tenant id or token other than dsa_control's arguments.
 */
import { Token } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { presetValidator, requireSecret } from './preset-validation';
import { AgentFleet, AgentFleetOptions } from '../agent-fleet';
import { ActivationArgument, ActivationSecret, AgentActivation } from '../install/agent-activation';
import { AgentPackage } from '../install/agent-package';

const DSA_CONTROL = '/opt/ds_agent/dsa_control';
const DSA_QUERY = '/opt/ds_agent/dsa_query';
/** The agent certificate hash of an agent that was never activated (Trend's Ansible role). */
const UNACTIVATED_CERT_HASH = 'D0:68:DE:48:1B:DC:4D:00:89:07:7F:85:15:20:C5:90:11:EB:56:6A';
const ACTIVATION_URL = /^dsm:\/\/[A-Za-z0-9.-]+:[0-9]{1,5}\/$/;

/**
 * Properties of a TrendMicroWorkloadSecurityFleet.
 */
export interface TrendMicroWorkloadSecurityFleetProps extends AgentFleetOptions {
  /**
   * The Deep Security Agent packages (agent.rpm, agent.deb) downloaded from your manager, pinned
   * by their SHA-256. Their service is `ds_agent`. Linux only.
   */
  readonly packages: AgentPackage[];

  /**
   * The manager's activation URL, `dsm://<host>:<port>/` with the trailing slash, e.g.
   * `dsm://agents.workload.us-1.cloudone.trendmicro.com:443/` (Support > Deployment Scripts
   * shows yours).
   */
  readonly activationUrl: string;

  /** The tenant ID (a GUID), from Secrets Manager or a SecureString parameter. */
  readonly tenantId: ActivationSecret;

  /** The agent activation token (a GUID), from Secrets Manager or a SecureString parameter. */
  readonly token: ActivationSecret;

  /**
   * The policy to assign at activation (`policyid:<n>`).
   *
   * @default - the manager's default
   */
  readonly policyId?: number;

  /**
   * The fleet's agent name (association output folder, tags).
   *
   * @default 'trend-micro-dsa'
   */
  readonly agentName?: string;
}

/**
 * Trend Micro Workload Security's agent on the fleet: your packages, activated against your
 * manager with the tenant id and token read on each instance at run time. Everything else is
 * an `AgentFleet` (exposed as `fleet`).
 *
 * dsa_control takes the tenant id and token only as arguments: they are visible in that one
 * process's command line while it runs (README, "Activation with secrets").
 */
export class TrendMicroWorkloadSecurityFleet extends Construct {
  /** The fleet that installs and activates the agent. */
  public readonly fleet: AgentFleet;

  /** The activation the install document runs. */
  public readonly activation: AgentActivation;

  constructor(scope: Construct, id: string, props: TrendMicroWorkloadSecurityFleetProps) {
    super(scope, id);
    const v = presetValidator(this);
    if (!Token.isUnresolved(props.activationUrl)) {
      v.require(typeof props.activationUrl === 'string' && ACTIVATION_URL.test(props.activationUrl), 'activationUrl', props.activationUrl,
        'dsm://<host>:<port>/ with the trailing slash, e.g. dsm://agents.workload.us-1.cloudone.trendmicro.com:443/');
    } else {
      v.require(false, 'activationUrl', props.activationUrl, 'a value known at synth (it is baked into the document)');
    }
    requireSecret(v, 'tenantId', props.tenantId, 'the tenant ID');
    requireSecret(v, 'token', props.token, 'the activation token');
    if (props.policyId !== undefined) v.integerInRange('policyId', props.policyId, 1, 2 ** 31 - 1);
    v.throwIfInvalid();

    this.activation = {
      command: [
        ActivationArgument.literal(DSA_CONTROL),
        ActivationArgument.literal('-a'),
        ActivationArgument.literal(props.activationUrl),
        ActivationArgument.secretValue(props.tenantId, { prefix: 'tenantID:' }),
        ActivationArgument.secretValue(props.token, { prefix: 'token:' }),
        ...(props.policyId !== undefined ? [ActivationArgument.literal(`policyid:${props.policyId}`)] : []),
      ],
      check: { command: [DSA_QUERY, '-c', 'GetAgentStatus', 'agentCertHash'], outputContains: 'agentCertHash', outputLacks: UNACTIVATED_CERT_HASH },
    };
    const { agentName, activationUrl: _url, tenantId: _tenant, token: _token, policyId: _policy, ...options } = props;
    this.fleet = new AgentFleet(this, 'Fleet', { ...options, agentName: agentName ?? 'trend-micro-dsa', activation: this.activation });
  }
}
