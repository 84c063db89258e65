/*
 * No instance role (nor the Default Host Management role) may use a bucket key directly:
 * every KMS grant is through S3 for that bucket only. The roles' policies are evaluated the
 * way IAM evaluates them, for direct calls, calls through S3 for the bucket, for another
 * bucket and through another service.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AgentAutoConfiguration, AgentFleet, AgentInstallDocument, AgentPackage, PackageFormat } from '../../lib';
import { allowed, ResolvedStatement, resolver } from '../helpers/iam-eval';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const KMS_ACTIONS = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:Encrypt', 'kms:ReEncryptFrom', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:CreateGrant'];
const VIA_S3 = 's3.eu-west-1.amazonaws.com';

const rpm = () => AgentPackage.fromUrl('https://downloads.example.com/agent-1.2.3.x86_64.rpm', {
  format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent',
});

/** Every identity-policy statement of a role, resolved, and the key-policy statements naming it. */
function policiesOf(stack: Stack, role: iam.IRole) {
  const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, any> };
  const { resolve, arnOf } = resolver(ENV)(template);
  const roleId = stack.getLogicalId(role.node.defaultChild as never);
  const names = (refs: unknown) => JSON.stringify(refs ?? []).includes(`"Ref":"${roleId}"`);
  const identity: ResolvedStatement[] = [];
  const keyPolicy: any[] = [];
  for (const resource of Object.values(template.Resources)) {
    const p = resource.Properties ?? {};
    if ((resource.Type === 'AWS::IAM::Policy' || resource.Type === 'AWS::IAM::ManagedPolicy') && names(p.Roles)) {
      identity.push(...resolve(p.PolicyDocument.Statement));
    }
    if (resource.Type === 'AWS::IAM::Role' && resource === template.Resources[roleId]) {
      for (const inline of p.Policies ?? []) identity.push(...resolve(inline.PolicyDocument.Statement));
    }
    if (resource.Type === 'AWS::KMS::Key') {
      keyPolicy.push(...p.KeyPolicy.Statement.filter((s: any) => JSON.stringify(s.Principal).includes(roleId)));
    }
  }
  return { identity, keyPolicy, arnOf };
}

function fleetWithRoles() {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const fleet = new AgentFleet(stack, 'Fleet', {
    agentName: 'security-agent', packages: [rpm()], imds: { hopLimit: 2 },
    autoConfiguration: { enableDefaultHostManagement: true },
  });
  const instanceRole = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
  fleet.grantInstanceRole(instanceRole);
  return { stack, fleet, roles: { 'the instance role': instanceRole, 'the Default Host Management role': fleet.autoConfiguration!.defaultHostManagementRole! } };
}

describe('KMS grants to the roles instances run with', () => {
  const { stack, fleet, roles } = fleetWithRoles();
  const keyId = stack.getLogicalId(fleet.telemetry.encryptionKey.node.defaultChild as never);
  const bucketId = stack.getLogicalId(fleet.telemetry.bucket.node.defaultChild as never);

  describe.each(Object.entries(roles))('%s', (_name, role) => {
    const { identity, keyPolicy, arnOf } = policiesOf(stack, role);
    const key = arnOf(keyId);
    const bucket = arnOf(bucketId);
    const can = (action: string, context: Record<string, string>) => allowed(identity, { action, resource: key, context });

    test('has KMS grants at all (what it needs to write telemetry and association output)', () => {
      expect(can('kms:GenerateDataKey', { 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': bucket })).toBe(true);
      expect(can('kms:Decrypt', { 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': bucket })).toBe(true);
    });

    test.each(KMS_ACTIONS)('cannot call %s on the telemetry key directly', (action) => {
      expect(can(action, {})).toBe(false);
      expect(can(action, { 'kms:EncryptionContext:aws:s3:arn': bucket })).toBe(false);
    });

    test('cannot use the key through S3 for another bucket, nor through another service', () => {
      expect(can('kms:GenerateDataKey', { 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': 'arn:aws:s3:::attacker-bucket' })).toBe(false);
      expect(can('kms:GenerateDataKey', { 'kms:ViaService': VIA_S3 })).toBe(false);
      expect(can('kms:Decrypt', { 'kms:ViaService': 'sqs.eu-west-1.amazonaws.com', 'kms:EncryptionContext:aws:s3:arn': bucket })).toBe(false);
    });

    test('every statement with a KMS action is conditioned on S3 and this bucket', () => {
      const kmsStatements = identity.filter((s) => [s.Action].flat().some((a) => a.toLowerCase().startsWith('kms:') || a === '*'));
      expect(kmsStatements.length).toBeGreaterThan(0);
      for (const s of kmsStatements) {
        const keys = Object.values(s.Condition ?? {}).flatMap((c) => Object.keys(c));
        expect(keys).toEqual(expect.arrayContaining(['kms:ViaService', 'kms:EncryptionContext:aws:s3:arn']));
      }
      expect(keyPolicy).toEqual([]); // same account: the key policy delegates to IAM and names no role
    });
  });
});

describe('association output to a bucket of yours, encrypted with your key', () => {
  test('the key only through S3, for objects below the output prefix (or the bucket, with Bucket Keys)', () => {
    // GIVEN a bucket that may not use S3 Bucket Keys: the context is then each object's ARN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const outputKey = new kms.Key(stack, 'OutputKey', { enableKeyRotation: true });
    const outputBucket = new s3.Bucket(stack, 'Output', { encryptionKey: outputKey, enforceSSL: true });
    const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm()] });
    const auto = new AgentAutoConfiguration(stack, 'Auto', { document, outputBucket, outputPrefix: 'runs/agent' });
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });

    // WHEN
    auto.grantInstanceRole(role);

    // THEN
    const { identity, arnOf } = policiesOf(stack, role);
    const key = arnOf(stack.getLogicalId(outputKey.node.defaultChild as never));
    const bucket = arnOf(stack.getLogicalId(outputBucket.node.defaultChild as never));
    const can = (context: Record<string, string>) => allowed(identity, { action: 'kms:GenerateDataKey', resource: key, context });
    expect(can({ 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': `${bucket}/runs/agent/i-0123456789abcdef0/x/stdout` })).toBe(true);
    expect(can({ 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': bucket })).toBe(true);
    expect(can({ 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': `${bucket}/elsewhere/secret` })).toBe(false);
    expect(can({ 'kms:ViaService': VIA_S3, 'kms:EncryptionContext:aws:s3:arn': 'arn:aws:s3:::other/runs/agent/x' })).toBe(false);
    expect(can({})).toBe(false);
  });
});
