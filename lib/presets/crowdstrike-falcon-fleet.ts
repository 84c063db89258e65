/*
 * CrowdStrike Falcon sensor on an EC2 fleet. CrowdStrike's documentation is behind the Falcon
 * console's login; the facts come from CrowdStrike's own public repositories:
 * - `/opt/CrowdStrike/falconctl -s -f --cid=<CID> [--provisioning-token=<token>]`:
 *   https://github.com/CrowdStrike/falcon-scripts (bash/install/falcon-linux-install.sh);
 * - `falconctl -g --cid` prints `cid="<cid>"`, or "not set": https://github.com/CrowdStrike/ansible_collection_falcon
 *   (plugins/module_utils/falconctl_utils.py);
 * - package and service `falcon-sensor` (same install script). No way to pass the CID other
 *   than falconctl's arguments.
 */
import { Construct } from 'constructs';
import { presetValidator, requireSecret } from './preset-validation';
import { AgentFleet, AgentFleetOptions } from '../agent-fleet';
import { ActivationArgument, ActivationSecret, AgentActivation } from '../install/agent-activation';
import { AgentPackage } from '../install/agent-package';

const FALCONCTL = '/opt/CrowdStrike/falconctl';

/**
 * Properties of a CrowdStrikeFalconFleet.
 */
export interface CrowdStrikeFalconFleetProps extends AgentFleetOptions {
  /**
   * The falcon-sensor packages (RPM, DEB) downloaded from the Falcon console or API, pinned by
   * their SHA-256. Their package and service are `falcon-sensor`. Linux only.
   */
  readonly packages: AgentPackage[];

  /** The customer ID with its checksum (`<32 hex>-<2 hex>`), from Secrets Manager or a SecureString parameter. */
  readonly customerId: ActivationSecret;

  /**
   * The installation (provisioning) token, if your CID requires one.
   *
   * @default - none
   */
  readonly provisioningToken?: ActivationSecret;

  /**
   * The fleet's agent name (association output folder, tags).
   *
   * @default 'crowdstrike-falcon'
   */
  readonly agentName?: string;
}

/**
 * The CrowdStrike Falcon sensor on the fleet: your packages, with the customer ID set by
 * `falconctl` from a secret read on each instance at run time. Everything else is an
 * `AgentFleet` (exposed as `fleet`).
 *
 * The CID is set after the package is installed and before the sensor's service is started
 * and health-checked (`beforeServiceStart`): the sensor does not stay up without it. After
 * `Reactivate` the sensor is restarted, as CrowdStrike's scripts do after setting the CID.
 *
 * falconctl takes the CID only as an argument: it is visible in that one process's command
 * line while it runs (README, "Activation with secrets").
 */
export class CrowdStrikeFalconFleet extends Construct {
  /** The fleet that installs the sensor and sets its CID. */
  public readonly fleet: AgentFleet;

  /** The activation the install document runs. */
  public readonly activation: AgentActivation;

  constructor(scope: Construct, id: string, props: CrowdStrikeFalconFleetProps) {
    super(scope, id);
    const v = presetValidator(this);
    requireSecret(v, 'customerId', props.customerId, 'the customer ID (CID)');
    if (props.provisioningToken !== undefined) requireSecret(v, 'provisioningToken', props.provisioningToken, 'the provisioning token');
    v.throwIfInvalid();

    this.activation = {
      command: [
        ActivationArgument.literal(FALCONCTL), ActivationArgument.literal('-s'), ActivationArgument.literal('-f'),
        ActivationArgument.secretValue(props.customerId, { prefix: '--cid=' }),
        ...(props.provisioningToken ? [ActivationArgument.secretValue(props.provisioningToken, { prefix: '--provisioning-token=' })] : []),
      ],
      check: { command: [FALCONCTL, '-g', '--cid'], outputContains: 'cid=', outputLacks: 'not set' },
      // The sensor does not stay up without its CID: set it before the health-checked start.
      beforeServiceStart: true,
    };
    const { agentName, customerId: _cid, provisioningToken: _token, ...options } = props;
    this.fleet = new AgentFleet(this, 'Fleet', { ...options, agentName: agentName ?? 'crowdstrike-falcon', activation: this.activation });
  }
}
