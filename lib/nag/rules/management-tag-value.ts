import { CfnResource } from 'aws-cdk-lib';
import { NagRuleCompliance, NagRules } from 'cdk-nag';
import { tagsOf } from './template-lookup';

/**
 * The management tag, where set, is exactly `true` or `false`. Any other value is a
 * misconfigured tag: the agent is installed (all-instances mode) or skipped (tagged-only
 * mode) although the author probably meant the opposite.
 */
export function managementTagValue(tagKey: string): (node: CfnResource) => NagRuleCompliance {
  return (node) => {
    const tags = tagsOf(node).filter((t) => t.key === tagKey);
    if (tags.length === 0) return NagRuleCompliance.NOT_APPLICABLE;
    // A value only known at deploy time cannot be judged: resolveIfPrimitive throws, and
    // cdk-nag reports the rule as not evaluable rather than passing it silently.
    const values = tags.map((t) => NagRules.resolveIfPrimitive(node, t.value));
    return values.every((v) => v === 'true' || v === 'false') ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
  };
}
