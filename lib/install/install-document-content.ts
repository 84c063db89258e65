import { Duration } from 'aws-cdk-lib';
import { RenderedActivation } from './activation-script';
import { AgentPackage, PackageFormat } from './agent-package';
import { documentParameters } from './document-parameters';
import { DEFAULT_SCRIPT_SETTINGS, renderLinuxScript, renderWindowsScript, ScriptSettings } from './install-scripts';
import { SsmCommandDocumentContent, SsmStep } from './ssm-document-content';

/** Options of `renderDocumentContent`. */
export interface DocumentContentOptions {
  readonly tagKey: string;
  readonly timeout: Duration;
  readonly scriptSettings?: ScriptSettings;
  /** The agent's activation (Linux only). */
  readonly activation?: RenderedActivation;
}

/** The content of an AgentInstallDocument, built from typed objects. */
export function renderDocumentContent(packages: AgentPackage[], options: DocumentContentOptions): SsmCommandDocumentContent {
  const settings = options.scriptSettings ?? DEFAULT_SCRIPT_SETTINGS;
  const timeoutSeconds = String(options.timeout.toSeconds());
  const steps: SsmStep[] = [];
  if (packages.some((p) => p.format !== PackageFormat.MSI)) {
    steps.push({
      action: 'aws:runShellScript',
      name: 'manageAgentOnLinux',
      precondition: { StringEquals: ['platformType', 'Linux'] },
      inputs: { timeoutSeconds, runCommand: renderLinuxScript(packages, settings, options.activation) },
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
  const versions = [...new Set(packages.map((p) => p.version))].join(', ');
  return {
    schemaVersion: '2.2',
    description: `Installs, upgrades, verifies or uninstalls the host security agent (${versions}) from pinned, SHA-256-verified packages, with rollback. Managed by cdk-agent-fleet.`,
    parameters: documentParameters(options.tagKey, options.activation !== undefined),
    mainSteps: steps,
  };
}

