import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { controlTowerFindings } from './findings';
import { AgentFleet, AgentFleetProps, AgentPackage, BackendEndpointType, PackageFormat } from '../../lib';
import { acknowledgeNagFindings, cfnResourceOf } from '../../lib/core/nag';
import { nagFindings, nagV2Findings } from '../helpers/nag';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const EXAMPLES_DIR = path.join(__dirname, '..', '..', 'examples');
const examples = fs.readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.ts')).sort();

/** The options that make the fleet pass every control (README, "Control Tower proactive controls"). */
function compliantOptions(stack: Stack, vpcs: ec2.IVpc[]): Partial<AgentFleetProps> {
  return {
    functionVpc: vpcs[0],
    telemetry: {
      // S3 allows neither SSE-KMS, Object Lock nor logging on a server-access-log target
      // bucket, so the store's own log bucket cannot pass: the account's log bucket is used.
      accessLogsBucket: s3.Bucket.fromBucketName(stack, 'AccountAccessLogs', 'access-logs-111122223333-eu-west-1'),
      objectLockRetention: Duration.days(14),
      eventBridgeNotifications: true,
    },
  };
}

/** The full fleet: every part on, a PRIVATE backend in two VPCs, IMDS enforcement, auto-configuration with Default Host Management. */
function fullFleet(app: App, compliant = false): Stack {
  const stack = new Stack(app, 'Stack', { env: ENV });
  const vpcs = ['VpcA', 'VpcB'].map((id, i) => {
    const vpc = new ec2.Vpc(stack, id, {
      ipAddresses: ec2.IpAddresses.cidr(`10.${i}.0.0/16`),
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'private', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }],
      restrictDefaultSecurityGroup: false,
    });
    const reason = 'A VPC made by this test to host the fleet; flow logs and the default security group are the VPC owner\'s decisions, not the library\'s.';
    acknowledgeNagFindings(cfnResourceOf(vpc), ...[
      'AwsSolutions-VPC7', 'NIST.800.53.R5-VPCFlowLogsEnabled', 'HIPAA.Security-VPCFlowLogsEnabled', 'PCI.DSS.321-VPCFlowLogsEnabled',
      'NIST.800.53.R5-VPCDefaultSecurityGroupClosed', 'HIPAA.Security-VPCDefaultSecurityGroupClosed', 'PCI.DSS.321-VPCDefaultSecurityGroupClosed',
    ].map((rule) => ({ rule, reason })));
    return vpc;
  });
  new AgentFleet(stack, 'Fleet', {
    agentName: 'security-agent',
    packages: [AgentPackage.fromBucket(s3.Bucket.fromBucketName(stack, 'Packages', 'agent-packages-111122223333'), 'agent_1.2.3_arm64.deb', {
      version: '1.2.3', serviceName: 'security-agent', format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.ARM_64, sha256: 'b'.repeat(64),
    })],
    imds: { hopLimit: 2 },
    vpcs,
    backend: { endpointType: BackendEndpointType.PRIVATE },
    autoConfiguration: { enableDefaultHostManagement: true },
    ...(compliant ? compliantOptions(stack, vpcs) : {}),
  });
  return stack;
}

/** Every function of the full fleet, below the fleet. */
const FUNCTIONS = [
  'AutoConfiguration/DefaultHostManagement/Handler', 'Backend/CoverageReport', 'Backend/Heartbeat', 'Backend/RegistrySweep',
  'ImdsEnforcement/DriftFunction', 'ImdsEnforcement/LaunchFunction', 'ImdsEnforcement/ModifyThrottleFunction',
  'ImdsEnforcement/OnEventFunction', 'ImdsEnforcement/SweepFunction',
];

/** What a fleet with its defaults fails, below `<fleet>/`: the README's table. */
function defaultFailures(fleet: string, functions = FUNCTIONS): string[] {
  return [
    ...functions.map((fn) => `CT.LAMBDA.PR.3 ${fleet}/${fn}/Resource`),
    ...['CT.S3.PR.10', 'CT.S3.PR.2', 'CT.S3.PR.4', 'CT.S3.PR.9'].map((control) => `${control} ${fleet}/Telemetry/AccessLogs/Resource`),
    ...['CT.S3.PR.4', 'CT.S3.PR.9'].map((control) => `${control} ${fleet}/Telemetry/Resource/Resource`),
  ].sort();
}

/** The controls an example fails, with how often: the examples' own resources (pipelines, launch templates) included. */
function countByControl(findings: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const finding of findings) counts[finding.split(' ')[0]] = (counts[finding.split(' ')[0]] ?? 0) + 1;
  return counts;
}

describe('AWS Control Tower proactive controls (@cdklabs/cdk-validator-cfnguard)', () => {
  // One cfn-guard run for every app: it loads its rules once per run.
  let findings: Record<string, string[]>;
  beforeAll(() => {
    const apps: Record<string, App> = {};
    fullFleet(apps.fleet = new App());
    fullFleet(apps.compliant = new App(), true);
    for (const file of examples) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const example = require(path.join(EXAMPLES_DIR, file)) as { build: (app: App) => Stack };
      example.build(apps[file] = new App());
    }
    findings = controlTowerFindings(apps);
  });

  test('the full fleet with its defaults fails exactly the controls that need a VPC or a log bucket of your own, or are opt-in', () => {
    expect(findings.fleet).toEqual(defaultFailures('Stack/Fleet'));
  });

  test('with functionVpc, a log bucket of your own, Object Lock and EventBridge notifications it passes every control', () => {
    expect(findings.compliant).toEqual([]);
  });

  test('the compliant options keep the four cdk-nag packs (3 and 2) clean', () => {
    expect(nagFindings(fullFleet(new App(), true))).toEqual([]);
    expect(nagV2Findings((app) => fullFleet(app, true))).toEqual([]);
  });

  test('every example fails only what its fleet\'s defaults and its own resources fail', () => {
    expect(Object.keys(findings).filter((name) => name.endsWith('.ts')).sort()).toEqual(examples);
    const imdsOnly = FUNCTIONS.filter((fn) => fn.startsWith('ImdsEnforcement/')).map((fn) => fn.replace('ImdsEnforcement/', ''));
    const fleetFunctions = FUNCTIONS.filter((fn) => !fn.startsWith('AutoConfiguration/'));
    const libraryFindings = (name: string) => findings[name].filter((f) => /\/(Fleet|ContainerHostsImds)\//.test(f));

    expect(libraryFindings('org-wide.ts')).toEqual(defaultFailures('OrgWideFleet/Fleet', fleetFunctions));
    // The pilot enforces nothing at launch: no launch function.
    expect(libraryFindings('tagged-only-rollout.ts')).toEqual(defaultFailures('TaggedOnlyRollout/Fleet', fleetFunctions.filter((fn) => !fn.endsWith('LaunchFunction'))));
    expect(libraryFindings('container-and-plain-hosts.ts')).toEqual([
      ...defaultFailures('MixedHostFleet/Fleet', fleetFunctions),
      ...imdsOnly.map((fn) => `CT.LAMBDA.PR.3 MixedHostFleet/ContainerHostsImds/${fn}/Resource`),
    ].sort());
    expect(libraryFindings('pipeline-multi-account.ts')).toEqual(['Canary', 'Containers', 'WebEu', 'WebUs']
      .flatMap((stage) => defaultFailures(`FleetPipeline/${stage}/AgentFleet/Fleet`, fleetFunctions)).sort());
    expect(findings['telemetry-store.ts']).toEqual(['CT.S3.PR.4 TelemetryStoreExample/Telemetry/Resource/Resource', 'CT.S3.PR.9 TelemetryStoreExample/Telemetry/Resource/Resource']);

    // The StackSet member is environment-agnostic (one template for every account): the heartbeat
    // permission's source account is a reference there, which CT.LAMBDA.PR.2 cannot read.
    expect(countByControl(findings['stacksets-organization.ts'])).toEqual({ 'CT.LAMBDA.PR.2': 1, 'CT.LAMBDA.PR.3': 8, 'CT.S3.PR.10': 1, 'CT.S3.PR.2': 1, 'CT.S3.PR.4': 2, 'CT.S3.PR.9': 2 });
    // The examples' own resources: the pipeline's CodeBuild projects, artifact buckets and keys
    // (aws-cdk-lib's pipelines), and launch templates of the example's hosts (public IPs
    // unspecified; hop limit 2 for containers, which CT.EC2.PR.2 does not allow).
    const own = (name: string) => countByControl(findings[name].filter((f) => !/\/(Fleet|ContainerHostsImds)\//.test(f)));
    expect(own('pipeline-multi-account.ts')).toEqual({
      'CT.CODEBUILD.PR.3': 10, 'CT.KMS.PR.1': 2, 'CT.KMS.PR.3': 2, 'CT.S3.PR.11': 2, 'CT.S3.PR.2': 2, 'CT.S3.PR.4': 2, 'CT.S3.PR.6': 2, 'CT.S3.PR.9': 2,
    });
    expect(own('container-and-plain-hosts.ts')).toEqual({ 'CT.EC2.PR.10': 2, 'CT.EC2.PR.2': 1 });
  });
});
