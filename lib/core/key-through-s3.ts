import { Stack, Token, TokenComparison } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';

/** The bucket a KMS grant through S3 is for. */
export interface KeyThroughS3 {
  /** The bucket's key. */
  readonly key: kms.IKey;
  /** The bucket: KMS answers only the requests S3 makes for it. */
  readonly bucket: s3.IBucket;
  /**
   * Key prefix of the objects, when the bucket may not use S3 Bucket Keys (the encryption
   * context is then the object's ARN, not the bucket's).
   *
   * @default - the bucket uses S3 Bucket Keys: the context is the bucket ARN
   */
  readonly objectPrefix?: string;
}

/**
 * Grants KMS actions on a bucket's key only for requests S3 makes on the grantee's behalf
 * (`kms:ViaService`) for this bucket (`kms:EncryptionContext:aws:s3:arn`): the grantee can
 * neither call KMS directly nor use the key through S3 for another bucket.
 *
 * A principal of another account also needs the key policy. The key policy cannot name
 * the bucket (the bucket already names the key: a cycle), so there it is S3 only; the
 * principal's own policy still names the bucket, and IAM requires both.
 */
export function grantKeyThroughS3(grantee: iam.IGrantable, actions: string[], target: KeyThroughS3): iam.Grant {
  const { key, bucket, objectPrefix } = target;
  const viaS3 = { 'kms:ViaService': `s3.${bucket.env.region}.${Stack.of(bucket).urlSuffix}` };
  const context = 'kms:EncryptionContext:aws:s3:arn';
  const conditions: Record<string, Record<string, unknown>> = objectPrefix === undefined
    ? { StringEquals: { ...viaS3, [context]: bucket.bucketArn } }
    : { StringEquals: viaS3, StringLike: { [context]: [bucket.bucketArn, bucket.arnForObjects(`${objectPrefix}*`)] } };
  const grant = iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [key.keyArn], conditions });

  const principalAccount = grantee.grantPrincipal.principalAccount;
  const sameAccount = principalAccount === undefined
    || Token.compareStrings(principalAccount, Stack.of(key).account) !== TokenComparison.DIFFERENT;
  if (!sameAccount) {
    key.addToResourcePolicy(new iam.PolicyStatement({
      principals: [grantee.grantPrincipal],
      actions,
      resources: ['*'],
      conditions: { StringEquals: viaS3 },
    }));
  }
  return grant;
}
