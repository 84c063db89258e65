import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  AgentAutoConfiguration, AgentBackend, AgentEndpointService, AgentFleet, AgentFleetErrors, AgentFleetProps,
  AgentInstallDocument, AgentPackage, AgentVpcEndpoints, AssessmentTemplate, AutoConfigurationMode, BackendEndpointType,
  ImdsEnforcementMode, Imdsv2Enforcement, PackageFormat, Sensor, TelemetryStore,
} from '../lib';
import { acknowledgeNagFindings, cfnResourceOf } from '../lib/core/nag';
import { AgentFleetValidationError } from '../lib/core/validation';
import { nagFindings, nagV2Findings } from './helpers/nag';
import { normalizedTemplate } from './helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const PACKAGE_BUCKET = 'agent-packages-111122223333';
const PACKAGE_KEY = 'security-agent/1.2.3/security-agent_1.2.3_arm64.deb';

/** One package from a URL and one from an S3 bucket (whose object the endpoints must let through). */
function packages(stack: Stack): AgentPackage[] {
  const agent = { version: '1.2.3', serviceName: 'security-agent' };
  return [
    AgentPackage.fromUrl('https://downloads.example.com/security-agent-1.2.3.x86_64.rpm', {
      ...agent, format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
    }),
    AgentPackage.fromBucket(s3.Bucket.fromBucketName(stack, 'Packages', PACKAGE_BUCKET), PACKAGE_KEY, {
      ...agent, format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.ARM_64, sha256: 'b'.repeat(64),
    }),
  ];
}

/** A VPC from attributes (no resources of its own), number `n`, with ids of the right format. */
function importedVpc(stack: Stack, id: string, n: number): ec2.IVpc {
  const hex = (prefix: string, i: number) => `${prefix}-0${(n * 16 + i).toString(16).padStart(16, '0')}`;
  return ec2.Vpc.fromVpcAttributes(stack, id, {
    vpcId: hex('vpc', 0),
    vpcCidrBlock: `10.${n}.0.0/16`,
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    isolatedSubnetIds: [hex('subnet', 1), hex('subnet', 2)],
    isolatedSubnetRouteTableIds: [hex('rtb', 1), hex('rtb', 2)],
  });
}

type FleetOptions = Partial<AgentFleetProps> & { vpcCount?: number };

/** A stack with one fleet; by default the minimal call with one VPC. */
function fleetStack(options: FleetOptions = {}, app = new App()) {
  const { vpcCount = 1, ...props } = options;
  const stack = new Stack(app, 'Stack', { env: ENV });
  const vpcs = Array.from({ length: vpcCount }, (_, i) => importedVpc(stack, i === 0 ? 'Vpc' : `Vpc${i + 1}`, i));
  const fleet = new AgentFleet(stack, 'Fleet', {
    agentName: 'security-agent',
    packages: packages(stack),
    imds: { hopLimit: 2 },
    ...(vpcs.length > 0 ? { vpcs } : {}),
    ...props,
  });
  return { stack, fleet, vpcs, template: () => Template.fromStack(stack) };
}

/** The error a fleet with these props throws. */
function fleetError(options: FleetOptions): AgentFleetValidationError {
  try {
    fleetStack(options);
  } catch (e) {
    expect(AgentFleetErrors.isValidationError(e)).toBe(true);
    return e as AgentFleetValidationError;
  }
  throw new Error('expected the fleet to fail');
}

const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) => stack.getLogicalId(construct.node.defaultChild as never);

function s3EndpointStatements(template: Template): any[] {
  const endpoints = Object.values(template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Gateway' } }));
  expect(endpoints).toHaveLength(1);
  return endpoints[0].Properties.PolicyDocument.Statement;
}

function functionEnvironment(template: Template, description: RegExp): Record<string, unknown> {
  const fns = Object.values(template.findResources('AWS::Lambda::Function')).filter((fn: any) => description.test(fn.Properties.Description ?? ''));
  expect(fns).toHaveLength(1);
  return (fns[0] as any).Properties.Environment.Variables;
}

describe('AgentFleet: the minimal call', () => {
  // One synth for the whole describe: the full fleet is the heaviest stack of the library.
  let built: ReturnType<typeof fleetStack>;
  let template: Template;
  beforeAll(() => {
    built = fleetStack();
    template = built.template();
  });

  test('creates every part: store, document, association, IMDS enforcement, endpoints, backend with dashboard', () => {
    // GIVEN / WHEN: new AgentFleet(stack, 'Fleet', { agentName, packages, imds: { hopLimit: 2 }, vpcs: [vpc] })
    // THEN
    const counts: Record<string, number> = {};
    for (const r of Object.values(template.toJSON().Resources) as any[]) counts[r.Type] = (counts[r.Type] ?? 0) + 1;
    expect(counts).toMatchObject({
      'AWS::S3::Bucket': 2, // telemetry and its access logs
      'AWS::SSM::Document': 1,
      'AWS::SSM::Association': 1,
      'Custom::Imdsv2Enforcement': 1,
      'AWS::StepFunctions::StateMachine': 1,
      'AWS::EC2::VPCEndpoint': 4, // ssm, ssmmessages, ec2messages, S3 gateway
      'AWS::ApiGateway::RestApi': 1,
      'AWS::DynamoDB::Table': 1,
      'AWS::CloudWatch::Dashboard': 1,
      'AWS::CloudWatch::Alarm': 3, // heartbeat errors, coverage, IMDSv1 calls refused
    });
    template.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.execute-api' }, 0);
  });

  test('every created part is a readonly property, under its documented construct id', () => {
    const { fleet, vpcs } = built;
    expect(fleet.telemetry).toBeInstanceOf(TelemetryStore);
    expect(fleet.installDocument).toBeInstanceOf(AgentInstallDocument);
    expect(fleet.autoConfiguration).toBeInstanceOf(AgentAutoConfiguration);
    expect(fleet.imdsEnforcement).toBeInstanceOf(Imdsv2Enforcement);
    expect(fleet.backend).toBeInstanceOf(AgentBackend);
    expect(fleet.endpoints).toHaveLength(1);
    expect(fleet.endpoints[0]).toBeInstanceOf(AgentVpcEndpoints);
    expect([fleet.telemetry, fleet.installDocument, fleet.autoConfiguration!, fleet.imdsEnforcement!, fleet.backend!, fleet.endpoints[0]]
      .map((part) => part.node.id)).toEqual(['Telemetry', 'InstallDocument', 'AutoConfiguration', 'ImdsEnforcement', 'Backend', `Endpoints-${vpcs[0].node.id}`]);
    expect(fleet.tagKey).toBe('SecurityAgentManaged');
    expect(fleet.mode).toBe(AutoConfigurationMode.ALL_INSTANCES);
    expect(fleet.imdsEnforcement!.hopLimit).toBe(2);
  });

  test('the same tag key in the document, the association and the backend', () => {
    const document = Object.values(template.findResources('AWS::SSM::Document'))[0] as any;
    expect(document.Properties.Content.parameters.tagKey.default).toBe('SecurityAgentManaged');
    template.hasResourceProperties('AWS::SSM::Association', {
      Parameters: { action: ['Install'], mode: ['ALL_INSTANCES'], tagKey: ['SecurityAgentManaged'] },
      Targets: [{ Key: 'InstanceIds', Values: ['*'] }],
    });
    expect(functionEnvironment(template, /^Agent heartbeats/)).toMatchObject({ EXCLUSION_TAG_KEY: 'SecurityAgentManaged' });
  });

  test('association output goes into the telemetry store, in a folder named after the agent', () => {
    const { stack, fleet } = built;
    template.hasResourceProperties('AWS::SSM::Association', {
      OutputLocation: { S3Location: {
        OutputS3BucketName: { Ref: logicalId(stack, fleet.telemetry.bucket) },
        OutputS3KeyPrefix: 'ssm-association-output/security-agent',
      } },
    });
  });

  test('the backend reports into the telemetry store and hands agents its prefix', () => {
    const { stack, fleet } = built;
    expect(functionEnvironment(template, /^Agent heartbeats/)).toMatchObject({
      TELEMETRY_BUCKET: { Ref: logicalId(stack, fleet.telemetry.bucket) },
      TELEMETRY_AGENT_PREFIX: 'agents/',
    });
  });

  test('IMDS enforcement enforces instance metadata tags (the document reads the tag from them)', () => {
    const [resource] = Object.values(template.findResources('Custom::Imdsv2Enforcement')) as any[];
    expect(JSON.stringify(resource.Properties.Policy)).toMatch(/\\?"instanceMetadataTags\\?":true/);
    expect(JSON.stringify(resource.Properties.Policy)).toMatch(/\\?"hopLimit\\?":2/);
  });

  test("the S3 endpoint lets instances write into the store and read the fleet's package objects", () => {
    const { stack, fleet } = built;
    const bucket = logicalId(stack, fleet.telemetry.bucket);
    const statements = s3EndpointStatements(template);
    const bySid = (sid: string) => statements.find((s) => s.Sid === sid);
    expect(bySid('AgentPackages')).toMatchObject({ Action: 's3:GetObject' });
    expect(JSON.stringify(bySid('AgentPackages').Resource)).toContain(`${PACKAGE_BUCKET}/${PACKAGE_KEY}`);
    expect(bySid('TelemetryAndOutput')).toMatchObject({
      Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/*']] },
    });
  });

  test('everything that holds data is retained by default', () => {
    for (const type of ['AWS::S3::Bucket', 'AWS::KMS::Key', 'AWS::DynamoDB::Table']) {
      const resources = Object.values(template.findResources(type)) as any[];
      expect(resources.length).toBeGreaterThan(0);
      expect(resources.every((r) => r.DeletionPolicy === 'Retain')).toBe(true);
    }
  });

  test('every resource is tagged with the agent name', () => {
    template.hasResourceProperties('AWS::S3::Bucket', { Tags: Match.arrayWith([{ Key: 'cdk-agent-fleet:agent', Value: 'security-agent' }]) });
    template.hasResourceProperties('AWS::DynamoDB::Table', { Tags: Match.arrayWith([{ Key: 'cdk-agent-fleet:agent', Value: 'security-agent' }]) });
  });

  test('no warnings of its own with IMDS enforcement on and a regional backend', () => {
    const warnings = Annotations.fromStack(built.stack).findWarning('*', Match.stringLikeRegexp('.*'));
    expect(warnings.map((w) => w.entry.data)).toEqual([]);
  });

  test('snapshot of the normalised template', () => {
    expect(normalizedTemplate(built.stack)).toMatchSnapshot();
  });
});

describe('AgentFleet wiring', () => {
  test('a custom tag key and TAGGED_ONLY reach the document, the associations and the backend', () => {
    // GIVEN / WHEN
    const { template, fleet } = fleetStack({
      tagKey: 'Fleet.Managed', mode: AutoConfigurationMode.TAGGED_ONLY, vpcCount: 0,
      autoConfiguration: { uninstallWhenExcluded: true, maxConcurrencyPercentage: 20 },
    });

    // THEN
    const t = template();
    const document = Object.values(t.findResources('AWS::SSM::Document'))[0] as any;
    expect(document.Properties.Content.parameters.tagKey.default).toBe('Fleet.Managed');
    t.hasResourceProperties('AWS::SSM::Association', {
      Parameters: { action: ['Install'], mode: ['TAGGED_ONLY'], tagKey: ['Fleet.Managed'] },
      Targets: [{ Key: 'tag:Fleet.Managed', Values: ['true'] }], MaxConcurrency: '20%',
    });
    t.hasResourceProperties('AWS::SSM::Association', {
      Parameters: { action: ['Uninstall'], mode: ['TAGGED_ONLY'], tagKey: ['Fleet.Managed'] },
      Targets: [{ Key: 'tag:Fleet.Managed', Values: ['false'] }],
    });
    expect(functionEnvironment(t, /^Agent heartbeats/)).toMatchObject({ EXCLUSION_TAG_KEY: 'Fleet.Managed' });
    expect(functionEnvironment(t, /^Fleet coverage/)).toMatchObject({ EXCLUSION_TAG_KEY: 'Fleet.Managed' });
    expect([fleet.tagKey, fleet.mode]).toEqual(['Fleet.Managed', AutoConfigurationMode.TAGGED_ONLY]);
    expect(fleet.endpoints).toEqual([]);
    t.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
  });

  test('a PRIVATE backend gets an execute-api endpoint in every VPC and admits only those', () => {
    // GIVEN / WHEN
    const { stack, template, fleet } = fleetStack({ vpcCount: 2, backend: { endpointType: BackendEndpointType.PRIVATE } });

    // THEN
    const t = template();
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.execute-api', PrivateDnsEnabled: true }, 2);
    const endpointIds = fleet.endpoints.map((e) => ({ Ref: logicalId(stack, e.executeApiEndpoint!) }));
    t.hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['PRIVATE'], VpcEndpointIds: endpointIds },
      Policy: { Statement: Match.arrayWith([Match.objectLike({
        Effect: 'Deny', Condition: { StringNotEquals: { 'aws:SourceVpce': endpointIds } },
      })]) },
    });
    expect(fleet.endpoints.map((e) => e.node.id)).toEqual(['Endpoints-Vpc', 'Endpoints-Vpc2']);
    Annotations.fromStack(stack).hasWarning('/Stack/Fleet', Match.stringLikeRegexp('execute-api interface endpoint with private DNS'));
  });

  test('endpoint options apply in each VPC', () => {
    const { template } = fleetStack({
      vpcCount: 2,
      endpoints: { existingEndpoints: [AgentEndpointService.S3], additionalCidrBlocks: ['100.64.0.0/16'] },
    });
    const t = template();
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' }, 0);
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 6);
    t.resourcePropertiesCountIs('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: Match.arrayWith([Match.objectLike({ CidrIp: '100.64.0.0/16', FromPort: 443 })]),
    }, 2);
  });

  test('backend, telemetry and IMDS options reach their parts', () => {
    const { template } = fleetStack({
      vpcCount: 0,
      telemetry: { retention: Duration.days(90) },
      imds: { hopLimit: 1, mode: ImdsEnforcementMode.AUDIT },
      backend: {
        heartbeatInterval: Duration.minutes(5),
        assessments: [new AssessmentTemplate({ name: 'baseline', sensors: [Sensor.PACKAGE_INVENTORY], duration: Duration.hours(1) })],
      },
      installDocument: { timeout: Duration.minutes(10) },
    });
    const t = template();
    t.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90 })]) },
    });
    const env = functionEnvironment(t, /^Agent heartbeats/);
    expect(env.HEARTBEAT_INTERVAL_SECONDS).toBe('300');
    expect(JSON.parse(env.ASSESSMENT_TEMPLATES as string)).toEqual([expect.objectContaining({ name: 'baseline' })]);
    const [resource] = Object.values(t.findResources('Custom::Imdsv2Enforcement')) as any[];
    expect(JSON.stringify(resource.Properties.Policy)).toMatch(/AUDIT/);
    const document = Object.values(t.findResources('AWS::SSM::Document'))[0] as any;
    expect(JSON.stringify(document.Properties.Content)).toMatch(/"timeoutSeconds":"600"/);
  });

  test("removalPolicy reaches every part; a part's own removalPolicy wins", () => {
    const { stack, fleet, template } = fleetStack({
      vpcCount: 0, removalPolicy: RemovalPolicy.DESTROY, telemetry: { removalPolicy: RemovalPolicy.RETAIN },
    });
    const t = template().toJSON().Resources;
    expect(t[logicalId(stack, fleet.telemetry.bucket)].DeletionPolicy).toBe('Retain');
    expect(t[logicalId(stack, fleet.backend!.registry)].DeletionPolicy).toBe('Delete');
    expect(t[logicalId(stack, fleet.backend!.encryptionKey)].DeletionPolicy).toBe('Delete');
    expect(t[logicalId(stack, fleet.imdsEnforcement!.encryptionKey)].DeletionPolicy).toBe('Delete');
  });
});

describe('AgentFleet switches', () => {
  test('enableBackend: false creates no API, registry or dashboard', () => {
    const { fleet, template } = fleetStack({ enableBackend: false });
    const t = template();
    for (const type of ['AWS::ApiGateway::RestApi', 'AWS::DynamoDB::Table', 'AWS::CloudWatch::Dashboard']) t.resourceCountIs(type, 0);
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.execute-api' }, 0);
    expect(fleet.backend).toBeUndefined();
  });

  test('enableAutoConfiguration: false keeps the document and creates no association', () => {
    const { fleet, template } = fleetStack({ enableAutoConfiguration: false, vpcCount: 0 });
    template().resourceCountIs('AWS::SSM::Association', 0);
    template().resourceCountIs('AWS::SSM::Document', 1);
    expect(fleet.autoConfiguration).toBeUndefined();
  });

  test.each([
    [AutoConfigurationMode.ALL_INSTANCES, /tagged SecurityAgentManaged=false still gets the agent/],
    [AutoConfigurationMode.TAGGED_ONLY, /even instances tagged SecurityAgentManaged=true do not get the agent/],
  ])('enableImdsEnforcement: false creates no enforcement, and warns that metadata tags are up to the instances (%s)', (mode, consequence) => {
    const { stack, fleet, template } = fleetStack({ enableImdsEnforcement: false, imds: undefined, mode, vpcCount: 0 });
    template().resourceCountIs('Custom::Imdsv2Enforcement', 0);
    expect(fleet.imdsEnforcement).toBeUndefined();
    Annotations.fromStack(stack).hasWarning('/Stack/Fleet', Match.stringLikeRegexp('IMDS enforcement is off.*'));
    Annotations.fromStack(stack).hasWarning('/Stack/Fleet', Match.stringLikeRegexp(consequence.source));
  });

  test('IMDS enforcement in AUDIT mode warns the same way', () => {
    const { stack } = fleetStack({ imds: { hopLimit: 2, mode: ImdsEnforcementMode.AUDIT }, vpcCount: 0 });
    Annotations.fromStack(stack).hasWarning('/Stack/Fleet', Match.stringLikeRegexp('AUDIT mode and changes nothing'));
  });

  test('no vpcs: no endpoints', () => {
    const { fleet, template } = fleetStack({ vpcCount: 0 });
    template().resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    expect(fleet.endpoints).toEqual([]);
  });
});

describe('AgentFleet.grantInstanceRole', () => {
  function grantedStatements(options: FleetOptions) {
    const { stack, fleet, template } = fleetStack({ vpcCount: 0, ...options });
    const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    fleet.grantInstanceRole(role);
    const t = template();
    const [policy] = Object.values(t.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: logicalId(stack, role) }] } })) as any[];
    const [roleResource] = Object.values(t.findResources('AWS::IAM::Role', { Properties: { AssumeRolePolicyDocument: Match.objectLike({
      Statement: [Match.objectLike({ Principal: { Service: 'ec2.amazonaws.com' } })] }) } })) as any[];
    return { stack, fleet, statements: policy.Properties.PolicyDocument.Statement as any[], managed: JSON.stringify(roleResource.Properties.ManagedPolicyArns) };
  }

  test('SSM core, package objects, association output, own telemetry prefix, heartbeat', () => {
    // GIVEN / WHEN
    const { stack, fleet, statements, managed } = grantedStatements({});

    // THEN
    const bucket = logicalId(stack, fleet.telemetry.bucket);
    expect(managed).toMatch(/AmazonSSMManagedInstanceCore/);
    const byAction = (action: string) => statements.filter((s) => [s.Action].flat().includes(action)).map((s) => JSON.stringify(s.Resource));
    expect(byAction('s3:GetObject')).toEqual([expect.stringContaining(`${PACKAGE_BUCKET}/${PACKAGE_KEY}`)]);
    expect(byAction('s3:PutObject')).toEqual(expect.arrayContaining([
      expect.stringContaining('/agents/${aws:userid}/*'),
      expect.stringContaining('/ssm-association-output/security-agent/*'),
    ]));
    expect(byAction('s3:PutObject').every((r) => r.includes(bucket))).toBe(true);
    expect(byAction('execute-api:Invoke')).toEqual([expect.stringContaining('/POST/v1/heartbeat')]);
  });

  test('without auto-configuration or backend: SSM core, packages and telemetry only', () => {
    const { statements, managed } = grantedStatements({ enableAutoConfiguration: false, enableBackend: false });
    expect(managed).toMatch(/AmazonSSMManagedInstanceCore/);
    const text = JSON.stringify(statements);
    expect(text).toMatch(/agents\/\$\{aws:userid\}\/\*/);
    expect(text).toContain(PACKAGE_KEY);
    expect(text).not.toMatch(/ssm-association-output|execute-api/);
  });
});

describe('AgentFleet validation', () => {
  const problems = (options: FleetOptions) => fleetError(options).problems.map((p) => p.prop);

  test.each<[string, FleetOptions, string, RegExp]>([
    ['agentName has other characters', { agentName: 'security agent' }, 'agentName', /1 to 32 letters, digits and -/],
    ['agentName is too long', { agentName: 'a'.repeat(33) }, 'agentName', /1 to 32/],
    ['packages are empty', { packages: [] }, 'packages', /at least one AgentPackage/],
    ['TAGGED_ONLY has an empty tag key', { mode: AutoConfigurationMode.TAGGED_ONLY, tagKey: '' }, 'tagKey', /TAGGED_ONLY mode only instances tagged/],
    ['the tag key is not one IMDS serves', { tagKey: 'Security Agent' }, 'tagKey', /what the instance metadata service serves/],
    ['the tag key is reserved', { tagKey: 'aws:managed' }, 'tagKey', /not starting with 'aws:'/],
    ['the tag key starts with a dot', { tagKey: '.hidden' }, 'tagKey', /not starting with \./],
    ['IMDS enforcement has no hop limit', { imds: undefined }, 'imds.hopLimit', /required while enableImdsEnforcement is true/],
    ['IMDS enforcement turns metadata tags off', { imds: { hopLimit: 2, instanceMetadataTags: false } }, 'imds.instanceMetadataTags', /reads SecurityAgentManaged from instance metadata tags/],
    ['a PRIVATE backend has no VPC', { vpcCount: 0, backend: { endpointType: BackendEndpointType.PRIVATE } }, 'backend.endpointType', /REGIONAL unless vpcs are given/],
    ['a PRIVATE backend would use an execute-api endpoint the fleet does not create',
      { backend: { endpointType: BackendEndpointType.PRIVATE }, endpoints: { existingEndpoints: [AgentEndpointService.EXECUTE_API] } },
      'endpoints.existingEndpoints', /no EXECUTE_API with a PRIVATE backend/],
    ['backend options are given with the backend off', { enableBackend: false, backend: { heartbeatInterval: Duration.minutes(5) } }, 'backend', /nothing while enableBackend is false/],
    ['auto-configuration options are given with it off', { enableAutoConfiguration: false, autoConfiguration: { maxErrorsPercentage: 1 } }, 'autoConfiguration', /nothing while enableAutoConfiguration is false/],
    ['a mode is given with auto-configuration off', { enableAutoConfiguration: false, mode: AutoConfigurationMode.TAGGED_ONLY }, 'mode', /the mode is what the associations target/],
    ['IMDS options are given with enforcement off', { enableImdsEnforcement: false }, 'imds', /nothing while enableImdsEnforcement is false/],
    ['endpoint options are given without VPCs', { vpcCount: 0, endpoints: { additionalCidrBlocks: ['100.64.0.0/16'] } }, 'endpoints', /only with vpcs/],
  ])('fails when %s', (_, options, prop, allowed) => {
    const error = fleetError(options);
    expect(error.problems).toEqual([expect.objectContaining({ prop, allowed: expect.stringMatching(allowed) })]);
    expect(error.message).toMatch(/^Invalid props for AgentFleet 'Stack\/Fleet':/);
  });

  test('fails when a VPC is given twice, or two VPCs share a construct id', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpc = importedVpc(stack, 'Vpc', 0);
    const other = importedVpc(new Stack(app, 'Other', { env: ENV }), 'Vpc', 9);
    try {
      new AgentFleet(stack, 'Fleet', { agentName: 'a', packages: packages(stack), imds: { hopLimit: 1 }, vpcs: [vpc, vpc, other] });
      throw new Error('expected the fleet to fail');
    } catch (e) {
      expect((e as AgentFleetValidationError).problems).toEqual([
        expect.objectContaining({ prop: 'vpcs[1]', allowed: 'each VPC once (it is vpcs[0] too)' }),
        expect.objectContaining({ prop: 'vpcs[2]', value: '"Other/Vpc"', allowed: expect.stringMatching(/distinct construct ids.*vpcs\[0\] \(Stack\/Vpc\)/) }),
      ]);
    }
  });

  test("the parts' own problems come in the same error, under the fleet's prop names", () => {
    const error = fleetError({
      backend: { heartbeatInterval: Duration.minutes(90) },
      autoConfiguration: { maxConcurrencyPercentage: 0 },
      imds: { hopLimit: 65 },
      endpoints: { additionalCidrBlocks: ['10.0.0.0/33'] },
      vpcCount: 2,
    });
    expect(error.problems.map((p) => p.prop)).toEqual([
      'autoConfiguration.maxConcurrencyPercentage', 'imds.hopLimit',
      // The same problem in both VPCs is reported once.
      'endpoints.additionalCidrBlocks[0]', 'backend.heartbeatInterval',
    ]);
    expect(error.message).toMatch(/backend\.heartbeatInterval: got 1 hour 30 minutes; allowed: a whole number of minutes from 1 to 60/);
  });

  test('problems of the store and the document come together; the parts that need them are checked once they are valid', () => {
    const error = fleetError({
      telemetry: { retention: Duration.hours(36) },
      installDocument: { timeout: Duration.hours(3) },
      imds: { hopLimit: 0 },
      backend: { heartbeatInterval: Duration.minutes(90) },
    });
    expect(error.problems.map((p) => p.prop)).toEqual(['telemetry.retention', 'installDocument.timeout', 'imds.hopLimit']);
  });

  test('every problem comes in one error', () => {
    // GIVEN props wrong in many ways at once
    const props = problems({
      agentName: '',
      tagKey: 'bad key',
      imds: { hopLimit: 2, instanceMetadataTags: false },
      enableBackend: false,
      backend: { heartbeatInterval: Duration.minutes(5) },
      enableAutoConfiguration: false,
      autoConfiguration: { uninstallWhenExcluded: true },
      vpcCount: 0,
      endpoints: { existingEndpoints: [AgentEndpointService.S3] },
      telemetry: { retention: Duration.days(0) },
    });

    // THEN
    expect(props).toEqual(expect.arrayContaining([
      'agentName', 'tagKey', 'imds.instanceMetadataTags', 'backend', 'autoConfiguration', 'endpoints', 'telemetry.retention',
    ]));
    expect(props).toHaveLength(7);
  });

  test('uninstallWhenExcluded works in TAGGED_ONLY mode (the uninstall association targets the exclusion tag either way)', () => {
    const { template } = fleetStack({ mode: AutoConfigurationMode.TAGGED_ONLY, autoConfiguration: { uninstallWhenExcluded: true }, vpcCount: 0 });
    template().resourceCountIs('AWS::SSM::Association', 2);
  });
});

describe('AgentFleet compliance', () => {
  /** The full fleet in two real VPCs of private subnets only (no NAT: the endpoints are the way out). */
  function fullFleet(app: App): Stack {
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpcs = ['VpcA', 'VpcB'].map((id, i) => {
      const vpc = new ec2.Vpc(stack, id, {
        ipAddresses: ec2.IpAddresses.cidr(`10.${i}.0.0/16`),
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }],
        // Restricting the default security group is a custom resource of its own; the test
        // acknowledges the finding on the test VPC instead.
        restrictDefaultSecurityGroup: false,
      });
      acknowledgeTestVpcFindings(vpc);
      return vpc;
    });
    new AgentFleet(stack, 'Fleet', {
      agentName: 'security-agent',
      packages: packages(stack),
      imds: { hopLimit: 2 },
      vpcs,
      backend: { endpointType: BackendEndpointType.PRIVATE },
      autoConfiguration: { enableDefaultHostManagement: true },
    });
    return stack;
  }

  /** Findings about the test's own VPCs, which are not part of the library. */
  function acknowledgeTestVpcFindings(vpc: ec2.Vpc): void {
    const reason = 'A VPC made by this test to host the fleet; flow logs and the default security group are the VPC owner\'s decisions, not the library\'s.';
    acknowledgeNagFindings(cfnResourceOf(vpc), ...[
      'AwsSolutions-VPC7', 'NIST.800.53.R5-VPCFlowLogsEnabled', 'HIPAA.Security-VPCFlowLogsEnabled', 'PCI.DSS.321-VPCFlowLogsEnabled',
      'NIST.800.53.R5-VPCDefaultSecurityGroupClosed', 'HIPAA.Security-VPCDefaultSecurityGroupClosed', 'PCI.DSS.321-VPCDefaultSecurityGroupClosed',
    ].map((rule) => ({ rule, reason })));
  }

  test('instances under Default Host Management get what an instance role gets: telemetry, output, packages, heartbeat', () => {
    const stack = fullFleet(new App());
    const fleet = stack.node.findChild('Fleet') as AgentFleet;
    const role = fleet.autoConfiguration!.defaultHostManagementRole!;
    const policy = Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: stack.getLogicalId(role.node.defaultChild as never) }] },
    })) as any[];
    const statements = policy.flatMap((p) => p.Properties.PolicyDocument.Statement);
    const actions = statements.flatMap((st) => [st.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['s3:PutObject', 'execute-api:Invoke', 'kms:GenerateDataKey']));
    expect(JSON.stringify(statements)).toContain('/agents/${aws:userid}/*');
    expect(JSON.stringify(statements)).toContain('/POST/v1/heartbeat');
  });

  test('the full fleet in two VPCs passes the cdk-nag 3 packs', () => {
    expect(nagFindings(fullFleet(new App()))).toEqual([]);
  });

  test('and the cdk-nag 2 packs', () => {
    expect(nagV2Findings(fullFleet)).toEqual([]);
  });
});
