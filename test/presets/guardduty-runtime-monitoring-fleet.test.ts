import { App, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AutoConfigurationMode, DistributorInstallationType, GuardDutyRuntimeMonitoringFleet, GuardDutyRuntimeMonitoringFleetProps } from '../../lib';
import { build } from '../../examples/guardduty-runtime-monitoring';
import { nagFindings } from '../helpers/nag';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function presetStack(props: GuardDutyRuntimeMonitoringFleetProps = {}) {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  const vpcs = ['A', 'B'].map((id) => ec2.Vpc.fromVpcAttributes(stack, id, {
    vpcId: `vpc-0000000000000000${id.toLowerCase()}`, vpcCidrBlock: '10.0.0.0/16', availabilityZones: ['eu-west-1a'],
    isolatedSubnetIds: [`subnet-0000000000000000${id.toLowerCase()}`], isolatedSubnetRouteTableIds: [`rtb-0000000000000000${id.toLowerCase()}`],
  }));
  const preset = new GuardDutyRuntimeMonitoringFleet(stack, 'GuardDuty', { vpcs, enableBackend: false, imds: { hopLimit: 1 }, ...props });
  return { stack, preset, template: Template.fromStack(stack) };
}

describe('GuardDutyRuntimeMonitoringFleet', () => {
  test('installs GuardDuty\'s Distributor package under GuardDuty\'s own tag, with guardduty-data in every VPC', () => {
    // GIVEN / WHEN
    const { preset, template } = presetStack();

    // THEN
    expect(preset.fleet.node.id).toBe('Fleet');
    expect(preset.agentPackage.distributorName).toBe('AmazonGuardDuty-RuntimeMonitoringSsmPlugin');
    const [document] = Object.values<any>(template.findResources('AWS::SSM::Document'));
    expect(document.Properties.Content.mainSteps[1]).toEqual({
      action: 'aws:configurePackage', name: 'configurePackageOnLinux', precondition: { StringEquals: ['platformType', 'Linux'] },
      inputs: { name: 'AmazonGuardDuty-RuntimeMonitoringSsmPlugin', action: '{{ action }}', installationType: 'Uninstall and reinstall' },
    });
    expect(document.Properties.Content.mainSteps[0].inputs.runCommand).toContain("AGENT_GATE_SERVICE='amazon-guardduty-agent'");
    expect(document.Properties.Content.parameters.tagKey.default).toBe('GuardDutyManaged');
    template.hasResourceProperties('AWS::SSM::Association', { Targets: [{ Key: 'InstanceIds', Values: ['*'] }] });
    template.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.guardduty-data' }, 2);
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      ServiceName: 'com.amazonaws.eu-west-1.guardduty-data',
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { StringNotEquals: { 'aws:PrincipalAccount': '111122223333' } } })]) },
    });
  });

  test('a pinned agent version and installation type reach the Distributor step', () => {
    const { template } = presetStack({ agentVersion: 'v1.8.0', installationType: DistributorInstallationType.IN_PLACE_UPDATE });
    const [document] = Object.values<any>(template.findResources('AWS::SSM::Document'));
    expect(document.Properties.Content.mainSteps[1].inputs).toMatchObject({ version: 'v1.8.0', installationType: 'In-place update' });
  });

  test('warns about TAGGED_ONLY with GuardDutyManaged (GuardDuty manages the true-tagged instances itself), not with another tag key', () => {
    const warned = presetStack({ mode: AutoConfigurationMode.TAGGED_ONLY });
    Annotations.fromStack(warned.stack).hasWarning('/Stack/GuardDuty', Match.stringLikeRegexp('GuardDuty itself manages the agent on exactly the instances tagged GuardDutyManaged=true'));
    const quiet = presetStack({ mode: AutoConfigurationMode.TAGGED_ONLY, tagKey: 'GuardDutyRollout' });
    expect(Annotations.fromStack(quiet.stack).findWarning('*', Match.stringLikeRegexp('GuardDutyManaged'))).toEqual([]);
  });

  test('fails when the agent version is not a Distributor version', () => {
    expect(() => presetStack({ agentVersion: 'v1.8.0; reboot' })).toThrow(/version: got "v1\.8\.0; reboot"; allowed: a Distributor version/);
  });

  test('the example passes the four cdk-nag packs (findings of the example\'s own VPC aside)', () => {
    const stack = build(new App());
    expect(nagFindings(stack).filter((finding) => !finding.path.startsWith('GuardDutyRuntimeMonitoring/Workloads/'))).toEqual([]);
  });
});
