import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { ImdsEnforcementMode, Imdsv2Enforcement, Imdsv2EnforcementProps, TelemetryStore } from '../../lib';
import { nagFindings, nagV2Findings } from '../helpers/nag';
import { normalizedTemplate } from '../helpers/template';

const ENV = { account: '111122223333', region: 'eu-west-1' };

function build(app: App, props: Imdsv2EnforcementProps, withVpc = false): Stack {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const vpc = withVpc ? new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'iso', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] }) : undefined;
  new Imdsv2Enforcement(stack, 'Enforcement', { ...props, ...(vpc ? { vpc } : {}) });
  return stack;
}

describe('Imdsv2Enforcement compliance', () => {
  test('passes the cdk-nag 3 and 2 packs with only its narrow acknowledgments (ENFORCE)', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack');
    new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2 });
    expect(nagFindings(stack)).toEqual([]);
    expect(nagV2Findings((v2app) => build(v2app, { hopLimit: 2 }))).toEqual([]);
  });

  test('passes the cdk-nag 2 packs alike (AUDIT, tags, in a VPC)', () => {
    const props = { hopLimit: 1, mode: ImdsEnforcementMode.AUDIT, instanceTags: { Fleet: 'agents' } };
    // The test's own VPC has findings of its own (flow logs, default security group): judge only the enforcement.
    const ours = (f: { path: string }) => f.path.startsWith('Stack/Enforcement/');
    expect(nagV2Findings((app) => build(app, props, true)).filter(ours)).toEqual([]);
    expect(nagFindings(build(new App(), props, true)).filter(ours)).toEqual([]);
  });

  test('passes both generations of packs with a report bucket (the telemetry store) and account-level enforcement', () => {
    const build2 = (app: App) => {
      const stack = new Stack(app, 'Stack', { env: ENV });
      const store = new TelemetryStore(stack, 'Telemetry');
      new Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2, httpTokensEnforced: true, reportBucket: store.bucket });
      return stack;
    };
    expect(nagFindings(build2(new App()))).toEqual([]);
    expect(nagV2Findings(build2)).toEqual([]);
  });

  test('snapshot, with asset hashes normalised', () => {
    expect(normalizedTemplate(build(new App(), { hopLimit: 2 }))).toMatchSnapshot();
  });
});
