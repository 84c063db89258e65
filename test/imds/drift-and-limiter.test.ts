import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AgentFleetErrors, ImdsEnforcementMode, Imdsv2Enforcement, Imdsv2EnforcementProps } from '../../lib';
import { eventMatches } from './event-pattern';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const TABLE = 'cdk-agent-fleet-imds-modify-throttle';
const TABLE_ARN = { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:dynamodb:eu-west-1:111122223333:table/${TABLE}`]] };

function enforcementStack(props: Imdsv2EnforcementProps = { hopLimit: 2 }, app = new App(), name = 'Stack') {
  const stack = new Stack(app, name, { env: ENV });
  const enforcement = new Imdsv2Enforcement(stack, 'Enforcement', props);
  return { stack, enforcement, template: Template.fromStack(stack) };
}

function ruleWith(template: Template, descriptionPart: string): any {
  return Object.values(template.findResources('AWS::Events::Rule')).find((r) => String(r.Properties.Description).includes(descriptionPart))!.Properties;
}

function managedPolicy(template: Template, idPrefix: string): any {
  const policies = template.findResources('AWS::IAM::ManagedPolicy');
  return policies[Object.keys(policies).find((k) => k.startsWith(idPrefix))!].Properties;
}

/** A CloudTrail record as EventBridge delivers it. */
function trail(eventName: string, userIdentity: Record<string, unknown>, requestParameters: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    source: 'aws.ec2', 'detail-type': 'AWS API Call via CloudTrail',
    detail: { eventSource: 'ec2.amazonaws.com', eventName, userIdentity, requestParameters, ...extra },
  };
}
const iamUser = { type: 'IAMUser', arn: 'arn:aws:iam::111122223333:user/bob', userName: 'bob' };
const root = { type: 'Root', arn: 'arn:aws:iam::111122223333:root' };
const adminRole = {
  type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Admin/alice',
  sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Admin' } },
};
const enforcerRole = (stack: string) => ({
  type: 'AssumedRole', arn: `arn:aws:sts::111122223333:assumed-role/${stack}-EnforcerRole-X/s`,
  sessionContext: { sessionIssuer: { type: 'Role', arn: `arn:aws:iam::111122223333:role/cdk-agent-fleet/imds-enforcer/${stack}-EnforcerRole-X` } },
});
const revert = { ModifyInstanceMetadataOptionsRequest: { InstanceId: 'i-0abc0000000000001', HttpTokens: 'optional' } };
const tags = (resourceId: string, key: string) => ({ resourcesSet: { items: [{ resourceId }] }, tagSet: { items: [{ key, value: 'agents' }] } });

describe('Imdsv2Enforcement drift correction', () => {
  test('a revert by anybody but an enforcement (of any stack) triggers the correction; failed calls do not', () => {
    const { template } = enforcementStack();
    const pattern = ruleWith(template, 'changes an instance').EventPattern;
    for (const who of [iamUser, root, adminRole]) expect(eventMatches(pattern, trail('ModifyInstanceMetadataOptions', who, revert))).toBe(true);
    expect(eventMatches(pattern, trail('ModifyInstanceMetadataOptions', enforcerRole('Stack'), revert))).toBe(false);
    expect(eventMatches(pattern, trail('ModifyInstanceMetadataOptions', enforcerRole('OtherStack'), revert))).toBe(false);
    expect(eventMatches(pattern, trail('ModifyInstanceMetadataOptions', adminRole, revert, { errorCode: 'Client.UnauthorizedOperation' }))).toBe(false);
    expect(eventMatches(pattern, trail('ModifyInstanceAttribute', adminRole, revert))).toBe(false);
  });

  test('an instance tagged into the scope, or its exemption tag removed, triggers the correction', () => {
    const { template } = enforcementStack({ hopLimit: 2, instanceTags: { Fleet: 'agents' } });
    const pattern = ruleWith(template, 'tagged into the scope').EventPattern;
    expect(eventMatches(pattern, trail('CreateTags', adminRole, tags('i-0abc0000000000001', 'Fleet')))).toBe(true);
    expect(eventMatches(pattern, trail('DeleteTags', adminRole, tags('i-0abc0000000000001', 'ImdsEnforcementExempt')))).toBe(true);
    expect(eventMatches(pattern, trail('CreateTags', adminRole, tags('i-0abc0000000000001', 'Owner')))).toBe(false);
    expect(eventMatches(pattern, trail('CreateTags', adminRole, tags('vol-0abc000000000001', 'Fleet')))).toBe(false);
    expect(eventMatches(pattern, trail('CreateTags', adminRole, tags('i-0abc0000000000001', 'Fleet'), { errorCode: 'Client.InvalidID' }))).toBe(false);
  });

  test('the fleet is swept again daily by default, or at driftCheckInterval', () => {
    expect(ruleWith(enforcementStack().template, 'Sweeps the fleet again').ScheduleExpression).toBe('rate(1 day)');
    const { template } = enforcementStack({ hopLimit: 2, driftCheckInterval: Duration.hours(6) });
    expect(ruleWith(template, 'Sweeps the fleet again').ScheduleExpression).toBe('rate(6 hours)');
    expect(managedPolicy(template, 'EnforcementDriftPolicy').PolicyDocument.Statement[0]).toEqual({
      Sid: 'StartScheduledSweepUnlessRunning', Effect: 'Allow', Action: ['states:ListExecutions', 'states:StartExecution'],
      Resource: { Ref: expect.stringMatching(/^EnforcementSweep/) },
    });
  });

  test('every role that modifies instances is under the enforcers\' path, which the revert rule leaves out', () => {
    const { template } = enforcementStack();
    const roles = template.findResources('AWS::IAM::Role');
    const under = Object.keys(roles).filter((id) => roles[id].Properties.Path === '/cdk-agent-fleet/imds-enforcer/').sort();
    expect(under).toEqual([expect.stringMatching(/^EnforcementDriftRole/), expect.stringMatching(/^EnforcementEnforcerRole/)]);
    expect(managedPolicy(template, 'EnforcementEnforcerPolicy').Roles).toHaveLength(2);
  });

  test('fails when driftCheckInterval is under an hour, over 30 days or not whole minutes', () => {
    for (const driftCheckInterval of [Duration.minutes(30), Duration.days(31), Duration.seconds(5430)]) {
      let error: unknown;
      try {
        enforcementStack({ hopLimit: 2, driftCheckInterval });
      } catch (err) {
        error = err;
      }
      expect(AgentFleetErrors.isValidationError(error)).toBe(true);
      expect(String((error as Error).message)).toMatch(/driftCheckInterval.*a whole number of minutes from 1 hour to 30 days/s);
    }
  });
});

describe('Imdsv2Enforcement shared limiter', () => {
  test('every enforcement, in one stack or two, paces by the same table and may only write its one item', () => {
    const app = new App();
    const containers = new Stack(app, 'Containers', { env: ENV });
    const hosts = new Stack(app, 'Hosts', { env: ENV });
    const both = new Stack(app, 'Both', { env: ENV });
    const separate = [
      new Imdsv2Enforcement(containers, 'Enforcement', { hopLimit: 2, instanceTags: { Fleet: 'containers' } }),
      new Imdsv2Enforcement(hosts, 'Enforcement', { hopLimit: 1, instanceTags: { Fleet: 'hosts' } }),
    ];
    new Imdsv2Enforcement(both, 'Enforcement', { hopLimit: 2, instanceTags: { Fleet: 'containers' } });
    new Imdsv2Enforcement(both, 'Plain', { hopLimit: 1, instanceTags: { Fleet: 'hosts' }, accountDefaults: false });
    const pairs = separate.map((enforcement) => ({ enforcement, template: Template.fromStack(Stack.of(enforcement)) }));
    const bothTemplate = Template.fromStack(both);
    expect(Object.values(bothTemplate.findResources('Custom::ImdsModifyThrottleTable')).map((r) => r.Properties.TableName)).toEqual([TABLE, TABLE]);

    for (const { template, enforcement } of pairs) {
      expect(enforcement.limiterTableName).toBe(TABLE);
      template.hasResourceProperties('Custom::ImdsModifyThrottleTable', { TableName: TABLE });
      const fns = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => /one page of instances|entering running|changes made by others/.test(f.Properties.Description));
      expect(fns).toHaveLength(3);
      for (const fn of fns) expect(fn.Properties.Environment.Variables.IMDS_LIMITER_TABLE).toBe(TABLE);
      expect(managedPolicy(template, 'EnforcementEnforcerPolicy').PolicyDocument.Statement).toContainEqual({
        Sid: 'PaceBySharedModifyThrottle', Effect: 'Allow', Action: 'dynamodb:UpdateItem', Resource: TABLE_ARN,
        Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['ec2:ModifyInstanceMetadataOptions'] } },
      });
      expect(managedPolicy(template, 'EnforcementModifyThrottlePolicy').PolicyDocument.Statement[0]).toEqual({
        Sid: 'CreateTheLimiterTableIfMissing', Effect: 'Allow', Action: ['dynamodb:DescribeTable', 'dynamodb:CreateTable', 'dynamodb:TagResource'],
        Resource: TABLE_ARN,
      });
      // The sweep starts only once the table exists.
      const enforcementResource = Object.values(template.findResources('Custom::Imdsv2Enforcement'))[0];
      expect(enforcementResource.DependsOn).toContainEqual(expect.stringMatching(/^EnforcementModifyThrottle/));
    }
  });

  test('AUDIT modifies nothing, so it neither creates nor uses the limiter', () => {
    const { template, enforcement } = enforcementStack({ hopLimit: 2, mode: ImdsEnforcementMode.AUDIT });
    expect(enforcement.limiterTableName).toBeUndefined();
    template.resourceCountIs('Custom::ImdsModifyThrottleTable', 0);
    expect(JSON.stringify(template.toJSON())).not.toContain('dynamodb:');
    expect(JSON.stringify(template.findResources('AWS::Lambda::Function'))).not.toContain('IMDS_LIMITER_TABLE');
  });
});

describe('Imdsv2Enforcement alarm and dashboard widgets', () => {
  test('ENFORCE alarms on IMDSv1 calls refused anywhere in the account and Region, through an encrypted topic', () => {
    const { template, enforcement } = enforcementStack();
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [{ Id: 'expr_1', Expression: 'SELECT SUM(MetadataNoTokenRejected) FROM SCHEMA("AWS/EC2", InstanceId)', Period: 300, ReturnData: true, Label: 'IMDSv1 calls refused' }],
      Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^EnforcementMonitoringAlarmTopic') }],
    });
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^EnforcementKey'), 'Arn'] } });
    expect(enforcement.imdsv1RejectedAlarm).toBeDefined();
    expect(enforcement.dashboardWidgets()).toHaveLength(3);
  });

  test('alarmTopic takes the notifications instead of a new topic; AUDIT has no alarm', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const topic = new sns.Topic(stack, 'Mine');
    const enforcement = new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2, alarmTopic: topic });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    expect(enforcement.alarmTopic).toBe(topic);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [{ Ref: Match.stringLikeRegexp('^Mine') }] });

    const audit = enforcementStack({ hopLimit: 2, mode: ImdsEnforcementMode.AUDIT });
    audit.template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    expect(audit.enforcement.dashboardWidgets()).toHaveLength(2);
  });
});
