import { App, Aspects, Fn, Stack, Stage, Tags, Validations } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AgentFleetChecks, AgentFleetChecksProps } from '../../lib';

const COMPLIANT_OPTIONS = { httpTokens: 'required', httpPutResponseHopLimit: 1, instanceMetadataTags: 'enabled', httpEndpoint: 'enabled' };
// The image as a template should name it: through SSM's public parameter, not a hard-coded
// AMI id (which CloudFormation validation would flag on every synth of these tests).
const AMI = '{{resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64}}';

function newStack(): Stack {
  return new Stack(new App(), 'Stack', { env: { account: '111122223333', region: 'eu-west-1' } });
}

/** The pack's findings as `<rule> <construct path>`, for the rules named (or all). */
function findings(stack: Stack, props?: AgentFleetChecksProps, ...rules: string[]): string[] {
  // Aspects (tags among them) apply during synthesis: judge the final tree, as cdk-nag does in an app.
  Stage.of(stack)?.synth({ force: true });
  const report = new AgentFleetChecks(undefined, props).validateScope(stack);
  return report.violations
    .filter((v) => rules.length === 0 || rules.some((r) => v.ruleName === `AgentFleet-${r}`))
    .flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} ${r.constructPath}`))
    .sort();
}

function ssmRole(stack: Stack, id = 'Role'): iam.Role {
  return new iam.Role(stack, id, {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
  });
}

function profileOf(stack: Stack, role: iam.IRole, id = 'Profile'): iam.CfnInstanceProfile {
  return new iam.CfnInstanceProfile(stack, id, { roles: [role.roleName] });
}

describe('AgentFleetChecks: metadata options', () => {
  test('a launch template that requires IMDSv2 with hop limit 1 and metadata tags passes', () => {
    const stack = newStack();
    new ec2.CfnLaunchTemplate(stack, 'LT', { launchTemplateData: { metadataOptions: COMPLIANT_OPTIONS } });
    expect(findings(stack, {}, 'IMDSv2Required', 'HopLimit', 'MetadataTags')).toEqual([]);
  });

  test('a launch template without metadata options fails all three rules', () => {
    const stack = newStack();
    new ec2.CfnLaunchTemplate(stack, 'LT', { launchTemplateData: { imageId: AMI } });
    expect(findings(stack, {}, 'IMDSv2Required', 'HopLimit', 'MetadataTags')).toEqual([
      'AgentFleet-HopLimit Stack/LT',
      'AgentFleet-IMDSv2Required Stack/LT',
      'AgentFleet-MetadataTags Stack/LT',
    ]);
  });

  test('the hop limit must be the fleet class\'s: 2 fails a hop-limit-1 pack and passes a hop-limit-2 pack', () => {
    const stack = newStack();
    new ec2.LaunchTemplate(stack, 'Containers', { requireImdsv2: true, httpPutResponseHopLimit: 2, instanceMetadataTags: true });
    expect(findings(stack, { hopLimit: 1 }, 'HopLimit')).toEqual(['AgentFleet-HopLimit Stack/Containers/Resource']);
    expect(findings(stack, { hopLimit: 2 }, 'IMDSv2Required', 'HopLimit', 'MetadataTags')).toEqual([]);
  });

  test('IMDSv2 required but the metadata endpoint disabled fails', () => {
    const stack = newStack();
    new ec2.CfnLaunchTemplate(stack, 'LT', { launchTemplateData: { metadataOptions: { ...COMPLIANT_OPTIONS, httpEndpoint: 'disabled' } } });
    expect(findings(stack, {}, 'IMDSv2Required')).toEqual(['AgentFleet-IMDSv2Required Stack/LT']);
  });

  test('an instance takes its launch template\'s options, and its own settings override them', () => {
    const stack = newStack();
    const lt = new ec2.CfnLaunchTemplate(stack, 'LT', { launchTemplateData: { metadataOptions: COMPLIANT_OPTIONS } });
    new ec2.CfnInstance(stack, 'FromTemplate', { imageId: AMI, launchTemplate: { launchTemplateId: lt.ref, version: lt.attrLatestVersionNumber } });
    new ec2.CfnInstance(stack, 'Overridden', {
      imageId: AMI,
      launchTemplate: { launchTemplateId: lt.ref, version: lt.attrLatestVersionNumber },
      metadataOptions: { httpTokens: 'optional' },
    });
    new ec2.CfnInstance(stack, 'Own', { imageId: AMI, metadataOptions: COMPLIANT_OPTIONS });
    expect(findings(stack, {}, 'IMDSv2Required', 'HopLimit', 'MetadataTags')).toEqual(['AgentFleet-IMDSv2Required Stack/Overridden']);
  });

  test('an instance whose launch template is not in the stack cannot be shown compliant', () => {
    const stack = newStack();
    new ec2.CfnInstance(stack, 'Elsewhere', { imageId: AMI, launchTemplate: { launchTemplateName: 'shared-template', version: '1' } });
    expect(findings(stack, {}, 'IMDSv2Required')).toEqual(['AgentFleet-IMDSv2Required Stack/Elsewhere']);
  });

  test('an auto scaling group is judged by its launch template, L2 included', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 1, maxAzs: 2 });
    const good = new ec2.LaunchTemplate(stack, 'Good', {
      machineImage: ec2.MachineImage.latestAmazonLinux2023(),
      instanceType: new ec2.InstanceType('t3.micro'),
      requireImdsv2: true, httpPutResponseHopLimit: 1, instanceMetadataTags: true,
    });
    const bad = new ec2.LaunchTemplate(stack, 'Bad', {
      machineImage: ec2.MachineImage.latestAmazonLinux2023(),
      instanceType: new ec2.InstanceType('t3.micro'),
    });
    new autoscaling.AutoScalingGroup(stack, 'GoodAsg', { vpc, launchTemplate: good });
    new autoscaling.AutoScalingGroup(stack, 'BadAsg', { vpc, launchTemplate: bad });
    expect(findings(stack, {}, 'IMDSv2Required')).toEqual([
      'AgentFleet-IMDSv2Required Stack/Bad/Resource',
      'AgentFleet-IMDSv2Required Stack/BadAsg/ASG',
    ]);
  });

  test('resources that launch no instances are not judged', () => {
    const stack = newStack();
    new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    expect(findings(stack)).toEqual([]);
  });
});

describe('AgentFleetChecks: InstanceRoleSsmCore', () => {
  test('an L2 instance passes with SSM permissions and fails without', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 1, maxAzs: 1 });
    const common = { vpc, instanceType: new ec2.InstanceType('t3.micro'), machineImage: ec2.MachineImage.latestAmazonLinux2023() };
    new ec2.Instance(stack, 'Managed', { ...common, ssmSessionPermissions: true });
    new ec2.Instance(stack, 'Unmanaged', { ...common });
    expect(findings(stack, {}, 'InstanceRoleSsmCore')).toEqual(['AgentFleet-InstanceRoleSsmCore Stack/Unmanaged/Resource']);
  });

  test('a role with its own least-privilege policy allowing ssm:UpdateInstanceInformation passes', () => {
    const stack = newStack();
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:UpdateInstanceInformation', 'ssmmessages:CreateControlChannel'], resources: ['*'] }));
    const managed = new iam.Role(stack, 'ManagedPolicyRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    managed.addManagedPolicy(new iam.ManagedPolicy(stack, 'Core', {
      statements: [new iam.PolicyStatement({ actions: ['ssm:UpdateInstanceInformation'], resources: ['*'] })],
    }));
    new ec2.CfnInstance(stack, 'Inline', { imageId: AMI, iamInstanceProfile: profileOf(stack, role).ref });
    new ec2.CfnInstance(stack, 'Managed', { imageId: AMI, iamInstanceProfile: profileOf(stack, managed, 'ManagedProfile').ref });
    expect(findings(stack, {}, 'InstanceRoleSsmCore')).toEqual([]);
  });

  test('a launch template\'s instance profile is followed to its role', () => {
    const stack = newStack();
    const good = profileOf(stack, ssmRole(stack));
    const bare = profileOf(stack, new iam.Role(stack, 'Bare', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') }), 'BareProfile');
    new ec2.CfnLaunchTemplate(stack, 'Good', { launchTemplateData: { iamInstanceProfile: { arn: good.attrArn } } });
    new ec2.CfnLaunchTemplate(stack, 'Bad', { launchTemplateData: { iamInstanceProfile: { name: bare.ref } } });
    expect(findings(stack, {}, 'InstanceRoleSsmCore')).toEqual(['AgentFleet-InstanceRoleSsmCore Stack/Bad']);
  });

  test('no instance profile fails, unless Default Host Management makes instances managed', () => {
    const stack = newStack();
    new ec2.CfnInstance(stack, 'NoProfile', { imageId: AMI });
    expect(findings(stack, {}, 'InstanceRoleSsmCore')).toEqual(['AgentFleet-InstanceRoleSsmCore Stack/NoProfile']);
    expect(findings(stack, { defaultHostManagement: true }, 'InstanceRoleSsmCore')).toEqual([]);
  });

  test('an instance profile from outside the stack cannot be shown to allow SSM', () => {
    const stack = newStack();
    new ec2.CfnInstance(stack, 'External', { imageId: AMI, iamInstanceProfile: 'shared-profile' });
    expect(findings(stack, {}, 'InstanceRoleSsmCore')).toEqual(['AgentFleet-InstanceRoleSsmCore Stack/External']);
  });
});

describe('AgentFleetChecks: ManagementTagValue', () => {
  test.each([
    ['true', []],
    ['false', []],
    ['True', ['AgentFleet-ManagementTagValue Stack/Instance']],
    ['yes', ['AgentFleet-ManagementTagValue Stack/Instance']],
    ['', ['AgentFleet-ManagementTagValue Stack/Instance']],
  ])('an instance tagged SecurityAgentManaged=%j has findings %j', (value, expected) => {
    const stack = newStack();
    const instance = new ec2.CfnInstance(stack, 'Instance', { imageId: AMI });
    Tags.of(instance).add('SecurityAgentManaged', value);
    expect(findings(stack, {}, 'ManagementTagValue')).toEqual(expected);
  });

  test('launch template tag specifications and auto scaling group tags are checked, with a custom tag key', () => {
    const stack = newStack();
    new ec2.CfnLaunchTemplate(stack, 'LT', {
      launchTemplateData: { tagSpecifications: [{ resourceType: 'instance', tags: [{ key: 'AgentManaged', value: 'enabled' }] }] },
    });
    new autoscaling.CfnAutoScalingGroup(stack, 'Asg', {
      maxSize: '1', minSize: '0', availabilityZones: Fn.getAzs(),
      launchTemplate: { launchTemplateName: 'shared-template', version: '1' },
      tags: [{ key: 'AgentManaged', value: 'false', propagateAtLaunch: true }],
    });
    expect(findings(stack, { tagKey: 'AgentManaged' }, 'ManagementTagValue')).toEqual(['AgentFleet-ManagementTagValue Stack/LT']);
  });

  test('untagged instances are not judged by this rule', () => {
    const stack = newStack();
    new ec2.CfnInstance(stack, 'Instance', { imageId: AMI, tags: [{ key: 'Name', value: 'x' }] });
    expect(findings(stack, {}, 'ManagementTagValue')).toEqual([]);
  });
});

describe('AgentFleetChecks: SubnetReachesSsm', () => {
  test('private subnets behind a NAT gateway and public subnets reach SSM', () => {
    const stack = newStack();
    new ec2.Vpc(stack, 'Vpc', { natGateways: 1, maxAzs: 2 });
    expect(findings(stack, {}, 'SubnetReachesSsm')).toEqual([]);
  });

  test('isolated subnets without the three SSM endpoints do not', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, subnetConfiguration: [{ name: 'Isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    vpc.addInterfaceEndpoint('Ssm', { service: ec2.InterfaceVpcEndpointAwsService.SSM });
    vpc.addInterfaceEndpoint('SsmMessages', { service: ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES });
    expect(findings(stack, {}, 'SubnetReachesSsm')).toEqual([
      'AgentFleet-SubnetReachesSsm Stack/Vpc/IsolatedSubnet1/Subnet',
      'AgentFleet-SubnetReachesSsm Stack/Vpc/IsolatedSubnet2/Subnet',
    ]);
  });

  test('isolated subnets with interface endpoints for ssm, ssmmessages and ec2messages do', () => {
    const stack = newStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, subnetConfiguration: [{ name: 'Isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    for (const [id, service] of [['Ssm', ec2.InterfaceVpcEndpointAwsService.SSM], ['SsmMessages', ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES], ['Ec2Messages', ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES]] as const) {
      vpc.addInterfaceEndpoint(id, { service });
    }
    expect(findings(stack, {}, 'SubnetReachesSsm')).toEqual([]);
  });

  test('endpoints in another VPC do not count', () => {
    const stack = newStack();
    new ec2.Vpc(stack, 'Isolated', { maxAzs: 1, subnetConfiguration: [{ name: 'Isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    const other = new ec2.Vpc(stack, 'Other', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'Isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    for (const [id, service] of [['Ssm', ec2.InterfaceVpcEndpointAwsService.SSM], ['SsmMessages', ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES], ['Ec2Messages', ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES]] as const) {
      other.addInterfaceEndpoint(id, { service });
    }
    expect(findings(stack, {}, 'SubnetReachesSsm')).toEqual(['AgentFleet-SubnetReachesSsm Stack/Isolated/IsolatedSubnet1/Subnet']);
  });
});

describe('AgentFleetChecks in an app', () => {
  function appWithBareInstance(acknowledge: boolean) {
    const app = new App();
    const stack = new Stack(app, 'Stack');
    const instance = new ec2.CfnInstance(stack, 'Instance', { imageId: AMI, metadataOptions: COMPLIANT_OPTIONS });
    if (acknowledge) {
      Validations.of(instance).acknowledge({ id: 'AgentFleet-InstanceRoleSsmCore', reason: 'Managed through Default Host Management in this account.' });
    }
    Validations.of(app).addPlugins(new AgentFleetChecks(app));
    return app;
  }

  test('a finding fails the synth', () => {
    expect(() => appWithBareInstance(false).synth()).toThrow(/AgentFleet-InstanceRoleSsmCore/);
  });

  test('an acknowledged finding does not', () => {
    expect(() => appWithBareInstance(true).synth()).not.toThrow();
  });

  test('fails when added as an aspect, the cdk-nag 2 way, while cdk-nag 3 is installed', () => {
    const app = new App();
    new ec2.CfnInstance(new Stack(app, 'Stack'), 'Instance', { imageId: AMI, metadataOptions: COMPLIANT_OPTIONS });
    Aspects.of(app).add(new AgentFleetChecks());
    expect(() => app.synth()).toThrow(/add it with Validations\.of\(app\)\.addPlugins/);
  });
});

describe('AgentFleetChecks props', () => {
  test.each([
    [{ hopLimit: 0 }, 'hopLimit: got 0; allowed: an integer from 1 to 64'],
    [{ hopLimit: 65 }, 'hopLimit: got 65; allowed: an integer from 1 to 64'],
    [{ hopLimit: 1.5 }, 'hopLimit: got 1.5; allowed: an integer from 1 to 64'],
    [{ tagKey: 'Security Agent' }, 'tagKey: got "Security Agent"; allowed: 1 to 128 letters'],
    [{ tagKey: 'team/agent' }, 'tagKey: got "team/agent"'],
    [{ tagKey: 'aws:managed' }, 'tagKey: got "aws:managed"'],
  ] as Array<[AgentFleetChecksProps, string]>)('fails when given %j', (props, message) => {
    expect(() => new AgentFleetChecks(undefined, props)).toThrow(message);
  });
});
