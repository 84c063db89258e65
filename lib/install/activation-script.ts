/*
 * The activation's settings in the Linux script's header (activation.sh reads them). Secrets
 * appear by ARN only; their values are read on the instance.
 */
import * as crypto from 'node:crypto';
import { Duration, Stack } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { AgentActivation } from './agent-activation';
import { activationSecrets } from './activation-validation';

/** The activation's timeout when none is given. */
export const DEFAULT_ACTIVATION_TIMEOUT = Duration.minutes(5);

/**
 * What identifies an activation: its command, secrets (by ARN, resolved to the template's
 * expressions, so the same across synths) and check. The host records it once activated.
 */
export function activationId(scope: IConstruct, activation: AgentActivation): string {
  const stack = Stack.of(scope);
  const secrets = activationSecrets(activation);
  const spec = {
    command: activation.command.map((a) => ({ kind: a.kind, text: a.text, suffix: a.suffix, secret: a.secret ? secrets.indexOf(a.secret) : null })),
    stdin: activation.stdin ? secrets.indexOf(activation.stdin) : null,
    secrets: secrets.map((s) => stack.resolve({ service: s.service, arn: s.arn, field: s.jsonField ?? null })),
    check: activation.check ?? null,
  };
  return crypto.createHash('sha256').update(JSON.stringify(spec)).digest('hex');
}

/** An activation and its id (activationId), as the renderer takes it. */
export interface RenderedActivation {
  readonly id: string;
  readonly activation: AgentActivation;
}

/** The header lines of an activation, with `quote` the renderer's quoting. */
export function activationSettings(activation: RenderedActivation, quote: (value: string) => string): string[] {
  const { id, activation: a } = activation;
  const secrets = activationSecrets(a);
  const check = a.check?.command ?? [];
  return [
    `ACTIVATION_ID=${quote(id)}`,
    `ACTIVATION_ARGC=${quote(String(a.command.length))}`,
    `ACTIVATION_STDIN=${quote(a.stdin ? String(secrets.indexOf(a.stdin)) : '')}`,
    `ACTIVATION_CHECK_ARGC=${quote(String(check.length))}`,
    `ACTIVATION_CHECK_CONTAINS=${quote(a.check?.outputContains ?? '')}`,
    `ACTIVATION_CHECK_LACKS=${quote(a.check?.outputLacks ?? '')}`,
    `ACTIVATION_TIMEOUT=${quote(String((a.timeout ?? DEFAULT_ACTIVATION_TIMEOUT).toSeconds()))}`,
    `ACTIVATION_BEFORE_START=${quote(a.beforeServiceStart ? '1' : '')}`,
    '# shellcheck disable=SC2034 # read through ${!name} by setting',
    '{',
    '  :',
    ...a.command.flatMap((argument, i) => [
      `  ACTIVATION_ARG_${i}_KIND=${quote(argument.kind)}`,
      `  ACTIVATION_ARG_${i}_TEXT=${quote(argument.text)}`,
      `  ACTIVATION_ARG_${i}_SUFFIX=${quote(argument.suffix)}`,
      `  ACTIVATION_ARG_${i}_SECRET=${quote(argument.secret ? String(secrets.indexOf(argument.secret)) : '')}`,
    ]),
    ...check.map((text, i) => `  ACTIVATION_CHECK_${i}=${quote(text)}`),
    ...secrets.flatMap((secret, n) => [
      `  SECRET_${n}_SERVICE=${quote(secret.service)}`,
      `  SECRET_${n}_ID=${quote(secret.arn)}`,
      `  SECRET_${n}_REGION=${quote(secret.region)}`,
      `  SECRET_${n}_FIELD=${quote(secret.jsonField ?? '')}`,
    ]),
    '}',
  ];
}
