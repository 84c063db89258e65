import { Annotations, IAspect, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { IConstruct } from 'constructs';
import { PropsValidator } from '../core/validation';
import { validateHopLimit, warnOnWideHopLimit } from './hop-limit';

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
}

/** The metadata options as both AWS::EC2::Instance and AWS::EC2::LaunchTemplate spell them. */
interface MetadataOptions {
  readonly httpEndpoint?: string;
  readonly httpProtocolIpv6?: string;
  readonly httpPutResponseHopLimit?: number;
  readonly httpTokens?: string;
  readonly instanceMetadataTags?: string;
}

/**
 * Requires IMDSv2, with a hop limit, on the instances and launch templates of an app,
 * through the resources' own `MetadataOptions`.
 *
 * Acts on `AWS::EC2::Instance` (L1 `CfnInstance`, and so the L2 `Instance`) and on
 * `AWS::EC2::LaunchTemplate` (L1 `CfnLaunchTemplate`, and so the L2 `LaunchTemplate`):
 * HttpTokens `required`, the hop limit, the endpoint `enabled` and instance metadata tags
 * `enabled`. Unlike CDK's `InstanceRequireImdsv2Aspect` it adds no launch template:
 * CloudFormation updates an instance's `MetadataOptions` without interruption, and a launch
 * template's in a new version. Other metadata options (`HttpProtocolIpv6`) are kept.
 *
 * It never throws: where it cannot act (metadata options given as a token it cannot see
 * into) it adds a warning, and it warns where it overrides a value set explicitly.
 *
 * @example
 * Aspects.of(app).add(new RequireImdsv2({ hopLimit: 2 }));
 */
export class RequireImdsv2 implements IAspect {
  private readonly hopLimit: number;
  private readonly instanceMetadataTags: boolean;
  private readonly warnedStacks = new Set<Stack>();

  constructor(props: RequireImdsv2Props) {
    const v = new PropsValidator('the RequireImdsv2 aspect');
    validateHopLimit(v, props.hopLimit);
    v.throwIfInvalid();
    this.hopLimit = props.hopLimit;
    this.instanceMetadataTags = props.instanceMetadataTags ?? true;
  }

  public visit(node: IConstruct): void {
    if (node instanceof ec2.CfnInstance) {
      this.visitInstance(node);
    } else if (node instanceof ec2.CfnLaunchTemplate) {
      this.visitLaunchTemplate(node);
    }
  }

  private visitInstance(instance: ec2.CfnInstance): void {
    const current = instance.metadataOptions;
    if (Token.isUnresolved(current)) {
      this.cannotAct(instance, 'its MetadataOptions are a token');
      return;
    }
    instance.metadataOptions = this.enforced(instance, current as MetadataOptions | undefined);
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
    template.launchTemplateData = {
      ...plain,
      metadataOptions: this.enforced(template, plain.metadataOptions as MetadataOptions | undefined),
    };
  }

  /** The options with the policy applied; warns about each explicit value it replaces. */
  private enforced(resource: IConstruct, current: MetadataOptions = {}): MetadataOptions {
    const wanted: MetadataOptions = {
      httpTokens: 'required',
      httpPutResponseHopLimit: this.hopLimit,
      httpEndpoint: 'enabled',
      ...(this.instanceMetadataTags ? { instanceMetadataTags: 'enabled' } : {}),
    };
    const overridden = (Object.keys(wanted) as Array<keyof MetadataOptions>)
      .filter((key) => current[key] !== undefined && current[key] !== wanted[key])
      .map((key) => `${key} ${Token.isUnresolved(current[key]) ? '(a token)' : JSON.stringify(current[key])} -> ${JSON.stringify(wanted[key])}`);
    if (overridden.length > 0) {
      Annotations.of(resource).addWarningV2('cdk-agent-fleet:imdsOptionsOverridden',
        `RequireImdsv2 replaced metadata options set on this resource: ${overridden.join(', ')}.`);
    }
    this.warnOnceForStack(resource);
    return { ...current, ...wanted };
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
