import { CfnResource } from 'aws-cdk-lib';
import { NagRuleCompliance } from 'cdk-nag';
import { effectiveMetadataOptions, launchesInstances } from './template-lookup';

/**
 * Instances and launch templates expose instance tags in the metadata service
 * (`InstanceMetadataTags: enabled`): the install document reads the exclusion tag there.
 */
export function metadataTags(node: CfnResource): NagRuleCompliance {
  if (!launchesInstances(node)) return NagRuleCompliance.NOT_APPLICABLE;
  const { options } = effectiveMetadataOptions(node);
  return options.instanceMetadataTags === 'enabled' ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
}
