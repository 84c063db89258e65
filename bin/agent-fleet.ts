#!/usr/bin/env node
/*
 * The CDK app `npx cdk synth` runs: the agent fleet's stack, checked by the cdk-nag packs.
 * Synthesizes offline and without credentials (an environment-agnostic stack, no lookups).
 */
import { App, AppProps, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import { Imdsv2Enforcement, TelemetryStore } from '../lib';

export function createApp(props: AppProps = {}): App {
  const app = new App(props);
  const stack = new Stack(app, 'AgentFleet', {
    description: 'Backend of the host security agent fleet (cdk-agent-fleet)',
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });

  new TelemetryStore(stack, 'Telemetry');
  // Agents in containers on a Docker bridge still reach IMDS; nothing further away does.
  new Imdsv2Enforcement(stack, 'ImdsEnforcement', { hopLimit: 2 });

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
