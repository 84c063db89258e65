import { CfnResource, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { validationsOf } from './cdk-compat';

/**
 * One cdk-nag finding this library acknowledges on one of its own resources.
 */
export interface NagAcknowledgment {
  /** The rule, e.g. `AwsSolutions-IAM5`. */
  readonly rule: string;
  /**
   * The one finding of the rule this is about, e.g. `Action::s3:*` or
   * `Resource::arn:aws:ec2:...`. Required for rules that report findings per action or resource.
   */
  readonly finding?: string;
  /** Why the finding is acceptable, in words a reviewer would accept. */
  readonly reason: string;
}

/**
 * Acknowledges cdk-nag findings on exactly one CloudFormation resource.
 *
 * Recorded twice, so both generations of cdk-nag see the same acknowledgments:
 * - cdk-nag 3 reads `Validations.of(resource).acknowledge()` metadata;
 * - cdk-nag 2 reads `cdk_nag.rules_to_suppress` in the resource's template metadata.
 * Neither needs cdk-nag itself: apps without it, or on an aws-cdk-lib without
 * `Validations`, get the metadata and nothing else.
 *
 * Takes the L1 resource (not a parent construct) so an acknowledgment can never
 * spread to resources it was not written for.
 */
export function acknowledgeNagFindings(resource: CfnResource, ...acks: NagAcknowledgment[]): void {
  for (const ack of acks) {
    if (ack.reason.trim().length < 20) {
      throw new Error(`cdk-nag acknowledgment of ${ack.rule} on ${resource.node.path} needs a real reason`);
    }
    const id = ack.finding ? `${ack.rule}[${ack.finding}]` : ack.rule;
    // Absent before aws-cdk-lib 2.252 (see cdk-compat.ts), where cdk-nag 3 cannot run anyway.
    validationsOf(resource)?.acknowledge({ id, reason: ack.reason });
  }

  const existing = (resource.getMetadata('cdk_nag')?.rules_to_suppress ?? []) as unknown[];
  const v2 = acks.map((ack) => ({
    id: ack.rule,
    reason: ack.reason,
    ...(ack.finding ? { applies_to: [ack.finding] } : {}),
  }));
  resource.addMetadata('cdk_nag', { rules_to_suppress: [...existing, ...v2] });
}

/**
 * The default child of a construct, as the CloudFormation resource it must be.
 */
export function cfnResourceOf(construct: IConstruct): CfnResource {
  const child = construct.node.defaultChild;
  if (!child || !CfnResource.isCfnResource(child)) {
    throw new Error(`${construct.node.path} has no CloudFormation resource as its default child`);
  }
  return child;
}

/**
 * How cdk-nag prints a resource or action value in a finding id (`AwsSolutions-IAM5[Resource::...]`):
 * intrinsics flattened — `Ref` as `<Id>`, `Fn::GetAtt` as `<Id.Attr>`, `Fn::Join` concatenated.
 * Lets an acknowledgment name exactly the one finding even when the value holds tokens.
 */
export function nagFindingValue(scope: IConstruct, value: string): string {
  const flatten = (v: unknown): string => {
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object') {
      const o = v as { 'Ref'?: string; 'Fn::GetAtt'?: [string, string]; 'Fn::Join'?: [string, unknown[]] };
      if (o.Ref !== undefined) return `<${o.Ref}>`;
      if (o['Fn::GetAtt']) return `<${o['Fn::GetAtt'][0]}.${o['Fn::GetAtt'][1]}>`;
      if (o['Fn::Join']) return o['Fn::Join'][1].map(flatten).join(o['Fn::Join'][0]);
    }
    return JSON.stringify(v);
  };
  // cdk-nag prints IAM policy variables such as ${aws:userid} as <aws:userid>.
  return flatten(Stack.of(scope).resolve(value)).replace(/\$\{([^}]+)\}/g, '<$1>');
}
