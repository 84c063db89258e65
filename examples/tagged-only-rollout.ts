/*
 * Example: a cautious rollout. Only instances tagged SecurityAgentManaged=true get the agent
 * (tag a pilot group first, then widen), at most 5% of them at a time, stopping at the first
 * failure beyond 1%; IMDSv2 is enforced on the same pilot instances only, and new instances
 * are not changed at launch until the pilot is over.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import { AgentFleet, AssociationSchedule, AutoConfigurationMode } from '../lib';
import { agentPackages } from './shared/fleet-parts';

export function build(app: App): Stack {
  const stack = new Stack(app, 'TaggedOnlyRollout', { env: { account: '222222222222', region: 'us-east-1' } });

  new AgentFleet(stack, 'Fleet', {
    agentName: 'fleet-agent',
    packages: agentPackages(),
    mode: AutoConfigurationMode.TAGGED_ONLY,
    autoConfiguration: {
      maxConcurrencyPercentage: 5,
      maxErrorsPercentage: 1,
      schedule: AssociationSchedule.rate(Duration.hours(12)),
    },
    imds: {
      hopLimit: 1,
      instanceTags: { SecurityAgentManaged: 'true' },
      accountDefaults: false,
      enforceOnLaunch: false,
    },
  });
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
