import { App, CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import {
  AgentEndpointService, AgentFleetErrors, AgentInstallDocument, AgentPackage, AgentVpcEndpoints, AgentVpcEndpointsProps,
  PackageFormat, TelemetryStore,
} from '../../lib';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };

/** A VPC from attributes: no resources of its own, so every resource in the stack is ours. */
function importedVpc(stack: Stack): ec2.IVpc {
  return ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0123456789abcdef0',
    vpcCidrBlock: '10.0.0.0/16',
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    isolatedSubnetIds: ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'],
    isolatedSubnetRouteTableIds: ['rtb-0aaaaaaaaaaaaaaaa', 'rtb-0bbbbbbbbbbbbbbbb'],
  });
}

function endpointsStack(props: Partial<AgentVpcEndpointsProps> = {}, app = new App()) {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const endpoints = new AgentVpcEndpoints(stack, 'Endpoints', { vpc: importedVpc(stack), ...props });
  return { stack, endpoints, template: () => Template.fromStack(stack) };
}

function s3EndpointStatements(template: Template): any[] {
  const [endpoint] = Object.values(template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Gateway' } }));
  return endpoint.Properties.PolicyDocument.Statement;
}

describe('AgentVpcEndpoints', () => {
  test('interface endpoints for ssm, ssmmessages and ec2messages with private DNS, in the private subnets', () => {
    const { endpoints, template } = endpointsStack();
    const t = template();
    for (const service of ['ssm', 'ssmmessages', 'ec2messages']) {
      t.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        ServiceName: `com.amazonaws.eu-west-1.${service}`,
        VpcEndpointType: 'Interface',
        PrivateDnsEnabled: true,
        SubnetIds: ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'],
      });
    }
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 3);
    expect(endpoints.executeApiEndpoint).toBeUndefined();
    expect([endpoints.ssmEndpoint, endpoints.ssmMessagesEndpoint, endpoints.ec2MessagesEndpoint].every(Boolean)).toBe(true);
  });

  test('one security group admits HTTPS from every CIDR block of the VPC, and nothing goes out', () => {
    const { template } = endpointsStack({ additionalCidrBlocks: ['100.64.0.0/16'] });
    const t = template();
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    const [sg] = Object.values(t.findResources('AWS::EC2::SecurityGroup'));
    expect(sg.Properties.SecurityGroupIngress).toEqual([
      { CidrIp: '10.0.0.0/16', Description: 'HTTPS from the VPC', FromPort: 443, IpProtocol: 'tcp', ToPort: 443 },
      { CidrIp: '100.64.0.0/16', Description: 'HTTPS from the VPC', FromPort: 443, IpProtocol: 'tcp', ToPort: 443 },
    ]);
    expect(sg.Properties.SecurityGroupEgress).toEqual([expect.objectContaining({ CidrIp: '255.255.255.255/32' })]);
  });

  test('a VPC defined in the app with a literal CIDR block is admitted by that block, not by a reference', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = new ec2.Vpc(stack, 'Vpc', { ipAddresses: ec2.IpAddresses.cidr('10.20.0.0/16'), natGateways: 0, subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });

    // WHEN
    new AgentVpcEndpoints(stack, 'Endpoints', { vpc });

    // THEN: rule packs (and reviewers) can read what the rule admits
    Template.fromStack(stack).hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [{ CidrIp: '10.20.0.0/16', Description: 'HTTPS from the VPC', FromPort: 443, IpProtocol: 'tcp', ToPort: 443 }],
    });
  });

  test('executeApi adds an execute-api endpoint a private API can use', () => {
    const { endpoints, template } = endpointsStack({ executeApi: true });
    template().hasResourceProperties('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.execute-api', PrivateDnsEnabled: true });
    expect(endpoints.executeApiEndpoint).toBeDefined();
  });

  test('existing endpoints are skipped per service', () => {
    const { endpoints, template } = endpointsStack({ existingEndpoints: [AgentEndpointService.SSM, AgentEndpointService.S3] });
    const t = template();
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 2);
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' }, 0);
    expect(endpoints.ssmEndpoint).toBeUndefined();
    expect(endpoints.s3Endpoint).toBeUndefined();
  });

  test('with every endpoint existing, nothing is created, not even the security group', () => {
    const { stack } = endpointsStack({
      existingEndpoints: [AgentEndpointService.SSM, AgentEndpointService.SSM_MESSAGES, AgentEndpointService.EC2_MESSAGES, AgentEndpointService.S3],
    });
    // Judged on the construct tree: a template without resources is not a valid one to synthesize.
    expect(stack.node.findAll().filter(CfnResource.isCfnResource).map((r) => r.node.path)).toEqual([]);
  });

  test('the S3 gateway endpoint allows the SSM Agent buckets of the region, the telemetry bucket and the package objects — nothing else', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const store = new TelemetryStore(stack, 'Telemetry');
    const packages = new s3.Bucket(stack, 'Packages', { enforceSSL: true });
    const document = new AgentInstallDocument(stack, 'Install', {
      packages: [AgentPackage.fromBucket(packages, 'agent/agent-1.2.3.rpm', { format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent' })],
    });

    // WHEN
    new AgentVpcEndpoints(stack, 'Endpoints', { vpc: importedVpc(stack), telemetryStore: store, documents: [document] });

    // THEN
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::EC2::VPCEndpoint', { ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] }, VpcEndpointType: 'Gateway', RouteTableIds: ['rtb-0aaaaaaaaaaaaaaaa', 'rtb-0bbbbbbbbbbbbbbbb'] });
    const storeArn = { 'Fn::GetAtt': [stack.getLogicalId(store.bucket.node.defaultChild as never), 'Arn'] };
    const arn = (name: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${name}/*`]] });
    expect(s3EndpointStatements(t)).toEqual([
      {
        Sid: 'SsmAgentAwsOwnedBuckets', Effect: 'Allow', Principal: { AWS: '*' }, Action: 's3:GetObject',
        Resource: [
          'aws-ssm-eu-west-1', 'aws-windows-downloads-eu-west-1', 'amazon-ssm-eu-west-1', 'amazon-ssm-packages-eu-west-1',
          'eu-west-1-birdwatcher-prod', 'aws-ssm-distributor-file-eu-west-1', 'aws-ssm-document-attachments-eu-west-1',
          'patch-baseline-snapshot-eu-west-1', 'aws-patchmanager-macos-eu-west-1',
        ].map(arn),
      },
      {
        Sid: 'AgentPackages', Effect: 'Allow', Principal: { AWS: '*' }, Action: 's3:GetObject',
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [stack.getLogicalId(packages.node.defaultChild as never), 'Arn'] }, '/agent/agent-1.2.3.rpm']] },
      },
      { Sid: 'TelemetryAndOutput', Effect: 'Allow', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [storeArn, '/*']] } },
      { Sid: 'OutputEncryptionCheck', Effect: 'Allow', Principal: { AWS: '*' }, Action: 's3:GetEncryptionConfiguration', Resource: storeArn },
    ]);
  });

  test('without a store or documents the S3 endpoint allows only the SSM Agent buckets', () => {
    const { template } = endpointsStack();
    expect(s3EndpointStatements(template()).map((s) => s.Sid)).toEqual(['SsmAgentAwsOwnedBuckets']);
  });

  test('snapshot', () => {
    const { stack } = endpointsStack({ executeApi: true });
    expect(normalizedTemplate(stack)).toMatchSnapshot();
  });

  test('passes the cdk-nag packs (v3 and v2)', () => {
    const build = (app: App) => endpointsStack({ executeApi: true, additionalCidrBlocks: ['100.64.0.0/16'] }, app).stack;
    expect(nagFindings(build(new App()))).toEqual([]);
    expect(nagV2Findings(build)).toEqual([]);
  });

  test('fails when a CIDR block or a service is invalid', () => {
    try {
      endpointsStack({ additionalCidrBlocks: ['10.0.0.0', '300.1.0.0/16'], existingEndpoints: ['dynamodb' as AgentEndpointService] });
      throw new Error('expected a validation error');
    } catch (err) {
      expect(AgentFleetErrors.isValidationError(err)).toBe(true);
      expect((err as Error).message).toContain('additionalCidrBlocks[0]: got "10.0.0.0"; allowed: an IPv4 CIDR block');
      expect((err as Error).message).toContain('additionalCidrBlocks[1]: got "300.1.0.0/16"');
      expect((err as Error).message).toContain('existingEndpoints[0]: got "dynamodb"');
    }
  });
});
