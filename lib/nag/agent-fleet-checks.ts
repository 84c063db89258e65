import { CfnResource } from 'aws-cdk-lib';
import { NagMessageLevel, NagPack, NagPackProps, NagRuleCompliance } from 'cdk-nag';
import { IConstruct } from 'constructs';
import { PropsValidator } from '../core/validation';
import { hopLimit } from './rules/hop-limit';
import { imdsv2Required } from './rules/imdsv2-required';
import { instanceRoleSsmCore } from './rules/instance-role-ssm-core';
import { managementTagValue } from './rules/management-tag-value';
import { metadataTags } from './rules/metadata-tags';
import { subnetReachesSsm } from './rules/subnet-reaches-ssm';

/** Whether the installed cdk-nag is 3 (validation plugins) rather than 2 (aspects). */
const NAG_3 = typeof (NagPack.prototype as { validateScope?: unknown }).validateScope === 'function';

/**
 * Settings of the AgentFleetChecks pack.
 */
export interface AgentFleetChecksProps extends NagPackProps {
  /**
   * The metadata hop limit the instances of this app need: 1 for hosts that run no
   * containers, 2 when agents or apps run in containers on the Docker bridge, 3 for
   * overlay networks or Docker-in-Docker. Use one pack per fleet class.
   *
   * @default 1
   */
  readonly hopLimit?: number;

  /**
   * The management tag whose value must be `true` or `false`.
   *
   * @default 'SecurityAgentManaged'
   */
  readonly tagKey?: string;

  /**
   * Whether SSM Default Host Management Configuration is on in the target accounts, so
   * that instances without an instance profile are still managed by SSM.
   *
   * @default false
   */
  readonly defaultHostManagement?: boolean;
}

/**
 * A cdk-nag pack for your own apps: checks that the instances you define can run a host
 * security agent managed by cdk-agent-fleet.
 *
 * Rules (`AgentFleet-<rule>`): IMDSv2Required, HopLimit, MetadataTags, InstanceRoleSsmCore,
 * ManagementTagValue, SubnetReachesSsm.
 *
 * ```ts
 * Validations.of(app).addPlugins(new AgentFleetChecks(app, { hopLimit: 2 })); // cdk-nag 3
 * Aspects.of(app).add(new AgentFleetChecks(undefined, { hopLimit: 2 }));      // cdk-nag 2
 * ```
 *
 * The pack extends the `NagPack` of the cdk-nag the app installed: cdk-nag 3 runs it as a
 * validation plugin, cdk-nag 2 as an aspect (through `visit`).
 */
export class AgentFleetChecks extends NagPack {
  /** The pack's name, the prefix of its rule ids. */
  public readonly name = 'AgentFleet';

  private readonly expectedHopLimit: number;
  private readonly tagKey: string;
  private readonly defaultHostManagement: boolean;

  /**
   * @param scope where to write acknowledgments into template metadata, if asked to
   * @param props the pack's settings
   */
  constructor(scope?: IConstruct, props: AgentFleetChecksProps = {}) {
    // cdk-nag 3's NagPack takes (scope, props); cdk-nag 2's takes (props).
    super(...(NAG_3 ? [scope, props] : [props]) as [IConstruct | undefined, NagPackProps]);
    this.packName = 'AgentFleet';
    const v = new PropsValidator('AgentFleetChecks');
    v.integerInRange('hopLimit', props.hopLimit, 1, 64);
    v.imdsTagKey('tagKey', props.tagKey);
    v.throwIfInvalid();
    this.expectedHopLimit = props.hopLimit ?? 1;
    this.tagKey = props.tagKey ?? 'SecurityAgentManaged';
    this.defaultHostManagement = props.defaultHostManagement ?? false;
  }

  /**
   * Checks one construct: how cdk-nag 2 runs the pack, as an aspect of the app. cdk-nag 3
   * runs it through `Validations.of(app).addPlugins()` instead and rejects it as an aspect.
   *
   * @param node the construct to check; only CloudFormation resources are checked
   */
  public visit(node: IConstruct): void {
    if (NAG_3) {
      throw new Error('AgentFleetChecks is a cdk-nag 3 validation plugin in this app: add it with '
        + 'Validations.of(app).addPlugins(new AgentFleetChecks(app)), not as an aspect.');
    }
    if (CfnResource.isCfnResource(node)) this.checkResource(node);
  }

  protected checkResource(node: CfnResource): void {
    this.check(node, 'IMDSv2Required', imdsv2Required,
      'The instance or launch template does not require IMDSv2 (HttpTokens required, endpoint enabled).',
      'IMDSv1 is the classic SSRF path to instance credentials; agents read their identity document and exclusion tag through IMDSv2.');
    this.check(node, 'HopLimit', hopLimit(this.expectedHopLimit),
      `The instance or launch template does not set the metadata hop limit to ${this.expectedHopLimit}.`,
      'A hop limit of 1 silently breaks agents and apps in containers (the Docker bridge adds a hop); a higher one than needed lets containers reach the instance role. Left unset, it depends on the AMI.');
    this.check(node, 'MetadataTags', metadataTags,
      'The instance or launch template does not enable instance tags in the metadata service.',
      `The install document reads the ${this.tagKey} tag from IMDS to honour exclusions; without metadata tags every instance looks untagged.`);
    this.check(node, 'InstanceRoleSsmCore', instanceRoleSsmCore(this.defaultHostManagement),
      'The instance role cannot be managed by SSM (no AmazonSSMManagedInstanceCore, no ssm:UpdateInstanceInformation), or it is not in this stack.',
      'The agent is installed and kept current through SSM; an instance SSM cannot manage never gets it.');
    this.check(node, 'ManagementTagValue', managementTagValue(this.tagKey),
      `The ${this.tagKey} tag has a value other than 'true' or 'false'.`,
      'Tag values are compared exactly and in lower case: any other value is reported as misconfigured and does not do what its author meant.');
    this.check(node, 'SubnetReachesSsm', subnetReachesSsm,
      'The subnet has no route out and its VPC has no interface endpoints for ssm, ssmmessages and ec2messages.',
      'Instances there can never reach SSM, so they are never managed and never get the agent.');
  }

  private check(node: CfnResource, rule: string, fn: (node: CfnResource) => NagRuleCompliance, info: string, explanation: string): void {
    this.applyRule({ ruleSuffixOverride: rule, info, explanation, level: NagMessageLevel.ERROR, node, rule: fn });
  }
}
