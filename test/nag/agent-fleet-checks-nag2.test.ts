import { App, Aspects, Stack } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as nagV2 from 'cdk-nag-v2';
import { AgentFleetChecks, AgentFleetChecksProps } from '../../lib/nag/agent-fleet-checks';

/*
 * AgentFleetChecks in an app that installed cdk-nag 2 (the Aspect API): the same pack, with
 * `cdk-nag` resolving to cdk-nag 2 as it does there.
 */
jest.mock('cdk-nag', () => jest.requireActual('cdk-nag-v2'));

// The image through an SSM public parameter: a literal AMI id draws CloudFormation-validate warnings.
const AMI = '{{resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64}}';
const COMPLIANT_OPTIONS = { httpTokens: 'required', httpPutResponseHopLimit: 1, instanceMetadataTags: 'enabled', httpEndpoint: 'enabled' };

/** The pack's findings as `<rule> <construct path>`, with the pack added to the app as cdk-nag 2 packs are. */
function findings(build: (stack: Stack) => void, props?: AgentFleetChecksProps): string[] {
  const app = new App();
  const stack = new Stack(app, 'Stack');
  build(stack);
  Aspects.of(app).add(new AgentFleetChecks(undefined, { ...props, reports: false } as AgentFleetChecksProps));
  app.synth();
  return Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('^AgentFleet-'))
    .map((m) => `${String(m.entry.data).split(':')[0]} ${m.id.replace(/^\//, '')}`)
    .sort();
}

function managedInstance(stack: Stack, id: string, metadataOptions?: object): ec2.CfnInstance {
  const role = new iam.Role(stack, `${id}Role`, {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
  });
  const profile = new iam.CfnInstanceProfile(stack, `${id}Profile`, { roles: [role.roleName] });
  return new ec2.CfnInstance(stack, id, { imageId: AMI, iamInstanceProfile: profile.ref, metadataOptions });
}

test('is cdk-nag 2\'s kind of pack there', () => {
  expect(new AgentFleetChecks()).toBeInstanceOf(nagV2.NagPack);
});

test('flags an instance without IMDSv2, hop limit and metadata tags, and passes a compliant one', () => {
  expect(findings((stack) => {
    managedInstance(stack, 'Bare');
    managedInstance(stack, 'Compliant', COMPLIANT_OPTIONS);
  })).toEqual([
    'AgentFleet-HopLimit Stack/Bare',
    'AgentFleet-IMDSv2Required Stack/Bare',
    'AgentFleet-MetadataTags Stack/Bare',
  ]);
});

test('takes its settings: a hop-limit-2 pack flags hop limit 1', () => {
  expect(findings((stack) => managedInstance(stack, 'Compliant', COMPLIANT_OPTIONS), { hopLimit: 2 }))
    .toEqual(['AgentFleet-HopLimit Stack/Compliant']);
});

test('honours a cdk-nag 2 suppression on the resource', () => {
  expect(findings((stack) => {
    const instance = new ec2.CfnInstance(stack, 'NoProfile', { imageId: AMI, metadataOptions: COMPLIANT_OPTIONS });
    nagV2.NagSuppressions.addResourceSuppressions(instance, [
      { id: 'AgentFleet-InstanceRoleSsmCore', reason: 'Managed through Default Host Management in this account.' },
    ]);
  })).toEqual([]);
});

test('fails when given bad props, as under cdk-nag 3', () => {
  expect(() => new AgentFleetChecks(undefined, { hopLimit: 0 })).toThrow('hopLimit: got 0; allowed: an integer from 1 to 64');
});
