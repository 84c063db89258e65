import { App, Duration, Lazy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AgentFleetErrors, AgentInstallDocument, AgentInstallDocumentProps, AgentPackage, AgentPackageOptions, PackageFormat } from '../../lib';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const HASH = 'ab'.repeat(32);

function options(overrides: Partial<AgentPackageOptions> = {}): AgentPackageOptions {
  return {
    format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
    sha256: HASH, version: '1.2.3', serviceName: 'agent', ...overrides,
  };
}

const rpm = () => AgentPackage.fromUrl('https://downloads.example.com/agent-1.2.3.x86_64.rpm', options());
const msi = () => AgentPackage.fromUrl('https://downloads.example.com/agent-1.2.3.msi', options({ format: PackageFormat.MSI, packageName: 'Security Agent' }));

function documentStack(props: Partial<AgentInstallDocumentProps> = {}, app = new App()) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const bucket = new s3.Bucket(stack, 'Packages', { encryption: s3.BucketEncryption.KMS, enforceSSL: true });
  const deb = AgentPackage.fromBucket(bucket, 'agent/1.2.3/agent_1.2.3_arm64.deb', options({ format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.ARM_64 }));
  const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm(), deb, msi()], ...props });
  return { stack, bucket, document };
}

function content(stack: Stack): any {
  const docs = Template.fromStack(stack).findResources('AWS::SSM::Document');
  return Object.values(docs)[0].Properties.Content;
}

/** The runCommand lines of a step, with tokens resolved to their CloudFormation form. */
function lines(stack: Stack, step: string): unknown[] {
  return content(stack).mainSteps.find((s: any) => s.name === step).inputs.runCommand;
}

describe('AgentInstallDocument', () => {
  test('is a schema 2.2 Command document whose every parameter is limited by allowedValues or an allowedPattern', () => {
    // GIVEN / WHEN
    const { stack } = documentStack();

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::SSM::Document', {
      DocumentType: 'Command', DocumentFormat: 'JSON', UpdateMethod: 'NewVersion',
    });
    const c = content(stack);
    expect(c.schemaVersion).toBe('2.2');
    expect(c.parameters).toEqual({
      action: expect.objectContaining({ type: 'String', default: 'Install', allowedValues: ['Install', 'Uninstall', 'Verify'] }),
      mode: expect.objectContaining({ type: 'String', default: 'ALL_INSTANCES', allowedValues: ['ALL_INSTANCES', 'TAGGED_ONLY'] }),
      tagKey: expect.objectContaining({ type: 'String', default: 'SecurityAgentManaged', allowedPattern: expect.any(String) }),
      proxyUrl: expect.objectContaining({ type: 'String', default: '', allowedPattern: expect.any(String) }),
    });
    for (const [name, parameter] of Object.entries<any>(c.parameters)) {
      expect([name, Boolean(parameter.allowedValues) !== Boolean(parameter.allowedPattern)]).toEqual([name, true]);
      if (parameter.allowedPattern) expect(new RegExp(parameter.allowedPattern).test(parameter.default)).toBe(true);
    }
  });

  test('has a Linux shell step and a Windows PowerShell step, each behind its platform precondition', () => {
    const { stack } = documentStack({ timeout: Duration.minutes(20) });
    expect(content(stack).mainSteps.map((s: any) => ({ action: s.action, name: s.name, precondition: s.precondition, timeout: s.inputs.timeoutSeconds }))).toEqual([
      { action: 'aws:runShellScript', name: 'manageAgentOnLinux', precondition: { StringEquals: ['platformType', 'Linux'] }, timeout: '1200' },
      { action: 'aws:runPowerShellScript', name: 'manageAgentOnWindows', precondition: { StringEquals: ['platformType', 'Windows'] }, timeout: '1200' },
    ]);
  });

  test('only the steps of the platforms it has packages for', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new AgentInstallDocument(stack, 'Install', { packages: [msi()] });
    expect(content(stack).mainSteps.map((s: any) => s.name)).toEqual(['manageAgentOnWindows']);
  });

  test('bakes package locations and hashes into the scripts; parameters appear only in the settings header', () => {
    const { stack, bucket } = documentStack();
    const linux = lines(stack, 'manageAgentOnLinux');
    expect(linux[0]).toBe('#!/usr/bin/env bash');
    expect(linux).toEqual(expect.arrayContaining([
      "AGENT_ACTION='{{ action }}'",
      "AGENT_MODE='{{ mode }}'",
      "AGENT_TAG_KEY='{{ tagKey }}'",
      "AGENT_PROXY_URL='{{ proxyUrl }}'",
      "AGENT_PACKAGES='RPM_X86_64 DEB_ARM64'",
      "  PKG_RPM_X86_64_SOURCE='https://downloads.example.com/agent-1.2.3.x86_64.rpm'",
      `  PKG_RPM_X86_64_SHA256='${HASH}'`,
      { 'Fn::Join': ['', ["  PKG_DEB_ARM64_SOURCE='s3://", { Ref: stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket) }, "/agent/1.2.3/agent_1.2.3_arm64.deb'"]] },
      "  PKG_DEB_ARM64_REGION='eu-west-1'",
    ]));
    const windows = lines(stack, 'manageAgentOnWindows');
    expect(windows).toContainEqual(`  'MSI_X86_64' = @{ Source = 'https://downloads.example.com/agent-1.2.3.msi'; Region = ''; Sha256 = '${HASH}'; Version = '1.2.3'; Name = 'Security Agent'; Service = 'agent' }`);

    // Every {{ }} reference is one whole header line: parameter values never land anywhere else.
    for (const step of ['manageAgentOnLinux', 'manageAgentOnWindows']) {
      const references = lines(stack, step).filter((l) => JSON.stringify(l).includes('{{'));
      expect(references).toHaveLength(4);
      for (const line of references) {
        expect(line).toMatch(/^(AGENT_[A-Z_]+=|\$Agent[A-Za-z]+ = )'\{\{ (action|mode|tagKey|proxyUrl) \}\}'$/);
      }
    }
  });

  test('stays well below the 64 KB limit of SSM documents', () => {
    const { stack } = documentStack();
    expect(JSON.stringify(content(stack)).length).toBeLessThan(60 * 1024);
  });

  test('tagKey sets the default of the tagKey parameter', () => {
    const { stack, document } = documentStack({ tagKey: 'Fleet:Agent' });
    expect(content(stack).parameters.tagKey.default).toBe('Fleet:Agent');
    expect(document.tagKey).toBe('Fleet:Agent');
  });

  test('grantPackageRead allows s3:GetObject on the package objects only, and kms:Decrypt for an encrypted bucket', () => {
    const { stack, bucket, document } = documentStack();
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });

    document.grantPackageRead(role);

    const bucketId = stack.getLogicalId(bucket.node.defaultChild as s3.CfnBucket);
    const keyId = stack.getLogicalId((bucket.encryptionKey as kms.Key).node.defaultChild as kms.CfnKey);
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketId, 'Arn'] }, '/agent/1.2.3/agent_1.2.3_arm64.deb']] } },
          { Effect: 'Allow', Action: 'kms:Decrypt', Resource: { 'Fn::GetAtt': [keyId, 'Arn'] } },
        ],
      },
    });
  });

  test('snapshot', () => {
    const { stack } = documentStack();
    expect(normalizedTemplate(stack)).toMatchSnapshot();
  });

  test('passes the cdk-nag packs (v3 and v2)', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new AgentInstallDocument(stack, 'Install', { packages: [rpm(), msi()] });
    expect(nagFindings(stack)).toEqual([]);
    expect(nagV2Findings((app) => {
      const s = new Stack(app, 'Stack', { env: ENV });
      new AgentInstallDocument(s, 'Install', { packages: [rpm(), msi()] });
      return s;
    })).toEqual([]);
  });
});

describe('AgentInstallDocument validation', () => {
  function fails(packages: AgentPackage[], props: Partial<AgentInstallDocumentProps> = {}): string {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    try {
      new AgentInstallDocument(stack, 'Install', { packages, ...props });
    } catch (err) {
      expect(AgentFleetErrors.isValidationError(err)).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected a validation error');
  }

  test('fails when a SHA-256 is not 64 hex characters', () => {
    expect(fails([AgentPackage.fromUrl('https://x.example.com/a.rpm', options({ sha256: 'abc123' }))]))
      .toContain('packages[0].sha256: got "abc123"; allowed: the SHA-256 of the package: 64 hexadecimal characters');
    expect(fails([AgentPackage.fromUrl('https://x.example.com/a.rpm', options({ sha256: 'g'.repeat(64) }))])).toContain('packages[0].sha256');
  });

  test('fails when a URL is plain http', () => {
    expect(fails([AgentPackage.fromUrl('http://downloads.example.com/a.rpm', options())]))
      .toContain('packages[0].url: got "http://downloads.example.com/a.rpm"; allowed: https only, never plain http');
  });

  test.each([
    ["https://x.example.com/a'b.rpm"],
    ['https://x.example.com/a b.rpm'],
    ['https://user:pw@x.example.com/a.rpm'],
    ['https://x.example.com/$(id).rpm'],
    ['ftp://x.example.com/a.rpm'],
  ])('fails when a URL could escape its quotes or carries credentials: %s', (url) => {
    expect(fails([AgentPackage.fromUrl(url, options())])).toContain('packages[0].url');
  });

  test('fails when two packages have the same format and architecture', () => {
    expect(fails([rpm(), AgentPackage.fromUrl('https://x.example.com/other.rpm', options())]))
      .toContain('packages[1]: got "RPM for x86_64"; allowed: one package per format and architecture (packages[0] is already RPM for x86_64)');
  });

  test('fails when an object key, version, service or package name could break out of the script', () => {
    const bucket = s3.Bucket.fromBucketName(new Stack(), 'B', 'packages');
    const message = fails([
      AgentPackage.fromBucket(bucket, "agent'.rpm", options({ version: '1.2.3; reboot', serviceName: 'agent service', packageName: 'agent$x' })),
    ]);
    expect(message).toContain('packages[0].objectKey: got "agent\'.rpm"');
    expect(message).toContain('packages[0].version: got "1.2.3; reboot"');
    expect(message).toContain('packages[0].serviceName: got "agent service"');
    expect(message).toContain('packages[0].packageName: got "agent$x"');
  });

  test('fails when a value baked into the document is only known at deploy time', () => {
    const token = Lazy.string({ produce: () => HASH });
    expect(fails([AgentPackage.fromUrl('https://x.example.com/a.rpm', options({ sha256: token }))])).toContain('a value known at synth');
  });

  test('fails when there is no package, the tag key is invalid, the name is reserved or the timeout too long', () => {
    const message = fails([], { tagKey: 'has space', documentName: 'AWS-Agent', timeout: Duration.hours(3) });
    expect(message).toContain('packages: got []; allowed: at least one package');
    expect(message).toContain('tagKey: got "has space"');
    expect(message).toContain('documentName: got "AWS-Agent"');
    expect(message).toContain('timeout: got 3 hours');
  });

  test.each([
    [Duration.seconds(2), 'got 2 seconds'],
    [Duration.minutes(11), 'got 11 minutes'],
    [Duration.millis(5500), 'got 5 seconds 500 millis'],
  ])('fails when healthCheckWindow is %p', (window, got) => {
    const message = fails([rpm()], { healthCheckWindow: window });
    expect(message).toContain(`healthCheckWindow: ${got}; allowed: whole seconds from 5 seconds to 10 minutes, at most a sixth of timeout (1800 s)`);
  });

  test('fails when healthCheckWindow is more than a sixth of the timeout', () => {
    expect(fails([rpm()], { healthCheckWindow: Duration.minutes(3), timeout: Duration.minutes(15) })).toContain('healthCheckWindow: got 3 minutes');
  });

  test('healthCheckWindow reaches the Linux script (30 s by default) and the Windows check count', () => {
    expect(lines(documentStack().stack, 'manageAgentOnLinux')).toContain("AGENT_HEALTH_WINDOW='30'");
    const { stack } = documentStack({ healthCheckWindow: Duration.minutes(2) });
    expect(lines(stack, 'manageAgentOnLinux')).toContain("AGENT_HEALTH_WINDOW='120'");
    expect(lines(stack, 'manageAgentOnWindows')).toContain('$AgentServiceCheckAttempts = 40');
  });

  test('lists every problem at once', () => {
    const message = fails([AgentPackage.fromUrl('http://x/a.rpm', options({ sha256: 'x', version: '' }))]);
    expect(message.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(3);
  });
});

