import { CfnResource } from 'aws-cdk-lib';
import { NagRuleCompliance } from 'cdk-nag';
import { effectiveMetadataOptions, launchesInstances } from './template-lookup';

/**
 * Instances and launch templates set the metadata hop limit their fleet class needs
 * (1: the host only; 2: containers on the Docker bridge; 3: overlay networks). Left unset,
 * it depends on the AMI, so it must be explicit.
 */
export function hopLimit(expected: number): (node: CfnResource) => NagRuleCompliance {
  return (node) => {
    if (!launchesInstances(node)) return NagRuleCompliance.NOT_APPLICABLE;
    const { options } = effectiveMetadataOptions(node);
    return Number(options.httpPutResponseHopLimit) === expected ? NagRuleCompliance.COMPLIANT : NagRuleCompliance.NON_COMPLIANT;
  };
}
