/*
 * Example: two fleet classes in one account. Plain hosts keep the IMDS hop limit at 1 (only
 * the host reaches the metadata service); container hosts need 2, because the Docker bridge
 * adds a hop between the agent's container and IMDS. Instances say which class they are in
 * with a FleetClass tag; each class gets its own enforcement, and the launch templates this
 * app defines get the matching metadata options from the RequireImdsv2 aspect.
 */
import { App, Aspects, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { AgentFleet, Imdsv2Enforcement, RequireImdsv2 } from '../lib';
import { agentPackages } from './shared/fleet-parts';

export function build(app: App): Stack {
  const stack = new Stack(app, 'MixedHostFleet', { env: { account: '333333333333', region: 'eu-central-1' } });

  // The fleet, with IMDS enforcement for the plain hosts. It also owns the account defaults,
  // which new instances of either class start from (hop limit 1, the safer of the two).
  const fleet = new AgentFleet(stack, 'Fleet', {
    agentName: 'fleet-agent',
    packages: agentPackages(),
    imds: { hopLimit: 1, instanceTags: { FleetClass: 'plain' } },
  });

  // Container hosts: hop limit 2. The account defaults are one setting per account and
  // region, so only the fleet's enforcement sets them.
  new Imdsv2Enforcement(stack, 'ContainerHostsImds', {
    hopLimit: 2,
    instanceTags: { FleetClass: 'containers' },
    accountDefaults: false,
  });

  // One instance role for both classes, with what the agent needs (SSM, packages,
  // telemetry under the instance's own prefix, heartbeats).
  const role = new iam.Role(stack, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
  fleet.grantInstanceRole(role);

  // Launch templates this app defines, one per class, fixed by the aspect at synth.
  const plainHosts = new Construct(stack, 'PlainHosts');
  const containerHosts = new Construct(stack, 'ContainerHosts');
  new ec2.LaunchTemplate(plainHosts, 'LaunchTemplate', { launchTemplateName: 'plain-hosts', role });
  new ec2.LaunchTemplate(containerHosts, 'LaunchTemplate', { launchTemplateName: 'container-hosts', role });
  Aspects.of(plainHosts).add(new RequireImdsv2({ hopLimit: 1 }));
  Aspects.of(containerHosts).add(new RequireImdsv2({ hopLimit: 2 }));
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
