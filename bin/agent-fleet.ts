#!/usr/bin/env node
/*
 * The CDK app `npx cdk synth` runs: the agent fleet's stack, checked by the cdk-nag packs.
 * Synthesizes offline and without credentials (an environment-agnostic stack, no lookups).
 */
import { App, AppProps, Duration, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import { agentPackages } from '../examples/shared/fleet-parts';
import { AgentFleet, AssessmentTemplate, Sensor } from '../lib';

export function createApp(props: AppProps = {}): App {
  const app = new App(props);
  const stack = new Stack(app, 'AgentFleet', {
    description: 'Backend of the host security agent fleet (cdk-agent-fleet)',
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });

  // Example builds of the agent (the same as the examples'): replace them with your releases.
  const packages = agentPackages();

  // The whole fleet: telemetry store, install document, auto-configuration of every instance
  // not tagged SecurityAgentManaged=false, IMDSv2 enforcement, backend and dashboard.
  new AgentFleet(stack, 'Fleet', {
    agentName: 'fleet-agent',
    packages,
    // Agents in containers on a Docker bridge still reach IMDS; nothing further away does.
    imds: { hopLimit: 2 },
    // Every managed instance runs the baseline assessment: package inventory and configuration, hourly.
    backend: {
      assessments: [new AssessmentTemplate({
        name: 'baseline',
        sensors: [Sensor.PACKAGE_INVENTORY, Sensor.SOFTWARE_CONFIGURATION],
        duration: Duration.hours(1),
      })],
    },
  });

  // Any unacknowledged finding fails the synth.
  Validations.of(app).addPlugins(
    new AwsSolutionsChecks(app),
    new NIST80053R5Checks(app),
    new HIPAASecurityChecks(app),
    new PCIDSS321Checks(app),
  );
  return app;
}

if (require.main === module) {
  createApp().synth();
}
