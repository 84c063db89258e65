import { Annotations, Duration, Lazy, RemovalPolicy, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { AgentBackend, AgentBackendOptions, BackendEndpointType } from './backend/agent-backend';
import { tagEverywhere } from './core/cdk-compat';
import { AgentFleetValidationError, PropsValidator } from './core/validation';
import { ImdsEnforcementMode, Imdsv2Enforcement, Imdsv2EnforcementProps } from './imds/imdsv2-enforcement';
import { AgentActivation } from './install/agent-activation';
import { AgentInstallDocument, AgentInstallDocumentOptions } from './install/agent-install-document';
import { AgentPackage, PackageFormat } from './install/agent-package';
import { DEFAULT_TAG_KEY, TAG_KEY_ALLOWED } from './install/document-parameters';
import { AgentEndpointService, AgentVpcEndpoints, AgentVpcEndpointsOptions } from './network/agent-vpc-endpoints';
import { AgentAutoConfiguration, AgentAutoConfigurationOptions } from './targeting/agent-auto-configuration';
import { AutoConfigurationMode } from './targeting/auto-configuration-mode';
import { TelemetryStore, TelemetryStoreProps } from './telemetry/telemetry-store';

/*
 * The fleet's options for each part are that part's own options: AgentFleet adds only the
 * wiring between parts, so a setting is documented (and defaulted) in one place. The named
 * interfaces are the fleet's public API, free to gain fleet-only settings later.
 */
/* eslint-disable @typescript-eslint/no-empty-object-type */

/**
 * How AgentFleet's install document is tuned (its name, the step timeout). Its packages
 * and tag key are the fleet's `packages` and `tagKey`.
 */
export interface AgentFleetInstallDocumentOptions extends AgentInstallDocumentOptions {}

/**
 * How AgentFleet's auto-configuration is tuned: rate control, schedule, compliance
 * severity, removal from excluded instances, Default Host Management. The fleet sets the
 * document, `mode`, `tagKey` and the association output (into the telemetry store).
 */
export interface AgentFleetAutoConfigurationOptions extends AgentAutoConfigurationOptions {}

/**
 * How AgentFleet's backend is tuned: assessments, heartbeat interval, cleanup, endpoint
 * type, organization, alarms, throttling, logs. The fleet sets the telemetry store, the
 * exclusion tag key (`tagKey`), the VPC endpoints of a PRIVATE API and the removal policy.
 */
export interface AgentFleetBackendOptions extends AgentBackendOptions {}

/**
 * How AgentFleet's VPC endpoints are tuned, the same in each of its `vpcs`: subnets,
 * endpoints a VPC already has, secondary CIDR blocks. The fleet sets the telemetry store,
 * the install document's packages and the `execute-api` endpoint of a PRIVATE backend.
 */
export interface AgentFleetEndpointsOptions extends AgentVpcEndpointsOptions {}
/* eslint-enable @typescript-eslint/no-empty-object-type */


/**
 * What a fleet takes besides the agent itself: which instances, the parts and their
 * settings. The agent presets take these too.
 */
export interface AgentFleetOptions {
  /**
   * The instance tag that includes (`true`) or excludes (`false`) an instance — for the
   * install document, the associations and the backend alike. Instances read it from
   * instance metadata tags, so it must be a key IMDS serves: 1 to 128 letters, digits and
   * `+-=._:@,`, not starting with `.` or `aws:`.
   *
   * @default 'SecurityAgentManaged'
   */
  readonly tagKey?: string;

  /**
   * Which instances get the agent. Only with auto-configuration.
   *
   * @default AutoConfigurationMode.ALL_INSTANCES
   */
  readonly mode?: AutoConfigurationMode;

  /**
   * VPCs whose instances run the agent: each gets the endpoints SSM, S3 and (for a PRIVATE
   * backend) the backend need, so instances in private subnets are managed without a NAT.
   *
   * @default - none: no endpoints are created
   */
  readonly vpcs?: ec2.IVpc[];

  /**
   * VPC to run every function of the fleet in (backend, IMDS enforcement, Default Host
   * Management), unless a part names its own `vpc`; AWS Control Tower's CT.LAMBDA.PR.3 asks
   * for it. Usually one of `vpcs`. Each function gets a security group that admits nothing and
   * lets out HTTPS only; the subnets need a route to the AWS APIs the functions call (see the
   * README's "Control Tower proactive controls"), through a NAT gateway or VPC endpoints.
   *
   * @default - the functions run outside any VPC
   */
  readonly functionVpc?: ec2.IVpc;

  /**
   * Subnets of `functionVpc` for the functions. Only together with `functionVpc`.
   *
   * @default - the private subnets of `functionVpc`
   */
  readonly functionSubnets?: ec2.SubnetSelection;

  /**
   * The IMDSv2 enforcement: `hopLimit` is required while `enableImdsEnforcement` is true.
   * Instance metadata tags are always enforced (the install document reads the tag from
   * them); `instanceMetadataTags: false` is an error.
   *
   * @default - none; required unless `enableImdsEnforcement` is false
   */
  readonly imds?: Imdsv2EnforcementProps;

  /**
   * Whether to enforce IMDSv2 and instance metadata tags on the account's instances. Turned
   * off, the instances' own settings decide whether the install document can read the tag
   * (a warning says so).
   *
   * @default true
   */
  readonly enableImdsEnforcement?: boolean;

  /**
   * Settings of the telemetry store. Its `removalPolicy`, if set, overrides the fleet's.
   *
   * @default - the store's defaults
   */
  readonly telemetry?: TelemetryStoreProps;

  /**
   * Settings of the install document.
   *
   * @default - the document's defaults
   */
  readonly installDocument?: AgentFleetInstallDocumentOptions;

  /**
   * Settings of the auto-configuration. Only while `enableAutoConfiguration` is true.
   *
   * @default - the auto-configuration's defaults
   */
  readonly autoConfiguration?: AgentFleetAutoConfigurationOptions;

  /**
   * Whether State Manager associations install the agent on the fleet. Turned off, the
   * install document is still created, for you to run.
   *
   * @default true
   */
  readonly enableAutoConfiguration?: boolean;

  /**
   * Settings of the agent backend. Only while `enableBackend` is true.
   *
   * @default - the backend's defaults: a REGIONAL API, no assessments
   */
  readonly backend?: AgentFleetBackendOptions;

  /**
   * Whether to create the agent backend (heartbeat API, registry, cleanup, coverage report,
   * dashboard and alarms).
   *
   * @default true
   */
  readonly enableBackend?: boolean;

  /**
   * Whether the install document installs the host companion with the agent on Linux: a
   * systemd timer that sends the backend's heartbeat with the instance profile's credentials
   * and uploads the agent's spooled telemetry. Needs the backend.
   *
   * The companion adds about 11 KB to the document: it does not fit (SSM's 64 KB limit) in a
   * document that also has a Windows step, so it is off by default when there are MSI packages.
   *
   * @default - true when the fleet has a backend and only RPM and DEB packages
   */
  readonly enableCompanion?: boolean;

  /**
   * Settings of the VPC endpoints, applied in each of `vpcs`. Only with `vpcs`.
   *
   * @default - the endpoints' defaults
   */
  readonly endpoints?: AgentFleetEndpointsOptions;

  /**
   * What happens to the fleet's data and keys (telemetry bucket, log buckets, keys, agent
   * registry, log groups) when they leave the stack. Passed to every part that has a removal
   * policy; a part's own `removalPolicy` (`telemetry`, `imds`) overrides it.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Properties of an AgentFleet.
 */
export interface AgentFleetProps extends AgentFleetOptions {
  /**
   * The agent's name: 1 to 32 letters, digits and `-`. It names the association output
   * folder in the telemetry store (`ssm-association-output/<agentName>/`) and tags every
   * resource of the fleet (`cdk-agent-fleet:agent`).
   */
  readonly agentName: string;

  /**
   * The builds of the agent, at most one per format (RPM, DEB, MSI) and architecture.
   */
  readonly packages: AgentPackage[];

  /**
   * The step that activates the agent after it is installed, with secrets the instances read
   * at run time (see `AgentActivation`). The roles that run the install document — instance
   * roles given to `grantInstanceRole` and the Default Host Management role — may read exactly
   * these secrets.
   *
   * @default - no activation
   */
  readonly activation?: AgentActivation;
}

/** The parts of a fleet, to know which ones can be built when some props are wrong. */
type Part = 'telemetry' | 'installDocument' | 'autoConfiguration' | 'imdsEnforcement' | 'backend' | 'endpoints';

const AGENT_NAME = /^[A-Za-z0-9-]{1,32}$/;

/**
 * The whole system a host security agent needs on an EC2 fleet, in one construct: a
 * telemetry store, the install document, tag-driven auto-configuration, IMDSv2 enforcement,
 * VPC endpoints and the agent backend — wired together.
 *
 * ```ts
 * new AgentFleet(stack, 'Fleet', { agentName: 'security-agent', packages, imds: { hopLimit: 2 }, vpcs: [vpc] });
 * ```
 *
 * Every part can be tuned through its own options or switched off; every created part is a
 * readonly property. Bad props, including combinations of parts that cannot work together,
 * fail at synth with one error that lists every problem.
 */
export class AgentFleet extends Construct {
  /** The telemetry store: agent telemetry, association output and coverage reports. */
  public readonly telemetry: TelemetryStore;

  /** The SSM document that installs, verifies and uninstalls the agent. */
  public readonly installDocument: AgentInstallDocument;

  /** The State Manager associations that roll the agent out, unless switched off. */
  public readonly autoConfiguration?: AgentAutoConfiguration;

  /** The IMDSv2 enforcement, unless switched off. */
  public readonly imdsEnforcement?: Imdsv2Enforcement;

  /** The agent backend, unless switched off. */
  public readonly backend?: AgentBackend;

  /** The VPC endpoints, one set per VPC of `vpcs`, in the same order. */
  public readonly endpoints: AgentVpcEndpoints[];

  /** The instance tag that includes or excludes an instance, everywhere in the fleet. */
  public readonly tagKey: string;

  /** Which instances get the agent. */
  public readonly mode: AutoConfigurationMode;

  /**
   * @param scope the parent construct
   * @param id the construct id; the parts are its children `Telemetry`, `InstallDocument`,
   *   `AutoConfiguration`, `ImdsEnforcement`, `Backend` and `Endpoints-<VPC construct id>`
   * @param props the fleet's settings
   */
  constructor(scope: Construct, id: string, props: AgentFleetProps) {
    super(scope, id);
    this.tagKey = props.tagKey ?? DEFAULT_TAG_KEY;
    this.mode = props.mode ?? AutoConfigurationMode.ALL_INSTANCES;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const enableAutoConfiguration = props.enableAutoConfiguration ?? true;
    const enableImdsEnforcement = props.enableImdsEnforcement ?? true;
    const enableBackend = props.enableBackend ?? true;
    const privateBackend = enableBackend && props.backend?.endpointType === BackendEndpointType.PRIVATE;
    const vpcs = props.vpcs ?? [];

    const checks = new FleetChecks(this);
    checkProps(checks, props, { enableAutoConfiguration, enableImdsEnforcement, enableBackend, privateBackend });

    // Each part is built even when another one's props are wrong, so that one error lists
    // every problem; a part is only skipped when a part it needs could not be built.
    const telemetry = checks.build('telemetry', (p) => `telemetry.${p}`, () => new TelemetryStore(this, 'Telemetry', {
      ...props.telemetry,
      removalPolicy: props.telemetry?.removalPolicy ?? removalPolicy,
    }));

    // The companion is Linux-only for now, and does not fit in a document beside a Windows step.
    const linuxOnly = Array.isArray(props.packages) && props.packages.every((p) => p.format !== PackageFormat.MSI);
    const enableCompanion = props.enableCompanion ?? (enableBackend && linuxOnly);
    checks.require(!enableCompanion || enableBackend, 'enableCompanion', props.enableCompanion, 'false while enableBackend is false: the companion heartbeats to the backend');
    const installDocument = checks.build('installDocument', documentProp, () => new AgentInstallDocument(this, 'InstallDocument', {
      ...props.installDocument,
      packages: props.packages,
      tagKey: this.tagKey,
      // The backend is built after the document: its URL is resolved at synth.
      companion: enableCompanion && enableBackend ? {
        heartbeatUrl: Lazy.string({ produce: () => this.backend?.heartbeatUrl }),
        identityHeartbeatUrl: privateBackend && props.backend?.identityDocumentHeartbeats
          ? Lazy.string({ produce: () => this.backend?.identityHeartbeatUrl }) : undefined,
        heartbeatInterval: props.backend?.heartbeatInterval ?? Duration.minutes(10),
        telemetryKey: telemetry?.encryptionKey,
      } : undefined,
      activation: props.activation,
    }));

    if (enableAutoConfiguration && installDocument && telemetry) {
      this.autoConfiguration = checks.build('autoConfiguration', (p) => `autoConfiguration.${p}`, () => new AgentAutoConfiguration(this, 'AutoConfiguration', {
        ...props.autoConfiguration,
        ...functionNetwork(props, props.autoConfiguration?.enableDefaultHostManagement ? props.autoConfiguration : undefined),
        document: installDocument,
        mode: this.mode,
        tagKey: this.tagKey,
        telemetryStore: telemetry,
        outputPrefix: `ssm-association-output/${props.agentName}`,
      }));
    }

    if (enableImdsEnforcement && props.imds) {
      const imds = props.imds;
      this.imdsEnforcement = checks.build('imdsEnforcement', (p) => `imds.${p}`, () => new Imdsv2Enforcement(this, 'ImdsEnforcement', {
        ...imds,
        ...functionNetwork(props, imds),
        // The install document reads the management tag from instance metadata tags.
        instanceMetadataTags: true,
        removalPolicy: imds.removalPolicy ?? removalPolicy,
        // Each sweep's per-instance report goes to the telemetry store, under its own prefix.
        reportBucket: imds.reportBucket ?? telemetry?.bucket,
        // One topic for the fleet's alarms when the backend's is given.
        alarmTopic: imds.alarmTopic ?? props.backend?.alarmTopic,
      }));
    }

    const endpoints = (telemetry && installDocument) ? vpcs.map((vpc) => checks.build('endpoints', (p) => `endpoints.${p}`,
      () => new AgentVpcEndpoints(this, `Endpoints-${vpc.node.id}`, {
        ...props.endpoints,
        vpc,
        telemetryStore: telemetry,
        documents: [installDocument],
        // Only a PRIVATE API needs it: with private DNS, an execute-api endpoint sends every
        // *.execute-api request of the VPC to itself, and public APIs answer those with 403.
        executeApi: privateBackend,
      }))) : [];

    // A PRIVATE API is reachable only through the execute-api endpoint of every VPC.
    const endpointsBuilt = endpoints.length === vpcs.length && endpoints.every((e) => e !== undefined);
    if (enableBackend && telemetry && (!privateBackend || endpointsBuilt)) {
      this.backend = checks.build('backend', (p) => `backend.${p}`, () => new AgentBackend(this, 'Backend', {
        ...props.backend,
        ...functionNetwork(props, props.backend ?? {}),
        telemetry,
        exclusionTagKey: this.tagKey,
        vpcEndpoints: privateBackend ? endpoints.map((e) => e!.executeApiEndpoint!) : undefined,
        removalPolicy,
      }));
    }

    checks.throwIfInvalid();
    // The IMDS enforcement's failures, at-risk instances and alarm beside the agents they serve.
    if (this.backend && this.imdsEnforcement) this.backend.dashboard.addWidgets(...this.imdsEnforcement.dashboardWidgets());
    // Instances without an instance profile run the agent under the Default Host Management
    // role: it needs the heartbeat too (the auto-configuration gives it the rest).
    const defaultHostManagementRole = this.autoConfiguration?.defaultHostManagementRole;
    if (defaultHostManagementRole) this.backend?.grantHeartbeat(defaultHostManagementRole);
    this.telemetry = telemetry!;
    this.installDocument = installDocument!;
    this.endpoints = endpoints as AgentVpcEndpoints[];

    warnAboutMetadataTags(this, props, enableImdsEnforcement);
    if (privateBackend) {
      Annotations.of(this).addWarningV2('cdk-agent-fleet:executeApiPrivateDns',
        'The PRIVATE backend adds an execute-api interface endpoint with private DNS to each VPC of the fleet. From then on every '
        + '*.execute-api.<region>.amazonaws.com name resolves to it inside those VPCs, and public (REGIONAL or EDGE) APIs called by their '
        + 'default URL answer 403: give such APIs a custom domain name. Acknowledge this warning if the VPCs call none.');
    }
    tagEverywhere(this, 'cdk-agent-fleet:agent', props.agentName);
  }

  /**
   * Gives an instance role everything the fleet's agent needs: SSM core
   * (`AmazonSSMManagedInstanceCore`), reading the package objects stored in S3, writing the
   * association output (with auto-configuration), writing telemetry under the instance's
   * own prefix, and sending heartbeats to the backend (`POST /v1/heartbeat` only).
   *
   * cdk-nag reports on your role, for you to acknowledge there if you accept them:
   * `AwsSolutions-IAM4` (the AWS-managed SSM core policy), `AwsSolutions-IAM5` (the
   * per-instance telemetry prefix, the association output prefix) and
   * `*-IAMNoInlinePolicy` (CDK grants write the role's default policy).
   *
   * @param role the instance role of the fleet's instances
   */
  public grantInstanceRole(role: iam.IRole): void {
    if (this.autoConfiguration) {
      this.autoConfiguration.grantInstanceRole(role);
    } else {
      // Without associations the document is still run (by you, with Run Command): the same
      // grants, less the association output.
      role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'));
      this.installDocument.grantPackageRead(role);
      this.installDocument.grantActivationRead(role);
      this.telemetry.grantAgentWrite(role);
    }
    this.backend?.grantHeartbeat(role);
  }
}

/**
 * The fleet's own problems and those its parts report, in one validator; and which parts
 * cannot be built because of them.
 */
class FleetChecks {
  private readonly v: PropsValidator;
  private readonly blocked = new Set<Part>();

  constructor(scope: Construct) {
    this.v = new PropsValidator(scope);
  }

  /** Records a problem unless `ok`; the parts it makes unbuildable are skipped. */
  public require(ok: boolean, prop: string, value: unknown, allowed: string, blocks: Part[] = []): void {
    this.v.require(ok, prop, value, allowed);
    if (!ok) blocks.forEach((part) => this.blocked.add(part));
  }

  /** Runs a check of PropsValidator; if it records a problem, `blocks` are skipped. */
  public check(run: (v: PropsValidator) => void, blocks: Part[]): void {
    const before = this.v.problemCount;
    run(this.v);
    if (this.v.problemCount > before) blocks.forEach((part) => this.blocked.add(part));
  }

  /**
   * Builds a part, unless the fleet's props already make it unbuildable. A part that finds
   * its own props wrong has its problems recorded under the fleet's prop names.
   */
  public build<T>(part: Part, rename: (prop: string) => string, make: () => T): T | undefined {
    if (this.blocked.has(part)) return undefined;
    try {
      return make();
    } catch (e) {
      if (!(e instanceof AgentFleetValidationError)) throw e;
      this.v.include(e.problems, rename);
      this.blocked.add(part);
      return undefined;
    }
  }

  public throwIfInvalid(): void {
    this.v.throwIfInvalid();
  }
}

/**
 * Where a part's functions run: the part's own `vpc` if it names one, else the fleet's
 * `functionVpc`. `undefined` part: the part creates no function.
 */
function functionNetwork(props: AgentFleetOptions, part: { vpc?: ec2.IVpc; vpcSubnets?: ec2.SubnetSelection } | undefined) {
  if (!part || part.vpc || !props.functionVpc) return {};
  return { vpc: props.functionVpc, vpcSubnets: props.functionSubnets };
}

/** The install document's props come from the fleet's `packages`, `tagKey` and `installDocument`. */
function documentProp(prop: string): string {
  return prop.startsWith('packages') || prop === 'tagKey' || prop.startsWith('activation') ? prop : `installDocument.${prop}`;
}

/** The names of the options given, to show in an error without rendering constructs. */
function optionNames(options: object): string[] {
  return Object.keys(options);
}

function checkProps(checks: FleetChecks, props: AgentFleetProps, on: {
  enableAutoConfiguration: boolean; enableImdsEnforcement: boolean; enableBackend: boolean; privateBackend: boolean;
}): void {
  if (!Token.isUnresolved(props.agentName)) {
    checks.require(typeof props.agentName === 'string' && AGENT_NAME.test(props.agentName), 'agentName', props.agentName,
      '1 to 32 letters, digits and -', ['autoConfiguration']);
  }
  checks.require(Array.isArray(props.packages) && props.packages.length > 0, 'packages',
    Array.isArray(props.packages) ? `${props.packages.length} packages` : props.packages,
    'at least one AgentPackage (one per format and architecture)', ['installDocument']);

  // The tag key goes into the document, the associations and the backend alike.
  const tagKeyUsers: Part[] = ['installDocument', 'autoConfiguration', 'backend'];
  const tagKey = props.tagKey;
  if (tagKey !== undefined && !Token.isUnresolved(tagKey)) {
    if (tagKey === '' && props.mode === AutoConfigurationMode.TAGGED_ONLY) {
      checks.require(false, 'tagKey', tagKey, 'a tag key: in TAGGED_ONLY mode only instances tagged <tagKey>=true get the agent', tagKeyUsers);
    } else if (tagKey.startsWith('.')) {
      checks.require(false, 'tagKey', tagKey, TAG_KEY_ALLOWED, tagKeyUsers);
    } else {
      checks.check((v) => v.imdsTagKey('tagKey', tagKey), tagKeyUsers);
    }
  }
  checks.require(props.mode === undefined || Object.values(AutoConfigurationMode).includes(props.mode), 'mode', props.mode,
    'AutoConfigurationMode.ALL_INSTANCES or AutoConfigurationMode.TAGGED_ONLY', ['autoConfiguration']);

  // A setting of a part that is switched off would be silently ignored: say so instead.
  checks.require(on.enableAutoConfiguration || props.autoConfiguration === undefined, 'autoConfiguration',
    optionNames(props.autoConfiguration ?? {}), 'nothing while enableAutoConfiguration is false');
  checks.require(on.enableAutoConfiguration || props.mode === undefined, 'mode', props.mode,
    'nothing while enableAutoConfiguration is false: the mode is what the associations target');
  checks.require(on.enableBackend || props.backend === undefined, 'backend',
    optionNames(props.backend ?? {}), 'nothing while enableBackend is false');
  checks.require(on.enableImdsEnforcement || props.imds === undefined, 'imds',
    optionNames(props.imds ?? {}), 'nothing while enableImdsEnforcement is false');
  const vpcs = props.vpcs ?? [];
  checks.require(!(props.functionSubnets && !props.functionVpc), 'functionSubnets', props.functionSubnets, 'only together with functionVpc');
  checks.require(props.endpoints === undefined || vpcs.length > 0, 'endpoints',
    optionNames(props.endpoints ?? {}), 'only with vpcs: the endpoints are created in the fleet\'s VPCs, and none are given');

  if (on.enableImdsEnforcement) {
    checks.require(props.imds?.hopLimit !== undefined, 'imds.hopLimit', props.imds?.hopLimit,
      'required while enableImdsEnforcement is true (the default): 1 for agents on the host, 2 for agents in containers on a Docker bridge, '
      + '3 for overlay networks — or set enableImdsEnforcement: false', ['imdsEnforcement']);
    checks.require(props.imds?.instanceMetadataTags !== false, 'imds.instanceMetadataTags', props.imds?.instanceMetadataTags,
      `true (the default): the install document reads ${props.tagKey ?? DEFAULT_TAG_KEY} from instance metadata tags — in ALL_INSTANCES mode to skip `
      + 'instances tagged false, in TAGGED_ONLY mode to confirm the tag true; without them it sees no tag', ['imdsEnforcement']);
  }

  vpcs.forEach((vpc, i) => {
    const first = vpcs.findIndex((other) => other.node.id === vpc.node.id);
    const allowed = vpcs[first] === vpc
      ? `each VPC once (it is vpcs[${first}] too)`
      : `VPCs with distinct construct ids: the endpoints' construct id is derived from the VPC's, and vpcs[${first}] (${vpcs[first].node.path}) has the same`;
    checks.require(first === i, `vpcs[${i}]`, vpc.node.path, allowed, ['endpoints']);
  });

  if (on.privateBackend) {
    checks.require(vpcs.length > 0, 'backend.endpointType', BackendEndpointType.PRIVATE,
      'REGIONAL unless vpcs are given: a PRIVATE API is reached only through the execute-api endpoints the fleet creates in its vpcs', ['backend']);
    const existing = props.endpoints?.existingEndpoints ?? [];
    checks.require(!existing.includes(AgentEndpointService.EXECUTE_API), 'endpoints.existingEndpoints', existing,
      'no EXECUTE_API with a PRIVATE backend: the API admits only the execute-api endpoints the fleet creates', ['backend']);
  }
}

/**
 * The install document reads the management tag from instance metadata tags. Without IMDS
 * enforcement (or in AUDIT mode) nothing turns them on, so the instances' own settings decide.
 */
function warnAboutMetadataTags(fleet: AgentFleet, props: AgentFleetProps, enableImdsEnforcement: boolean): void {
  const audit = enableImdsEnforcement && props.imds?.mode === ImdsEnforcementMode.AUDIT;
  if (enableImdsEnforcement && !audit) return;
  const consequence = fleet.mode === AutoConfigurationMode.ALL_INSTANCES
    ? `instances without them look untagged, so an instance tagged ${fleet.tagKey}=false still gets the agent`
    : `instances without them look untagged, so even instances tagged ${fleet.tagKey}=true do not get the agent`;
  const why = audit ? 'IMDS enforcement runs in AUDIT mode and changes nothing' : 'IMDS enforcement is off';
  Annotations.of(fleet).addWarningV2('cdk-agent-fleet:metadataTagsNotEnforced',
    `${why}: whether instance metadata tags are enabled (InstanceMetadataTags) is up to each instance. The install document reads `
    + `${fleet.tagKey} from them; ${consequence}. Enable them on the instances (launch templates, RequireImdsv2) and acknowledge this warning.`);
}
