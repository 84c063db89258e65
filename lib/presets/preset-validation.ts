import { Construct } from 'constructs';
import { ActivationSecret } from '../install/agent-activation';
import { PropsValidator } from '../core/validation';

/** A secret a preset needs: given, and given as an ActivationSecret, never as its value. */
export function requireSecret(v: PropsValidator, prop: string, secret: unknown, what: string): void {
  v.require(secret !== undefined && secret !== null, prop, secret, `${what}: required (ActivationSecret.fromSecret or fromSecureStringParameter)`);
  if (secret === undefined || secret === null) return;
  v.require(secret instanceof ActivationSecret, prop, typeof secret === 'string' ? '<a string>' : secret,
    `${what} as an ActivationSecret (fromSecret or fromSecureStringParameter), never the value as a string: it would be in the template`);
}

/** Throws the problems of a preset's own props, as every construct of the library does. */
export function presetValidator(scope: Construct): PropsValidator {
  return new PropsValidator(scope);
}
