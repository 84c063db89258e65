/*
 * Example: a CDK Pipelines app that deploys the fleet to several accounts and regions. The
 * pipeline lives in a tooling account; each stage is one account and region, deployed in
 * waves (a canary region first), each with the hop limit its fleet class needs.
 */
import { App, Stack, Stage, StageProps } from 'aws-cdk-lib';
import * as pipelines from 'aws-cdk-lib/pipelines';
import { Construct } from 'constructs';
import { AgentFleet } from '../lib';
import { agentPackages } from './shared/fleet-parts';

interface FleetStageProps extends StageProps {
  readonly hopLimit: number;
}

/** One account and region's fleet. */
class FleetStage extends Stage {
  constructor(scope: Construct, id: string, props: FleetStageProps) {
    super(scope, id, props);
    const stack = new Stack(this, 'AgentFleet');
    new AgentFleet(stack, 'Fleet', {
      agentName: 'fleet-agent',
      packages: agentPackages(),
      imds: { hopLimit: props.hopLimit },
    });
  }
}

export function build(app: App): Stack {
  const tooling = new Stack(app, 'FleetPipeline', { env: { account: '999999999999', region: 'eu-west-1' } });
  const pipeline = new pipelines.CodePipeline(tooling, 'Pipeline', {
    crossAccountKeys: true,
    synth: new pipelines.ShellStep('Synth', {
      input: pipelines.CodePipelineSource.connection('example-org/fleet-infrastructure', 'main', {
        connectionArn: 'arn:aws:codeconnections:eu-west-1:999999999999:connection/00000000-0000-0000-0000-000000000000',
      }),
      commands: ['npm ci', 'npm test', 'npx cdk synth'],
    }),
  });

  pipeline.addStage(new FleetStage(tooling, 'Canary', { env: { account: '111111111111', region: 'eu-west-1' }, hopLimit: 1 }));
  const production = pipeline.addWave('Production');
  production.addStage(new FleetStage(tooling, 'WebEu', { env: { account: '222222222222', region: 'eu-west-1' }, hopLimit: 1 }));
  production.addStage(new FleetStage(tooling, 'WebUs', { env: { account: '222222222222', region: 'us-east-1' }, hopLimit: 1 }));
  production.addStage(new FleetStage(tooling, 'Containers', { env: { account: '333333333333', region: 'eu-west-1' }, hopLimit: 2 }));
  return tooling;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
