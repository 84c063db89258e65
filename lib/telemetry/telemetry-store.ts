import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { limitGrantsToAwsResources } from '../core/control-tower';
import { grantKeyThroughS3 } from '../core/key-through-s3';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';
import { PropsValidator } from '../core/validation';

/**
 * Properties of a TelemetryStore.
 */
export interface TelemetryStoreProps {
  /**
   * How long telemetry objects are kept before S3 lifecycle deletes them.
   *
   * A whole number of days from 1 to 3650 (10 years).
   *
   * @default Duration.days(30)
   */
  readonly retention?: Duration;

  /**
   * How long an overwritten or deleted telemetry object stays recoverable as a
   * noncurrent version before it is removed for good.
   *
   * A whole number of days from 1 to 365.
   *
   * @default Duration.days(7)
   */
  readonly noncurrentVersionRetention?: Duration;

  /**
   * The key prefix under which agents write. Each instance writes only below
   * `<agentPrefix><aws:userid>/`.
   *
   * Segments of letters, digits and `!_.'()-`, each followed by `/`.
   *
   * @default 'agents/'
   */
  readonly agentPrefix?: string;

  /**
   * Customer-managed KMS key that encrypts the telemetry.
   *
   * @default - a new key with automatic yearly rotation
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * Bucket that receives the store's S3 server access logs. It must not be the
   * telemetry bucket itself, and it must accept SSE-S3 log delivery.
   *
   * @default - a new private bucket with SSE-S3 encryption and its own lifecycle
   */
  readonly accessLogsBucket?: s3.IBucket;

  /**
   * Key prefix of the server access logs in the access logs bucket.
   *
   * @default 'telemetry-access-logs/'
   */
  readonly accessLogsPrefix?: string;

  /**
   * How long server access logs are kept in the log bucket this construct
   * creates. Not allowed together with `accessLogsBucket`: the lifecycle of a
   * bucket you bring is yours.
   *
   * A whole number of days from 1 to 3650.
   *
   * @default Duration.days(365)
   */
  readonly accessLogsRetention?: Duration;

  /**
   * Locks each telemetry object version against deletion and overwrite for this long after it
   * is written (S3 Object Lock, governance mode: only principals allowed
   * `s3:BypassGovernanceRetention` can remove it earlier). Lifecycle expiry still applies
   * once the lock ends, so it must not exceed `retention`. Object Lock can only be turned on
   * when a bucket is created: setting it on an existing store replaces the bucket. AWS
   * Control Tower's CT.S3.PR.9 asks for it.
   *
   * A whole number of days from 1 to `retention`.
   *
   * @default - no Object Lock
   */
  readonly objectLockRetention?: Duration;

  /**
   * Sends the bucket's object events (created, deleted, ...) to Amazon EventBridge, on the
   * telemetry bucket and on the log bucket created here, so that rules can react to new
   * telemetry. AWS Control Tower's CT.S3.PR.4 asks for event notifications.
   *
   * @default false
   */
  readonly eventBridgeNotifications?: boolean;

  /**
   * What happens to the bucket, the key and the log bucket created here when they
   * leave the stack. `DESTROY` only deletes a bucket that is empty.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * A private, encrypted S3 bucket for agent telemetry that forgets on schedule.
 *
 * Each instance may only put objects under its own prefix
 * (`<agentPrefix><aws:userid>/`), never read, list or delete; see `grantAgentWrite`.
 */
export class TelemetryStore extends Construct {
  /** The telemetry bucket. */
  public readonly bucket: s3.IBucket;

  /** The customer-managed key that encrypts the telemetry. */
  public readonly encryptionKey: kms.IKey;

  /** The bucket that receives the telemetry bucket's server access logs. */
  public readonly accessLogsBucket: s3.IBucket;

  /** The key prefix below which agents write, ending in `/`. */
  public readonly agentPrefix: string;

  /** How long telemetry objects are kept. */
  public readonly retention: Duration;

  /**
   * @param scope the parent construct
   * @param id the construct id (public API: changing it replaces the bucket)
   * @param props the store's settings; every one has a secure default
   */
  constructor(scope: Construct, id: string, props: TelemetryStoreProps = {}) {
    super(scope, id);
    validateProps(this, props);

    // Server access logs are delivered through a bucket policy, never ACLs, whatever the
    // user's feature flags say: both buckets enforce bucket-owner object ownership.
    this.node.setContext(S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.retention = props.retention ?? Duration.days(30);
    this.agentPrefix = props.agentPrefix ?? 'agents/';
    const noncurrentVersionRetention = props.noncurrentVersionRetention ?? Duration.days(7);

    this.encryptionKey = props.encryptionKey ?? this.createKey(removalPolicy);

    this.accessLogsBucket = props.accessLogsBucket ?? this.createAccessLogsBucket(
      props.accessLogsRetention ?? Duration.days(365),
      noncurrentVersionRetention,
      removalPolicy,
      props.eventBridgeNotifications ?? false,
    );

    const bucket = new s3.Bucket(this, 'Resource', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.encryptionKey,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: props.accessLogsPrefix ?? 'telemetry-access-logs/',
      lifecycleRules: expiryRules(this.retention, noncurrentVersionRetention),
      removalPolicy,
      ...(props.objectLockRetention ? {
        objectLockEnabled: true,
        objectLockDefaultRetention: s3.ObjectLockRetention.governance(props.objectLockRetention),
      } : {}),
    });
    this.bucket = bucket;
    if (props.eventBridgeNotifications) sendEventsToEventBridge(bucket);
    this.denyUploadsNotEncryptedWithKey(bucket);

    acknowledgeNagFindings(cfnResourceOf(bucket), ...replicationAcknowledgments(
      'Telemetry is short-lived evidence that lifecycle deletes after the retention period; '
      + 'cross-region replication of it is a disaster-recovery choice each organisation makes for itself.',
    ));
  }

  /**
   * Lets an instance role put telemetry under its own prefix only.
   *
   * Grants `s3:PutObject` on `<agentPrefix>${aws:userid}/*`: for an instance role
   * `aws:userid` is `ROLEID:i-...`, so each instance writes into its own folder and
   * cannot read, list, overwrite another's or delete anything. Also grants the
   * `kms:GenerateDataKey` and `kms:Decrypt` (multipart uploads) that an SSE-KMS
   * upload needs, only through S3 and only for this bucket.
   *
   * @param grantee the instance role (or any principal whose sessions are per instance)
   */
  public grantAgentWrite(grantee: iam.IGrantable): iam.Grant {
    const objects = this.bucket.arnForObjects(`${this.agentPrefix}\${aws:userid}/*`);
    const put = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:PutObject'],
      resourceArns: [objects],
      resource: this.bucket,
    });
    const encrypt = this.grantKeyThroughS3(grantee, ['kms:GenerateDataKey', 'kms:Decrypt']);
    return put.combine(encrypt);
  }

  /**
   * Lets a processing principal list and read telemetry.
   *
   * @param grantee the principal that processes telemetry
   * @param keyPrefix only objects below this prefix
   * @default - every object in the store
   */
  public grantRead(grantee: iam.IGrantable, keyPrefix?: string): iam.Grant {
    const prefix = keyPrefix ?? '';
    const read = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:GetObject'],
      resourceArns: [this.bucket.arnForObjects(`${prefix}*`)],
      resource: this.bucket,
    });
    const list = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [this.bucket.bucketArn],
      resource: this.bucket,
      ...(prefix ? { conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } } } : {}),
    });
    const decrypt = this.grantKeyThroughS3(grantee, ['kms:Decrypt']);
    return read.combine(list).combine(decrypt);
  }

  private grantKeyThroughS3(grantee: iam.IGrantable, actions: string[]): iam.Grant {
    // The store's bucket uses S3 Bucket Keys: the encryption context is the bucket.
    return grantKeyThroughS3(grantee, actions, { key: this.encryptionKey, bucket: this.bucket });
  }

  /**
   * Uploads without encryption headers get the bucket default (this key). Explicit
   * headers that name another algorithm, another key, the AWS-managed `aws/s3` key
   * (aws:kms without a key id) or a customer-provided key are denied.
   */
  private denyUploadsNotEncryptedWithKey(bucket: s3.Bucket): void {
    const deny = (sid: string, conditions: Record<string, Record<string, unknown>>) =>
      bucket.addToResourcePolicy(new iam.PolicyStatement({
        sid,
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject'],
        resources: [bucket.arnForObjects('*')],
        conditions,
      }));
    // A negated operator matches when the header is absent, so each denial also requires
    // the header to be present: otherwise default-encrypted uploads and UploadPart (which
    // carries no encryption headers) would be denied too.
    deny('DenyEncryptionOtherThanKms', {
      StringNotEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
      Null: { 's3:x-amz-server-side-encryption': 'false' },
    });
    deny('DenyOtherKmsKeys', {
      StringNotEquals: { 's3:x-amz-server-side-encryption-aws-kms-key-id': this.encryptionKey.keyArn },
      Null: { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'false' },
    });
    deny('DenyAwsManagedKey', {
      Null: {
        's3:x-amz-server-side-encryption': 'false',
        's3:x-amz-server-side-encryption-aws-kms-key-id': 'true',
      },
    });
    deny('DenyCustomerProvidedKeys', {
      Null: { 's3:x-amz-server-side-encryption-customer-algorithm': 'false' },
    });
  }

  private createKey(removalPolicy: RemovalPolicy): kms.IKey {
    const key = new kms.Key(this, 'Key', {
      description: `Encrypts agent telemetry in ${this.node.path}`,
      enableKeyRotation: true,
      removalPolicy,
    });
    limitGrantsToAwsResources(key);
    return key;
  }

  private createAccessLogsBucket(
    retention: Duration,
    noncurrentVersionRetention: Duration,
    removalPolicy: RemovalPolicy,
    eventBridgeNotifications: boolean,
  ): s3.IBucket {
    const logs = new s3.Bucket(this, 'AccessLogs', {
      // S3 server access logging supports only SSE-S3 default encryption on its target bucket
      // (Amazon S3 User Guide, "Enabling Amazon S3 server access logging"), nor Object Lock.
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: expiryRules(retention, noncurrentVersionRetention),
      removalPolicy,
    });
    if (eventBridgeNotifications) sendEventsToEventBridge(logs);
    acknowledgeNagFindings(cfnResourceOf(logs),
      ...['AwsSolutions-S1', 'NIST.800.53.R5-S3BucketLoggingEnabled', 'HIPAA.Security-S3BucketLoggingEnabled', 'PCI.DSS.321-S3BucketLoggingEnabled']
        .map((rule) => ({
          rule,
          reason: 'This is the server access log bucket of the telemetry store. The Amazon S3 User Guide (Enabling Amazon S3 server access logging) says a target bucket should not have server access logging enabled, and logging into itself causes an infinite loop of logs.',
        })),
      ...['NIST.800.53.R5-S3DefaultEncryptionKMS', 'HIPAA.Security-S3DefaultEncryptionKMS', 'PCI.DSS.321-S3DefaultEncryptionKMS']
        .map((rule) => ({
          rule,
          reason: 'The Amazon S3 User Guide (Enabling Amazon S3 server access logging) allows default encryption on a target bucket only with SSE-S3 (AES-256): default SSE-KMS is not supported there. Pass accessLogsBucket to use a log bucket of your own.',
        })),
      ...replicationAcknowledgments(
        'Access logs of the telemetry bucket expire on their own lifecycle; cross-region replication of them is a disaster-recovery choice each organisation makes for itself.',
      ),
    );
    return logs;
  }
}

/**
 * Expiry of current objects, of noncurrent versions and of the delete markers left
 * behind, plus cleanup of abandoned multipart uploads. S3 does not allow
 * `expiredObjectDeleteMarker` in a rule that also expires by days, hence two rules.
 */
function expiryRules(retention: Duration, noncurrentVersionRetention: Duration): s3.LifecycleRule[] {
  return [
    {
      id: 'expire-after-retention',
      expiration: retention,
      noncurrentVersionExpiration: noncurrentVersionRetention,
      abortIncompleteMultipartUploadAfter: Duration.days(1),
    },
    {
      id: 'remove-expired-delete-markers',
      expiredObjectDeleteMarker: true,
    },
  ];
}

/**
 * Object events to EventBridge, set on the bucket itself: `eventBridgeEnabled` of aws-cdk-lib
 * would add a custom resource (and its function) to do the same.
 */
function sendEventsToEventBridge(bucket: s3.Bucket): void {
  (bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = { eventBridgeConfiguration: { eventBridgeEnabled: true } };
}

function replicationAcknowledgments(reason: string) {
  return ['NIST.800.53.R5-S3BucketReplicationEnabled', 'HIPAA.Security-S3BucketReplicationEnabled', 'PCI.DSS.321-S3BucketReplicationEnabled']
    .map((rule) => ({ rule, reason }));
}

/** Letters, digits and `!_.'()-` segments, each ending in `/`: no wildcards, no policy variables. */
const KEY_PREFIX = /^(?:[A-Za-z0-9!_'()-][A-Za-z0-9!_.'()-]*\/)+$/;
const KEY_PREFIX_ALLOWED = "one or more segments of letters, digits and !_.'()- (not starting with '.'), each ending in '/', at most 256 characters";

function validateKeyPrefix(v: PropsValidator, prop: string, value: string | undefined): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  v.require(KEY_PREFIX.test(value) && value.length <= 256, prop, value, KEY_PREFIX_ALLOWED);
}

function validateProps(scope: Construct, props: TelemetryStoreProps): void {
  const v = new PropsValidator(scope);
  v.wholeDays('retention', props.retention, 1, 3650);
  v.wholeDays('noncurrentVersionRetention', props.noncurrentVersionRetention, 1, 365);
  v.wholeDays('accessLogsRetention', props.accessLogsRetention, 1, 3650);
  const retentionDays = props.retention && !props.retention.isUnresolved() ? props.retention.toDays({ integral: false }) : 30;
  v.wholeDays('objectLockRetention', props.objectLockRetention, 1, Math.floor(retentionDays));
  validateKeyPrefix(v, 'agentPrefix', props.agentPrefix);
  validateKeyPrefix(v, 'accessLogsPrefix', props.accessLogsPrefix);
  v.require(
    !(props.accessLogsBucket && props.accessLogsRetention),
    'accessLogsRetention',
    props.accessLogsRetention,
    'only when the log bucket is created here: leave it unset when you pass accessLogsBucket',
  );
  v.throwIfInvalid();
}
