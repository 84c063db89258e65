import { CfnResource } from 'aws-cdk-lib';
import { NagRuleCompliance } from 'cdk-nag';
import { effectiveMetadataOptions, launchesInstances } from './template-lookup';

/**
 * Instances and launch templates require IMDSv2 (`HttpTokens: required`) and keep the
 * metadata service on: agents read their identity and exclusion tag from it.
 */
export function imdsv2Required(node: CfnResource): NagRuleCompliance {
  if (!launchesInstances(node)) return NagRuleCompliance.NOT_APPLICABLE;
  const { options } = effectiveMetadataOptions(node);
  const endpointOn = options.httpEndpoint === undefined || options.httpEndpoint === 'enabled';
  return options.httpTokens === 'required' && endpointOn ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
}
