import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { limitGrantsToAwsResources } from '../core/control-tower';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';

/** The backend's key: registry, logs, dead letters and the alarm topic. */
export function createBackendKey(backend: Construct, removalPolicy: RemovalPolicy): kms.IKey {
  const key = new kms.Key(backend, 'Key', {
    description: `Encrypts the agent registry, logs and dead letters of ${backend.node.path}`,
    enableKeyRotation: true,
    removalPolicy,
  });
  limitGrantsToAwsResources(key);
  const stack = Stack.of(backend);
  key.addToResourcePolicy(new iam.PolicyStatement({
    sid: 'AllowCloudWatchLogsOfThisAccount',
    principals: [new iam.ServicePrincipal(`logs.${stack.region}.${stack.urlSuffix}`)],
    actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:DescribeKey'],
    resources: ['*'],
    conditions: {
      ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${stack.partition}:logs:${stack.region}:${stack.account}:log-group:*` },
    },
  }));
  // CloudWatch alarms publish to the alarm topic, which this key encrypts.
  key.addToResourcePolicy(new iam.PolicyStatement({
    sid: 'AllowCloudWatchAlarmsToPublish',
    principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
    actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
    resources: ['*'],
    conditions: { StringEquals: { 'kms:ViaService': `sns.${stack.region}.${stack.urlSuffix}` } },
  }));
  return key;
}

/** The agent registry table, encrypted with the backend's key. */
export function createRegistry(backend: Construct, removalPolicy: RemovalPolicy, encryptionKey: kms.IKey): dynamodb.Table {
  const table = new dynamodb.Table(backend, 'Registry', {
    partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: encryptionKey,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    // Refreshed by every heartbeat to now + cleanupAfter; the sweep removes expired records on time.
    timeToLiveAttribute: 'expiresAt',
    deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
    removalPolicy,
  });
  acknowledgeNagFindings(cfnResourceOf(table),
    ...['NIST.800.53.R5-DynamoDBInBackupPlan', 'HIPAA.Security-DynamoDBInBackupPlan', 'PCI.DSS.321-DynamoDBInBackupPlan'].map((rule) => ({
      rule,
      reason: 'The registry has point-in-time recovery (35 days) and is derived state: every live agent re-registers within one heartbeat interval. An AWS Backup plan adds nothing a restore would need.',
    })),
  );
  return table;
}

/** KMS use of the registry's key, only through DynamoDB. */
export function registryKeyStatements(backend: Construct, encryptionKey: kms.IKey): iam.PolicyStatement[] {
  const stack = Stack.of(backend);
  return [new iam.PolicyStatement({
    actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
    resources: [encryptionKey.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${stack.region}.${stack.urlSuffix}` } },
  })];
}
