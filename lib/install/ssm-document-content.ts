/*
 * Typed SSM Command document content (schema 2.2): the document is built from these
 * objects and rendered to JSON, never assembled from string templates.
 */

/** One document parameter. Every parameter of ours has allowedValues or an allowedPattern. */
export interface SsmParameter {
  readonly type: 'String';
  readonly description: string;
  readonly default: string;
  readonly allowedValues?: string[];
  readonly allowedPattern?: string;
}

/** A step precondition: the step runs only where the platform matches. */
export interface SsmPrecondition {
  readonly StringEquals: ['platformType', 'Linux' | 'Windows'];
}

/** Inputs of aws:runShellScript and aws:runPowerShellScript. */
export interface SsmRunScriptInputs {
  readonly runCommand: string[];
  readonly timeoutSeconds: string;
  readonly workingDirectory?: string;
}

/** Inputs of aws:configurePackage (a Distributor package). */
export interface SsmConfigurePackageInputs {
  readonly name: string;
  readonly action: string;
  readonly installationType: string;
  readonly version?: string;
}

/** One step of `mainSteps`. */
export type SsmStep = {
  readonly action: 'aws:runShellScript' | 'aws:runPowerShellScript';
  readonly name: string;
  readonly precondition: SsmPrecondition;
  readonly inputs: SsmRunScriptInputs;
} | {
  readonly action: 'aws:configurePackage';
  readonly name: string;
  readonly precondition: SsmPrecondition;
  readonly inputs: SsmConfigurePackageInputs;
};

/** The whole content of a schema 2.2 Command document. */
export interface SsmCommandDocumentContent {
  readonly schemaVersion: '2.2';
  readonly description: string;
  readonly parameters: Record<string, SsmParameter>;
  readonly mainSteps: SsmStep[];
}

/** `{{ name }}`: where SSM substitutes a parameter's (validated) value. */
export function parameterReference(name: string): string {
  return `{{ ${name} }}`;
}
