import { Annotations, CfnResource, IAspect, Stack, Token } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { IConstruct } from 'constructs';
import { PropsValidator } from '../core/validation';
import { validateHopLimit, warnOnWideHopLimit } from './hop-limit';
import { HopLimitPolicy } from './imds-policy-options';

/**
 * Properties of the RequireImdsv2 aspect.
 */
export interface RequireImdsv2Props {
  /**
   * The HTTP PUT response hop limit of IMDSv2 tokens:
   * - `1`: only processes on the host itself reach IMDS;
   * - `2`: also containers on a Docker bridge network;
   * - `3`: also overlay networks and Docker-in-Docker.
   *
   * An integer from 1 to 64. Values above 2 are allowed with a warning.
   */
  readonly hopLimit: number;

  /**
   * Whether instance metadata tags are enabled (agents read their exclusion tag from IMDS).
   * When false, the setting is left as the resource has it.
   *
   * @default true
   */
  readonly instanceMetadataTags?: boolean;

  /**
   * How `hopLimit` applies to a resource that sets its own: `AT_LEAST` raises lower limits
   * and keeps higher ones, `EXACT` sets every one to `hopLimit`.
   *
   * @default HopLimitPolicy.AT_LEAST
   */
  readonly hopLimitPolicy?: HopLimitPolicy;

  /**
   * Whether a resource with `HttpEndpoint: disabled` gets the endpoint turned on. By default
   * it stays disabled (HttpTokens is still set to `required`), with a warning.
   *
   * @default false
   */
  readonly enableDisabledEndpoints?: boolean;
}

/** The metadata options as AWS::EC2::Instance, AWS::EC2::LaunchTemplate and AWS::AutoScaling::LaunchConfiguration spell them. */
interface MetadataOptions {
  readonly httpEndpoint?: string;
  readonly httpProtocolIpv6?: string;
  readonly httpPutResponseHopLimit?: number;
  readonly httpTokens?: string;
  readonly instanceMetadataTags?: string;
}

/** Where the metadata options sit in each resource type's CloudFormation properties. */
const OPTIONS_PATH: Record<string, string[]> = {
  'AWS::EC2::Instance': ['MetadataOptions'],
  'AWS::EC2::LaunchTemplate': ['LaunchTemplateData', 'MetadataOptions'],
  'AWS::AutoScaling::LaunchConfiguration': ['MetadataOptions'],
};

/**
 * Requires IMDSv2, with a hop limit, on the instances, launch templates and launch
 * configurations of an app, through the resources' own `MetadataOptions`.
 *
 * Acts on `AWS::EC2::Instance` (L1 `CfnInstance`, and so the L2 `Instance`),
 * `AWS::EC2::LaunchTemplate` (L1 `CfnLaunchTemplate`, and so the L2 `LaunchTemplate`) and
 * `AWS::AutoScaling::LaunchConfiguration` (L1 `CfnLaunchConfiguration`, which an L2
 * `AutoScalingGroup` without a launch template creates): HttpTokens `required`, the hop
 * limit raised to at least `hopLimit` (never lowered unless `HopLimitPolicy.EXACT`), the
 * endpoint `enabled` (a disabled one is left disabled unless `enableDisabledEndpoints`) and
 * instance metadata tags `enabled` (launch configurations have no such setting: warned).
 * Unlike CDK's `InstanceRequireImdsv2Aspect` it adds no launch template. Other metadata
 * options (`HttpProtocolIpv6`) are kept.
 *
 * What CloudFormation then does: an instance's `MetadataOptions` are updated without
 * interruption; a launch template gets a new version, which replaces instances wherever that
 * version is rolled out (an Auto Scaling group with a rolling update policy, an EKS managed
 * node group); a changed launch configuration is a new launch configuration, which an Auto
 * Scaling group with a rolling or replacing update policy rolls out by replacing instances.
 *
 * It never throws: where it cannot act (metadata options given as a token it cannot see
 * into) it adds a warning; it warns where it overrides a value set explicitly, where it
 * leaves a disabled endpoint, and where an escape-hatch override on the resource
 * (`addPropertyOverride`) wins over it.
 *
 * @example
 * Aspects.of(app).add(new RequireImdsv2({ hopLimit: 2 }));
 */
export class RequireImdsv2 implements IAspect {
  private readonly hopLimit: number;
  private readonly instanceMetadataTags: boolean;
  private readonly hopLimitPolicy: HopLimitPolicy;
  private readonly enableDisabledEndpoints: boolean;
  private readonly warnedStacks = new Set<Stack>();

  constructor(props: RequireImdsv2Props) {
    const v = new PropsValidator('the RequireImdsv2 aspect');
    validateHopLimit(v, props.hopLimit);
    if (props.hopLimitPolicy !== undefined) {
      v.require(Object.values(HopLimitPolicy).includes(props.hopLimitPolicy), 'hopLimitPolicy', props.hopLimitPolicy,
        'HopLimitPolicy.AT_LEAST or HopLimitPolicy.EXACT');
    }
    v.throwIfInvalid();
    this.hopLimit = props.hopLimit;
    this.instanceMetadataTags = props.instanceMetadataTags ?? true;
    this.hopLimitPolicy = props.hopLimitPolicy ?? HopLimitPolicy.AT_LEAST;
    this.enableDisabledEndpoints = props.enableDisabledEndpoints ?? false;
  }

  public visit(node: IConstruct): void {
    if (node instanceof ec2.CfnInstance) {
      this.visitInstance(node);
    } else if (node instanceof ec2.CfnLaunchTemplate) {
      this.visitLaunchTemplate(node);
    } else if (node instanceof autoscaling.CfnLaunchConfiguration) {
      this.visitLaunchConfiguration(node);
    }
  }

  private visitInstance(instance: ec2.CfnInstance): void {
    const current = instance.metadataOptions;
    if (Token.isUnresolved(current)) {
      this.cannotAct(instance, 'its MetadataOptions are a token');
      return;
    }
    instance.metadataOptions = this.enforced(instance, current as MetadataOptions | undefined);
    this.warnWhereOverridesWin(instance, instance.metadataOptions as MetadataOptions);
  }

  private visitLaunchTemplate(template: ec2.CfnLaunchTemplate): void {
    const data = template.launchTemplateData;
    if (Token.isUnresolved(data)) {
      this.cannotAct(template, 'its LaunchTemplateData is a token');
      return;
    }
    const plain = data as ec2.CfnLaunchTemplate.LaunchTemplateDataProperty;
    if (Token.isUnresolved(plain.metadataOptions)) {
      this.cannotAct(template, 'its LaunchTemplateData.MetadataOptions are a token');
      return;
    }
    const metadataOptions = this.enforced(template, plain.metadataOptions as MetadataOptions | undefined);
    template.launchTemplateData = { ...plain, metadataOptions };
    this.warnWhereOverridesWin(template, metadataOptions);
  }

  private visitLaunchConfiguration(configuration: autoscaling.CfnLaunchConfiguration): void {
    const current = configuration.metadataOptions;
    if (Token.isUnresolved(current)) {
      this.cannotAct(configuration, 'its MetadataOptions are a token');
      return;
    }
    // Launch configurations have no InstanceMetadataTags: the setting exists only in launch templates.
    const { instanceMetadataTags: _none, ...options } = this.enforced(configuration, current as MetadataOptions | undefined);
    configuration.metadataOptions = options;
    if (this.instanceMetadataTags) {
      Annotations.of(configuration).addWarningV2('cdk-agent-fleet:imdsTagsNotInLaunchConfiguration',
        'RequireImdsv2 required IMDSv2 on this launch configuration, but launch configurations cannot enable instance metadata tags, '
        + 'which agents read their exclusion tag from. Move the Auto Scaling group to a launch template (launch configurations are '
        + 'also being retired by AWS), or enable the tags on its instances otherwise (Imdsv2Enforcement does it at launch).');
    }
    this.warnWhereOverridesWin(configuration, options);
  }

  /** The options with the policy applied; warns about each explicit value it replaces or keeps. */
  private enforced(resource: IConstruct, current: MetadataOptions = {}): MetadataOptions {
    const hop = current.httpPutResponseHopLimit;
    const keepHop = hop !== undefined && this.hopLimitPolicy === HopLimitPolicy.AT_LEAST
      && (Token.isUnresolved(hop) || hop > this.hopLimit);
    const keepDisabled = current.httpEndpoint === 'disabled' && !this.enableDisabledEndpoints;
    const wanted: MetadataOptions = {
      httpTokens: 'required',
      httpPutResponseHopLimit: keepHop ? hop : this.hopLimit,
      httpEndpoint: keepDisabled ? 'disabled' : 'enabled',
      ...(this.instanceMetadataTags ? { instanceMetadataTags: 'enabled' } : {}),
    };
    const overridden = (Object.keys(wanted) as Array<keyof MetadataOptions>)
      .filter((key) => current[key] !== undefined && current[key] !== wanted[key])
      .map((key) => `${key} ${Token.isUnresolved(current[key]) ? '(a token)' : JSON.stringify(current[key])} -> ${JSON.stringify(wanted[key])}`);
    if (overridden.length > 0) {
      Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsOptionsOverridden',
        `RequireImdsv2 replaced metadata options set on this resource: ${overridden.join(', ')}.`);
    }
    if (keepHop && Token.isUnresolved(hop)) {
      Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsHopLimitUnknown',
        `RequireImdsv2 kept this resource's hop limit, a token it cannot compare with ${this.hopLimit}: make sure it is at least ${this.hopLimit}.`);
    }
    if (keepDisabled) {
      Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsEndpointLeftDisabled',
        'RequireImdsv2 left HttpEndpoint disabled on this resource (IMDSv2 is still required): agents on its instances cannot read '
        + 'the identity document or their exclusion tag. Set enableDisabledEndpoints to turn IMDS on, or acknowledge this warning.');
    }
    this.warnOnceForStack(resource);
    return { ...current, ...wanted };
  }

  /**
   * Escape-hatch overrides (`addPropertyOverride`, `addOverride`) are merged into the template
   * after every property, so they win over what the aspect set: say where they weaken it.
   */
  private warnWhereOverridesWin(resource: CfnResource, applied: MetadataOptions): void {
    const raw = (resource as unknown as { rawOverrides?: Record<string, unknown> }).rawOverrides;
    let node: unknown = raw?.Properties;
    const path = OPTIONS_PATH[resource.cfnResourceType];
    const won: string[] = [];
    for (let i = 0; i < path.length && node !== undefined; i++) {
      const level = node as Record<string, unknown>;
      if (typeof level !== 'object' || level === null || !(path[i] in level)) return;
      node = level[path[i]];
      if (node === undefined || node === null || typeof node !== 'object' || Token.isUnresolved(node)) {
        won.push(`${path.slice(0, i + 1).join('.')} ${node === undefined || node === null ? 'removed' : 'replaced by an override the aspect cannot see into'}`);
        node = undefined;
      }
    }
    if (node !== undefined) {
      const options = node as Record<string, unknown>;
      const check = (key: string, ok: (value: unknown) => boolean) => {
        if (key in options && !ok(options[key])) {
          won.push(`${key} ${options[key] === undefined ? 'removed' : Token.isUnresolved(options[key]) ? 'set to a token' : `set to ${JSON.stringify(options[key])}`}`);
        }
      };
      check('HttpTokens', (v) => v === 'required');
      check('HttpPutResponseHopLimit', (v) => typeof v === 'number'
        && (this.hopLimitPolicy === HopLimitPolicy.EXACT ? v === this.hopLimit : v >= this.hopLimit));
      check('HttpEndpoint', (v) => v === applied.httpEndpoint || v === 'enabled');
      if (applied.instanceMetadataTags) check('InstanceMetadataTags', (v) => v === 'enabled');
    }
    if (won.length > 0) {
      Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsOverrideWins',
        `An escape-hatch override on this resource wins over RequireImdsv2: ${won.join(', ')} (overrides are applied last). `
        + 'Remove the override, or make it require IMDSv2 with a hop limit of at least '
        + `${this.hopLimit}; Imdsv2Enforcement still corrects the instances at run time.`);
    }
  }

  private cannotAct(resource: IConstruct, why: string): void {
    Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsv2NotEnforced',
      `RequireImdsv2 could not require IMDSv2 on this resource: ${why}, so the aspect cannot tell what it holds. `
      + `Set HttpTokens 'required', HttpPutResponseHopLimit ${this.hopLimit} and HttpEndpoint 'enabled' yourself, `
      + 'or rely on Imdsv2Enforcement to fix the instances at run time.');
  }

  private warnOnceForStack(resource: IConstruct): void {
    const stack = Stack.of(resource);
    if (this.warnedStacks.has(stack)) return;
    this.warnedStacks.add(stack);
    warnOnWideHopLimit(stack, this.hopLimit);
  }
}
