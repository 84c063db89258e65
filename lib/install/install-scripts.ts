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
 * inside which a line starting with # would be text, not a comment.
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
  return lines.filter((line) => !/^\s*#/.test(line) || KEPT_COMMENT.test(line));
}

/**
 * A bash fragment of functions, inlined after a script's settings header, without the
 * shellcheck directive of the standalone file (its globals come from the script).
 */
export function scriptFragment(file: string): string[] {
  return readScript(file).filter((line) => !/^# shellcheck shell=/.test(line));
}

/** The aws:runShellScript lines: the Linux script with its settings header (and the activation's). */
export function renderLinuxScript(packages: AgentPackage[], settings: ScriptSettings = DEFAULT_SCRIPT_SETTINGS, activation?: RenderedActivation): string[] {
  const linux = packages.filter((p) => p.format === PackageFormat.RPM || p.format === PackageFormat.DEB);
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
    '# shellcheck disable=SC2034 # read through ${!name} by pkg_field',
    '{',
    '  :',
    ...linux.flatMap((pkg) => {
      const key = packageKey(pkg);
      return [
        `  PKG_${key}_SOURCE=${quote(packageSource(pkg))}`,
        `  PKG_${key}_REGION=${quote(packageRegion(pkg))}`,
        `  PKG_${key}_SHA256=${quote(pkg.sha256.toLowerCase())}`,
        `  PKG_${key}_VERSION=${quote(pkg.version)}`,
        `  PKG_${key}_NAME=${quote(pkg.packageName)}`,
        `  PKG_${key}_SERVICE=${quote(pkg.serviceName)}`,
      ];
    }),
    '}',
    'readonly AGENT_ACTION AGENT_MODE AGENT_TAG_KEY AGENT_PROXY_URL AGENT_STATE_DIR AGENT_HEALTH_WINDOW AGENT_LOCK_WAIT AGENT_PM_WAIT AGENT_PACKAGES AGENT_S3_ENDPOINT',
    ...(activation ? [`AGENT_AWS_ENDPOINT=${quote(settings.awsEndpoint ?? '')}`, ...activationSettings(activation, quote)] : []),
    '# --- end of settings ---',
  ];
  const [shebang, ...body] = readScript('install-agent.sh');
  // The activation's functions only where there is one: SSM documents are limited to 64 KB.
  const activationFragments = activation ? [...scriptFragment('json-string.sh'), ...scriptFragment('activation.sh')] : scriptFragment('activation-none.sh');
  return [shebang, ...header, ...scriptFragment('aws-request.sh'), ...scriptFragment('s3-download.sh'), ...activationFragments, ...body];
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
      + `Sha256 = ${quote(pkg.sha256.toLowerCase())}; Version = ${quote(pkg.version)}; Name = ${quote(pkg.packageName)}; Service = ${quote(pkg.serviceName)} }`),
    '}',
    '# --- end of settings ---',
  ];
  return [...header, ...readScript('s3-download.ps1'), ...readScript('install-agent.ps1')];
}
