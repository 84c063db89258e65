import { App, Duration, Lazy, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AgentFleetErrors, TelemetryStore, TelemetryStoreProps } from '../../lib';
import { acknowledgeNagFindings, cfnResourceOf } from '../../lib/core/nag';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const VIA_S3 = { 'Fn::Join': ['', ['s3.eu-west-1.', { Ref: 'AWS::URLSuffix' }]] };

function storeStack(props?: TelemetryStoreProps, app = new App()) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const store = new TelemetryStore(stack, 'Telemetry', props);
  return { stack, store, template: () => Template.fromStack(stack) };
}

function instanceRole(stack: Stack, id = 'InstanceRole') {
  return new iam.Role(stack, id, { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
}

function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } } | iam.IRole | s3.IBucket | kms.IKey) {
  return stack.getLogicalId(cfnResourceOf(construct as never) as never);
}

function bucketPolicyStatements(template: Template, bucketLogicalId: string): any[] {
  const policies = template.findResources('AWS::S3::BucketPolicy', {
    Properties: { Bucket: { Ref: bucketLogicalId } },
  });
  const [policy] = Object.values(policies);
  return policy.Properties.PolicyDocument.Statement;
}

describe('TelemetryStore defaults', () => {
  test('the bucket is private, versioned, owner-enforced and encrypted with a rotating customer-managed key', () => {
    // GIVEN / WHEN
    const { stack, store, template } = storeStack();

    // THEN
    const t = template();
    const keyId = logicalId(stack, store.encryptionKey as kms.Key);
    t.resourceCountIs('AWS::KMS::Key', 1);
    t.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    t.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{
          BucketKeyEnabled: true,
          ServerSideEncryptionByDefault: {
            SSEAlgorithm: 'aws:kms',
            KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] },
          },
        }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      VersioningConfiguration: { Status: 'Enabled' },
    });
  });

  test('objects expire after 30 days, noncurrent versions after 7, delete markers and incomplete uploads are cleaned up', () => {
    const { stack, store, template } = storeStack();
    template().hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: [
          {
            Id: 'expire-after-retention',
            Status: 'Enabled',
            ExpirationInDays: 30,
            NoncurrentVersionExpiration: { NoncurrentDays: 7 },
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
          },
          { Id: 'remove-expired-delete-markers', Status: 'Enabled', ExpiredObjectDeleteMarker: true },
        ],
      },
      LoggingConfiguration: {
        DestinationBucketName: { Ref: logicalId(stack, store.accessLogsBucket as s3.Bucket) },
        LogFilePrefix: 'telemetry-access-logs/',
      },
    });
    expect(store.retention.toDays()).toBe(30);
    expect(store.agentPrefix).toBe('agents/');
  });

  test('bucket, key and log bucket are retained when they leave the stack', () => {
    const { template } = storeStack();
    const t = template();
    for (const type of ['AWS::S3::Bucket', 'AWS::KMS::Key']) {
      const resources = Object.values(t.findResources(type));
      expect(resources.length).toBeGreaterThan(0);
      for (const resource of resources) {
        expect(resource).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
      }
    }
    expect(Object.keys(t.findResources('AWS::S3::Bucket'))).toHaveLength(2);
  });

  test('the bucket policy denies plain HTTP, TLS below 1.2 and uploads not encrypted with the store key', () => {
    const { stack, store, template } = storeStack();
    const statements = bucketPolicyStatements(template(), logicalId(stack, store.bucket as s3.Bucket));
    const keyArn = { 'Fn::GetAtt': [logicalId(stack, store.encryptionKey as kms.Key), 'Arn'] };
    const objects = { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId(stack, store.bucket as s3.Bucket), 'Arn'] }, '/*']] };

    expect(statements).toEqual(expect.arrayContaining([
      expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
      {
        Sid: 'DenyEncryptionOtherThanKms', Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: objects,
        Condition: { StringNotEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' }, Null: { 's3:x-amz-server-side-encryption': 'false' } },
      },
      {
        Sid: 'DenyOtherKmsKeys', Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: objects,
        Condition: {
          StringNotEquals: { 's3:x-amz-server-side-encryption-aws-kms-key-id': keyArn },
          Null: { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'false' },
        },
      },
      {
        Sid: 'DenyAwsManagedKey', Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: objects,
        Condition: { Null: { 's3:x-amz-server-side-encryption': 'false', 's3:x-amz-server-side-encryption-aws-kms-key-id': 'true' } },
      },
      {
        Sid: 'DenyCustomerProvidedKeys', Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: objects,
        Condition: { Null: { 's3:x-amz-server-side-encryption-customer-algorithm': 'false' } },
      },
    ]));
    // Nothing in the policy allows anyone anything.
    expect(statements.filter((s) => s.Effect === 'Allow')).toEqual([]);
  });

  test('the encryption denials let default-encrypted and multipart uploads through and stop every other key', () => {
    // GIVEN the four PutObject denials, evaluated the way IAM evaluates their operators
    const { stack, store, template } = storeStack();
    const keyArn = stack.resolve(store.encryptionKey.keyArn);
    const denials = bucketPolicyStatements(template(), logicalId(stack, store.bucket as s3.Bucket))
      .filter((s) => s.Action === 's3:PutObject');
    const denied = (headers: Record<string, unknown>) => denials.some((s) => conditionsMatch(s.Condition, headers));
    const SSE = 's3:x-amz-server-side-encryption';
    const KEY = 's3:x-amz-server-side-encryption-aws-kms-key-id';
    const SSEC = 's3:x-amz-server-side-encryption-customer-algorithm';

    // THEN
    expect(denied({})).toBe(false); // no headers: bucket default = the store key; also UploadPart
    expect(denied({ [SSE]: 'aws:kms', [KEY]: keyArn })).toBe(false);
    expect(denied({ [SSE]: 'AES256' })).toBe(true);
    expect(denied({ [SSE]: 'aws:kms:dsse', [KEY]: keyArn })).toBe(true);
    expect(denied({ [SSE]: 'aws:kms' })).toBe(true); // would use the AWS-managed aws/s3 key
    expect(denied({ [SSE]: 'aws:kms', [KEY]: 'arn:aws:kms:eu-west-1:111122223333:key/other' })).toBe(true);
    expect(denied({ [KEY]: 'arn:aws:kms:eu-west-1:111122223333:key/other' })).toBe(true);
    expect(denied({ [SSEC]: 'AES256' })).toBe(true);
  });

  test('the log bucket is private, SSE-S3, owner-enforced, accepts log delivery only from the store, and expires after a year', () => {
    const { stack, store, template } = storeStack();
    const logsId = logicalId(stack, store.accessLogsBucket as s3.Bucket);
    const t = template();
    t.hasResource('AWS::S3::Bucket', {
      Properties: {
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        VersioningConfiguration: { Status: 'Enabled' },
        LifecycleConfiguration: {
          Rules: [
            Match.objectLike({ ExpirationInDays: 365, NoncurrentVersionExpiration: { NoncurrentDays: 7 } }),
            Match.objectLike({ ExpiredObjectDeleteMarker: true }),
          ],
        },
        LoggingConfiguration: Match.absent(),
        AccessControl: Match.absent(),
      },
    });
    expect(t.toJSON().Resources[logsId].Properties.LifecycleConfiguration).toBeDefined();
    const statements = bucketPolicyStatements(t, logsId);
    expect(statements).toEqual(expect.arrayContaining([{
      Effect: 'Allow',
      Principal: { Service: 'logging.s3.amazonaws.com' },
      Action: 's3:PutObject',
      Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logsId, 'Arn'] }, '/telemetry-access-logs/*']] },
      Condition: {
        ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [logicalId(stack, store.bucket as s3.Bucket), 'Arn'] } },
        StringEquals: { 'aws:SourceAccount': ENV.account },
      },
    }]));
  });

  test('log delivery never uses ACLs, whatever the app sets for the S3 log-delivery feature flag', () => {
    const app = new App({ context: { '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': false } });
    const { template } = storeStack({}, app);
    const t = template();
    t.resourcePropertiesCountIs('AWS::S3::Bucket', { AccessControl: Match.anyValue() }, 0);
    t.resourcePropertiesCountIs('AWS::S3::Bucket', { OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] } }, 2);
  });
});

describe('TelemetryStore props', () => {
  test('retention sets the expiry of telemetry, accessLogsRetention that of the logs', () => {
    const { template } = storeStack({
      retention: Duration.days(90),
      noncurrentVersionRetention: Duration.days(2),
      accessLogsRetention: Duration.days(400),
    });
    const t = template();
    t.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90, NoncurrentVersionExpiration: { NoncurrentDays: 2 } })]) },
    });
    t.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 400, NoncurrentVersionExpiration: { NoncurrentDays: 2 } })]) },
    });
  });

  test('removalPolicy DESTROY applies to bucket, key and log bucket', () => {
    const { template } = storeStack({ removalPolicy: RemovalPolicy.DESTROY });
    const t = template();
    for (const type of ['AWS::S3::Bucket', 'AWS::KMS::Key']) {
      for (const resource of Object.values(t.findResources(type))) {
        expect(resource).toMatchObject({ DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
      }
    }
  });

  test('a key you bring encrypts the bucket and no key is created', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const key = kms.Key.fromKeyArn(stack, 'Imported', 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab');
    const store = new TelemetryStore(stack, 'Telemetry', { encryptionKey: key });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::KMS::Key', 0);
    expect(store.encryptionKey).toBe(key);
    t.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { KMSMasterKeyID: key.keyArn } }] },
    });
  });

  test('a log bucket you bring receives the logs under the given prefix and none is created', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const logs = s3.Bucket.fromBucketName(stack, 'CentralLogs', 'org-central-access-logs');
    const store = new TelemetryStore(stack, 'Telemetry', { accessLogsBucket: logs, accessLogsPrefix: 'fleet/telemetry/' });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::S3::Bucket', 1);
    expect(store.accessLogsBucket).toBe(logs);
    t.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: 'org-central-access-logs', LogFilePrefix: 'fleet/telemetry/' },
    });
  });

  test('agentPrefix moves the agents\' folders', () => {
    const { stack, store } = storeStack({ agentPrefix: 'fleet/prod/' });
    store.grantAgentWrite(instanceRole(stack));
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({
        Action: 's3:PutObject',
        Resource: { 'Fn::Join': ['', [Match.anyValue(), '/fleet/prod/${aws:userid}/*']] },
      })]) },
    });
  });

  test('token values are left to deploy time', () => {
    expect(() => storeStack({
      agentPrefix: Lazy.string({ produce: () => 'agents/' }),
      retention: Duration.days(Token.asNumber(Lazy.number({ produce: () => 30 }))),
    })).not.toThrow();
  });
});

describe('TelemetryStore grants', () => {
  test('grantAgentWrite allows PutObject only under <prefix>${aws:userid}/ and KMS only through S3 for this bucket', () => {
    // GIVEN
    const { stack, store } = storeStack();
    const role = instanceRole(stack);

    // WHEN
    store.grantAgentWrite(role);

    // THEN
    const bucketArn = { 'Fn::GetAtt': [logicalId(stack, store.bucket as s3.Bucket), 'Arn'] };
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::IAM::Policy', 1);
    t.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: logicalId(stack, role as iam.Role) }],
      PolicyDocument: {
        Statement: [
          {
            Effect: 'Allow',
            Action: 's3:PutObject',
            Resource: { 'Fn::Join': ['', [bucketArn, '/agents/${aws:userid}/*']] },
          },
          {
            Effect: 'Allow',
            Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
            Resource: { 'Fn::GetAtt': [logicalId(stack, store.encryptionKey as kms.Key), 'Arn'] },
            Condition: {
              StringEquals: {
                'kms:ViaService': VIA_S3,
                'kms:EncryptionContext:aws:s3:arn': bucketArn,
              },
            },
          },
        ],
      },
    });
    // Nothing about the bucket policy changed for a same-account grantee.
    const statements = bucketPolicyStatements(t, logicalId(stack, store.bucket as s3.Bucket));
    expect(statements.filter((s) => s.Effect === 'Allow')).toEqual([]);
  });

  test('grantAgentWrite never grants read, list, delete or ACL actions', () => {
    const { stack, store } = storeStack();
    store.grantAgentWrite(instanceRole(stack));
    const actions = Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy'))
      .flatMap((p: any) => p.Properties.PolicyDocument.Statement.flatMap((s: any) => [s.Action].flat()));
    expect(actions.sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey', 's3:PutObject']);
  });

  test('grantRead allows get and list of everything, and decrypt through S3', () => {
    const { stack, store } = storeStack();
    const role = new iam.Role(stack, 'Processor', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    store.grantRead(role);
    const bucketArn = { 'Fn::GetAtt': [logicalId(stack, store.bucket as s3.Bucket), 'Arn'] };
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [bucketArn, '/*']] } },
          { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn },
          Match.objectLike({ Effect: 'Allow', Action: 'kms:Decrypt', Condition: Match.objectLike({ StringEquals: Match.objectLike({ 'kms:ViaService': VIA_S3 }) }) }),
        ],
      },
    });
  });

  test('grantRead with a prefix narrows both get and list to it', () => {
    const { stack, store } = storeStack();
    const role = new iam.Role(stack, 'Processor', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    store.grantRead(role, 'reports/');
    const bucketArn = { 'Fn::GetAtt': [logicalId(stack, store.bucket as s3.Bucket), 'Arn'] };
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [bucketArn, '/reports/*']] } },
          { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': ['reports/*'] } } },
        ]),
      },
    });
  });

  test('a grantee in another account is also allowed by the bucket policy, still only under its own prefix', () => {
    const { stack, store } = storeStack();
    const role = iam.Role.fromRoleArn(stack, 'Other', 'arn:aws:iam::444455556666:role/fleet-instance', { mutable: false });
    store.grantAgentWrite(role);
    const statements = bucketPolicyStatements(Template.fromStack(stack), logicalId(stack, store.bucket as s3.Bucket));
    expect(statements).toEqual(expect.arrayContaining([expect.objectContaining({
      Effect: 'Allow',
      Action: 's3:PutObject',
      Principal: { AWS: 'arn:aws:iam::444455556666:role/fleet-instance' },
      Resource: { 'Fn::Join': ['', [expect.anything(), '/agents/${aws:userid}/*']] },
    })]));
  });
});

describe('TelemetryStore validation', () => {
  test.each([
    ['retention', { retention: Duration.days(0) }, '0 days', 'a whole number of days from 1 to 3650'],
    ['retention', { retention: Duration.days(3651) }, '3651 days', 'a whole number of days from 1 to 3650'],
    ['retention', { retention: Duration.hours(36) }, '1 day 12 hours', 'a whole number of days from 1 to 3650'],
    ['noncurrentVersionRetention', { noncurrentVersionRetention: Duration.days(366) }, '366 days', 'a whole number of days from 1 to 365'],
    ['accessLogsRetention', { accessLogsRetention: Duration.minutes(5) }, '5 minutes', 'a whole number of days from 1 to 3650'],
    ['agentPrefix', { agentPrefix: 'agents' }, '"agents"', "ending in '/'"],
    ['agentPrefix', { agentPrefix: '/agents/' }, '"/agents/"', "ending in '/'"],
    ['agentPrefix', { agentPrefix: '' }, '""', "ending in '/'"],
    ['agentPrefix', { agentPrefix: 'a*/' }, '"a*/"', "ending in '/'"],
    ['agentPrefix', { agentPrefix: '${aws:username}/' }, '"${aws:username}/"', "ending in '/'"],
    ['agentPrefix', { agentPrefix: '../' }, '"../"', "ending in '/'"],
    ['agentPrefix', { agentPrefix: 'a//b/' }, '"a//b/"', "ending in '/'"],
    ['accessLogsPrefix', { accessLogsPrefix: 'logs' }, '"logs"', "ending in '/'"],
  ] as Array<[string, TelemetryStoreProps, string, string]>)('fails when %s is %s', (prop, props, shown, allowed) => {
    expect(() => storeStack(props)).toThrow(`${prop}: got ${shown}; allowed: `);
    expect(() => storeStack(props)).toThrow(allowed);
  });

  test('fails when accessLogsRetention comes with a log bucket of your own', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack');
    const logs = s3.Bucket.fromBucketName(stack, 'Logs', 'mine');
    expect(() => new TelemetryStore(stack, 'T', { accessLogsBucket: logs, accessLogsRetention: Duration.days(30) }))
      .toThrow(/accessLogsRetention: got 30 days; allowed: only when the log bucket is created here/);
  });

  test('reports every bad prop in one error, recognisable as the library\'s', () => {
    let caught: unknown;
    try {
      storeStack({ retention: Duration.days(0), agentPrefix: 'x', noncurrentVersionRetention: Duration.days(0) });
    } catch (e) {
      caught = e;
    }
    expect(AgentFleetErrors.isValidationError(caught)).toBe(true);
    expect(AgentFleetErrors.isValidationError(new Error('other'))).toBe(false);
    const message = (caught as Error).message;
    expect(message).toContain("Invalid props for TelemetryStore 'Stack/Telemetry'");
    expect(message.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(3);
  });
});

describe('TelemetryStore compliance', () => {
  const build = (app: App) => {
    const stack = new Stack(app, 'Stack', { env: ENV });
    new TelemetryStore(stack, 'Telemetry');
    return stack;
  };

  test('cdk-nag 3: AwsSolutions, NIST 800-53 R5, HIPAA and PCI DSS find nothing unacknowledged', () => {
    expect(nagFindings(build(new App()))).toEqual([]);
  });

  test('cdk-nag 2 sees the same acknowledgments and finds nothing either', () => {
    expect(nagV2Findings(build)).toEqual([]);
  });

  test('every acknowledgment is on one resource, names one rule and gives a reason', () => {
    const template = Template.fromStack(build(new App())).toJSON();
    const acks = Object.entries(template.Resources).flatMap(([id, r]: [string, any]) =>
      (r.Metadata?.cdk_nag?.rules_to_suppress ?? []).map((s: any) => ({ logicalId: id, ...s })));
    expect(acks.length).toBeGreaterThan(0);
    for (const ack of acks) {
      expect(ack.id).toMatch(/^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security|PCI\.DSS\.321)-[A-Za-z0-9]+$/);
      expect(ack.reason.length).toBeGreaterThan(40);
    }
    // Only the two buckets carry acknowledgments; the key and policies need none.
    expect(new Set(acks.map((a: any) => template.Resources[a.logicalId].Type))).toEqual(new Set(['AWS::S3::Bucket']));
    // The telemetry bucket only waives replication; the log bucket also logging and KMS.
    const bucketId = stackLogicalIdOfStore(template);
    expect(acks.filter((a: any) => a.logicalId === bucketId).map((a: any) => a.id).sort()).toEqual([
      'HIPAA.Security-S3BucketReplicationEnabled', 'NIST.800.53.R5-S3BucketReplicationEnabled', 'PCI.DSS.321-S3BucketReplicationEnabled',
    ]);
  });

  test('with the agent grant, only the findings that belong to the grantee\'s own policy remain', () => {
    const stack = build(new App());
    const store = stack.node.findChild('Telemetry') as TelemetryStore;
    const role = instanceRole(stack);
    store.grantAgentWrite(role);
    const findings = nagFindings(stack).map((f) => f.rule).sort();
    expect(findings).toEqual([
      `AwsSolutions-IAM5[Resource::<${logicalId(stack, store.bucket as s3.Bucket)}.Arn>/agents/<aws:userid>/*]`,
      'HIPAA.Security-IAMNoInlinePolicy',
      'NIST.800.53.R5-IAMNoInlinePolicy',
      'PCI.DSS.321-IAMNoInlinePolicy',
    ]);
    // A user acknowledges exactly those on their role's policy.
    const policy = cfnResourceOf(role.node.findChild('DefaultPolicy'));
    expect(policy).toBeDefined();
  });

  test('snapshot, with asset hashes normalised', () => {
    expect(normalizedTemplate(build(new App()))).toMatchSnapshot();
  });
});

test('acknowledgments are refused without a real reason', () => {
  const stack = new Stack(new App(), 'Stack');
  const bucket = new s3.Bucket(stack, 'B');
  expect(() => acknowledgeNagFindings(cfnResourceOf(bucket), { rule: 'AwsSolutions-S1', reason: 'because' }))
    .toThrow(/needs a real reason/);
});

function stackLogicalIdOfStore(template: any): string {
  const [id] = Object.entries(template.Resources)
    .filter(([, r]: [string, any]) => r.Type === 'AWS::S3::Bucket' && r.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].BucketKeyEnabled)
    .map(([logical]) => logical);
  return id;
}

/**
 * IAM's evaluation of the condition operators the store's policy uses, for one request.
 * Every operator must match and, within an operator, every key.
 */
function conditionsMatch(condition: Record<string, Record<string, unknown>>, request: Record<string, unknown>): boolean {
  return Object.entries(condition).every(([operator, keys]) => Object.entries(keys).every(([key, expected]) => {
    const present = key in request;
    switch (operator) {
      case 'StringNotEquals': // a missing key matches: nothing equals it
        return !present || JSON.stringify(request[key]) !== JSON.stringify(expected);
      case 'Null':
        return String(!present) === expected;
      default:
        throw new Error(`operator ${operator} not modelled`);
    }
  }));
}
