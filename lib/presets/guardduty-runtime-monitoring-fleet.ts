/*
 * GuardDuty Runtime Monitoring's security agent for EC2, managed by the fleet instead of by
 * GuardDuty's automated agent configuration. Every fact below comes from the GuardDuty User
 * Guide:
 * - Distributor package AmazonGuardDuty-RuntimeMonitoringSsmPlugin (with Action, Installation
 *   Type, Name and Version; an empty version installs the latest):
 *   https://docs.aws.amazon.com/guardduty/latest/ug/installing-gdu-security-agent-ec2-manually.html
 * - the agent's systemd service amazon-guardduty-agent (`sudo systemctl status amazon-guardduty-agent`):
 *   same page, "Validating GuardDuty security agent installation status"
 * - Distributor versions are named like v1.8.0 ("SSM distributor version" column):
 *   https://docs.aws.amazon.com/guardduty/latest/ug/runtime-monitoring-agent-release-history.html
 * - the guardduty-data VPC endpoint (private DNS, 443 from the VPC) and its policy:
 *   https://docs.aws.amazon.com/guardduty/latest/ug/creating-vpc-endpoint-ec2-agent-manually.html
 * - the GuardDutyManaged tag (false: GuardDuty does not manage the agent there; with automated
 *   agent configuration off, GuardDuty manages only instances tagged true) and "Allow tags in
 *   metadata": https://docs.aws.amazon.com/guardduty/latest/ug/how-runtime-monitoring-works-ec2.html
 * - Linux only (x86_64 and ARM64):
 *   https://docs.aws.amazon.com/guardduty/latest/ug/prereq-runtime-monitoring-ec2-support.html
 */
import { Annotations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { AgentFleet, AgentFleetOptions } from '../agent-fleet';
import { DistributorInstallationType, DistributorPackage } from '../install/distributor-package';
import { AgentEndpointService } from '../network/agent-endpoint-service';
import { AutoConfigurationMode } from '../targeting/auto-configuration-mode';

/**
 * Properties of a GuardDutyRuntimeMonitoringFleet.
 */
export interface GuardDutyRuntimeMonitoringFleetProps extends AgentFleetOptions {
  /**
   * The Distributor version of the agent to install, as GuardDuty's release history names it
   * (e.g. `v1.8.0`).
   *
   * @default - the latest version GuardDuty publishes
   */
  readonly agentVersion?: string;

  /**
   * How an installed version is replaced.
   *
   * @default DistributorInstallationType.UNINSTALL_AND_REINSTALL
   */
  readonly installationType?: DistributorInstallationType;

  /**
   * The agent's name in the fleet (association output folder, resource tag).
   *
   * @default 'guardduty-agent'
   */
  readonly agentName?: string;
}

/**
 * GuardDuty Runtime Monitoring's EC2 agent on the fleet: GuardDuty's Distributor package,
 * installed under the fleet's tag semantics, rate control and schedule, the `guardduty-data`
 * endpoint in each VPC, and IMDSv2 with metadata tags (GuardDuty reads its tag from IMDS).
 *
 * The tag is GuardDuty's own, `GuardDutyManaged`, unless `tagKey` names another: in
 * `ALL_INSTANCES` an instance tagged `GuardDutyManaged=false` is left alone by GuardDuty and by
 * the fleet alike, so exclusions made for GuardDuty keep working. Turn GuardDuty's automated
 * agent configuration for EC2 off (otherwise its own association manages the agent too), and
 * do not combine `TAGGED_ONLY` with `GuardDutyManaged`: with automated configuration off,
 * GuardDuty itself manages exactly the instances tagged `true` (a warning says so).
 *
 * What it does not do: enable GuardDuty or its Runtime Monitoring feature, turn automated
 * agent configuration off, or install on Windows (GuardDuty has no Windows agent).
 */
export class GuardDutyRuntimeMonitoringFleet extends Construct {
  /** GuardDuty's Distributor package for the EC2 security agent. */
  public static readonly DISTRIBUTOR_PACKAGE = 'AmazonGuardDuty-RuntimeMonitoringSsmPlugin';
  /** The systemd service the agent runs as. */
  public static readonly AGENT_SERVICE = 'amazon-guardduty-agent';
  /** GuardDuty's own inclusion/exclusion tag. */
  public static readonly MANAGED_TAG = 'GuardDutyManaged';

  /** The fleet this preset made. */
  public readonly fleet: AgentFleet;
  /** The Distributor package the fleet installs. */
  public readonly agentPackage: DistributorPackage;

  constructor(scope: Construct, id: string, props: GuardDutyRuntimeMonitoringFleetProps = {}) {
    super(scope, id);
    const tagKey = props.tagKey ?? GuardDutyRuntimeMonitoringFleet.MANAGED_TAG;
    if (tagKey === GuardDutyRuntimeMonitoringFleet.MANAGED_TAG && props.mode === AutoConfigurationMode.TAGGED_ONLY) {
      Annotations.of(this).addWarningV2('cdk-agent-fleet:guardDutyTaggedOnly',
        `mode TAGGED_ONLY with tagKey ${GuardDutyRuntimeMonitoringFleet.MANAGED_TAG}: with automated agent configuration off, GuardDuty itself manages the agent on exactly the instances tagged ${GuardDutyRuntimeMonitoringFleet.MANAGED_TAG}=true, so both would manage it there. Use another tagKey for a tagged rollout.`);
    }
    this.agentPackage = DistributorPackage.awsOwned(GuardDutyRuntimeMonitoringFleet.DISTRIBUTOR_PACKAGE, {
      serviceName: GuardDutyRuntimeMonitoringFleet.AGENT_SERVICE,
      version: props.agentVersion,
      installationType: props.installationType,
      vpcEndpoints: [AgentEndpointService.GUARDDUTY_DATA],
    });
    this.fleet = new AgentFleet(this, 'Fleet', {
      ...props,
      agentName: props.agentName ?? 'guardduty-agent',
      tagKey,
      packages: [this.agentPackage],
    });
  }
}
