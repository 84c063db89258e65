import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cxapi from 'aws-cdk-lib/cx-api';

const EXAMPLES_DIR = path.join(__dirname, '..', '..', 'examples');
const examples = fs.readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.ts')).sort();

/** What each example is about, checked on its synthesized template. */
const scenarios: Record<string, (t: Template, assembly: cxapi.CloudAssembly) => void> = {
  'org-wide.ts': (t) => {
    // A PRIVATE heartbeat API that admits the organization, reachable through each VPC's endpoint.
    const [api] = Object.values(t.findResources('AWS::ApiGateway::RestApi')) as any[];
    expect(api.Properties.EndpointConfiguration.Types).toEqual(['PRIVATE']);
    expect(api.Properties.EndpointConfiguration.VpcEndpointIds).toHaveLength(2);
    expect(JSON.stringify(api.Properties.Policy)).toContain('o-a1b2c3d4e5');
    t.hasResourceProperties('AWS::SSM::Association', { Targets: [{ Key: 'InstanceIds', Values: ['*'] }] });
    t.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 8);
  },
  'tagged-only-rollout.ts': (t) => {
    t.hasResourceProperties('AWS::SSM::Association', {
      Targets: [{ Key: 'tag:SecurityAgentManaged', Values: ['true'] }],
      MaxConcurrency: '5%',
      MaxErrors: '1%',
    });
    // No enforcement at launch during the pilot: no rule on instance state changes.
    const launchRules = Object.values(t.findResources('AWS::Events::Rule'))
      .filter((r: any) => JSON.stringify(r.Properties.EventPattern ?? {}).includes('EC2 Instance State-change Notification'));
    expect(launchRules).toEqual([]);
    const [enforcement] = Object.values(t.findResources('Custom::Imdsv2Enforcement')) as any[];
    expect(enforcement.Properties.AccountDefaults).toBe('false');
  },
  'container-and-plain-hosts.ts': (t) => {
    const enforcements = Object.values(t.findResources('Custom::Imdsv2Enforcement')).map((r: any) => JSON.stringify(r.Properties.Policy));
    expect(enforcements).toHaveLength(2);
    expect(enforcements.some((p) => /"?[Hh]opLimit"?\s*[:=]\s*"?1/.test(p))).toBe(true);
    expect(enforcements.some((p) => /"?[Hh]opLimit"?\s*[:=]\s*"?2/.test(p))).toBe(true);
    for (const [name, hops] of [['plain-hosts', 1], ['container-hosts', 2]] as const) {
      t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
        LaunchTemplateName: name,
        LaunchTemplateData: Match.objectLike({
          MetadataOptions: Match.objectLike({ HttpTokens: 'required', HttpPutResponseHopLimit: hops, InstanceMetadataTags: 'enabled' }),
        }),
      });
    }
  },
  'pipeline-multi-account.ts': (_t, assembly) => {
    const stages = assembly.nestedAssemblies;
    expect(stages.map((a) => a.id).sort()).toEqual(['assembly-FleetPipeline-Canary', 'assembly-FleetPipeline-Containers', 'assembly-FleetPipeline-WebEu', 'assembly-FleetPipeline-WebUs']);
    for (const stage of stages) {
      const [fleetStack] = stage.nestedAssembly.stacks;
      expect(JSON.stringify(fleetStack.template)).toContain('Custom::Imdsv2Enforcement');
    }
  },
  'stacksets-organization.ts': (t) => {
    t.hasResourceProperties('AWS::CloudFormation::StackSet', {
      PermissionModel: 'SERVICE_MANAGED',
      AutoDeployment: { Enabled: true, RetainStacksOnAccountRemoval: false },
      TemplateURL: Match.anyValue(),
      StackInstancesGroup: [Match.objectLike({ DeploymentTargets: { OrganizationalUnitIds: ['ou-abcd-11111111', 'ou-abcd-22222222'] } })],
    });
  },
  'guardduty-runtime-monitoring.ts': (t) => {
    const [document] = Object.values(t.findResources('AWS::SSM::Document')) as any[];
    expect(document.Properties.Content.mainSteps[1]).toMatchObject({
      action: 'aws:configurePackage', inputs: { name: 'AmazonGuardDuty-RuntimeMonitoringSsmPlugin', version: 'v1.8.0' },
    });
    expect(document.Properties.Content.parameters.tagKey.default).toBe('GuardDutyManaged');
    t.hasResourceProperties('AWS::EC2::VPCEndpoint', { ServiceName: 'com.amazonaws.eu-west-1.guardduty-data', PrivateDnsEnabled: true });
  },
  'trend-micro-workload-security.ts': (t) => {
    // The activation is in the document by ARN; the role may read exactly those secrets.
    const [document] = Object.values(t.findResources('AWS::SSM::Document')) as any[];
    const script = JSON.stringify(document.Properties.Content);
    expect(script).toContain('/opt/ds_agent/dsa_control');
    expect(script).toContain('dsm://agents.workload.us-1.cloudone.trendmicro.com:443/');
    expect(document.Properties.Content.parameters.action.allowedValues).toContain('Reactivate');
  },
  'crowdstrike-falcon.ts': (t) => {
    const [document] = Object.values(t.findResources('AWS::SSM::Document')) as any[];
    expect(JSON.stringify(document.Properties.Content)).toContain('--cid=');
    expect(JSON.stringify(document.Properties.Content)).toContain('crowdstrike/cid-AbCdEf');
  },
  'telemetry-store.ts': (t) => {
    t.hasResourceProperties('AWS::S3::Bucket', { LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90 })]) } });
  },
};

describe('examples', () => {
  test('every example has a scenario check', () => {
    expect(examples).toEqual(Object.keys(scenarios).sort());
  });

  test.each(examples)('%s synthesizes and does what it says', (file) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const example = require(path.join(EXAMPLES_DIR, file)) as { build: (app: App) => Stack };
    const app = new App();
    const stack = example.build(app);
    const assembly = app.synth();
    expect(assembly.getStackByName(stack.stackName).template.Resources).toBeDefined();
    scenarios[file](Template.fromStack(stack), assembly);
  });
});
