import { Duration, Size, SizeRoundingBehavior, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { AgentCompanionProps } from './agent-companion';
import { activationId } from './activation-script';
import { AgentActivation } from './agent-activation';
import { grantActivationRead, validateActivation } from './activation-validation';
import { AgentPackage, PackageFormat } from './agent-package';
import { DistributorPackage } from './distributor-package';
import { DEFAULT_TAG_KEY, TAG_KEY_ALLOWED, TAG_KEY_PATTERN } from './document-parameters';
import { renderDocumentContent } from './install-document-content';
import { DEFAULT_HEALTH_WINDOW_SECONDS, DEFAULT_SCRIPT_SETTINGS, packageKey } from './install-scripts';
import { SigningKeyType } from './package-signing-key';
import { PropsValidator } from '../core/validation';

/**
 * What tunes an AgentInstallDocument besides its packages and tag key (its name, the step
 * timeout). `AgentFleet` takes these.
 */
export interface AgentInstallDocumentOptions {
  /**
   * The document's name. 3-128 letters, digits and `_-.`, not starting with `aws`,
   * `amazon` or `amzn`.
   *
   * @default - a name CloudFormation generates
   */
  readonly documentName?: string;

  /**
   * How long one run of a step may take before SSM fails it.
   *
   * From 1 minute to 2 hours, whole seconds.
   *
   * @default Duration.minutes(30)
   */
  readonly timeout?: Duration;

  /**
   * How long the agent's service must stay up on every Install: active the whole time,
   * without systemd restarting it (`NRestarts`) or starting it anew (active-since). A
   * service that crashes or crash-loops within it is restarted, then reinstalled, and after
   * an upgrade rolled back. On Windows, the service is checked every 3 seconds for as long.
   *
   * From 5 seconds to 10 minutes, whole seconds, at most a sixth of `timeout` (a repair
   * may watch the service three times, each up to twice the window).
   *
   * @default Duration.seconds(30)
   */
  readonly healthCheckWindow?: Duration;
}

/**
 * Properties of an AgentInstallDocument.
 */
export interface AgentInstallDocumentProps extends AgentInstallDocumentOptions {
  /**
   * The builds of the agent, at most one per format and architecture. RPM and DEB
   * packages make the Linux step, MSI packages the Windows step.
   */
  readonly packages: AgentPackage[];

  /**
   * The default of the document's `tagKey` parameter: the instance tag that includes
   * (`true`) or excludes (`false`) an instance. `AgentAutoConfiguration` passes its own.
   *
   * @default 'SecurityAgentManaged'
   */
  readonly tagKey?: string;

  /**
   * The host companion to install with the agent on Linux (heartbeats to the backend,
   * telemetry upload); an instance that loses the agent or leaves the fleet loses it too.
   * `AgentFleet` sets it when it has a backend (`enableCompanion`).
   *
   * @default - no companion (and one an earlier version installed is removed)
   */
  readonly companion?: AgentCompanionProps;

  /**
   * The step that activates the agent after it is installed (Linux), with secrets read on the
   * instance. Adds `Reactivate` to the document's `action` values.
   *
   * @default - no activation
   */
  readonly activation?: AgentActivation;
}

/**
 * An SSM Command document (schema 2.2) that installs, upgrades, verifies or uninstalls
 * the agent from pinned, hash-verified packages, with rollback.
 *
 * Parameters: `action` (`Install` | `Uninstall` | `Verify`), `mode` (`ALL_INSTANCES` |
 * `TAGGED_ONLY`), `tagKey` and `proxyUrl`, each limited by allowedValues or an
 * allowedPattern. Package locations and hashes are baked in at synth: nobody can point
 * the document at another package when running it.
 */
export class AgentInstallDocument extends Construct {
  /** The name of the document. */
  public readonly documentName: string;

  /** The ARN of the document. */
  public readonly documentArn: string;

  /** The packages the document installs. */
  public readonly packages: AgentPackage[];

  /** The default of the document's `tagKey` parameter. */
  public readonly tagKey: string;

  /** The agent's activation, if any. */
  public readonly activation?: AgentActivation;

  constructor(scope: Construct, id: string, props: AgentInstallDocumentProps) {
    super(scope, id);
    validateProps(this, props);

    this.packages = [...props.packages];
    this.tagKey = props.tagKey ?? DEFAULT_TAG_KEY;
    this.activation = props.activation;
    const healthWindowSeconds = props.healthCheckWindow?.toSeconds() ?? DEFAULT_HEALTH_WINDOW_SECONDS;
    const content = renderDocumentContent(this.packages, {
      tagKey: this.tagKey,
      activation: props.activation ? { id: activationId(this, props.activation), activation: props.activation } : undefined,
      timeout: props.timeout ?? Duration.minutes(30),
      scriptSettings: {
        ...DEFAULT_SCRIPT_SETTINGS,
        healthWindowSeconds,
        serviceCheckAttempts: Math.max(2, Math.ceil(healthWindowSeconds / DEFAULT_SCRIPT_SETTINGS.serviceCheckIntervalSeconds)),
      },
      companion: props.companion && {
        heartbeatUrl: props.companion.heartbeatUrl,
        identityHeartbeatUrl: props.companion.identityHeartbeatUrl,
        region: Stack.of(this).region,
        intervalSeconds: (props.companion.heartbeatInterval ?? Duration.minutes(10)).toSeconds(),
        telemetryKeyArn: props.companion.telemetryKey?.keyArn,
        spoolMaxKb: (props.companion.spoolLimit ?? Size.mebibytes(64)).toKibibytes(),
      },
    });

    if (props.companion) {
      // SSM refuses Command documents over 64 KB; tokens stand for URLs and ARNs of similar length.
      const size = Buffer.byteLength(JSON.stringify(content), 'utf8');
      const v = new PropsValidator(this);
      v.require(size <= MAX_DOCUMENT_BYTES, 'companion', `a document of ${size} bytes`,
        `a document of at most ${MAX_DOCUMENT_BYTES} bytes (SSM's limit): the companion adds about 11 KB to the Linux step, which does not fit beside a Windows step`);
      v.throwIfInvalid();
    }

    const resource = new ssm.CfnDocument(this, 'Resource', {
      documentType: 'Command',
      documentFormat: 'JSON',
      content,
      name: props.documentName,
      // Edits become new versions of the same document, so associations keep pointing at it.
      updateMethod: 'NewVersion',
      tags: [{ key: 'cdk-agent-fleet:component', value: 'install-document' }],
    });
    this.documentName = resource.ref;
    this.documentArn = Stack.of(this).formatArn({ service: 'ssm', resource: 'document', resourceName: resource.ref });
  }

  /**
   * Lets an instance role download the packages stored in S3: `s3:GetObject` on each
   * package object, nothing else (plus `kms:Decrypt` for KMS-encrypted buckets).
   *
   * @param grantee the instance role
   */
  public grantPackageRead(grantee: iam.IGrantable): iam.Grant {
    return this.packages
      .map((pkg) => pkg.grantRead(grantee))
      .reduce((all, grant) => all.combine(grant), iam.Grant.drop(grantee, 'read agent packages'));
  }

  /**
   * Lets a role that runs the document read the activation's secrets: the one read action on
   * each secret, and its key only through Secrets Manager or Parameter Store for that secret.
   * Nothing when the agent has no activation.
   *
   * @param grantee the instance role or the Default Host Management role
   */
  public grantActivationRead(grantee: iam.IGrantable): iam.Grant {
    return grantActivationRead(this.activation, grantee);
  }
}

/** SSM's limit on the content of a Command document. */
const MAX_DOCUMENT_BYTES = 64 * 1024;
const SHA256 = /^[0-9a-fA-F]{64}$/;
/** https, a host name, an optional port, a path and query of URL characters that need no quoting. */
const HTTPS_URL = /^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~!&()*+,;=:@%/-]*)?(\?[A-Za-z0-9._~!&()*+,;=:@%/?-]*)?$/;
const OBJECT_KEY = /^[A-Za-z0-9!_.()-][A-Za-z0-9!_.()/-]{0,1023}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}$/;
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const LINUX_PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const MSI_PRODUCT_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._+()-]{0,127}$/;
const DOCUMENT_NAME = /^[A-Za-z0-9_.-]{3,128}$/;
const DISTRIBUTOR_NAME = /^([A-Za-z0-9_.-]{3,128}|arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:document\/[A-Za-z0-9_.-]{3,128})$/;
const DISTRIBUTOR_VERSION = /^[A-Za-z0-9._-]{1,128}$/;

function literal(v: PropsValidator, prop: string, value: string, pattern: RegExp, allowed: string): void {
  if (Token.isUnresolved(value)) {
    v.require(false, prop, value, `a value known at synth (it is baked into the document): ${allowed}`);
    return;
  }
  v.require(pattern.test(value), prop, value, allowed);
}

/** A Distributor package's name (or ARN), version and service; no hash or key of ours. */
function validateDistributorPackage(v: PropsValidator, at: string, pkg: DistributorPackage): void {
  v.require(pkg.sha256 === undefined, `${at}.sha256`, pkg.sha256, 'none: Distributor verifies its own packages (pin a version instead)');
  literal(v, `${at}.distributorName`, pkg.distributorName, DISTRIBUTOR_NAME,
    'a Distributor package name (3-128 letters, digits and _-.) or the ARN of a shared one (arn:<partition>:ssm:<region>:<account>:document/<name>)');
  if (pkg.version !== undefined) {
    literal(v, `${at}.version`, pkg.version, DISTRIBUTOR_VERSION, 'a Distributor version: 1-128 letters, digits and ._-');
  }
  literal(v, `${at}.serviceName`, pkg.serviceName, SERVICE_NAME, 'letters, digits and ._@- starting with a letter or digit, at most 128 characters');
}

/** The signing key fits the format, is usable, and a DEB package says where its signature is. */
function validateSignature(v: PropsValidator, at: string, pkg: AgentPackage): void {
  const key = pkg.signingKey;
  if (key === undefined) {
    v.require(pkg.detachedSignature === undefined, `${at}.detachedSignature`, pkg.detachedSignature,
      'only with a signingKey (a DEB package pinned by its vendor\'s OpenPGP key)');
    return;
  }
  const wanted = pkg.format === PackageFormat.MSI ? SigningKeyType.AUTHENTICODE : SigningKeyType.OPENPGP;
  const wantedHow = wanted === SigningKeyType.AUTHENTICODE ? 'PackageSigningKey.authenticodePublisher(...)' : 'PackageSigningKey.fromFile(...) (OpenPGP)';
  v.require(key.keyType === wanted, `${at}.signingKey`, `${key.keyType} key on ${pkg.format}`,
    `a ${pkg.format} package is verified with ${wantedHow}`);
  for (const problem of key.problems) v.require(false, `${at}.signingKey`, key.fingerprint ?? key.keyType, problem);
  if (pkg.format === PackageFormat.DEB && key.keyType === SigningKeyType.OPENPGP) {
    const signature = pkg.detachedSignature;
    if (signature === undefined) {
      v.require(false, `${at}.detachedSignature`, signature,
        'where the detached signature of the .deb is (Debian packages carry none of their own): an https:// URL for fromUrl, an object key for fromBucket');
    } else if (pkg.url !== undefined) {
      literal(v, `${at}.detachedSignature`, signature, HTTPS_URL, 'an https:// URL with a host name, no credentials, and a path of letters, digits and ._~!&()*+,;=:@%/-');
    } else if (!Token.isUnresolved(signature)) {
      v.require(OBJECT_KEY.test(signature), `${at}.detachedSignature`, signature, 'an S3 key in the package\'s bucket: 1-1024 letters, digits and !_.()/-, not starting with /');
    }
  } else {
    v.require(pkg.detachedSignature === undefined, `${at}.detachedSignature`, pkg.detachedSignature,
      `only for DEB packages (${pkg.format} packages carry their own signature)`);
  }
}

function validateProps(scope: Construct, props: AgentInstallDocumentProps): void {
  const v = new PropsValidator(scope);
  v.require(props.packages.length > 0, 'packages', props.packages, 'at least one package');
  const seen = new Map<string, number>();
  const distributor = props.packages.findIndex((pkg) => pkg instanceof DistributorPackage);
  v.require(distributor < 0 || props.packages.length === 1, 'packages', `${props.packages.length} packages, packages[${distributor}] from Distributor`,
    'one Distributor package alone, or package files (RPM, DEB, MSI): a document does not mix them');
  props.packages.forEach((pkg, i) => {
    const at = `packages[${i}]`;
    if (pkg instanceof DistributorPackage) {
      validateDistributorPackage(v, at, pkg);
      return;
    }
    if (pkg.sha256 !== undefined || pkg.signingKey === undefined) {
      literal(v, `${at}.sha256`, pkg.sha256 ?? '', SHA256, pkg.signingKey === undefined
        ? 'the SHA-256 of the package: 64 hexadecimal characters (required unless a signingKey pins the package)'
        : 'the SHA-256 of the package: 64 hexadecimal characters');
    }
    validateSignature(v, at, pkg);
    if (pkg.url !== undefined) {
      const allowed = 'an https:// URL with a host name, no credentials, and a path of letters, digits and ._~!&()*+,;=:@%/- (no quotes, spaces or $)';
      if (/^http:\/\//i.test(pkg.url)) {
        v.require(false, `${at}.url`, pkg.url, `https only, never plain http: ${allowed}`);
      } else {
        literal(v, `${at}.url`, pkg.url, HTTPS_URL, allowed);
      }
    }
    if (pkg.objectKey !== undefined && !Token.isUnresolved(pkg.objectKey)) {
      v.require(OBJECT_KEY.test(pkg.objectKey), `${at}.objectKey`, pkg.objectKey, 'an S3 key of 1-1024 letters, digits and !_.()/-, not starting with /');
    }
    const versionAllowed = 'letters, digits and ._+~:- starting with a letter or digit, at most 128 characters';
    if (pkg.version !== undefined) {
      literal(v, `${at}.version`, pkg.version, VERSION, versionAllowed);
    } else {
      v.require(pkg.signingKey !== undefined && pkg.format !== PackageFormat.MSI, `${at}.version`, pkg.version,
        `${versionAllowed} (only an RPM or DEB package pinned by a signingKey may leave it out, to install the signed package's own version)`);
    }
    literal(v, `${at}.serviceName`, pkg.serviceName, SERVICE_NAME, 'letters, digits and ._@- starting with a letter or digit, at most 128 characters');
    if (pkg.format === PackageFormat.MSI) {
      literal(v, `${at}.packageName`, pkg.packageName, MSI_PRODUCT_NAME, 'the MSI DisplayName: letters, digits, spaces and ._+()- starting with a letter or digit, at most 128 characters');
    } else {
      literal(v, `${at}.packageName`, pkg.packageName, LINUX_PACKAGE_NAME, 'an rpm/dpkg package name: letters, digits and ._+- starting with a letter or digit, at most 128 characters');
    }
    const architectures = [ec2.InstanceArchitecture.X86_64, ec2.InstanceArchitecture.ARM_64];
    v.require(architectures.includes(pkg.architecture), `${at}.architecture`, pkg.architecture, 'InstanceArchitecture.X86_64 or InstanceArchitecture.ARM_64');
    v.require([PackageFormat.RPM, PackageFormat.DEB, PackageFormat.MSI].includes(pkg.format), `${at}.format`, pkg.format,
      'PackageFormat.RPM, DEB or MSI (Distributor packages come from DistributorPackage)');

    const key = packageKey(pkg);
    const first = seen.get(key);
    v.require(first === undefined, `${at}`, `${pkg.format} for ${pkg.architecture}`,
      `one package per format and architecture (packages[${first}] is already ${pkg.format} for ${pkg.architecture})`);
    if (first === undefined) seen.set(key, i);
  });

  if (props.tagKey !== undefined) {
    literal(v, 'tagKey', props.tagKey, new RegExp(TAG_KEY_PATTERN), TAG_KEY_ALLOWED);
  }
  if (props.documentName !== undefined && !Token.isUnresolved(props.documentName)) {
    v.require(DOCUMENT_NAME.test(props.documentName) && !/^(aws|amazon|amzn)/i.test(props.documentName),
      'documentName', props.documentName, "3-128 letters, digits and _-., not starting with 'aws', 'amazon' or 'amzn'");
  }
  if (props.timeout !== undefined && !props.timeout.isUnresolved()) {
    const seconds = props.timeout.toSeconds({ integral: false });
    v.require(Number.isInteger(seconds) && seconds >= 60 && seconds <= 7200, 'timeout', props.timeout, 'whole seconds from 1 minute to 2 hours');
  }
  if (props.activation !== undefined) {
    const timeout = props.timeout && !props.timeout.isUnresolved() ? props.timeout.toSeconds({ integral: false }) : 1800;
    validateActivation(v, 'activation', props.activation, timeout);
    const windows = props.packages.filter((p) => p.format === PackageFormat.MSI).length;
    v.require(windows === 0, 'activation', `${windows} MSI packages`,
      'Linux packages only: the Windows step does not run activations yet (activate Windows agents with their installer\'s own properties)');
  }
  if (props.healthCheckWindow !== undefined) {
    if (props.healthCheckWindow.isUnresolved()) {
      v.require(false, 'healthCheckWindow', props.healthCheckWindow, 'a duration known at synth (it is baked into the document)');
    } else {
      const seconds = props.healthCheckWindow.toSeconds({ integral: false });
      const timeout = props.timeout && !props.timeout.isUnresolved() ? props.timeout.toSeconds({ integral: false }) : 1800;
      v.require(Number.isInteger(seconds) && seconds >= 5 && seconds <= 600 && seconds * 6 <= timeout, 'healthCheckWindow', props.healthCheckWindow,
        `whole seconds from 5 seconds to 10 minutes, at most a sixth of timeout (${timeout} s)`);
    }
  }
  const companion = props.companion;
  if (companion) {
    if (!Token.isUnresolved(companion.heartbeatUrl)) {
      v.require(HTTPS_URL.test(companion.heartbeatUrl), 'companion.heartbeatUrl', companion.heartbeatUrl, 'the https:// URL of the backend\'s heartbeat method');
    }
    const identityUrl = companion.identityHeartbeatUrl;
    if (identityUrl !== undefined && !Token.isUnresolved(identityUrl)) {
      v.require(HTTPS_URL.test(identityUrl), 'companion.identityHeartbeatUrl', identityUrl, 'the https:// URL of the backend\'s identity-document heartbeat method');
    }
    const interval = companion.heartbeatInterval;
    if (interval !== undefined) {
      const seconds = interval.isUnresolved() ? NaN : interval.toSeconds({ integral: false });
      v.require(Number.isInteger(seconds) && seconds >= 60 && seconds <= 86400, 'companion.heartbeatInterval', interval, 'whole seconds from 1 minute to 1 day, known at synth');
    }
    const limit = companion.spoolLimit;
    if (limit !== undefined) {
      const kib = limit.isUnresolved() ? NaN : limit.toKibibytes({ rounding: SizeRoundingBehavior.NONE });
      v.require(Number.isInteger(kib) && kib >= 1024 && kib <= 4 * 1024 * 1024, 'companion.spoolLimit', limit, 'whole KiB from 1 MiB to 4 GiB, known at synth');
    }
  }
  v.throwIfInvalid();
}
