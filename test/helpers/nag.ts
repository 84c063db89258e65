import { App, Aspects, Stack, Stage } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import * as nagV2 from 'cdk-nag-v2';
import { IConstruct } from 'constructs';

/** One unacknowledged cdk-nag finding. */
export interface NagFinding {
  /** Rule id, with the finding in brackets where the rule reports findings (`AwsSolutions-IAM5[Action::s3:*]`). */
  readonly rule: string;
  /** Construct path of the resource it is on. */
  readonly path: string;
  readonly description: string;
}

/**
 * Runs the AwsSolutions, NIST 800-53 R5, HIPAA Security and PCI DSS 3.2.1 packs of
 * cdk-nag 3 over a construct tree and returns the findings nobody acknowledged.
 */
export function nagFindings(scope: IConstruct): NagFinding[] {
  // Aspects (ours and CDK's) change resources during synthesis: judge the final tree.
  const stage = Stage.of(scope);
  stage?.synth();
  const packs = [new AwsSolutionsChecks(), new NIST80053R5Checks(), new HIPAASecurityChecks(), new PCIDSS321Checks()];
  return packs.flatMap((pack) => pack.validateScope(scope).violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => ({
      rule: violation.ruleName,
      path: resource.constructPath ?? '(unknown)',
      description: violation.description,
    }))));
}

/**
 * The same packs from cdk-nag 2 (the Aspect API some users still run), reading the
 * acknowledgments this library also writes in cdk-nag 2's metadata format.
 *
 * cdk-nag 2 must be added before synthesis, so this takes a function that builds the stack.
 */
export function nagV2Findings(build: (app: App) => Stack): NagFinding[] {
  const app = new App();
  const stack = build(app);
  for (const pack of [nagV2.AwsSolutionsChecks, nagV2.NIST80053R5Checks, nagV2.HIPAASecurityChecks, nagV2.PCIDSS321Checks]) {
    Aspects.of(app).add(new pack({ reports: false }));
  }
  app.synth();
  const annotations = Annotations.fromStack(stack);
  const messages = [
    ...annotations.findError('*', Match.stringLikeRegexp('.*')),
    ...annotations.findWarning('*', Match.stringLikeRegexp('.*')),
  ];
  return messages
    .map((m) => ({ message: String(m.entry.data), path: m.id }))
    .filter(({ message }) => /^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security|PCI\.DSS\.321)-/.test(message))
    .map(({ message, path }) => ({
      rule: /^([A-Za-z0-9.-]+(?:\[.*?\])?): /.exec(message)?.[1] ?? message,
      path: path.replace(/^\//, ''),
      description: message,
    }));
}

