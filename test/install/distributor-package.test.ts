import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import {
  AgentEndpointService, AgentInstallDocument, AgentPackage, AgentVpcEndpoints, DistributorInstallationType, DistributorPackage,
  DistributorPackageOptions, PackageFormat,
} from '../../lib';
import { nagFindings } from '../helpers/nag';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const GUARDDUTY = 'AmazonGuardDuty-RuntimeMonitoringSsmPlugin';

function documentStack(packages: AgentPackage[]) {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const document = new AgentInstallDocument(stack, 'Install', { packages, tagKey: 'GuardDutyManaged' });
  return { stack, document };
}

function content(stack: Stack): any {
  return Object.values<any>(Template.fromStack(stack).findResources('AWS::SSM::Document'))[0].Properties.Content;
}

function errorOf(make: () => unknown): string {
  try {
    make();
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

const guardDuty = (options: Partial<DistributorPackageOptions> = {}) =>
  DistributorPackage.awsOwned(GUARDDUTY, { serviceName: 'amazon-guardduty-agent', ...options });

describe('DistributorPackage in AgentInstallDocument', () => {
  test('renders the tag decision step, then the aws:configurePackage step, both Linux only', () => {
    // GIVEN / WHEN
    const { stack } = documentStack([guardDuty({ version: 'v1.8.0', installationType: DistributorInstallationType.IN_PLACE_UPDATE })]);

    // THEN
    const c = content(stack);
    expect(c.mainSteps.map((s: any) => [s.action, s.name, s.precondition])).toEqual([
      ['aws:runShellScript', 'decideOnLinux', { StringEquals: ['platformType', 'Linux'] }],
      ['aws:configurePackage', 'configurePackageOnLinux', { StringEquals: ['platformType', 'Linux'] }],
    ]);
    expect(c.mainSteps[1].inputs).toEqual({ name: GUARDDUTY, action: '{{ action }}', installationType: 'In-place update', version: 'v1.8.0' });
    expect(c.parameters.tagKey.default).toBe('GuardDutyManaged');
    const script: string[] = c.mainSteps[0].inputs.runCommand;
    expect(script).toContain("AGENT_GATE_SERVICE='amazon-guardduty-agent'");
    expect(script).toContain("AGENT_PACKAGES=''");
    expect(script).toContain('gate_exit() {');
    expect(script).toContain("if [[ -n \"${AGENT_GATE_SERVICE:-}\" ]]; then gate_distributor; fi");
    expect(c.description).toContain(`the SSM Distributor package ${GUARDDUTY} (v1.8.0)`);
  });

  test('without a version, Distributor chooses it: no version input, the default installation type', () => {
    const { stack } = documentStack([guardDuty()]);
    expect(content(stack).mainSteps[1].inputs).toEqual({ name: GUARDDUTY, action: '{{ action }}', installationType: 'Uninstall and reinstall' });
  });

  test('a package of the user\'s own by ARN; no IAM grant is needed for either kind', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const own = DistributorPackage.fromName('arn:aws:ssm:eu-west-1:444455556666:document/OurAgent', { serviceName: 'our-agent' });
    const document = new AgentInstallDocument(stack, 'Install', { packages: [own] });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    document.grantPackageRead(role);
    expect(own.isAwsOwned).toBe(false);
    expect(content(stack).mainSteps[1].inputs.name).toBe('arn:aws:ssm:eu-west-1:444455556666:document/OurAgent');
    Template.fromStack(stack).resourceCountIs('AWS::IAM::Policy', 0);
  });

  test.each<[string, () => AgentPackage[], RegExp]>([
    ['a Distributor package has a hash', () => [guardDuty({ sha256: 'a'.repeat(64) } as any)], /packages\[0\]\.sha256: got "a{64}"; allowed: none: Distributor verifies its own packages/],
    ['a Distributor package comes with a package file', () => [guardDuty(), AgentPackage.fromUrl('https://example.com/a.rpm', {
      format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1', serviceName: 'a',
    })], /packages: got "2 packages, packages\[0\] from Distributor"; allowed: one Distributor package alone/],
    ['the name has a space', () => [DistributorPackage.awsOwned('Amazon GuardDuty', { serviceName: 'a' })], /packages\[0\]\.distributorName: got "Amazon GuardDuty"/],
    ['the version has a quote', () => [guardDuty({ version: "v1'" })], /packages\[0\]\.version: got "v1'"; allowed: a Distributor version/],
    ['a file package claims the DISTRIBUTOR format', () => [AgentPackage.fromUrl('https://example.com/a.rpm', {
      format: PackageFormat.DISTRIBUTOR, architecture: ec2.InstanceArchitecture.X86_64, sha256: 'a'.repeat(64), version: '1', serviceName: 'a',
    })], /packages\[0\]\.format: got "DISTRIBUTOR"; allowed: PackageFormat\.RPM, DEB or MSI \(Distributor packages come from DistributorPackage\)/],
  ])('fails when %s', (_name, packages, expected) => {
    expect(errorOf(() => documentStack(packages()))).toMatch(expected);
  });
});

describe('vendor endpoints a package declares', () => {
  test('AgentVpcEndpoints creates guardduty-data with private DNS, the endpoints\' security group and the policy GuardDuty documents', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = new ec2.Vpc(stack, 'Vpc', { ipAddresses: ec2.IpAddresses.cidr('10.1.0.0/16'), maxAzs: 2, natGateways: 0, subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    const document = new AgentInstallDocument(stack, 'Install', { packages: [guardDuty({ vpcEndpoints: [AgentEndpointService.GUARDDUTY_DATA] })] });

    // WHEN
    const endpoints = new AgentVpcEndpoints(stack, 'Endpoints', { vpc, documents: [document] });

    // THEN
    expect(endpoints.guardDutyDataEndpoint).toBeDefined();
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      ServiceName: 'com.amazonaws.eu-west-1.guardduty-data',
      PrivateDnsEnabled: true,
      VpcEndpointType: 'Interface',
      SecurityGroupIds: [{ 'Fn::GetAtt': [Match.stringLikeRegexp('^EndpointsSecurityGroup'), 'GroupId'] }],
      PolicyDocument: {
        Statement: [
          { Action: '*', Effect: 'Allow', Principal: { AWS: '*' }, Resource: '*' },
          { Action: '*', Effect: 'Deny', Principal: { AWS: '*' }, Resource: '*', Condition: { StringNotEquals: { 'aws:PrincipalAccount': '111122223333' } } },
        ],
        Version: '2012-10-17',
      },
    });
    // The test's own VPC has findings of its own; the endpoints have none.
    expect(nagFindings(stack).filter((finding) => finding.path.includes('/Endpoints/'))).toEqual([]);
  });

  test('no package asks: no guardduty-data endpoint; one that exists already is not created again', () => {
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', { vpcId: 'vpc-0123456789abcdef0', vpcCidrBlock: '10.0.0.0/16', availabilityZones: ['eu-west-1a'], isolatedSubnetIds: ['subnet-0123456789abcdef0'], isolatedSubnetRouteTableIds: ['rtb-0123456789abcdef0'] });
    const plain = new AgentInstallDocument(stack, 'Plain', { packages: [guardDuty()] });
    const asking = new AgentInstallDocument(stack, 'Asking', { packages: [guardDuty({ vpcEndpoints: [AgentEndpointService.GUARDDUTY_DATA] })] });
    expect(new AgentVpcEndpoints(stack, 'A', { vpc, documents: [plain] }).guardDutyDataEndpoint).toBeUndefined();
    expect(new AgentVpcEndpoints(stack, 'B', { vpc, documents: [asking], existingEndpoints: [AgentEndpointService.GUARDDUTY_DATA] }).guardDutyDataEndpoint).toBeUndefined();
    const names = Object.values<any>(Template.fromStack(stack).findResources('AWS::EC2::VPCEndpoint')).map((r) => JSON.stringify(r.Properties.ServiceName));
    expect(names.filter((n) => n.includes('guardduty-data'))).toEqual([]);
  });
});
