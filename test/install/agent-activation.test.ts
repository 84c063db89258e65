/*
 * AgentActivation on AgentInstallDocument and AgentFleet: what the document carries (ARNs,
 * never values), what is refused at synth, and the grants to the roles that run the document,
 * evaluated the way IAM evaluates them.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { ActivationArgument, ActivationSecret, AgentActivation, AgentFleet, AgentInstallDocument, AgentPackage, PackageFormat } from '../../lib';
import { allowed, ResolvedStatement, resolver } from '../helpers/iam-eval';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:vendor/tenant-AbCdEf';
const deb = (format = PackageFormat.DEB) => AgentPackage.fromUrl('https://downloads.example.com/agent.pkg', {
  format, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent',
});

function parts() {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const secretKey = new kms.Key(stack, 'SecretKey', { enableKeyRotation: true });
  const parameterKey = new kms.Key(stack, 'ParameterKey', { enableKeyRotation: true });
  const secret = secretsmanager.Secret.fromSecretAttributes(stack, 'Tenant', { secretCompleteArn: SECRET_ARN, encryptionKey: secretKey });
  const parameter = ssm.StringParameter.fromSecureStringParameterAttributes(stack, 'Token', { parameterName: '/vendor/token' });
  const tenant = ActivationSecret.fromSecret(secret, { jsonField: 'tenantId' });
  const token = ActivationSecret.fromSecureStringParameter(parameter, { encryptionKey: parameterKey });
  const activation: AgentActivation = {
    command: [ActivationArgument.literal('/opt/vendor/bin/activate'), ActivationArgument.secretValue(tenant, { prefix: 'tenant:' }),
      ActivationArgument.secretFile(token, { prefix: '--token-file=' })],
  };
  return { stack, secretKey, parameterKey, tenant, token, activation };
}

function content(stack: Stack): any {
  const [document] = Object.values(Template.fromStack(stack).findResources('AWS::SSM::Document')) as any[];
  return document.Properties.Content;
}

describe('the document', () => {
  test('carries the command and the secrets by ARN, and allows Reactivate', () => {
    const { stack, activation } = parts();
    new AgentInstallDocument(stack, 'Document', { packages: [deb()], activation });
    const doc = content(stack);
    expect(doc.parameters.action.allowedValues).toEqual(['Install', 'Uninstall', 'Verify', 'Reactivate']);
    const lines: string[] = doc.mainSteps[0].inputs.runCommand.map((l: unknown) => JSON.stringify(l));
    expect(lines).toContain(JSON.stringify(`  SECRET_0_ID='${SECRET_ARN}'`));
    expect(lines).toContain(JSON.stringify("  SECRET_0_FIELD='tenantId'"));
    expect(lines).toContain(JSON.stringify("  ACTIVATION_ARG_2_KIND='file'"));
    expect(lines.some((l) => l.includes('finish_installed()') )).toBe(true);
    expect(JSON.stringify(doc).length).toBeLessThan(60 * 1024);
  });

  test('without an activation: no Reactivate, no activation functions (the document stays small)', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new AgentInstallDocument(stack, 'Document', { packages: [deb()] });
    const doc = content(stack);
    expect(doc.parameters.action.allowedValues).toEqual(['Install', 'Uninstall', 'Verify']);
    expect(JSON.stringify(doc)).not.toContain('secret_fetch');
  });

  test('beforeServiceStart renders ACTIVATION_BEFORE_START (empty by default) and keeps the activation id', () => {
    const rendered = [undefined, true].map((beforeServiceStart) => {
      const { stack, activation } = parts();
      new AgentInstallDocument(stack, 'Document', { packages: [deb()], activation: { ...activation, beforeServiceStart } });
      const text = JSON.stringify(content(stack));
      return { flag: text.match(/ACTIVATION_BEFORE_START='(1?)'/)![1], id: text.match(/ACTIVATION_ID='([0-9a-f]{64})'/)![1] };
    });
    expect(rendered.map((r) => r.flag)).toEqual(['', '1']);
    // Only when the activation runs changes, not what it does: a recorded activation stays recorded.
    expect(rendered[1].id).toBe(rendered[0].id);
  });

  test('the activation id changes with the command, not between synths', () => {
    const ids = [0, 1, 2].map((i) => {
      const { stack, activation } = parts();
      const changed = i === 2 ? { ...activation, command: [...activation.command, ActivationArgument.literal('--force')] } : activation;
      new AgentInstallDocument(stack, 'Document', { packages: [deb()], activation: changed });
      return JSON.stringify(content(stack)).match(/ACTIVATION_ID='([0-9a-f]{64})'/)![1];
    });
    expect(ids[0]).toBe(ids[1]);
    expect(ids[2]).not.toBe(ids[0]);
  });
});

describe('fails when', () => {
  const build = (activation: unknown, packages = [deb()]) => () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new AgentInstallDocument(stack, 'Document', { packages, activation: activation as AgentActivation });
  };
  const literal = ActivationArgument.literal;

  test('a secret is given as a plain string', () => {
    expect(build({ command: [literal('/opt/x'), 'tenant:1234'] })).toThrow(/activation.command\[1\]: got "tenant:1234"; allowed: an ActivationArgument .* never as a plain string/);
    expect(build({ command: [literal('/opt/x'), ActivationArgument.secretValue(ActivationSecret.fromSecret('my-secret-value' as never))] }))
      .toThrow(/activation.command\[1\].secret: got "my-secret-value"; allowed: a secretsmanager.ISecret construct/);
    expect(build({ command: [literal('/opt/x')], stdin: 'value' })).toThrow(/activation.stdin: got "value"/);
  });

  test('the command is a shell string, a shell, or not an absolute path', () => {
    expect(build({ command: [literal('/opt/ds_agent/dsa_control -a dsm://x:443/')] })).toThrow(/one list item per argument/);
    expect(build({ command: [literal('/bin/sh'), literal('-c'), literal('dsa_control -a x')] })).toThrow(/not a shell or a wrapper/);
    expect(build({ command: [literal('dsa_control')] })).toThrow(/the tool's absolute path/);
    expect(build({ command: [] })).toThrow(/activation.command: got \[\]/);
  });

  test('a literal holds a quote, {{ or $(', () => {
    expect(build({ command: [literal('/opt/x'), literal("it's")] })).toThrow(/activation.command\[1\]: got "it's"/);
    expect(build({ command: [literal('/opt/x'), literal('{{ action }}')] })).toThrow(/without ', \{\{/);
    expect(build({ command: [literal('/opt/x'), literal('$(id)')] })).toThrow(/activation.command\[1\]/);
  });

  test('a SecureString parameter is one the stack creates (a String, its value in the template)', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const parameter = new ssm.StringParameter(stack, 'P', { stringValue: 'oops' });
    expect(() => new AgentInstallDocument(stack, 'Document', {
      packages: [deb()], activation: { command: [literal('/opt/x'), ActivationArgument.secretValue(ActivationSecret.fromSecureStringParameter(parameter))] },
    })).toThrow(/a SecureString parameter created outside the stack/);
  });

  test('the packages include an MSI, or the timeout does not fit', () => {
    expect(build({ command: [literal('/opt/x')] }, [deb(), deb(PackageFormat.MSI)])).toThrow(/Linux packages only/);
    expect(build({ command: [literal('/opt/x')], timeout: Duration.hours(1) })).toThrow(/activation.timeout/);
  });
});

describe('grants to the roles that run the document', () => {
  const { stack, secretKey, parameterKey, activation } = parts();
  const fleet = new AgentFleet(stack, 'Fleet', {
    agentName: 'agent', packages: [deb()], activation, imds: { hopLimit: 1 }, enableBackend: false,
    autoConfiguration: { enableDefaultHostManagement: true },
  });
  const instanceRole = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
  fleet.grantInstanceRole(instanceRole);
  const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, any> };
  const { resolve, arnOf } = resolver(ENV)(template);
  const parameterArn = 'arn:aws:ssm:eu-west-1:111122223333:parameter/vendor/token';

  const statementsOf = (role: iam.IRole): ResolvedStatement[] => {
    const id = stack.getLogicalId(role.node.defaultChild as never);
    return Object.values(template.Resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"Ref":"${id}"`))
      .flatMap((r) => resolve(r.Properties.PolicyDocument.Statement));
  };

  describe.each([['the instance role', instanceRole], ['the Default Host Management role', fleet.autoConfiguration!.defaultHostManagementRole!]])('%s', (_name, role) => {
    const statements = statementsOf(role);
    const can = (action: string, resource: string, context: Record<string, string> = {}) => allowed(statements, { action, resource, context });
    const secretKeyArn = arnOf(stack.getLogicalId(secretKey.node.defaultChild as never));
    const parameterKeyArn = arnOf(stack.getLogicalId(parameterKey.node.defaultChild as never));

    test('reads exactly the secret and the parameter', () => {
      expect(can('secretsmanager:GetSecretValue', SECRET_ARN)).toBe(true);
      expect(can('secretsmanager:GetSecretValue', 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:other-AbCdEf')).toBe(false);
      expect(can('ssm:GetParameter', parameterArn)).toBe(true);
      expect(can('ssm:GetParameter', 'arn:aws:ssm:eu-west-1:111122223333:parameter/vendor/other')).toBe(false);
      expect(can('ssm:GetParameters', parameterArn)).toBe(false);
    });

    test('uses their keys only through Secrets Manager or Parameter Store, for that secret', () => {
      expect(can('kms:Decrypt', secretKeyArn, { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com', 'kms:EncryptionContext:SecretARN': SECRET_ARN })).toBe(true);
      expect(can('kms:Decrypt', secretKeyArn, {})).toBe(false);
      expect(can('kms:Decrypt', secretKeyArn, { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com', 'kms:EncryptionContext:SecretARN': `${SECRET_ARN}x` })).toBe(false);
      expect(can('kms:Decrypt', parameterKeyArn, { 'kms:ViaService': 'ssm.eu-west-1.amazonaws.com', 'kms:EncryptionContext:PARAMETER_ARN': parameterArn })).toBe(true);
      expect(can('kms:Decrypt', parameterKeyArn, { 'kms:ViaService': 's3.eu-west-1.amazonaws.com', 'kms:EncryptionContext:PARAMETER_ARN': parameterArn })).toBe(false);
      expect(can('kms:Decrypt', parameterKeyArn, { 'kms:ViaService': 'ssm.eu-west-1.amazonaws.com', 'kms:EncryptionContext:PARAMETER_ARN': `${parameterArn}2` })).toBe(false);
    });
  });
});
