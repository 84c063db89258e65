import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentBackend, AgentBackendProps, AgentFleet, AgentPackage, BackendEndpointType, PackageFormat, TelemetryStore } from '../../lib';
import { AgentFleetErrors } from '../../lib/core/errors';
import { nagFindings, nagV2Findings } from '../helpers/nag';

const ENV = { account: '111122223333', region: 'eu-west-1' };
let dir: string;
let rsaCertificate: string;
let ecCertificate: string;

function certificate(name: string, newkey: string[]): string {
  const out = path.join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', ...newkey, '-nodes', '-keyout', path.join(dir, `${name}.key`), '-out', out, '-days', '30', '-subj', `/O=${name}`], { stdio: 'ignore' });
  return fs.readFileSync(out, 'utf8');
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'identity-construct-'));
  rsaCertificate = certificate('rsa', ['-newkey', 'rsa:2048']);
  ecCertificate = certificate('ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function build(app: App, props: Partial<AgentBackendProps> = {}, endpointType = BackendEndpointType.PRIVATE) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }], flowLogs: {} });
  const endpoint = vpc.addInterfaceEndpoint('ExecuteApi', { service: ec2.InterfaceVpcEndpointAwsService.APIGATEWAY });
  const backend = new AgentBackend(stack, 'Backend', {
    telemetry: new TelemetryStore(stack, 'Telemetry'),
    endpointType,
    vpcEndpoints: endpointType === BackendEndpointType.PRIVATE ? [endpoint] : undefined,
    identityDocumentHeartbeats: { regionCertificate: rsaCertificate },
    ...props,
  });
  return { stack, backend, endpoint };
}

const methods = (t: Template) => Object.values(t.findResources('AWS::ApiGateway::Method')) as any[];

describe('identity-document heartbeats', () => {
  test('are off by default: one IAM-authorized method, no identity function', () => {
    const { stack, backend } = build(new App(), { identityDocumentHeartbeats: undefined });
    const t = Template.fromStack(stack);
    expect(methods(t).map((m) => m.Properties.AuthorizationType)).toEqual(['AWS_IAM']);
    expect(backend.identityHeartbeatFunction).toBeUndefined();
    expect(backend.identityHeartbeatUrl).toBeUndefined();
  });

  test('add POST /v1/identity-heartbeat without IAM authorization, reachable only through the endpoints, with its own throttle', () => {
    const { stack, backend, endpoint } = build(new App(), { identityDocumentHeartbeats: { regionCertificate: rsaCertificate, throttlingRateLimit: 30 } });
    const t = Template.fromStack(stack);
    const auth = methods(t).map((m) => m.Properties.AuthorizationType).sort();
    expect(auth).toEqual(['AWS_IAM', 'NONE']);
    t.hasResourceProperties('AWS::ApiGateway::Resource', { PathPart: 'identity-heartbeat' });
    // Its function runs the heartbeat bundle's identity-document export, never the role path's handler.
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.identityHandler', Description: Match.stringLikeRegexp('identity document') });
    const endpointId = stack.resolve(endpoint.vpcEndpointId);
    const policy = stack.resolve(Object.values(t.findResources('AWS::ApiGateway::RestApi'))[0]).Properties.Policy;
    expect(policy.Statement).toEqual(expect.arrayContaining([
      expect.objectContaining({
        Sid: 'AllowIdentityDocumentHeartbeatsThroughTheVpcEndpoints', Effect: 'Allow', Principal: { AWS: '*' },
        Resource: 'execute-api:/*/POST/v1/identity-heartbeat', Condition: { StringEquals: { 'aws:SourceVpce': [endpointId] } },
      }),
      expect.objectContaining({ Sid: 'DenyOutsideTheVpcEndpoints', Effect: 'Deny', Resource: 'execute-api:/*' }),
    ]));
    t.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([Match.objectLike({ ResourcePath: '/~1v1~1identity-heartbeat', HttpMethod: 'POST', ThrottlingRateLimit: 30, ThrottlingBurstLimit: 40 })]),
    });
    expect(stack.resolve(backend.identityHeartbeatUrl)).toBeDefined();
  });

  test('its function knows the certificate and the endpoints, no templates, and may only describe instances and endpoints of this Region', () => {
    const { stack, backend } = build(new App());
    const t = Template.fromStack(stack);
    const resolved = t.toJSON().Resources[stack.getLogicalId((backend.identityHeartbeatFunction as any).node.defaultChild)].Properties;
    const env = resolved.Environment.Variables;
    expect(env.ASSESSMENT_TEMPLATES).toBe('[]');
    expect(env.IDENTITY_DOCUMENT_CERTIFICATE).toBe(rsaCertificate.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, ''));
    expect(JSON.stringify(env.IDENTITY_VPC_ENDPOINTS)).toContain('ExecuteApi');
    expect(resolved.ReservedConcurrentExecutions).toBe(5);
    const policies = Object.values(t.findResources('AWS::IAM::ManagedPolicy')) as any[];
    const identityPolicy = policies.find((p) => JSON.stringify(p).includes('ec2:DescribeVpcEndpoints'));
    const statements = identityPolicy.Properties.PolicyDocument.Statement;
    expect(statements).toEqual(expect.arrayContaining([
      expect.objectContaining({ Action: ['ec2:DescribeInstances', 'ec2:DescribeVpcEndpoints'], Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': 'eu-west-1' } } }),
      expect.objectContaining({ Action: 'dynamodb:UpdateItem' }),
    ]));
    expect(JSON.stringify(statements)).not.toMatch(/DescribeTags|s3:|execute-api/);
  });

  test('cdk-nag 3 and 2 find nothing unacknowledged; the NONE method is acknowledged for APIG4 and COG4 only', () => {
    expect(nagFindings(build(new App()).stack).filter((f) => f.path.includes('/Backend/'))).toEqual([]);
    expect(nagV2Findings((app) => build(app).stack).filter((f) => f.path.includes('/Backend/'))).toEqual([]);
    const t = Template.fromStack(build(new App()).stack);
    const none = methods(t).find((m) => m.Properties.AuthorizationType === 'NONE');
    expect(none.Metadata.cdk_nag.rules_to_suppress.map((r: any) => r.id).sort()).toEqual(['AwsSolutions-APIG4', 'AwsSolutions-COG4']);
  });
});

describe('identity-document heartbeats through AgentFleet', () => {
  test('a fleet with a PRIVATE backend passes the option through: the NONE method admits only the fleet\'s execute-api endpoints', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0123456789abcdef0', vpcCidrBlock: '10.0.0.0/16', availabilityZones: ['eu-west-1a'],
      isolatedSubnetIds: ['subnet-0123456789abcdef0'], isolatedSubnetRouteTableIds: ['rtb-0123456789abcdef0'],
    });
    const fleet = new AgentFleet(stack, 'Fleet', {
      agentName: 'security-agent',
      packages: [AgentPackage.fromUrl('https://downloads.example.com/security-agent-1.2.3.x86_64.rpm', {
        version: '1.2.3', serviceName: 'security-agent', format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
      })],
      vpcs: [vpc],
      imds: { hopLimit: 1 },
      backend: { endpointType: BackendEndpointType.PRIVATE, identityDocumentHeartbeats: { regionCertificate: rsaCertificate } },
    });
    expect(fleet.backend?.identityHeartbeatFunction).toBeDefined();
    const t = Template.fromStack(stack);
    expect(methods(t).map((m) => m.Properties.AuthorizationType).sort()).toEqual(['AWS_IAM', 'NONE']);
    const policy = stack.resolve(Object.values(t.findResources('AWS::ApiGateway::RestApi'))[0]).Properties.Policy;
    const allow = policy.Statement.find((st: any) => st.Sid === 'AllowIdentityDocumentHeartbeatsThroughTheVpcEndpoints');
    expect(JSON.stringify(allow.Condition.StringEquals['aws:SourceVpce'])).toMatch(/ExecuteApi/);
    // The companion of an instance without a role posts to that method.
    const document = Object.values(t.findResources('AWS::SSM::Document'))[0].Properties.Content;
    const lines = JSON.stringify(stack.resolve(document));
    expect(lines).toMatch(/COMPANION_IDENTITY_URL='https:\/\/",\{"Ref":"FleetBackend[0-9A-F]+"\},"\.execute-api\.eu-west-1\.[^']*\/v1\/identity-heartbeat'/);
  });
});

describe('identity-document heartbeats validation', () => {
  const fails = (props: Partial<AgentBackendProps>, endpointType: BackendEndpointType, ...messages: RegExp[]) => {
    let error: unknown;
    try {
      build(new App(), props, endpointType);
    } catch (err) {
      error = err;
    }
    expect(AgentFleetErrors.isValidationError(error)).toBe(true);
    for (const m of messages) expect((error as Error).message).toMatch(m);
  };

  test('fails when the API is not PRIVATE', () => {
    fails({}, BackendEndpointType.REGIONAL, /identityDocumentHeartbeats.*only with endpointType PRIVATE/);
  });

  test('fails when the certificate is not a PEM certificate, or not RSA', () => {
    fails({ identityDocumentHeartbeats: { regionCertificate: 'MIIC...' } }, BackendEndpointType.PRIVATE,
      /identityDocumentHeartbeats.regionCertificate.*text that is not a PEM certificate/);
    fails({ identityDocumentHeartbeats: { regionCertificate: ecCertificate } }, BackendEndpointType.PRIVATE,
      /identityDocumentHeartbeats.regionCertificate.*a certificate with a ec key.*RSA certificate AWS publishes/);
  });

  test('fails when the throttle is out of range', () => {
    fails({ identityDocumentHeartbeats: { regionCertificate: rsaCertificate, throttlingRateLimit: 0, throttlingBurstLimit: 5000 } }, BackendEndpointType.PRIVATE,
      /identityDocumentHeartbeats.throttlingRateLimit/, /identityDocumentHeartbeats.throttlingBurstLimit/);
  });
});
