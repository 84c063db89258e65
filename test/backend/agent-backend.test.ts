import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import {
  AgentBackend, AgentBackendProps, AgentFleetErrors, AssessmentTemplate, BackendEndpointType, Sensor, TelemetryStore,
} from '../../lib';
import { cfnResourceOf } from '../../lib/core/nag';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const baseline = () => new AssessmentTemplate({
  name: 'baseline',
  sensors: [Sensor.PACKAGE_INVENTORY, Sensor.SOFTWARE_CONFIGURATION],
  duration: Duration.hours(1),
  targetTags: { Environment: 'prod' },
});

function backendStack(props: Partial<AgentBackendProps> = {}, app = new App()) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const telemetry = new TelemetryStore(stack, 'Telemetry');
  const backend = new AgentBackend(stack, 'Backend', { telemetry, assessments: [baseline()], ...props });
  return { stack, telemetry, backend, template: () => Template.fromStack(stack) };
}

const logicalId = (stack: Stack, construct: any) => stack.getLogicalId(cfnResourceOf(construct) as never);

function functionEnv(template: Template, description: RegExp): Record<string, any> {
  const fns = Object.values(template.findResources('AWS::Lambda::Function')) as any[];
  const fn = fns.find((f) => description.test(f.Properties.Description ?? ''));
  return fn.Properties.Environment.Variables;
}

function managedPolicyStatements(template: Template, roleLogicalId: string): any[] {
  const policies = Object.values(template.findResources('AWS::IAM::ManagedPolicy')) as any[];
  const policy = policies.find((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleLogicalId }]));
  return policy.Properties.PolicyDocument.Statement;
}

describe('AgentBackend API', () => {
  test('POST /v1/heartbeat is the only method, IAM-authorized, validated, on a regional endpoint', () => {
    const { template } = backendStack();
    const t = template();
    t.hasResourceProperties('AWS::ApiGateway::RestApi', { EndpointConfiguration: { Types: ['REGIONAL'] } });
    t.resourceCountIs('AWS::ApiGateway::Method', 1);
    t.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      AuthorizationType: 'AWS_IAM',
      RequestValidatorId: Match.anyValue(),
      Integration: { Type: 'AWS_PROXY' },
    });
    t.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestBody: true, ValidateRequestParameters: true });
    t.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'heartbeat' });
  });

  test('the resource policy admits only this account\'s principals, which still need an identity policy', () => {
    const { template } = backendStack();
    template().hasResourceProperties('AWS::ApiGateway::RestApi', {
      Policy: { Statement: [{
        Sid: 'AllowHeartbeatsFromThisAccount',
        Effect: 'Allow',
        Principal: { AWS: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::111122223333:root']] } },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*/POST/v1/heartbeat',
      }] },
    });
  });

  test('principalOrgId also admits the organization\'s other accounts', () => {
    const { template } = backendStack({ principalOrgId: 'o-a1b2c3d4e5' });
    template().hasResourceProperties('AWS::ApiGateway::RestApi', {
      Policy: { Statement: Match.arrayWith([{
        Sid: 'AllowHeartbeatsFromTheOrganization',
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*/POST/v1/heartbeat',
        Condition: { StringEquals: { 'aws:PrincipalOrgID': 'o-a1b2c3d4e5' }, StringNotEquals: { 'aws:PrincipalAccount': '111122223333' } },
      }]) },
    });
  });

  test('PRIVATE is reachable only through the given VPC endpoints', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 0 });
    const endpoint = vpc.addInterfaceEndpoint('ExecuteApi', { service: ec2.InterfaceVpcEndpointAwsService.APIGATEWAY });
    new AgentBackend(stack, 'Backend', {
      telemetry: new TelemetryStore(stack, 'Telemetry'), endpointType: BackendEndpointType.PRIVATE, vpcEndpoints: [endpoint],
    });
    Template.fromStack(stack).hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['PRIVATE'], VpcEndpointIds: [{ Ref: logicalId(stack, endpoint) }] },
      Policy: { Statement: Match.arrayWith([{
        Sid: 'DenyOutsideTheVpcEndpoints',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*',
        Condition: { StringNotEquals: { 'aws:SourceVpce': [{ Ref: logicalId(stack, endpoint) }] } },
      }]) },
    });
  });

  test('the stage throttles, traces, logs errors and writes JSON access logs to a KMS-encrypted group kept a year', () => {
    const { stack, backend, template } = backendStack({ throttlingRateLimit: 50, throttlingBurstLimit: 80 });
    const t = template();
    t.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'live',
      TracingEnabled: true,
      AccessLogSetting: { DestinationArn: { 'Fn::GetAtt': [logicalId(stack, backend.accessLogGroup), 'Arn'] }, Format: Match.stringLikeRegexp('"caller":"\\$context.identity.caller"') },
      MethodSettings: [{ HttpMethod: '*', ResourcePath: '/*', LoggingLevel: 'ERROR', DataTraceEnabled: false, MetricsEnabled: true, ThrottlingRateLimit: 50, ThrottlingBurstLimit: 80 }],
    });
    t.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 365, KmsKeyId: { 'Fn::GetAtt': [logicalId(stack, backend.encryptionKey), 'Arn'] } });
    t.resourceCountIs('AWS::ApiGateway::Account', 0); // no account-wide settings touched
  });

  test('webAclArn associates the web ACL with the stage', () => {
    const arn = 'arn:aws:wafv2:eu-west-1:111122223333:regional/webacl/fleet/0123';
    const { template } = backendStack({ webAclArn: arn });
    template().hasResourceProperties('AWS::WAFv2::WebACLAssociation', { WebACLArn: arn });
  });

  test('grantHeartbeat allows execute-api:Invoke on exactly POST /v1/heartbeat of the stage', () => {
    const { stack, backend } = backendStack();
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    backend.grantHeartbeat(role);
    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: logicalId(stack, role) }],
      PolicyDocument: { Statement: [{
        Effect: 'Allow',
        Action: 'execute-api:Invoke',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':execute-api:eu-west-1:111122223333:', { Ref: logicalId(stack, backend.api) }, '/', { Ref: Match.anyValue() }, '/POST/v1/heartbeat']] },
      }] },
    });
  });
});

describe('AgentBackend registry and functions', () => {
  test('the registry is on-demand, KMS-encrypted with the backend key, point-in-time recoverable, TTL on expiresAt, retained', () => {
    const { stack, backend, template } = backendStack();
    template().hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: { 'Fn::GetAtt': [logicalId(stack, backend.encryptionKey), 'Arn'] } },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        DeletionProtectionEnabled: true,
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    template().hasResource('AWS::KMS::Key', { Properties: { EnableKeyRotation: true, Description: Match.stringLikeRegexp('agent registry') }, DeletionPolicy: 'Retain' });
  });

  test('removalPolicy DESTROY drops deletion protection', () => {
    const { template } = backendStack({ removalPolicy: RemovalPolicy.DESTROY });
    template().hasResource('AWS::DynamoDB::Table', { Properties: { DeletionProtectionEnabled: false }, DeletionPolicy: 'Delete' });
  });

  test('the functions get their configuration: interval, cleanup, templates, telemetry folder, exclusion tag', () => {
    const { template } = backendStack({ heartbeatInterval: Duration.minutes(5), cleanupAfter: Duration.days(14), exclusionTagKey: 'AgentManaged' });
    const env = functionEnv(template(), /^Agent heartbeats/);
    expect(env).toMatchObject({
      HEARTBEAT_INTERVAL_SECONDS: '300',
      CLEANUP_AFTER_SECONDS: String(14 * 86400),
      EXCLUSION_TAG_KEY: 'AgentManaged',
      TELEMETRY_AGENT_PREFIX: 'agents/',
      COVERAGE_REPORT_PREFIX: 'reports/coverage/',
      METRIC_NAMESPACE: 'CdkAgentFleet',
      BACKEND_NAME: 'Stack/Backend',
      TAG_CACHE_SECONDS: '300',
    });
    expect(JSON.parse(env.ASSESSMENT_TEMPLATES)).toEqual([{
      name: 'baseline', sensors: ['PACKAGE_INVENTORY', 'SOFTWARE_CONFIGURATION'], durationSeconds: 3600, targetTags: { Environment: 'prod' },
    }]);
  });

  test("functions run the library's pinned Node.js runtime on arm64 with reserved concurrency, JSON logs into their own encrypted log groups", () => {
    const { template } = backendStack({ heartbeatReservedConcurrency: 40 });
    const fns = Object.values(template().findResources('AWS::Lambda::Function')) as any[];
    expect(fns).toHaveLength(3);
    for (const fn of fns) {
      expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: expect.any(String) } } });
    }
    expect(fns.map((f) => f.Properties.ReservedConcurrentExecutions).sort()).toEqual([1, 1, 40]);
    expect(fns.filter((f) => f.Properties.DeadLetterConfig)).toHaveLength(2);
  });

  test('each function role has one customer-managed policy and nothing else; no AWS managed policy, no inline policy', () => {
    const { template } = backendStack();
    const t = template();
    t.resourceCountIs('AWS::IAM::Policy', 0);
    for (const role of Object.values(t.findResources('AWS::IAM::Role')) as any[]) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
      expect(role.Properties.Policies).toBeUndefined();
    }
    t.resourceCountIs('AWS::IAM::ManagedPolicy', 3);
  });

  test('the heartbeat may update registry items and read tags of this Region; nothing else', () => {
    const { stack, backend, template } = backendStack();
    const statements = managedPolicyStatements(template(), logicalId(stack, backend.heartbeatFunction.role!.node.scope!.node.findChild('HeartbeatRole')));
    expect(statements.map((s) => s.Action)).toEqual([
      ['logs:CreateLogStream', 'logs:PutLogEvents'],
      'dynamodb:UpdateItem',
      ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
      'ec2:DescribeTags',
    ]);
    expect(statements[2].Condition).toEqual({ StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['dynamodb.eu-west-1.', { Ref: 'AWS::URLSuffix' }]] } } });
    expect(statements[3]).toMatchObject({ Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': 'eu-west-1' } } });
  });

  test('the coverage report may write only below reports/coverage/ of the store, and read only the previous report', () => {
    const { stack, backend, telemetry, template } = backendStack();
    const statements = managedPolicyStatements(template(), logicalId(stack, backend.node.findChild('CoverageReportRole')));
    const bucketArn = { 'Fn::GetAtt': [logicalId(stack, telemetry.bucket), 'Arn'] };
    expect(statements).toEqual(expect.arrayContaining([
      { Effect: 'Allow', Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [bucketArn, '/reports/coverage/*']] } },
      { Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [bucketArn, '/reports/coverage/latest.json']] } },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringEquals: { 's3:prefix': 'reports/coverage/latest.json' } } },
      {
        Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: { 'Fn::GetAtt': [logicalId(stack, telemetry.encryptionKey), 'Arn'] },
        Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['s3.eu-west-1.', { Ref: 'AWS::URLSuffix' }]] }, 'kms:EncryptionContext:aws:s3:arn': bucketArn } },
      },
    ]));
    expect(JSON.stringify(statements)).not.toMatch(/s3:DeleteObject/);
  });

  test('the coverage report puts events only on the default bus, only with its own source and detail-type', () => {
    const { stack, backend, template } = backendStack();
    const statements = managedPolicyStatements(template(), logicalId(stack, backend.node.findChild('CoverageReportRole')));
    const putEvents = statements.filter((s: any) => JSON.stringify(s.Action).includes('events:'));
    expect(putEvents).toEqual([{
      Effect: 'Allow', Action: 'events:PutEvents',
      Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':events:eu-west-1:111122223333:event-bus/default']] },
      Condition: { StringEquals: { 'events:source': 'cdk-agent-fleet', 'events:detail-type': 'Agent Coverage Status Change' } },
    }]);
    expect(AgentBackend.COVERAGE_EVENT_SOURCE).toBe('cdk-agent-fleet');
    expect(AgentBackend.COVERAGE_CHANGE_DETAIL_TYPE).toBe('Agent Coverage Status Change');
  });

  test('the sweep runs every heartbeat interval (at least 5 minutes), the report every coverageReportInterval', () => {
    const { template } = backendStack({ heartbeatInterval: Duration.minutes(2), coverageReportInterval: Duration.minutes(30) });
    const rules = Object.values(template().findResources('AWS::Events::Rule')) as any[];
    expect(rules.map((r) => r.Properties.ScheduleExpression).sort()).toEqual(['rate(30 minutes)', 'rate(5 minutes)']);
  });
});

describe('AgentBackend alarms and dashboard', () => {
  test('5xx and coverage alarms notify the alarm topic; a report that stops counts as breaching', () => {
    const { stack, backend, template } = backendStack({ coverageAlarmThreshold: 95 });
    const t = template();
    const topic = { Ref: logicalId(stack, backend.alarmTopic) };
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: '5XXError', Namespace: 'AWS/ApiGateway', Statistic: 'Sum', Threshold: 1, AlarmActions: [topic], OKActions: [topic],
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'CoverageRatio', Namespace: 'CdkAgentFleet', Dimensions: [{ Name: 'Backend', Value: 'Stack/Backend' }],
      Threshold: 95, ComparisonOperator: 'LessThanThreshold', TreatMissingData: 'breaching', Period: 3600, AlarmActions: [topic],
    });
    t.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
  });

  test('an SNS topic you pass receives the alarms and no topic is created', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const topic = sns.Topic.fromTopicArn(stack, 'Ops', 'arn:aws:sns:eu-west-1:111122223333:ops');
    const backend = new AgentBackend(stack, 'Backend', { telemetry: new TelemetryStore(stack, 'Telemetry'), alarmTopic: topic });
    expect(backend.alarmTopic).toBe(topic);
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::SNS::Topic', 0);
    t.allResourcesProperties('AWS::CloudWatch::Alarm', { AlarmActions: ['arn:aws:sns:eu-west-1:111122223333:ops'] });
  });

  test('the dashboard shows heartbeats, agents by instance type and version, IMDSv1 and coverage', () => {
    const { stack, template } = backendStack();
    const body = JSON.stringify(stack.resolve(Object.values(template().findResources('AWS::CloudWatch::Dashboard'))[0]));
    for (const text of ['ActiveAgents', 'InactiveAgents', 'AgentsUsingImdsV1', 'ImdsV1Allowed', 'Covered', 'Excluded', 'NotSsmManaged', 'AgentMissing',
      'AgentInactive', 'CoverageRatio', '5XXError', '4XXError', 'InstanceType', 'AgentVersion']) {
      expect(body).toContain(text);
    }
  });

  test('the dashboard has widgets for agentUnhealthy and for the coverage change events (sent and failed)', () => {
    const { stack, template } = backendStack();
    const resolved = stack.resolve(Object.values(template().findResources('AWS::CloudWatch::Dashboard'))[0]) as any;
    const widgets = JSON.parse(resolved.Properties.DashboardBody['Fn::Join'][1].map((p: unknown) => (typeof p === 'string' ? p : 'X')).join('')).widgets;
    const byTitle = (title: string) => widgets.find((w: any) => w.properties.title === title);
    const metricNames = (w: any) => w.properties.metrics.map((m: unknown[]) => m.find((x) => typeof x === 'string' && /^[A-Z]/.test(x) && x !== 'CdkAgentFleet' && x !== 'Backend'));
    expect(metricNames(byTitle('Agents unhealthy (service not running)'))).toEqual(['AgentUnhealthy']);
    expect(byTitle('Agents unhealthy (latest report)').type).toBe('metric');
    expect(byTitle('Agents unhealthy (latest report)').properties.view).toBe('singleValue');
    expect(metricNames(byTitle('Coverage change events'))).toEqual(['CoverageChanges', 'CoverageEventsFailed']);
    expect(byTitle('Coverage change events').properties.metrics.every((m: any[]) => m[m.length - 1].stat === 'Sum')).toBe(true);
    expect(metricNames(byTitle('Coverage'))).toContain('AgentUnhealthy');
  });
});

describe('AgentBackend validation', () => {
  const fails = (props: Partial<AgentBackendProps>, ...messages: RegExp[]) => {
    let error: unknown;
    try {
      backendStack(props);
    } catch (err) {
      error = err;
    }
    expect(AgentFleetErrors.isValidationError(error)).toBe(true);
    for (const m of messages) expect((error as Error).message).toMatch(m);
  };
  const template = (props: Partial<ConstructorParameters<typeof AssessmentTemplate>[0]>) =>
    new AssessmentTemplate({ name: 'baseline', sensors: [Sensor.PACKAGE_INVENTORY], ...props });

  test('fails when the heartbeat interval is not whole minutes from 1 to 60', () => {
    fails({ heartbeatInterval: Duration.seconds(30) }, /heartbeatInterval: got 30 seconds; allowed: a whole number of minutes from 1 to 60/);
    fails({ heartbeatInterval: Duration.minutes(61) }, /heartbeatInterval: got 1 hour 1 minute/);
    fails({ heartbeatInterval: Duration.seconds(90) }, /heartbeatInterval/);
  });
  test('fails when cleanupAfter is not whole days from 1 to 365', () => {
    fails({ cleanupAfter: Duration.hours(12) }, /cleanupAfter: got 12 hours; allowed: a whole number of days from 1 to 365/);
    fails({ cleanupAfter: Duration.days(400) }, /cleanupAfter/);
  });
  test('fails when PRIVATE has no VPC endpoints, or REGIONAL has some', () => {
    fails({ endpointType: BackendEndpointType.PRIVATE }, /vpcEndpoints: got undefined; allowed: at least one interface VPC endpoint/);
    const endpoint = { vpcEndpointId: 'vpce-1' } as ec2.IInterfaceVpcEndpoint;
    fails({ vpcEndpoints: [endpoint] }, /vpcEndpoints: got "1 endpoint\(s\)"; allowed: none unless endpointType is PRIVATE/);
  });
  test('fails when template names are invalid or not unique', () => {
    fails({ assessments: [template({ name: 'Base Line' })] }, /assessments\[0\].name: got "Base Line"/);
    fails({ assessments: [template({}), template({})] }, /assessments\[1\].name: got "baseline"; allowed: a name no other template/);
  });
  test('fails when sensors are empty or repeated', () => {
    fails({ assessments: [template({ sensors: [] })] }, /assessments\[0\].sensors: got \[\]; allowed: at least one of PACKAGE_INVENTORY/);
    fails({ assessments: [template({ sensors: [Sensor.FILE_INTEGRITY, Sensor.FILE_INTEGRITY] })] }, /each sensor at most once/);
  });
  test('fails when a duration is out of bounds or shorter than the heartbeat interval', () => {
    fails({ assessments: [template({ duration: Duration.minutes(10) })] }, /assessments\[0\].duration: got 10 minutes; allowed: a whole number of minutes from 15 minutes to 24 hours/);
    fails({ assessments: [template({ duration: Duration.days(2) })] }, /assessments\[0\].duration/);
    fails({ heartbeatInterval: Duration.minutes(30), assessments: [template({ duration: Duration.minutes(20) })] }, /at least the heartbeat interval \(30 minutes\)/);
  });
  test('fails when target tag keys or values are not valid EC2 tags', () => {
    fails({ assessments: [template({ targetTags: { 'aws:cloudformation:stack-name': 'x' } })] }, /assessments\[0\].targetTags: got "aws:cloudformation:stack-name"/);
    fails({ assessments: [template({ targetTags: { Env: 'a*b' } })] }, /assessments\[0\].targetTags\["Env"\]: got "a\*b"/);
  });
  test('fails when numbers are out of range, and lists every problem at once', () => {
    fails({ throttlingRateLimit: 0, throttlingBurstLimit: 1.5, heartbeatReservedConcurrency: 5000, coverageAlarmThreshold: 120 },
      /throttlingRateLimit: got 0/, /throttlingBurstLimit: got 1.5/, /heartbeatReservedConcurrency: got 5000/, /coverageAlarmThreshold: got 120/);
  });
  test('fails when identifiers are malformed', () => {
    fails({ principalOrgId: '123456789012', exclusionTagKey: 'aws:managed', webAclArn: 'arn:aws:wafv2:eu-west-1:111122223333:global/webacl/x/1', metricNamespace: 'AWS/Fleet' },
      /principalOrgId: got "123456789012"/, /exclusionTagKey: got "aws:managed"/, /webAclArn/, /metricNamespace: got "AWS\/Fleet"/);
    fails({ coverageReportInterval: Duration.minutes(1) }, /coverageReportInterval: got 1 minute/);
  });
  test('fails when the templates would not fit in the Lambda environment', () => {
    const many = Array.from({ length: 20 }, (_, i) => template({
      name: `template-${i}`, targetTags: Object.fromEntries(Array.from({ length: 3 }, (__, j) => [`Key${j}`, 'v'.repeat(20)])),
    }));
    fails({ assessments: many }, /assessments: got "\d+ characters of configuration"/);
  });
  test('AssessmentTemplate keeps its own copies and defaults', () => {
    const sensors = [Sensor.PROCESS_EVENTS];
    const t = new AssessmentTemplate({ name: 'x', sensors });
    sensors.push(Sensor.NETWORK_EVENTS);
    expect(t.sensors).toEqual([Sensor.PROCESS_EVENTS]);
    expect(t.duration.toMinutes()).toBe(60);
    expect(t.targetTags).toEqual({});
  });
});

