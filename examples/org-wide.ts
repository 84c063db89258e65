/*
 * Example: one account's fleet in an AWS Organization. Every managed instance gets the agent
 * except those tagged SecurityAgentManaged=false; instances in isolated subnets reach SSM, S3
 * and the backend through endpoints; the heartbeat API is PRIVATE (reachable only through
 * those endpoints) and its resource policy admits principals of the organization only.
 */
import { App, Stack } from 'aws-cdk-lib';
import { AgentFleet, AutoConfigurationMode, BackendEndpointType } from '../lib';
import { agentPackages, isolatedVpc } from './shared/fleet-parts';

export function build(app: App): Stack {
  const stack = new Stack(app, 'OrgWideFleet', { env: { account: '111111111111', region: 'eu-west-1' } });
  const workloads = isolatedVpc(stack, 'Workloads');
  const shared = isolatedVpc(stack, 'SharedServices');

  new AgentFleet(stack, 'Fleet', {
    agentName: 'fleet-agent',
    packages: agentPackages(),
    mode: AutoConfigurationMode.ALL_INSTANCES,
    imds: { hopLimit: 1 },
    vpcs: [workloads, shared],
    backend: {
      endpointType: BackendEndpointType.PRIVATE,
      principalOrgId: 'o-a1b2c3d4e5',
    },
  });
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
