/*
 * Example: the fleet in every account of an AWS Organization through a service-managed
 * CloudFormation StackSet, deployed from the management (or a delegated administrator)
 * account. New accounts in the target OUs get the fleet automatically.
 *
 * The member template is synthesized on its own, with its Lambda bundles in one asset
 * bucket per region that the organization's accounts can read (`example-org-fleet-assets-
 * <region>`, readable under an aws:PrincipalOrgID bucket policy). Publish the member's assets
 * there before the StackSet deploys, e.g. `npx cdk-assets publish -p <member>.assets.json`
 * once per region; the StackSet itself only carries the template.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, CfnStackSet, DefaultStackSynthesizer, Stack } from 'aws-cdk-lib';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { AgentFleet } from '../lib';
import { agentPackages } from './shared/fleet-parts';

const ORGANIZATION_ID = 'o-a1b2c3d4e5';

/** The fleet as each member account gets it, as a template file. */
function synthesizeMemberTemplate(): string {
  const memberApp = new App({ outdir: fs.mkdtempSync(path.join(os.tmpdir(), 'fleet-member-')) });
  const member = new Stack(memberApp, 'AgentFleetMember', {
    synthesizer: new DefaultStackSynthesizer({
      fileAssetsBucketName: 'example-org-fleet-assets-${AWS::Region}',
      bucketPrefix: 'agent-fleet/',
      generateBootstrapVersionRule: false,
    }),
  });
  new AgentFleet(member, 'Fleet', {
    agentName: 'fleet-agent',
    packages: agentPackages(),
    imds: { hopLimit: 1 },
    backend: { principalOrgId: ORGANIZATION_ID },
  });
  const assembly = memberApp.synth();
  return path.join(assembly.directory, member.templateFile);
}

export function build(app: App): Stack {
  const admin = new Stack(app, 'AgentFleetStackSet', { env: { account: '999999999999', region: 'eu-west-1' } });
  const template = new s3assets.Asset(admin, 'MemberTemplate', { path: synthesizeMemberTemplate() });

  new CfnStackSet(admin, 'StackSet', {
    stackSetName: 'agent-fleet',
    description: 'Security agent fleet backend in every account of the organization (cdk-agent-fleet)',
    permissionModel: 'SERVICE_MANAGED',
    callAs: 'DELEGATED_ADMIN',
    autoDeployment: { enabled: true, retainStacksOnAccountRemoval: false },
    capabilities: ['CAPABILITY_IAM', 'CAPABILITY_NAMED_IAM'],
    templateUrl: template.httpUrl,
    managedExecution: { Active: true },
    operationPreferences: {
      regionConcurrencyType: 'PARALLEL',
      maxConcurrentPercentage: 25,
      failureTolerancePercentage: 10,
    },
    stackInstancesGroup: [{
      deploymentTargets: { organizationalUnitIds: ['ou-abcd-11111111', 'ou-abcd-22222222'] },
      regions: ['eu-west-1', 'us-east-1'],
    }],
  });
  return admin;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
