import { Token } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { PropsValidator } from '../core/validation';
import { validateHopLimit } from './hop-limit';
import { validatePolicyOptions } from './imds-enforcement-extras';
import { ImdsEnforcementMode, type Imdsv2EnforcementProps } from './imdsv2-enforcement';

const TAG_KEY = /^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;

/** Checks every prop of Imdsv2Enforcement and throws all problems together. */
export function validateEnforcementProps(scope: Construct, props: Imdsv2EnforcementProps): void {
  const v = new PropsValidator(scope);
  validateHopLimit(v, props.hopLimit);
  v.integerInRange('imdsv1LookbackDays', props.imdsv1LookbackDays, 1, 455);
  if (props.driftCheckInterval !== undefined && !props.driftCheckInterval.isUnresolved()) {
    const minutes = props.driftCheckInterval.toMinutes({ integral: false });
    v.require(Number.isInteger(minutes) && minutes >= 60 && minutes <= 30 * 24 * 60, 'driftCheckInterval', props.driftCheckInterval,
      'a whole number of minutes from 1 hour to 30 days (a sweep of 50,000 instances takes about an hour)');
  }
  v.require(!(props.vpcSubnets && !props.vpc), 'vpcSubnets', props.vpcSubnets, 'only together with vpc');
  v.require(!(props.protectImdsv1Users === false && props.imdsv1LookbackDays !== undefined), 'imdsv1LookbackDays',
    props.imdsv1LookbackDays, 'only together with protectImdsv1Users (leave it unset when the check is off)');
  if (props.mode !== undefined) {
    v.require(Object.values(ImdsEnforcementMode).includes(props.mode), 'mode', props.mode, 'ImdsEnforcementMode.ENFORCE or ImdsEnforcementMode.AUDIT');
  }
  if (props.exemptionTagKey !== undefined && !Token.isUnresolved(props.exemptionTagKey)) {
    v.require(TAG_KEY.test(props.exemptionTagKey), 'exemptionTagKey', props.exemptionTagKey,
      'a tag key: 1 to 128 letters, digits, spaces and _.:/=+-@, not starting with aws:');
  }
  for (const [key, value] of Object.entries(props.instanceTags ?? {})) {
    if (Token.isUnresolved(key) || Token.isUnresolved(value)) {
      v.require(false, `instanceTags.${key}`, value, 'literal tag keys and values: they become DescribeInstances filters and IAM conditions');
      continue;
    }
    v.require(TAG_KEY.test(key), `instanceTags[${JSON.stringify(key)}]`, key, 'a tag key: 1 to 128 letters, digits, spaces and _.:/=+-@, not starting with aws:');
    v.require(typeof value === 'string' && TAG_VALUE.test(value), `instanceTags.${key}`, value, 'a tag value: up to 256 letters, digits, spaces and _.:/=+-@');
    v.require(key !== (props.exemptionTagKey ?? 'ImdsEnforcementExempt'), `instanceTags.${key}`, value, 'a key other than the exemption tag key');
  }
  validatePolicyOptions(v, props);
  v.throwIfInvalid();
}
