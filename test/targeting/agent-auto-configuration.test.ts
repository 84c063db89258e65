import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  AgentAutoConfiguration, AgentAutoConfigurationProps, AgentFleetErrors, AgentInstallDocument, AgentPackage,
  AssociationComplianceSeverity, AssociationSchedule, AutoConfigurationMode, PackageFormat, TelemetryStore,
} from '../../lib';
import { fakePackage, Sandbox, sha256 } from '../install/sandbox';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const PACKAGE = fakePackage('agent', '1.2.3-1');
const rpm = () => AgentPackage.fromUrl('https://downloads.example.com/agent-1.2.3.x86_64.rpm', {
  format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
  sha256: sha256(PACKAGE), version: '1.2.3', serviceName: 'agent',
});

function fleet(props: Partial<AgentAutoConfigurationProps> = {}, app = new App()) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm()] });
  const auto = new AgentAutoConfiguration(stack, 'Auto', { document, ...props });
  return { stack, document, auto, template: () => Template.fromStack(stack) };
}

function associations(template: Template): any[] {
  return Object.values(template.findResources('AWS::SSM::Association')).map((r: any) => r.Properties);
}

describe('AgentAutoConfiguration', () => {
  test('ALL_INSTANCES: one association targeting every managed instance, with safe rate control, daily', () => {
    // GIVEN / WHEN
    const { stack, document, template } = fleet();

    // THEN
    expect(associations(template())).toEqual([{
      Name: { Ref: stack.getLogicalId(document.node.defaultChild as never) },
      AssociationName: expect.stringMatching(/^Stack-Auto-[0-9A-F]{8}-install$/),
      DocumentVersion: '$LATEST',
      Parameters: { action: ['Install'], mode: ['ALL_INSTANCES'], tagKey: ['SecurityAgentManaged'] },
      Targets: [{ Key: 'InstanceIds', Values: ['*'] }],
      ScheduleExpression: 'rate(1 day)',
      MaxConcurrency: '10%',
      MaxErrors: '5%',
      ComplianceSeverity: 'HIGH',
      SyncCompliance: 'AUTO',
      ApplyOnlyAtCronInterval: false,
      Tags: [{ Key: 'cdk-agent-fleet:component', Value: 'auto-configuration' }],
    }]);
  });

  test('TAGGED_ONLY targets the inclusion tag', () => {
    const { template } = fleet({ mode: AutoConfigurationMode.TAGGED_ONLY, tagKey: 'Fleet' });
    expect(associations(template())).toEqual([expect.objectContaining({
      Parameters: { action: ['Install'], mode: ['TAGGED_ONLY'], tagKey: ['Fleet'] },
      Targets: [{ Key: 'tag:Fleet', Values: ['true'] }],
    })]);
  });

  test('rate control, schedule and severity are configurable', () => {
    const { template } = fleet({
      maxConcurrencyPercentage: 25, maxErrorsPercentage: 0,
      schedule: AssociationSchedule.cron('cron(0 3 ? * * *)'),
      complianceSeverity: AssociationComplianceSeverity.CRITICAL,
      associationNamePrefix: 'security-agent',
    });
    expect(associations(template())[0]).toMatchObject({
      AssociationName: 'security-agent-install', MaxConcurrency: '25%', MaxErrors: '0%',
      ScheduleExpression: 'cron(0 3 ? * * *)', ComplianceSeverity: 'CRITICAL',
    });
  });

  test.each([
    [Duration.days(1), 'rate(1 day)'],
    [Duration.days(7), 'rate(7 days)'],
    [Duration.hours(12), 'rate(12 hours)'],
    [Duration.minutes(90), 'rate(90 minutes)'],
  ])('AssociationSchedule.rate(%s) is %s', (interval, expression) => {
    expect(AssociationSchedule.rate(interval).expressionString).toBe(expression);
  });

  test('association output goes to the telemetry store under its prefix', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const store = new TelemetryStore(stack, 'Telemetry');
    const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm()] });
    new AgentAutoConfiguration(stack, 'Auto', { document, telemetryStore: store });
    expect(associations(Template.fromStack(stack))[0].OutputLocation).toEqual({
      S3Location: {
        OutputS3BucketName: { Ref: stack.getLogicalId(store.bucket.node.defaultChild as never) },
        OutputS3KeyPrefix: 'ssm-association-output',
        OutputS3Region: 'eu-west-1',
      },
    });
  });

  test('uninstallWhenExcluded adds an association that uninstalls where the tag is false', () => {
    const { template, auto } = fleet({ uninstallWhenExcluded: true });
    expect(associations(template())).toEqual(expect.arrayContaining([expect.objectContaining({
      AssociationName: expect.stringMatching(/^Stack-Auto-[0-9A-F]{8}-uninstall-excluded$/),
      Parameters: { action: ['Uninstall'], mode: ['ALL_INSTANCES'], tagKey: ['SecurityAgentManaged'] },
      Targets: [{ Key: 'tag:SecurityAgentManaged', Values: ['false'] }],
    })]));
    expect(auto.uninstallAssociation).toBeDefined();
  });

  test('grantInstanceRole: SSM core, the package objects, association output and telemetry under the instance prefix', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const store = new TelemetryStore(stack, 'Telemetry');
    const packages = new s3.Bucket(stack, 'Packages', { enforceSSL: true });
    const document = new AgentInstallDocument(stack, 'Install', {
      packages: [AgentPackage.fromBucket(packages, 'agent.rpm', { format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1', serviceName: 'agent' })],
    });
    const auto = new AgentAutoConfiguration(stack, 'Auto', { document, telemetryStore: store });
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });

    auto.grantInstanceRole(role);

    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [{ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/AmazonSSMManagedInstanceCore']] }],
    });
    const storeArn = { 'Fn::GetAtt': [stack.getLogicalId(store.bucket.node.defaultChild as never), 'Arn'] };
    const statements = Object.values(t.findResources('AWS::IAM::Policy'))[0].Properties.PolicyDocument.Statement;
    expect(statements).toEqual(expect.arrayContaining([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [stack.getLogicalId(packages.node.defaultChild as never), 'Arn'] }, '/agent.rpm']] } },
      { Effect: 'Allow', Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [storeArn, '/ssm-association-output/*']] } },
      { Effect: 'Allow', Action: 's3:GetEncryptionConfiguration', Resource: storeArn },
      { Effect: 'Allow', Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [storeArn, '/agents/${aws:userid}/*']] } },
    ]));
    expect(statements.flatMap((s: any) => [s.Action].flat())).not.toContainEqual(expect.stringMatching(/\*$/));
  });

  test('enableDefaultHostManagement: a custom resource sets the DHMC role, which has the AWS policy DHMC needs', () => {
    const { stack, auto, template } = fleet({ enableDefaultHostManagement: true });
    const t = template();
    const roleId = stack.getLogicalId(auto.defaultHostManagementRole!.node.defaultChild as never);
    t.hasResourceProperties('Custom::DefaultHostManagement', { RoleName: { Ref: roleId } });
    t.hasResource('Custom::DefaultHostManagement', { Properties: { ServiceTimeout: '120' } });
    t.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'ssm.amazonaws.com' } }] },
      ManagedPolicyArns: [{ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/AmazonSSMManagedEC2InstanceDefaultPolicy']] }],
    });
    t.hasResourceProperties('AWS::Lambda::Function', { Runtime: 'nodejs24.x', Timeout: 60 });
    t.hasResourceProperties('AWS::IAM::ManagedPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: ['ssm:GetServiceSetting', 'ssm:UpdateServiceSetting', 'ssm:ResetServiceSetting'],
            Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ssm:eu-west-1:111122223333:servicesetting/ssm/managed-instance/default-ec2-instance-management-role']] },
          },
          {
            Effect: 'Allow', Action: 'iam:PassRole', Resource: { 'Fn::GetAtt': [roleId, 'Arn'] },
            Condition: { StringEquals: { 'iam:PassedToService': 'ssm.amazonaws.com' } },
          },
        ]),
      },
    });
    t.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 365, KmsKeyId: Match.anyValue() });
  });

  test('enableDefaultHostManagement with a telemetry store: the DHMC role writes telemetry under each instance\'s own prefix', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm()] });
    const store = new TelemetryStore(stack, 'Telemetry');

    // WHEN
    const auto = new AgentAutoConfiguration(stack, 'Auto', { document, telemetryStore: store, enableDefaultHostManagement: true });

    // THEN
    const roleId = stack.getLogicalId(auto.defaultHostManagementRole!.node.defaultChild as never);
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: roleId }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({
        Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [Match.anyValue(), '/agents/${aws:userid}/*']] },
      })]) },
    });
  });

  test('snapshot', () => {
    const { stack } = fleet({ uninstallWhenExcluded: true, enableDefaultHostManagement: true });
    expect(normalizedTemplate(stack)).toMatchSnapshot();
  });

  test('passes the cdk-nag packs (v3 and v2) with every option on', () => {
    const build = (app: App) => {
      const stack = new Stack(app, 'Stack', { env: ENV });
      const store = new TelemetryStore(stack, 'Telemetry');
      const document = new AgentInstallDocument(stack, 'Install', { packages: [rpm()] });
      new AgentAutoConfiguration(stack, 'Auto', { document, telemetryStore: store, uninstallWhenExcluded: true, enableDefaultHostManagement: true });
      return stack;
    };
    expect(nagFindings(build(new App()))).toEqual([]);
    expect(nagV2Findings(build)).toEqual([]);
  });
});

describe('tag semantics end to end (DESIGN.md truth table): association targets, then the script on the host', () => {
  // [instance tag, mode, what happens]
  const table: Array<[string | undefined, AutoConfigurationMode, 'installed' | 'excluded' | 'not touched']> = [
    [undefined, AutoConfigurationMode.ALL_INSTANCES, 'installed'],
    ['true', AutoConfigurationMode.ALL_INSTANCES, 'installed'],
    ['false', AutoConfigurationMode.ALL_INSTANCES, 'excluded'],
    ['maybe', AutoConfigurationMode.ALL_INSTANCES, 'installed'],
    [undefined, AutoConfigurationMode.TAGGED_ONLY, 'not touched'],
    ['true', AutoConfigurationMode.TAGGED_ONLY, 'installed'],
    ['false', AutoConfigurationMode.TAGGED_ONLY, 'not touched'],
    ['maybe', AutoConfigurationMode.TAGGED_ONLY, 'not touched'],
  ];

  test.each(table)('tag %s, mode %s: %s', (tag, mode, expected) => {
    // GIVEN the install association as synthesized
    const { template } = fleet({ mode, tagKey: 'Fleet' });
    const [association] = associations(template());
    const targeted = association.Targets.every((t: { Key: string; Values: string[] }) =>
      (t.Key === 'InstanceIds' && t.Values.includes('*'))
      || (t.Key === 'tag:Fleet' && tag !== undefined && t.Values.includes(tag)));

    // WHEN State Manager sends it to the instance (if targeted) with the association's parameters
    let outcome = 'not touched';
    if (targeted) {
      const box = new Sandbox({ format: 'RPM', tags: tag === undefined ? {} : { Fleet: tag } });
      box.serve('agent-1.2.3.x86_64.rpm', PACKAGE);
      const parameters = Object.fromEntries(Object.entries<string[]>(association.Parameters).map(([k, v]) => [k, v[0]]));
      const run = box.run([rpm()], parameters);
      box.dispose();
      expect(run.status).toBe(0);
      outcome = run.result.outcome;
      if (tag === 'maybe') expect(run.result.tag).toBe('misconfigured');
    }

    // THEN
    expect(outcome).toBe(expected);
  });
});

describe('AgentAutoConfiguration validation', () => {
  function fails(props: Partial<AgentAutoConfigurationProps>): string {
    try {
      fleet(props);
    } catch (err) {
      expect(AgentFleetErrors.isValidationError(err)).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected a validation error');
  }

  test('fails when percentages are out of range or not integers', () => {
    const message = fails({ maxConcurrencyPercentage: 0, maxErrorsPercentage: 12.5 });
    expect(message).toContain('maxConcurrencyPercentage: got 0; allowed: an integer from 1 to 100');
    expect(message).toContain('maxErrorsPercentage: got 12.5; allowed: an integer from 0 to 100');
    expect(fails({ maxConcurrencyPercentage: 101 })).toContain('maxConcurrencyPercentage: got 101');
  });

  test('fails when the schedule is too frequent or not a cron expression', () => {
    expect(fails({ schedule: AssociationSchedule.rate(Duration.minutes(10)) })).toContain('schedule: got "rate(10 minutes)"; allowed: whole minutes, at least 30');
    expect(fails({ schedule: AssociationSchedule.cron('0 3 * * *') })).toContain('schedule: got "0 3 * * *"; allowed: cron(');
    expect(fails({ schedule: AssociationSchedule.cron('cron(0 3 ? * * $(id))') })).toContain('schedule');
  });

  test('fails when the tag key cannot be read from instance metadata', () => {
    expect(fails({ tagKey: 'team/security' })).toContain('tagKey: got "team/security"');
    expect(fails({ tagKey: '.hidden' })).toContain('tagKey');
  });

  test('fails when the output prefix is malformed or has no bucket', () => {
    expect(() => fleet({ outputPrefix: 'ssm-output', outputBucket: s3.Bucket.fromBucketName(new Stack(), 'B', 'output-bucket') })).not.toThrow();
    expect(fails({ outputPrefix: '/leading/' })).toContain('outputPrefix: got "/leading/"');
    expect(fails({ outputPrefix: 'ssm-output' })).toContain('only with outputBucket or telemetryStore');
  });

  test('fails when the association name prefix is invalid', () => {
    expect(fails({ associationNamePrefix: 'a b' })).toContain('associationNamePrefix: got "a b"; allowed: 3-100 letters, digits and _-.');
  });
});
