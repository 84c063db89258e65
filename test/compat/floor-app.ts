/*
 * The app of the compatibility run (`npm run test:compat`, scripts/compat-check.sh).
 *
 * It runs from a fresh app that installed the packed library with plain `npm install`, next to
 * the oldest aws-cdk-lib the library supports and cdk-nag 2, or no cdk-nag at all (the
 * bundler points `../../lib` at the installed package). It synthesizes every example and
 * every construct, runs the installed cdk-nag packs and fails on any finding on the library's
 * resources, and checks that each fallback of lib/core/cdk-compat.ts produced what the newest
 * aws-cdk-lib produces.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { App, Aspects, Duration, IAspect, Stack } from 'aws-cdk-lib';
import { CfnInclude } from 'aws-cdk-lib/cloudformation-include';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { IConstruct } from 'constructs';
import * as fleet from '../../lib';

const NAG_MODULE = /[\\/]node_modules[\\/]cdk-nag[\\/]/;
const NAG_RULE = /^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security|PCI\.DSS\.321|AgentFleet)-[A-Za-z0-9]+(\[.*?\])?:/;
const failures: string[] = [];

function check(ok: boolean, what: string): void {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
}

function versionOf(pkg: string): string | undefined {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return undefined;
  }
}

// 1. The package root loads without cdk-nag.
check(!Object.keys(require.cache).some((file) => NAG_MODULE.test(file)), 'the package root loads without loading cdk-nag');
const nagVersion = versionOf('cdk-nag');
console.log(`aws-cdk-lib ${versionOf('aws-cdk-lib')}, constructs ${versionOf('constructs')}, cdk-nag ${nagVersion ?? '(none)'}, `
  + `cdk-agent-fleet ${versionOf('cdk-agent-fleet')}`);
if (!nagVersion) {
  let message = '';
  try {
    void fleet.AgentFleetChecks;
  } catch (e) {
    message = String((e as Error).message);
  }
  check(/install cdk-nag/.test(message), 'without cdk-nag, AgentFleetChecks says what to install');
}

/** A jsii assembly (`.jsii`, or the file it redirects to) of an installed package. */
function assemblyOf(pkg: string): { types: Record<string, unknown> } {
  const file = require.resolve(`${pkg}/.jsii`);
  const content = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (content.schema !== 'jsii/file-redirect') return content;
  const target = fs.readFileSync(path.join(path.dirname(file), content.filename));
  return JSON.parse((content.compression === 'gzip' ? zlib.gunzipSync(target) : target).toString('utf8'));
}

// 2. The library's public API names only types of aws-cdk-lib, constructs (and cdk-nag, where
//    installed) that the installed releases have: what jsii languages (Python, Java, .NET) load by name.
{
  const peers = ['aws-cdk-lib', 'constructs', ...(nagVersion ? ['cdk-nag'] : [])];
  const ours = JSON.stringify(assemblyOf('cdk-agent-fleet').types);
  const referenced = [...new Set([...ours.matchAll(new RegExp(`"((?:${peers.join('|')})\\.[A-Za-z0-9_.]+)"`, 'g'))].map((m) => m[1]))];
  const known = Object.assign({}, ...peers.map((peer) => assemblyOf(peer).types)) as Record<string, unknown>;
  const missing = referenced.filter((fqn) => !(fqn in known));
  check(referenced.length > 0 && missing.length === 0, `the public API's ${referenced.length} types of ${peers.join(', ')} exist in the installed releases`
    + (missing.length ? `; missing: ${missing.join(', ')}` : ''));
}

/** The cdk-nag 2 packs (the Aspect API) that an app adds to itself; none without cdk-nag. */
function nagPacks(): IAspect[] {
  if (!nagVersion) return [];
  if (!nagVersion.startsWith('2.')) throw new Error(`the compatibility run drives cdk-nag 2's Aspect API; found cdk-nag ${nagVersion}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- optional: loaded only where installed
  const nag = require('cdk-nag') as typeof import('cdk-nag-v2');
  return [
    new nag.AwsSolutionsChecks({ reports: false }),
    new nag.NIST80053R5Checks({ reports: false }),
    new nag.HIPAASecurityChecks({ reports: false }),
    new nag.PCIDSS321Checks({ reports: false }),
  ];
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any class of the library
type AnyClass = Function;
/** The library's construct classes (not the pack: reading it loads cdk-nag, which may be absent). */
const CONSTRUCT_CLASSES: AnyClass[] = Object.keys(fleet).filter((name) => name !== 'AgentFleetChecks')
  .map((name) => (fleet as Record<string, unknown>)[name]).filter((v): v is AnyClass => typeof v === 'function');

/** Construct paths of the library's constructs (of the classes given): the roots of what it created. */
function libraryPaths(root: IConstruct, ...classes: AnyClass[]): string[] {
  const wanted = classes.length > 0 ? classes : CONSTRUCT_CLASSES;
  return root.node.findAll().filter((c) => wanted.some((cls) => c instanceof cls)).map((c) => c.node.path);
}

/** An app that writes construct paths into template metadata, as the CDK CLI's apps do. */
function newApp(outdir: string): App {
  return new App({ outdir, context: { [cxapi.PATH_METADATA_ENABLE_CONTEXT]: true } });
}

/**
 * Synthesizes the app with the nag packs and checks findings and the fallbacks' output.
 * `included` names a CfnInclude of a template the library made elsewhere, judged as the library's.
 */
function synthAndCheck(name: string, app: App, included?: string): cxapi.CloudAssembly {
  for (const pack of nagPacks()) Aspects.of(app).add(pack);
  const assembly = app.synth();
  const ours = included ? [included] : libraryPaths(app);
  check(ours.length > 0, `${name}: synthesized, with the library's constructs at ${ours.slice(0, 3).join(', ')}${ours.length > 3 ? ', ...' : ''}`);

  const stacks = assembly.stacksRecursively;
  const findings = stacks.flatMap((stack) => Object.entries(stack.manifest.metadata ?? {}).flatMap(([logicalPath, entries]) => entries
    .filter((e) => (e.type === 'aws:cdk:error' || e.type === 'aws:cdk:warning') && NAG_RULE.test(String(e.data)))
    .map((e) => ({ path: logicalPath.replace(/^\//, ''), message: String(e.data).split('\n')[0] }))));
  const onOurs = findings.filter((f) => ours.some((p) => f.path === p || f.path.startsWith(`${p}/`)));
  for (const f of onOurs) console.log(`     ${f.path}: ${f.message}`);
  if (nagVersion) {
    check(onOurs.length === 0, `${name}: no unacknowledged cdk-nag ${nagVersion} finding on the library's resources `
      + `(${findings.length - onOurs.length} on the example's own resources)`);
  }

  const resources = stacks.flatMap((stack) => Object.values((stack.template as { Resources?: Record<string, CfnJson> }).Resources ?? {}));
  // An included template carries its own metadata, without construct paths: all of it is the library's.
  checkFallbacks(name, resources, included ? () => true : (r) => within(r, ours), libraryPaths(app, fleet.AgentFleet));
  return assembly;
}

type CfnJson = { Type: string; Properties?: Record<string, any>; Metadata?: Record<string, any> };

const pathOf = (r: CfnJson): string => String(r.Metadata?.['aws:cdk:path'] ?? '');
const within = (r: CfnJson, roots: string[]): boolean => roots.some((p) => pathOf(r).startsWith(`${p}/`));
/** Resource types whose L1 class older aws-cdk-lib releases cannot tag (lib/core/cdk-compat.ts). */
const TAGGED_BY_FALLBACK = ['AWS::Events::Rule', 'AWS::CloudWatch::Dashboard', 'AWS::SSM::Association'];

/** What lib/core/cdk-compat.ts promises, on the templates of the floor release. */
function checkFallbacks(name: string, resources: CfnJson[], isOurs: (r: CfnJson) => boolean, fleets: string[]): void {
  const functions = resources.filter((r) => r.Type === 'AWS::Lambda::Function' && isOurs(r)
    && !String(r.Properties?.Description ?? '').startsWith('AWS CDK resource provider framework'));
  if (functions.length > 0) {
    const runtimes = [...new Set(functions.map((r) => r.Properties?.Runtime))];
    check(runtimes.length === 1 && runtimes[0] === 'nodejs24.x', `${name}: the library's ${functions.length} functions run on ${runtimes.join(', ')}`);
  }
  const taggable = resources.filter((r) => TAGGED_BY_FALLBACK.includes(r.Type) && within(r, fleets));
  if (taggable.length > 0) {
    const untagged = taggable.filter((r) => !(r.Properties?.Tags as Array<{ Key: string }> | undefined)?.some((t) => t.Key === 'cdk-agent-fleet:agent'));
    check(untagged.length === 0, `${name}: the fleet's ${taggable.length} rules, dashboards and associations carry its tag`
      + (untagged.length ? ` (missing on ${untagged.map(pathOf).join(', ')})` : ''));
  }
  const acknowledged = resources.filter((r) => isOurs(r) && Array.isArray(r.Metadata?.cdk_nag?.rules_to_suppress));
  check(acknowledged.length > 0, `${name}: cdk-nag 2 reads the library's acknowledgments on ${acknowledged.length} resources`);
}

const EXAMPLES_DIR = path.join(__dirname, '..', '..', 'examples');
const outRoot = process.env.COMPAT_OUTDIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'compat-out-'));

// 3. Every example, as its README section shows it.
for (const file of fs.readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.js')).sort()) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the examples are bundled beside this file
  const example = require(path.join(EXAMPLES_DIR, file)) as { build: (app: App) => Stack };
  const name = `examples/${file.replace(/\.js$/, '.ts')}`;
  const app = newApp(path.join(outRoot, file));
  example.build(app);
  if (libraryPaths(app).length > 0) {
    synthAndCheck(name, app);
    continue;
  }
  // The fleet is in a template the example synthesized on its own (a StackSet's member):
  // judge that template, included into an app of its own.
  const assembly = app.synth();
  const templates = fs.readdirSync(assembly.directory).filter((f) => /^asset\..*\.json$/.test(f))
    .map((f) => path.join(assembly.directory, f))
    .filter((f) => fs.readFileSync(f, 'utf8').includes('cdk-agent-fleet'));
  check(templates.length > 0, `${name}: synthesized, with the library's resources in a template asset`);
  for (const templateFile of templates) {
    const member = newApp(path.join(outRoot, `${file}-member`));
    new CfnInclude(new Stack(member, 'Member'), 'Fleet', { templateFile });
    synthAndCheck(`${name} (its member template)`, member, 'Member/Fleet');
  }
}

// 4. Every construct on its own.
const constructsApp = newApp(path.join(outRoot, 'constructs'));
const env = { account: '111122223333', region: 'eu-west-1' };
const packages = () => [
  fleet.AgentPackage.fromUrl('https://downloads.example.com/agent-1.0.0.x86_64.rpm', {
    version: '1.0.0', serviceName: 'agent', format: fleet.PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64,
    sha256: 'c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789',
  }),
];
const importedVpc = (stack: Stack) => ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
  vpcId: 'vpc-0123456789abcdef0', vpcCidrBlock: '10.0.0.0/16', availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  isolatedSubnetIds: ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'],
  isolatedSubnetRouteTableIds: ['rtb-0aaaaaaaaaaaaaaaa', 'rtb-0bbbbbbbbbbbbbbbb'],
});
{
  const stack = new Stack(constructsApp, 'TelemetryStore', { env });
  new fleet.TelemetryStore(stack, 'Telemetry');
}
{
  const stack = new Stack(constructsApp, 'InstallAndAutoConfiguration', { env });
  const telemetryStore = new fleet.TelemetryStore(stack, 'Telemetry');
  const document = new fleet.AgentInstallDocument(stack, 'Install', { packages: packages() });
  new fleet.AgentAutoConfiguration(stack, 'Auto', { document, telemetryStore, enableDefaultHostManagement: true });
}
{
  const stack = new Stack(constructsApp, 'VpcEndpoints', { env });
  new fleet.AgentVpcEndpoints(stack, 'Endpoints', { vpc: importedVpc(stack) });
}
{
  const stack = new Stack(constructsApp, 'Backend', { env });
  const telemetry = new fleet.TelemetryStore(stack, 'Telemetry');
  new fleet.AgentBackend(stack, 'Backend', {
    telemetry,
    assessments: [new fleet.AssessmentTemplate({
      name: 'baseline', sensors: [fleet.Sensor.PACKAGE_INVENTORY, fleet.Sensor.SOFTWARE_CONFIGURATION], duration: Duration.hours(1),
    })],
  });
}
{
  const stack = new Stack(constructsApp, 'ImdsEnforcement', { env });
  new fleet.Imdsv2Enforcement(stack, 'Enforcement', { hopLimit: 2 });
}
{
  const stack = new Stack(constructsApp, 'RequireImdsv2', { env });
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
  new ec2.LaunchTemplate(stack, 'LaunchTemplate', { role });
  new ec2.CfnInstance(stack, 'Instance', { imageId: 'ami-0123456789abcdef0', instanceType: 't3.micro' });
  Aspects.of(stack).add(new fleet.RequireImdsv2({ hopLimit: 2 }));
}
const assembly = synthAndCheck('every construct', constructsApp);
const imds = assembly.getStackByName('RequireImdsv2').template.Resources as Record<string, CfnJson>;
const options = Object.values(imds).flatMap((r) => r.Type === 'AWS::EC2::Instance' ? [r.Properties?.MetadataOptions]
  : r.Type === 'AWS::EC2::LaunchTemplate' ? [r.Properties?.LaunchTemplateData?.MetadataOptions] : []);
check(options.length === 2 && options.every((o) => o?.HttpTokens === 'required' && o?.HttpPutResponseHopLimit === 2),
  `RequireImdsv2 sets the metadata options of an instance and a launch template (${JSON.stringify(options)})`);

// 5. The library's own pack, AgentFleetChecks, as cdk-nag 2 runs packs: as an aspect.
if (nagVersion) {
  const app = newApp(path.join(outRoot, 'agent-fleet-checks'));
  const stack = new Stack(app, 'Instances', { env });
  const role = new iam.Role(stack, 'Role', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
  });
  const profile = new iam.CfnInstanceProfile(stack, 'Profile', { roles: [role.roleName] });
  const metadataOptions = { httpTokens: 'required', httpPutResponseHopLimit: 2, instanceMetadataTags: 'enabled', httpEndpoint: 'enabled' };
  new ec2.CfnInstance(stack, 'Compliant', { imageId: 'ami-0123456789abcdef0', iamInstanceProfile: profile.ref, metadataOptions });
  new ec2.CfnInstance(stack, 'Imdsv1', { imageId: 'ami-0123456789abcdef0', iamInstanceProfile: profile.ref });
  Aspects.of(app).add(new fleet.AgentFleetChecks(undefined, { hopLimit: 2, reports: false } as fleet.AgentFleetChecksProps));
  const messages = Object.entries(app.synth().getStackByName('Instances').manifest.metadata ?? {})
    .flatMap(([p, entries]) => entries.filter((e) => e.type === 'aws:cdk:error').map((e) => `${String(e.data).split(':')[0]} ${p}`)).sort();
  check(JSON.stringify(messages) === JSON.stringify([
    'AgentFleet-HopLimit /Instances/Imdsv1', 'AgentFleet-IMDSv2Required /Instances/Imdsv1', 'AgentFleet-MetadataTags /Instances/Imdsv1',
  ]), `AgentFleetChecks under cdk-nag ${nagVersion} flags the IMDSv1 instance and passes the compliant one (${messages.join('; ')})`);
}

if (failures.length > 0) {
  console.error(`\n${failures.length} compatibility check(s) failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log('\ncompatibility checks passed');
