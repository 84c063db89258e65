/*
 * Example: GuardDuty Runtime Monitoring's EC2 agent rolled out by the fleet (GuardDuty's
 * automated agent configuration turned off): GuardDuty's Distributor package, a pinned agent
 * version, instances tagged GuardDutyManaged=false left alone, 10% at a time, and the
 * guardduty-data endpoint next to the SSM endpoints in an isolated VPC.
 */
import { App, Stack } from 'aws-cdk-lib';
import { GuardDutyRuntimeMonitoringFleet } from '../lib';
import { isolatedVpc } from './shared/fleet-parts';

export function build(app: App): Stack {
  const stack = new Stack(app, 'GuardDutyRuntimeMonitoring', { env: { account: '333333333333', region: 'eu-west-1' } });
  const vpc = isolatedVpc(stack, 'Workloads');

  new GuardDutyRuntimeMonitoringFleet(stack, 'GuardDuty', {
    agentVersion: 'v1.8.0',
    vpcs: [vpc],
    imds: { hopLimit: 2 },
    enableBackend: false,
  });
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
