import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentBackend, AgentFleet, AgentPackage, Imdsv2Enforcement, PackageFormat, TelemetryStore } from '../../lib';
import { AgentFleetValidationError } from '../../lib/core/validation';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function isolatedVpc(stack: Stack, id = 'Vpc'): ec2.Vpc {
  return new ec2.Vpc(stack, id, { maxAzs: 2, natGateways: 0, subnetConfiguration: [{ name: 'iso', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
}

/**
 * Every function in `vpc`'s subnets, with a security group of its own that admits nothing and
 * lets out HTTPS only, and whose role has Lambda's network-interface permissions in a managed
 * policy the function waits for (without them Lambda refuses to create the function).
 */
function expectFunctionsInVpc(stack: Stack, count: number): void {
  const template = Template.fromStack(stack);
  const functions = Object.entries(template.findResources('AWS::Lambda::Function')) as [string, any][];
  expect(functions).toHaveLength(count);
  const groups = template.findResources('AWS::EC2::SecurityGroup') as Record<string, any>;
  const policies = template.findResources('AWS::IAM::ManagedPolicy') as Record<string, any>;
  for (const [, fn] of functions) {
    expect(fn.Properties.VpcConfig.SubnetIds).toHaveLength(2);
    const [sg] = fn.Properties.VpcConfig.SecurityGroupIds.map((ref: any) => groups[ref['Fn::GetAtt'][0]]);
    expect(sg.Properties.SecurityGroupIngress).toBeUndefined();
    expect(sg.Properties.SecurityGroupEgress).toEqual([expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 })]);
    const roleId = fn.Properties.Role['Fn::GetAtt'][0];
    const network = Object.entries(policies).filter(([, p]) => JSON.stringify(p.Properties.Roles ?? []).includes(roleId)
      && JSON.stringify(p.Properties.PolicyDocument).includes('ec2:CreateNetworkInterface'));
    expect(network.length).toBeGreaterThan(0);
    expect(network.some(([policyId]) => (fn.DependsOn ?? []).includes(policyId))).toBe(true);
  }
  // No AWS-managed policy is attached behind the library's back.
  expect(JSON.stringify(template.findResources('AWS::IAM::Role'))).not.toContain('AWSLambdaVPCAccessExecutionRole');
}

describe('functions in a VPC', () => {
  test('Imdsv2Enforcement with vpc', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2, vpc: isolatedVpc(stack) });
    expectFunctionsInVpc(stack, 5);
  });

  test('AgentBackend with vpc', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    new AgentBackend(stack, 'Backend', { telemetry: new TelemetryStore(stack, 'Telemetry'), vpc: isolatedVpc(stack) });
    expectFunctionsInVpc(stack, 3);
  });

  test('AgentFleet with functionVpc: every part, Default Host Management included, unless the part names its own', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = isolatedVpc(stack);
    new AgentFleet(stack, 'Fleet', {
      agentName: 'agent',
      packages: [AgentPackage.fromUrl('https://downloads.example.com/agent.rpm', {
        version: '1', serviceName: 'agent', format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
      })],
      imds: { hopLimit: 1 },
      functionVpc: vpc,
      autoConfiguration: { enableDefaultHostManagement: true },
    });
    expectFunctionsInVpc(stack, 9);
  });

  test('fails when vpcSubnets or functionSubnets come without a VPC, or auto-configuration takes a vpc it has no function for', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const subnets = { subnetType: ec2.SubnetType.PRIVATE_ISOLATED };
    expect(() => new AgentBackend(stack, 'Backend', { telemetry: new TelemetryStore(stack, 'Telemetry'), vpcSubnets: subnets }))
      .toThrow(/vpcSubnets: got .*only together with vpc/);
    const fleet = (props: object) => new AgentFleet(new Stack(new App(), 'S', { env: ENV }), 'Fleet', {
      agentName: 'agent',
      packages: [AgentPackage.fromUrl('https://downloads.example.com/agent.rpm', {
        version: '1', serviceName: 'agent', format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64),
      })],
      imds: { hopLimit: 1 },
      ...props,
    });
    expect(() => fleet({ functionSubnets: subnets })).toThrow(AgentFleetValidationError);
    expect(() => fleet({ functionSubnets: subnets })).toThrow(/functionSubnets: got .*only together with functionVpc/);
    const other = new Stack(new App(), 'Other', { env: ENV });
    expect(() => fleet({ autoConfiguration: { vpc: isolatedVpc(other) } })).toThrow(/autoConfiguration\.vpc: got .*only with enableDefaultHostManagement/);
  });
});
