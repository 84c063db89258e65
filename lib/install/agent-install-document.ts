import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { activationId } from './activation-script';
import { AgentActivation } from './agent-activation';
import { grantActivationRead, validateActivation } from './activation-validation';
import { AgentPackage, PackageFormat } from './agent-package';
import { DEFAULT_TAG_KEY, TAG_KEY_ALLOWED, TAG_KEY_PATTERN } from './document-parameters';
import { renderDocumentContent } from './install-document-content';
import { DEFAULT_HEALTH_WINDOW_SECONDS, DEFAULT_SCRIPT_SETTINGS, packageKey } from './install-scripts';
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
    });

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

const SHA256 = /^[0-9a-fA-F]{64}$/;
/** https, a host name, an optional port, a path and query of URL characters that need no quoting. */
const HTTPS_URL = /^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~!&()*+,;=:@%/-]*)?(\?[A-Za-z0-9._~!&()*+,;=:@%/?-]*)?$/;
const OBJECT_KEY = /^[A-Za-z0-9!_.()-][A-Za-z0-9!_.()/-]{0,1023}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}$/;
const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const LINUX_PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const MSI_PRODUCT_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._+()-]{0,127}$/;
const DOCUMENT_NAME = /^[A-Za-z0-9_.-]{3,128}$/;

function literal(v: PropsValidator, prop: string, value: string, pattern: RegExp, allowed: string): void {
  if (Token.isUnresolved(value)) {
    v.require(false, prop, value, `a value known at synth (it is baked into the document): ${allowed}`);
    return;
  }
  v.require(pattern.test(value), prop, value, allowed);
}

function validateProps(scope: Construct, props: AgentInstallDocumentProps): void {
  const v = new PropsValidator(scope);
  v.require(props.packages.length > 0, 'packages', props.packages, 'at least one package');
  const seen = new Map<string, number>();
  props.packages.forEach((pkg, i) => {
    const at = `packages[${i}]`;
    literal(v, `${at}.sha256`, pkg.sha256, SHA256, 'the SHA-256 of the package: 64 hexadecimal characters');
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
    literal(v, `${at}.version`, pkg.version, VERSION, 'letters, digits and ._+~:- starting with a letter or digit, at most 128 characters');
    literal(v, `${at}.serviceName`, pkg.serviceName, SERVICE_NAME, 'letters, digits and ._@- starting with a letter or digit, at most 128 characters');
    if (pkg.format === PackageFormat.MSI) {
      literal(v, `${at}.packageName`, pkg.packageName, MSI_PRODUCT_NAME, 'the MSI DisplayName: letters, digits, spaces and ._+()- starting with a letter or digit, at most 128 characters');
    } else {
      literal(v, `${at}.packageName`, pkg.packageName, LINUX_PACKAGE_NAME, 'an rpm/dpkg package name: letters, digits and ._+- starting with a letter or digit, at most 128 characters');
    }
    const architectures = [ec2.InstanceArchitecture.X86_64, ec2.InstanceArchitecture.ARM_64];
    v.require(architectures.includes(pkg.architecture), `${at}.architecture`, pkg.architecture, 'InstanceArchitecture.X86_64 or InstanceArchitecture.ARM_64');
    v.require(Object.values(PackageFormat).includes(pkg.format), `${at}.format`, pkg.format, 'PackageFormat.RPM, DEB or MSI');

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
  v.throwIfInvalid();
}
