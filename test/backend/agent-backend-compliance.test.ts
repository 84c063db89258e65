import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentBackend, AssessmentTemplate, BackendEndpointType, Sensor, TelemetryStore } from '../../lib';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function build(app: App): Stack {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const telemetry = new TelemetryStore(stack, 'Telemetry');
  new AgentBackend(stack, 'Backend', {
    telemetry,
    assessments: [new AssessmentTemplate({
      name: 'baseline', sensors: [Sensor.PACKAGE_INVENTORY, Sensor.SOFTWARE_CONFIGURATION], duration: Duration.hours(1), targetTags: { Environment: 'prod' },
    })],
  });
  return stack;
}

describe('AgentBackend compliance', () => {
  test('cdk-nag 3: AwsSolutions, NIST 800-53 R5, HIPAA and PCI DSS find nothing unacknowledged', () => {
    expect(nagFindings(build(new App()))).toEqual([]);
  });

  test('cdk-nag 2 sees the same acknowledgments and finds nothing either', () => {
    expect(nagV2Findings(build)).toEqual([]);
  });

  test('PRIVATE with an organization passes too', () => {
    const stack = (app: App) => {
      const s = new Stack(app, 'Stack', { env: ENV });
      const vpc = new ec2.Vpc(s, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }], flowLogs: {} });
      const endpoint = vpc.addInterfaceEndpoint('ExecuteApi', { service: ec2.InterfaceVpcEndpointAwsService.APIGATEWAY });
      new AgentBackend(s, 'Backend', {
        telemetry: new TelemetryStore(s, 'Telemetry'), endpointType: BackendEndpointType.PRIVATE, vpcEndpoints: [endpoint], principalOrgId: 'o-a1b2c3d4e5',
      });
      return s;
    };
    const findings = nagFindings(stack(new App())).filter((f) => f.path.includes('/Backend/'));
    expect(findings).toEqual([]);
  });

  test('every acknowledgment names one rule and a reason; IAM5 only for the Describe calls and the report prefix', () => {
    const template = Template.fromStack(build(new App())).toJSON();
    const acks = Object.entries(template.Resources).flatMap(([id, r]: [string, any]) =>
      (r.Metadata?.cdk_nag?.rules_to_suppress ?? []).map((s: any) => ({ logicalId: id, type: r.Type, ...s })));
    for (const ack of acks) {
      expect(ack.id).toMatch(/^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security|PCI\.DSS\.321)-[A-Za-z0-9]+$/);
      expect(ack.reason.length).toBeGreaterThan(40);
    }
    const iam5 = acks.filter((a: any) => a.id === 'AwsSolutions-IAM5');
    expect(iam5.map((a: any) => a.applies_to)).toEqual([['Resource::*'], ['Resource::*'], [expect.stringMatching(/^Resource::<Telemetry[0-9A-F]+\.Arn>\/reports\/coverage\/\*$/)]]);
    expect(new Set(iam5.map((a: any) => a.type))).toEqual(new Set(['AWS::IAM::ManagedPolicy']));
  });

  test('snapshot, with asset hashes normalised', () => {
    expect(normalizedTemplate(build(new App()))).toMatchSnapshot();
  });
});
