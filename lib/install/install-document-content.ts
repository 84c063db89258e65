import { Duration } from 'aws-cdk-lib';
import { RenderedActivation } from './activation-script';
import { AgentPackage, PackageFormat } from './agent-package';
import { DistributorPackage } from './distributor-package';
import { documentParameters } from './document-parameters';
import { CompanionInstallSettings } from './companion-script';
import { DEFAULT_SCRIPT_SETTINGS, renderLinuxScript, renderWindowsScript, ScriptSettings } from './install-scripts';
import { parameterReference, SsmCommandDocumentContent, SsmStep } from './ssm-document-content';

/** Options of `renderDocumentContent`. */
export interface DocumentContentOptions {
  readonly tagKey: string;
  readonly timeout: Duration;
  readonly scriptSettings?: ScriptSettings;
  readonly companion?: CompanionInstallSettings;
  /** The agent's activation (Linux only). */
  readonly activation?: RenderedActivation;
}

/** The content of an AgentInstallDocument, built from typed objects. */
export function renderDocumentContent(packages: AgentPackage[], options: DocumentContentOptions): SsmCommandDocumentContent {
  const settings = options.scriptSettings ?? DEFAULT_SCRIPT_SETTINGS;
  const timeoutSeconds = String(options.timeout.toSeconds());
  const steps: SsmStep[] = [];
  const distributor = packages.find((p): p is DistributorPackage => p instanceof DistributorPackage);
  if (distributor) {
    return distributorDocument(distributor, timeoutSeconds, options.tagKey, settings);
  }
  if (packages.some((p) => p.format !== PackageFormat.MSI)) {
    steps.push({
      action: 'aws:runShellScript',
      name: 'manageAgentOnLinux',
      precondition: { StringEquals: ['platformType', 'Linux'] },
      inputs: { timeoutSeconds, runCommand: renderLinuxScript(packages, settings, options.companion, options.activation) },
    });
  }
  if (packages.some((p) => p.format === PackageFormat.MSI)) {
    steps.push({
      action: 'aws:runPowerShellScript',
      name: 'manageAgentOnWindows',
      precondition: { StringEquals: ['platformType', 'Windows'] },
      inputs: { timeoutSeconds, runCommand: renderWindowsScript(packages, settings) },
    });
  }
  const versions = [...new Set(packages.map((p) => p.version ?? 'signed'))].join(', ');
  return {
    schemaVersion: '2.2',
    description: `Installs, upgrades, verifies or uninstalls the host security agent (${versions}) from pinned, ${packages.some((p) => p.signingKey) ? 'SHA-256- or signature-verified' : 'SHA-256-verified'} packages, with rollback. Managed by cdk-agent-fleet.`,
    parameters: documentParameters(options.tagKey, options.activation !== undefined),
    mainSteps: steps,
  };
}


/**
 * A Distributor package: the Linux script decides by the tag (and answers Verify) and exits
 * 0 only when the aws:configurePackage step after it is to run; 168 (success) and 169
 * (failure) make SSM Agent skip it (agent/framework/runpluginutil: ExitWithSuccess,
 * ExitWithFailure).
 */
function distributorDocument(pkg: DistributorPackage, timeoutSeconds: string, tagKey: string, settings: ScriptSettings): SsmCommandDocumentContent {
  return {
    schemaVersion: '2.2',
    description: `Installs, verifies or uninstalls the host security agent from the SSM Distributor package ${pkg.distributorName}${pkg.version ? ` (${pkg.version})` : ''}, `
      + 'on the instances the management tag selects. Managed by cdk-agent-fleet.',
    parameters: documentParameters(tagKey),
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: 'decideOnLinux',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: { timeoutSeconds, runCommand: renderLinuxScript([pkg], settings) },
      },
      {
        action: 'aws:configurePackage',
        name: 'configurePackageOnLinux',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: {
          name: pkg.distributorName,
          action: parameterReference('action'),
          installationType: pkg.installationType,
          ...(pkg.version !== undefined ? { version: pkg.version } : {}),
        },
      },
    ],
  };
}
