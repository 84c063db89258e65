#!/usr/bin/env node
/*
 * The CDK app `npx cdk synth` runs: the agent fleet's stack, checked by the cdk-nag packs.
 * Synthesizes offline and without credentials (an environment-agnostic stack, no lookups).
 */
import { App, AppProps, Duration, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { AgentFleet, AgentPackage, AssessmentTemplate, PackageFormat, Sensor } from '../lib';

export function createApp(props: AppProps = {}): App {
  const app = new App(props);
  const stack = new Stack(app, 'AgentFleet', {
    description: 'Backend of the host security agent fleet (cdk-agent-fleet)',
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });

  // Example builds of the agent: replace the URLs and hashes with your agent's releases.
  const agent = { version: '1.2.3', serviceName: 'security-agent' };
  const packages = [
    AgentPackage.fromUrl('https://downloads.example.com/security-agent/1.2.3/security-agent-1.2.3.x86_64.rpm', {
      ...agent, format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
      sha256: '3f0a9c3e4b1d2c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6',
    }),
    AgentPackage.fromUrl('https://downloads.example.com/security-agent/1.2.3/security-agent_1.2.3_amd64.deb', {
      ...agent, format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64,
      sha256: '9b8a7c6d5e4f30211a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081',
    }),
    AgentPackage.fromUrl('https://downloads.example.com/security-agent/1.2.3/security-agent-1.2.3-x64.msi', {
      ...agent, format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, packageName: 'Security Agent',
      sha256: '0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091',
    }),
  ];

  // The whole fleet: telemetry store, install document, auto-configuration of every instance
  // not tagged SecurityAgentManaged=false, IMDSv2 enforcement, backend and dashboard.
  new AgentFleet(stack, 'Fleet', {
    agentName: 'security-agent',
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
