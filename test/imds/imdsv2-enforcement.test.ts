import { App, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AgentFleetErrors, HopLimitPolicy, ImdsEnforcementMode, Imdsv2Enforcement, Imdsv2EnforcementProps, TelemetryStore } from '../../lib';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function enforcementStack(props: Imdsv2EnforcementProps = { hopLimit: 2 }) {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const enforcement = new Imdsv2Enforcement(stack, 'Enforcement', props);
  return { stack, enforcement, template: Template.fromStack(stack) };
}

function statements(template: Template, policyIdPrefix: string): any[] {
  const policies = template.findResources('AWS::IAM::ManagedPolicy');
  const [id] = Object.keys(policies).filter((k) => k.startsWith(policyIdPrefix));
  return policies[id].Properties.PolicyDocument.Statement;
}

function customResourceProps(template: Template): any {
  return Object.values(template.findResources('Custom::Imdsv2Enforcement'))[0].Properties;
}

describe('Imdsv2Enforcement defaults', () => {
  test('a custom resource with a 5-minute service timeout carries the policy and starts the sweep', () => {
    const { template } = enforcementStack();
    template.resourceCountIs('Custom::Imdsv2Enforcement', 1);
    expect(customResourceProps(template)).toEqual({
      ServiceToken: { 'Fn::GetAtt': [expect.stringMatching(/^EnforcementOnEventFunction/), 'Arn'] },
      ServiceTimeout: '300',
      Policy: {
        mode: 'ENFORCE', hopLimit: 2, instanceMetadataTags: true, instanceTags: {}, exemptionTagKey: 'ImdsEnforcementExempt', imdsv1LookbackDays: 14,
        hopLimitPolicy: 'AT_LEAST', enableDisabledEndpoints: false,
      },
      StateMachineArn: { Ref: expect.stringMatching(/^EnforcementSweep/) },
      AccountDefaults: 'true',
    });
  });

  test('the handlers run on a pinned Node.js runtime with the same policy, their own encrypted log groups kept a year', () => {
    const { template } = enforcementStack();
    const functions = Object.values(template.findResources('AWS::Lambda::Function'));
    // sweep step, launch, custom resource, drift, limiter table custom resource
    expect(functions).toHaveLength(5);
    for (const fn of functions) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Handler: 'index.handler',
        LoggingConfig: { LogGroup: { Ref: expect.stringMatching(/Logs/) } },
      });
      expect(JSON.parse(fn.Properties.Environment.Variables.IMDS_POLICY)).toMatchObject({ hopLimit: 2, mode: 'ENFORCE' });
    }
    template.resourceCountIs('AWS::Logs::LogGroup', 6);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 365, KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('EnforcementKey'), 'Arn'] } });
    template.allResources('AWS::Logs::LogGroup', { DeletionPolicy: 'Retain' });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  test('the sweep is a state machine that loops one Lambda step until done, logged and traced', () => {
    const { template } = enforcementStack();
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      LoggingConfiguration: { Level: 'ALL', Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: Match.anyValue() } }] },
      TracingConfiguration: { Enabled: true },
    });
    const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0];
    const definition = JSON.parse(machine.Properties.DefinitionString['Fn::Join'][1].map((p: unknown) => (typeof p === 'string' ? p : 'ARN')).join(''));
    expect(definition.StartAt).toBe('EnforceOnePage');
    expect(definition.States.MorePages).toEqual({
      Type: 'Choice', Choices: [{ Variable: '$.done', BooleanEquals: true, Next: 'SweepDone' }], Default: 'EnforceOnePage',
    });
    expect(definition.States.EnforceOnePage.Retry).toContainEqual({ ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 60, MaxAttempts: 3, BackoffRate: 2 });
    // One sweep step at a time; the timeout leaves time to hand the checkpoint on.
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler', Timeout: 900, ReservedConcurrentExecutions: 1 });
  });

  test('instances entering running trigger the launch handler, with retries and a dead-letter queue', () => {
    const { template } = enforcementStack();
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.ec2'], 'detail-type': ['EC2 Instance State-change Notification'], detail: { state: ['running'] } },
      Targets: [Match.objectLike({ DeadLetterConfig: { Arn: Match.anyValue() }, RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 21600 } })],
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { MaximumRetryAttempts: 2 });
    template.hasResourceProperties('AWS::SQS::Queue', { KmsMasterKeyId: Match.anyValue(), MessageRetentionPeriod: 1209600 });
  });

  test('ModifyInstanceMetadataOptions only on instances of this account and region, never on exempt ones', () => {
    const { template } = enforcementStack();
    expect(statements(template, 'EnforcementEnforcerPolicy')).toContainEqual({
      Sid: 'ModifyMetadataOptionsOfInScopeInstancesNotExempt',
      Effect: 'Allow',
      Action: 'ec2:ModifyInstanceMetadataOptions',
      Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':ec2:eu-west-1:111122223333:instance/*']] },
      Condition: { StringNotEqualsIgnoreCase: { 'aws:ResourceTag/ImdsEnforcementExempt': 'true' } },
    });
  });

  test('no statement grants a wildcard action, and * resources only go with actions that have no resource types', () => {
    const { template } = enforcementStack();
    const all = Object.values(template.findResources('AWS::IAM::ManagedPolicy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    for (const statement of all) {
      for (const action of [statement.Action].flat()) expect(action).not.toContain('*');
    }
    const onStar = all.filter((s) => s.Resource === '*').flatMap((s) => [s.Action].flat()).sort();
    expect(onStar).toEqual([
      'cloudwatch:GetMetricData', 'ec2:DescribeInstances', 'ec2:DescribeInstances', 'ec2:GetInstanceMetadataDefaults', 'ec2:ModifyInstanceMetadataDefaults',
      'logs:CreateLogDelivery', 'logs:DeleteLogDelivery', 'logs:DescribeLogGroups', 'logs:DescribeResourcePolicies', 'logs:GetLogDelivery',
      'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:UpdateLogDelivery',
      'xray:GetSamplingRules', 'xray:GetSamplingTargets', 'xray:PutTelemetryRecords', 'xray:PutTraceSegments',
    ]);
    // No inline policies: every grant is in a managed policy the custom resource waits for.
    template.resourceCountIs('AWS::IAM::Policy', 0);
    const dependsOn = Object.values(template.findResources('Custom::Imdsv2Enforcement'))[0].DependsOn;
    // ... and the shared limiter table, which the sweep it starts paces itself by.
    expect(dependsOn).toHaveLength(4);
  });

  test('a hop limit of 2 or less raises no warning', () => {
    const { stack } = enforcementStack({ hopLimit: 2 });
    Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('IMDS hop limit'));
  });
});

describe('Imdsv2Enforcement props', () => {
  test('hopLimit above 2 is allowed, with a warning that says what it exposes', () => {
    const { stack, template } = enforcementStack({ hopLimit: 3 });
    expect(customResourceProps(template).Policy.hopLimit).toBe(3);
    Annotations.fromStack(stack).hasWarning('/Stack/Enforcement', Match.stringLikeRegexp(
      "IMDS hop limit 3: IMDSv2 tokens, and with them the instance role's credentials, reach processes up to 3 network hops.*\\[ack: cdk-agent-fleet:imdsHopLimitAbove2\\]"));
  });

  test('mode AUDIT grants no modification of instances and passes the mode on', () => {
    const { template, enforcement } = enforcementStack({ hopLimit: 1, mode: ImdsEnforcementMode.AUDIT });
    expect(enforcement.mode).toBe(ImdsEnforcementMode.AUDIT);
    expect(customResourceProps(template).Policy.mode).toBe('AUDIT');
    const actions = statements(template, 'EnforcementEnforcerPolicy').flatMap((s) => [s.Action].flat());
    expect(actions).not.toContain('ec2:ModifyInstanceMetadataOptions');
  });

  test('instanceTags narrow the scope, in the policy and as IAM conditions', () => {
    const { template } = enforcementStack({ hopLimit: 2, instanceTags: { Fleet: 'agents', Env: 'prod' } });
    expect(customResourceProps(template).Policy.instanceTags).toEqual({ Fleet: 'agents', Env: 'prod' });
    const modify = statements(template, 'EnforcementEnforcerPolicy').find((s) => s.Action === 'ec2:ModifyInstanceMetadataOptions');
    expect(modify.Condition).toEqual({
      StringNotEqualsIgnoreCase: { 'aws:ResourceTag/ImdsEnforcementExempt': 'true' },
      StringEquals: { 'aws:ResourceTag/Fleet': 'agents', 'aws:ResourceTag/Env': 'prod' },
    });
  });

  test('exemptionTagKey, instanceMetadataTags, imdsv1LookbackDays and accountDefaults reach the handlers', () => {
    const { template } = enforcementStack({
      hopLimit: 2, exemptionTagKey: 'NoImdsChange', instanceMetadataTags: false, imdsv1LookbackDays: 30, accountDefaults: false,
    });
    expect(customResourceProps(template)).toMatchObject({
      Policy: { exemptionTagKey: 'NoImdsChange', instanceMetadataTags: false, imdsv1LookbackDays: 30 },
      AccountDefaults: 'false',
    });
    const modify = statements(template, 'EnforcementEnforcerPolicy').find((s) => s.Action === 'ec2:ModifyInstanceMetadataOptions');
    expect(modify.Condition.StringNotEqualsIgnoreCase).toEqual({ 'aws:ResourceTag/NoImdsChange': 'true' });
  });

  test('protectImdsv1Users false turns the MetadataNoToken check off', () => {
    const { template } = enforcementStack({ hopLimit: 2, protectImdsv1Users: false });
    expect(customResourceProps(template).Policy.imdsv1LookbackDays).toBe(0);
  });

  test('enforceOnLaunch false leaves out the rule and the launch handler', () => {
    const { template, enforcement } = enforcementStack({ hopLimit: 2, enforceOnLaunch: false });
    // Only the drift rules (schedule, reverts, tags) remain.
    template.resourceCountIs('AWS::Events::Rule', 3);
    expect(JSON.stringify(template.findResources('AWS::Events::Rule'))).not.toContain('EC2 Instance State-change Notification');
    template.resourceCountIs('AWS::Lambda::Function', 4);
    expect(enforcement.launchFunction).toBeUndefined();
  });

  test('vpc puts the handlers into its private subnets', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2, vpc });
    const functions = Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function'));
    for (const fn of functions) {
      expect(fn.Properties.VpcConfig.SubnetIds).toEqual([{ Ref: expect.stringMatching(/^VpcPrivateSubnet1/) }, { Ref: expect.stringMatching(/^VpcPrivateSubnet2/) }]);
    }
  });

  test('logRetention, encryptionKey and removalPolicy apply to what is created', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const encryptionKey = new kms.Key(stack, 'MyKey', { enableKeyRotation: true });
    const enforcement = new Imdsv2Enforcement(stack, 'Enforcement', {
      hopLimit: 2, logRetention: logs.RetentionDays.THREE_MONTHS, encryptionKey, removalPolicy: RemovalPolicy.DESTROY,
    });
    const template = Template.fromStack(stack);
    expect(enforcement.encryptionKey).toBe(encryptionKey);
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 90, KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('MyKey'), 'Arn'] } });
    template.allResources('AWS::Logs::LogGroup', { DeletionPolicy: 'Delete' });
  });
});

describe('Imdsv2Enforcement policy options, preflight, account-level enforcement and report (issue 12)', () => {
  test('hopLimitPolicy and enableDisabledEndpoints reach the handlers', () => {
    const { template } = enforcementStack({ hopLimit: 2, hopLimitPolicy: HopLimitPolicy.EXACT, enableDisabledEndpoints: true });
    expect(customResourceProps(template).Policy).toMatchObject({ hopLimitPolicy: 'EXACT', enableDisabledEndpoints: true });
    const fn = Object.values(template.findResources('AWS::Lambda::Function'))[0];
    expect(JSON.parse(fn.Properties.Environment.Variables.IMDS_POLICY)).toMatchObject({ hopLimitPolicy: 'EXACT', enableDisabledEndpoints: true });
  });

  test('the custom resource may dry-run the modification with the sweep\'s conditions (ENFORCE only)', () => {
    const { template } = enforcementStack({ hopLimit: 2, instanceTags: { Fleet: 'agents' } });
    const onEvent = statements(template, 'EnforcementOnEventPolicy');
    expect(onEvent).toContainEqual({ Sid: 'PreflightListInstances', Effect: 'Allow', Action: 'ec2:DescribeInstances', Resource: '*' });
    const enforcerModify = statements(template, 'EnforcementEnforcerPolicy').find((s) => s.Action === 'ec2:ModifyInstanceMetadataOptions');
    const preflightModify = onEvent.find((s) => s.Sid === 'PreflightDryRunModifyMetadataOptions');
    expect(preflightModify.Condition).toEqual(enforcerModify.Condition);
    expect(preflightModify.Resource).toEqual(enforcerModify.Resource);

    const audit = enforcementStack({ hopLimit: 2, mode: ImdsEnforcementMode.AUDIT }).template;
    expect(statements(audit, 'EnforcementOnEventPolicy').map((s) => s.Sid)).not.toContain('PreflightDryRunModifyMetadataOptions');
  });

  test('httpTokensEnforced is off unless asked for, and then passed to the custom resource', () => {
    expect(customResourceProps(enforcementStack().template).HttpTokensEnforced).toBeUndefined();
    expect(customResourceProps(enforcementStack({ hopLimit: 2, httpTokensEnforced: true }).template).HttpTokensEnforced).toBe('true');
  });

  test('fails when httpTokensEnforced comes without account defaults or in AUDIT, or reportPrefix without a bucket or malformed', () => {
    expect(() => enforcementStack({ hopLimit: 2, httpTokensEnforced: true, accountDefaults: false }))
      .toThrow('httpTokensEnforced: got true; allowed: true only together with accountDefaults');
    expect(() => enforcementStack({ hopLimit: 2, httpTokensEnforced: true, mode: ImdsEnforcementMode.AUDIT }))
      .toThrow('httpTokensEnforced: got true; allowed: true only in ImdsEnforcementMode.ENFORCE');
    expect(() => enforcementStack({ hopLimit: 2, reportPrefix: 'imds/' })).toThrow('reportPrefix: got "imds/"; allowed: only together with reportBucket');
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const reportBucket = new s3.Bucket(stack, 'B');
    expect(() => new Imdsv2Enforcement(stack, 'E', { hopLimit: 2, reportBucket, reportPrefix: '/abs' }))
      .toThrow('reportPrefix: got "/abs"; allowed: a literal S3 key prefix ending in "/"');
    expect(() => enforcementStack({ hopLimit: 2, hopLimitPolicy: 'LOWER' as HopLimitPolicy })).toThrow('hopLimitPolicy: got "LOWER"');
  });

  test('reportBucket: the sweep may write, read back and delete only under its prefix, and use the bucket key only through S3', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const store = new TelemetryStore(stack, 'Telemetry');
    const enforcement = new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2, reportBucket: store.bucket });
    const template = Template.fromStack(stack);
    expect(enforcement.reportPrefix).toMatch(/^imds-enforcement\/Stack-Enforcement-[0-9A-F]{8}\/$/);
    const prefix = enforcement.reportPrefix!;
    const sweep = Object.values(template.findResources('AWS::Lambda::Function'))
      .find((f) => f.Properties.Description.includes('one page of instances'))!;
    expect(stack.resolve(sweep.Properties.Environment.Variables.IMDS_REPORT)).toEqual({
      'Fn::Join': ['', ['{"bucket":"', { Ref: expect.stringMatching(/^Telemetry[0-9A-F]{8}$/) }, `","prefix":"${prefix}"}`]],
    });
    const report = statements(template, 'EnforcementReportPolicy');
    const objects = (suffix: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^Telemetry[0-9A-F]{8}$/), 'Arn'] }, `/${prefix}${suffix}`]] });
    expect(report).toEqual([
      { Sid: 'WriteReports', Effect: 'Allow', Action: ['s3:PutObject', 's3:AbortMultipartUpload'], Resource: [objects('steps/*'), objects('reports/*')] },
      { Sid: 'CombineAndRemoveStepObjects', Effect: 'Allow', Action: ['s3:GetObject', 's3:DeleteObject'], Resource: objects('steps/*') },
      {
        Sid: 'UseTheBucketKeyThroughS3', Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Resource: { 'Fn::GetAtt': [expect.stringMatching(/^TelemetryKey[0-9A-F]{8}$/), 'Arn'] },
        Condition: {
          StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['s3.eu-west-1.', { Ref: 'AWS::URLSuffix' }]] } },
          StringLike: { 'kms:EncryptionContext:aws:s3:arn': [{ 'Fn::GetAtt': [expect.stringMatching(/^Telemetry[0-9A-F]{8}$/), 'Arn'] }, objects('*')] },
        },
      },
    ]);
  });
});

describe('Imdsv2Enforcement validation', () => {
  test.each([0, 65, 1.5])('fails when hopLimit is %p', (hopLimit) => {
    expect(() => enforcementStack({ hopLimit })).toThrow(new RegExp(
      `Invalid props for Imdsv2Enforcement 'Stack/Enforcement':\\n  - hopLimit: got ${hopLimit}; allowed: an integer from 1 to 64 \\(1: the host only; 2: containers on a Docker bridge; 3: overlay networks or Docker-in-Docker\\)`));
  });

  test('fails when imdsv1LookbackDays is out of range, or set with the check off', () => {
    expect(() => enforcementStack({ hopLimit: 2, imdsv1LookbackDays: 0 })).toThrow('imdsv1LookbackDays: got 0; allowed: an integer from 1 to 455');
    expect(() => enforcementStack({ hopLimit: 2, imdsv1LookbackDays: 456 })).toThrow('imdsv1LookbackDays: got 456');
    expect(() => enforcementStack({ hopLimit: 2, protectImdsv1Users: false, imdsv1LookbackDays: 7 }))
      .toThrow('imdsv1LookbackDays: got 7; allowed: only together with protectImdsv1Users');
  });

  test('fails when tag keys or values are not valid tags, or tokens', () => {
    expect(() => enforcementStack({ hopLimit: 2, exemptionTagKey: 'aws:reserved' })).toThrow('exemptionTagKey: got "aws:reserved"; allowed: a tag key');
    expect(() => enforcementStack({ hopLimit: 2, instanceTags: { 'bad*key': 'x' } })).toThrow('instanceTags["bad*key"]: got "bad*key"');
    expect(() => enforcementStack({ hopLimit: 2, instanceTags: { Fleet: Lazy.string({ produce: () => 'x' }) } }))
      .toThrow('allowed: literal tag keys and values');
    expect(() => enforcementStack({ hopLimit: 2, instanceTags: { ImdsEnforcementExempt: 'false' } }))
      .toThrow('instanceTags.ImdsEnforcementExempt: got "false"; allowed: a key other than the exemption tag key');
  });

  test('fails when vpcSubnets comes without vpc, or the mode is unknown', () => {
    expect(() => enforcementStack({ hopLimit: 2, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } })).toThrow('vpcSubnets: got');
    expect(() => enforcementStack({ hopLimit: 2, mode: 'FIX' as ImdsEnforcementMode })).toThrow('mode: got "FIX"');
  });

  test('lists every problem in one error', () => {
    try {
      enforcementStack({ hopLimit: 0, imdsv1LookbackDays: 0, exemptionTagKey: '' });
      throw new Error('expected a validation error');
    } catch (err) {
      expect(AgentFleetErrors.isValidationError(err)).toBe(true);
      expect((err as any).problems.map((p: any) => p.prop)).toEqual(['hopLimit', 'imdsv1LookbackDays', 'exemptionTagKey']);
    }
  });
});
