/*
 * Parts of Imdsv2Enforcement kept apart from the main construct: the IAM of the sweep's
 * per-instance report and of the preflight, and the checks of the policy options.
 */
import { Names, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledgeNagFindings, cfnResourceOf, nagFindingValue } from '../core/nag';
import { PropsValidator } from '../core/validation';
import { HopLimitPolicy } from './imds-policy-options';
import type { Imdsv2EnforcementProps } from './imdsv2-enforcement';

/** The default report prefix: readable, and unique to the construct within the bucket. */
export function reportPrefixOf(scope: Construct): string {
  return `imds-enforcement/${Names.uniqueResourceName(scope, { maxLength: 96, separator: '-' })}/`;
}

/**
 * Lets the sweep write its reports: step objects under `<prefix>steps/` (written, read back
 * and deleted when combined) and the combined report under `<prefix>reports/` (written
 * only, possibly as a multipart upload). The bucket's KMS key only through S3, for this bucket.
 */
export function grantSweepReport(scope: Construct, role: iam.IRole, bucket: s3.IBucket, prefix: string): iam.ManagedPolicy {
  const steps = bucket.arnForObjects(`${prefix}steps/*`);
  const reports = bucket.arnForObjects(`${prefix}reports/*`);
  const policy = new iam.ManagedPolicy(scope, 'ReportPolicy', {
    description: `What the IMDS sweep of ${scope.node.path} may do in its report bucket`,
    roles: [role],
    statements: [
      new iam.PolicyStatement({ sid: 'WriteReports', actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: [steps, reports] }),
      new iam.PolicyStatement({ sid: 'CombineAndRemoveStepObjects', actions: ['s3:GetObject', 's3:DeleteObject'], resources: [steps] }),
    ],
  });
  if (bucket.encryptionKey) {
    policy.addStatements(new iam.PolicyStatement({
      sid: 'UseTheBucketKeyThroughS3',
      // Decrypt: GetObject of the step objects, and completing multipart uploads.
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [bucket.encryptionKey.keyArn],
      conditions: {
        StringEquals: { 'kms:ViaService': `s3.${Stack.of(scope).region}.${Stack.of(scope).urlSuffix}` },
        // With S3 Bucket Keys the encryption context is the bucket, without them the object.
        StringLike: { 'kms:EncryptionContext:aws:s3:arn': [bucket.bucketArn, `${bucket.bucketArn}/${prefix}*`] },
      },
    }));
  }
  for (const resource of [steps, reports]) {
    acknowledgeNagFindings(cfnResourceOf(policy), {
      rule: 'AwsSolutions-IAM5',
      finding: `Resource::${nagFindingValue(scope, resource)}`,
      reason: 'Objects under this construct\'s own report prefix only: each sweep writes objects named after its sweep id and step, '
        + 'which are only known at run time.',
    });
  }
  return policy;
}

/** The preflight lists instances in scope and dry-runs the sweep's modification on one. */
export function preflightStatements(modify: iam.PolicyStatement): iam.PolicyStatement[] {
  return [
    // DescribeInstances supports no resource-level permissions.
    new iam.PolicyStatement({ sid: 'PreflightListInstances', actions: ['ec2:DescribeInstances'], resources: ['*'] }),
    modify,
  ];
}

const PREFIX = /^(?!\/)[A-Za-z0-9!_.*'()/-]{1,512}\/$/;

export function validatePolicyOptions(v: PropsValidator, props: Imdsv2EnforcementProps): void {
  if (props.hopLimitPolicy !== undefined) {
    v.require(Object.values(HopLimitPolicy).includes(props.hopLimitPolicy), 'hopLimitPolicy', props.hopLimitPolicy,
      'HopLimitPolicy.AT_LEAST or HopLimitPolicy.EXACT');
  }
  if (props.httpTokensEnforced) {
    v.require(props.mode === undefined || props.mode === 'ENFORCE', 'httpTokensEnforced', props.httpTokensEnforced,
      'true only in ImdsEnforcementMode.ENFORCE (AUDIT changes no account setting)');
    v.require(props.accountDefaults !== false, 'httpTokensEnforced', props.httpTokensEnforced,
      'true only together with accountDefaults (it is one of the account defaults)');
  }
  v.require(!(props.reportPrefix !== undefined && !props.reportBucket), 'reportPrefix', props.reportPrefix, 'only together with reportBucket');
  if (props.reportPrefix !== undefined && !Token.isUnresolved(props.reportPrefix)) {
    v.require(PREFIX.test(props.reportPrefix), 'reportPrefix', props.reportPrefix,
      'a literal S3 key prefix ending in "/", not starting with "/": letters, digits and !_.*\'()/-');
  }
}
