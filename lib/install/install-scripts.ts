/*
 * Renders the install scripts of an AgentInstallDocument: the script files in scripts/,
 * read at synth, with a header of settings. Package values were validated (no quotes, no
 * spaces, no braces) and parameters are SSM references whose values SSM checks against
 * allowedValues / allowedPattern, so single-quoting is enough and cannot be escaped.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { activationSettings, RenderedActivation } from './activation-script';
import { AgentPackage, PackageFormat } from './agent-package';
import { companionInstallSettings, CompanionInstallSettings } from './companion-script';
import { parameterReference } from './ssm-document-content';

const SCRIPTS_DIR = path.join(__dirname, 'scripts');

/**
 * Settings of the scripts that are not document parameters. Only tests change them (to run
 * the script in a sandbox without waiting); they are not props of any construct.
 */
export interface ScriptSettings {
  /** Where the Linux script keeps its run lock and the last good package. */
  readonly linuxStateDir: string;
  /** How often the Windows script checks the service after an install. */
  readonly serviceCheckAttempts: number;
  /** Seconds between the Windows script's service checks. */
  readonly serviceCheckIntervalSeconds: number;
  /**
   * Seconds the Linux service must stay up, without a restart, on every Install (the
   * construct's `healthCheckWindow`; tests also use 0: one look).
   */
  readonly healthWindowSeconds: number;
  /** Seconds a Linux run waits for another run's lock before it ends `busy`. */
  readonly lockWaitSeconds: number;
  /** Seconds a Linux run waits for a busy package manager before it ends `package-manager-busy`. */
  readonly packageManagerWaitSeconds: number;
  /**
   * `https://host:port` of an S3-compatible server the Linux script sends its signed requests
   * to, path-style. Empty: the bucket's regional AWS endpoint. Only tests set it.
   */
  readonly s3Endpoint?: string;
  /**
   * `https://host:port` of a stand-in for Secrets Manager and Parameter Store that the Linux
   * script reads activation secrets from. Empty: the regional AWS endpoints. Only tests set it.
   */
  readonly awsEndpoint?: string;
}

/** The health window when the construct is given none: catches a crash within 30 s. */
export const DEFAULT_HEALTH_WINDOW_SECONDS = 30;

export const DEFAULT_SCRIPT_SETTINGS: ScriptSettings = {
  linuxStateDir: '/var/lib/cdk-agent-fleet',
  serviceCheckAttempts: 10,
  serviceCheckIntervalSeconds: 3,
  healthWindowSeconds: DEFAULT_HEALTH_WINDOW_SECONDS,
  lockWaitSeconds: 600,
  packageManagerWaitSeconds: 300,
};

/** The key of a package in the scripts, e.g. `RPM_X86_64` or `MSI_ARM64`. */
export function packageKey(pkg: AgentPackage): string {
  const architecture = pkg.architecture === ec2.InstanceArchitecture.ARM_64 ? 'ARM64' : 'X86_64';
  return `${pkg.format}_${architecture}`;
}

/** Where the script downloads the package from: the https URL or `s3://bucket/key`. */
export function packageSource(pkg: AgentPackage): string {
  if (pkg.url !== undefined) return pkg.url;
  return `s3://${pkg.bucket!.bucketName}/${pkg.objectKey}`;
}

/** Where the script downloads a DEB package's detached signature from (same bucket for S3 packages). */
function signatureSource(pkg: AgentPackage): string {
  if (pkg.url !== undefined) return pkg.detachedSignature!;
  return `s3://${pkg.bucket!.bucketName}/${pkg.detachedSignature}`;
}

/**
 * The armored keys as multi-line single-quoted shell strings (armor has no quotes). Each line
 * is one line of the document; `pkg_field SIGNING_KEY` names the variable.
 */
function signingKeyLines(keys: Map<string, string>): string[] {
  return [...keys].flatMap(([armored, name]) => {
    const lines = armored.split('\n');
    return [`  ${name}=${quote(lines[0]).slice(0, -1)}`, ...lines.slice(1, -1), `${lines[lines.length - 1]}'`];
  });
}

function packageRegion(pkg: AgentPackage): string {
  return pkg.bucket ? pkg.bucket.env.region : '';
}

/**
 * Single-quotes a value for bash and PowerShell alike. Validation keeps quotes out of
 * literal values; tokens are S3 bucket names and regions, which cannot contain one.
 */
export function quote(value: string): string {
  if (!Token.isUnresolved(value) && /['\r\n]/.test(value)) {
    throw new Error(`cannot embed ${JSON.stringify(value)} in an install script`);
  }
  return `'${value}'`;
}

/**
 * Whole-line comments that stay in the document: the shebang, shellcheck directives (the
 * rendered script is linted) and PowerShell #Requires.
 */
const KEPT_COMMENT = /^\s*#(!|\s*shellcheck\s|requires\s)/i;

/**
 * The lines of a script file, without its whole-line comments: SSM documents are limited to
 * 64 KB and the comments stay in the library's source. Refuses heredocs and here-strings,
 * inside which a line starting with # would be text, not a comment (and indentation part of
 * the text). No script has a multi-line quoted string, the only other place where it would be.
 */
function readScript(file: string): string[] {
  const text = fs.readFileSync(path.join(SCRIPTS_DIR, file), 'utf8');
  if (text.includes('{{')) {
    // SSM would substitute parameters there: only the generated header may reference them.
    throw new Error(`${file} must not contain '{{'`);
  }
  const lines = text.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n');
  // A here-string opens with @" or @' (not bash's "$@" at the end of a line).
  const multiLine = lines.find((line) => /<<-?\s*['"]?\w+['"]?\s*$|(^|[\s=(])@['"]\s*$/.test(line));
  if (multiLine !== undefined) throw new Error(`${file}: no heredocs or here-strings (${multiLine.trim()})`);
  // Nor blank lines or indentation (about 4 KB): the document carries code, the source is for reading.
  return lines.filter((line) => (!/^\s*#/.test(line) || KEPT_COMMENT.test(line)) && line.trim() !== '').map((line) => line.trimStart());
}

/**
 * A bash fragment of functions, inlined after a script's settings header, without the
 * shellcheck directive of the standalone file (its globals come from the script).
 */
export function scriptFragment(file: string): string[] {
  return readScript(file).filter((line) => !/^# shellcheck shell=/.test(line));
}

/** The aws:runShellScript lines: the Linux script with its settings header (and the companion's and activation's). */
export function renderLinuxScript(
  packages: AgentPackage[],
  settings: ScriptSettings = DEFAULT_SCRIPT_SETTINGS,
  companion?: CompanionInstallSettings,
  activation?: RenderedActivation,
): string[] {
  const linux = packages.filter((p) => p.format === PackageFormat.RPM || p.format === PackageFormat.DEB);
  const gate = packages.find((p) => p.format === PackageFormat.DISTRIBUTOR);
  // Each distinct key once (an RPM and a DEB of one vendor share it): the document has 64 KB.
  const keys = new Map<string, string>();
  for (const pkg of linux) {
    const armored = pkg.signingKey?.armoredKey;
    if (armored !== undefined && !keys.has(armored)) keys.set(armored, `AGENT_SIGNING_KEY_${keys.size + 1}`);
  }
  const header = [
    '# --- settings rendered by cdk-agent-fleet at synth ---',
    `AGENT_ACTION=${quote(parameterReference('action'))}`,
    `AGENT_MODE=${quote(parameterReference('mode'))}`,
    `AGENT_TAG_KEY=${quote(parameterReference('tagKey'))}`,
    `AGENT_PROXY_URL=${quote(parameterReference('proxyUrl'))}`,
    `AGENT_STATE_DIR=${quote(settings.linuxStateDir)}`,
    `AGENT_HEALTH_WINDOW=${quote(String(settings.healthWindowSeconds))}`,
    `AGENT_LOCK_WAIT=${quote(String(settings.lockWaitSeconds))}`,
    `AGENT_PM_WAIT=${quote(String(settings.packageManagerWaitSeconds))}`,
    `AGENT_PACKAGES=${quote(linux.map(packageKey).join(' '))}`,
    `AGENT_S3_ENDPOINT=${quote(settings.s3Endpoint ?? '')}`,
    // A Distributor document's script only decides (distributor-gate.sh).
    ...(gate ? [`AGENT_GATE_SERVICE=${quote(gate.serviceName)}`] : []),
    '# shellcheck disable=SC2034 # read through ${!name} by pkg_field',
    '{',
    '  :',
    ...signingKeyLines(keys),
    ...linux.flatMap((pkg) => {
      const key = packageKey(pkg);
      return [
        `  PKG_${key}_SOURCE=${quote(packageSource(pkg))}`,
        `  PKG_${key}_REGION=${quote(packageRegion(pkg))}`,
        `  PKG_${key}_SHA256=${quote((pkg.sha256 ?? '').toLowerCase())}`,
        `  PKG_${key}_VERSION=${quote(pkg.version ?? '')}`,
        `  PKG_${key}_NAME=${quote(pkg.packageName)}`,
        `  PKG_${key}_SERVICE=${quote(pkg.serviceName)}`,
        // Only signed packages have these: unsigned ones render as they always did.
        ...(pkg.signingKey?.armoredKey !== undefined ? [`  PKG_${key}_SIGNING_KEY=${quote(keys.get(pkg.signingKey.armoredKey)!)}`] : []),
        ...(pkg.detachedSignature !== undefined ? [`  PKG_${key}_SIGNATURE=${quote(signatureSource(pkg))}`] : []),
      ];
    }),
    '}',
    'readonly AGENT_ACTION AGENT_MODE AGENT_TAG_KEY AGENT_PROXY_URL AGENT_STATE_DIR AGENT_HEALTH_WINDOW AGENT_LOCK_WAIT AGENT_PM_WAIT AGENT_PACKAGES AGENT_S3_ENDPOINT',
    ...(companion ? companionInstallSettings(companion, quote) : []),
    ...(activation ? [`AGENT_AWS_ENDPOINT=${quote(settings.awsEndpoint ?? '')}`, ...activationSettings(activation, quote)] : []),
    '# --- end of settings ---',
  ];
  const [shebang, ...body] = readScript('install-agent.sh');
  // Functions only where something needs them (the activation's a stub otherwise): the document has 64 KB.
  const fragments = ['aws-request.sh', 's3-download.sh', ...(keys.size > 0 ? ['package-signature.sh'] : []),
    ...(gate ? ['distributor-gate.sh'] : []), ...(companion ? ['companion-install.sh'] : []),
    ...(activation ? ['json-string.sh', 'activation.sh'] : ['activation-none.sh'])].flatMap(scriptFragment);
  return [shebang, ...header, ...fragments, ...body];
}

/** The aws:runPowerShellScript lines: the Windows script with its settings header. */
export function renderWindowsScript(packages: AgentPackage[], settings: ScriptSettings = DEFAULT_SCRIPT_SETTINGS): string[] {
  const msi = packages.filter((p) => p.format === PackageFormat.MSI);
  const header = [
    '# --- settings rendered by cdk-agent-fleet at synth ---',
    `$AgentAction = ${quote(parameterReference('action'))}`,
    `$AgentMode = ${quote(parameterReference('mode'))}`,
    `$AgentTagKey = ${quote(parameterReference('tagKey'))}`,
    `$AgentProxyUrl = ${quote(parameterReference('proxyUrl'))}`,
    `$AgentServiceCheckAttempts = ${settings.serviceCheckAttempts}`,
    `$AgentServiceCheckIntervalSeconds = ${settings.serviceCheckIntervalSeconds}`,
    `$AgentLockWaitSeconds = ${settings.lockWaitSeconds}`,
    `$AgentPackageManagerWaitSeconds = ${settings.packageManagerWaitSeconds}`,
    '$AgentPackageManagerRetrySeconds = 15',
    '$AgentPackages = @{',
    ...msi.map((pkg) => `  ${quote(packageKey(pkg))} = @{ Source = ${quote(packageSource(pkg))}; Region = ${quote(packageRegion(pkg))}; `
      + `Sha256 = ${quote((pkg.sha256 ?? '').toLowerCase())}; Version = ${quote(pkg.version ?? '')}; Name = ${quote(pkg.packageName)}; Service = ${quote(pkg.serviceName)}`
      + (pkg.signingKey !== undefined ? `; SignerThumbprint = ${quote(pkg.signingKey.thumbprint ?? '')}; SignerSubject = ${quote(pkg.signingKey.subject ?? '')}` : '')
      + ' }'),
    '}',
    '# --- end of settings ---',
  ];
  // The S3 signer only where a package comes from S3: the document has 64 KB.
  const s3 = msi.some((pkg) => pkg.url === undefined) ? readScript('s3-download.ps1') : [];
  return [...header, ...s3, ...readScript('install-agent.ps1')];
}
