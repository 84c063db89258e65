/*
 * What the constructs do with an AgentActivation: validate it, list its secrets, grant them.
 * Internal (not exported from the library).
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import { Token } from 'aws-cdk-lib';
import { ActivationArgument, ActivationSecret, AgentActivation } from './agent-activation';
import { PropsValidator } from '../core/validation';

/** The secrets of an activation, in the order the script numbers them. */
export function activationSecrets(activation: AgentActivation): ActivationSecret[] {
  const all = [...activation.command.map((a) => a?.secret), activation.stdin].filter((s): s is ActivationSecret => s !== undefined);
  return [...new Set(all)];
}

/** Lets a role read every secret of an activation. */
export function grantActivationRead(activation: AgentActivation | undefined, grantee: iam.IGrantable): iam.Grant {
  return (activation ? activationSecrets(activation) : [])
    .map((secret) => secret.grantRead(grantee))
    .reduce((all, grant) => all.combine(grant), iam.Grant.drop(grantee, 'read activation secrets'));
}

const ABSOLUTE_PATH = /^\/[A-Za-z0-9._+@-]+(\/[A-Za-z0-9._+@-]+)*$/;
const SHELLS = ['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'csh', 'tcsh', 'fish', 'busybox', 'env', 'sudo', 'su', 'xargs', 'nohup', 'timeout', 'setsid'];
const LITERAL_ALLOWED = "text known at synth without ', {{, $(, backquotes or control characters, at most 1024 characters";

function literalProblem(text: unknown): boolean {
  return typeof text !== 'string' || Token.isUnresolved(text) || text.length > 1024
    || /['`]|\{\{|\$\(/.test(text) || [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}

function checkProgram(v: PropsValidator, prop: string, program: unknown): void {
  if (typeof program !== 'string' || literalProblem(program)) return;
  const name = program.split('/').pop() ?? '';
  v.require(ABSOLUTE_PATH.test(program) && !program.split('/').includes('..'), prop, program,
    "the tool's absolute path (letters, digits and ._+@-), one program, no spaces: arguments are separate list items");
  v.require(!SHELLS.includes(name), prop, program,
    'the vendor tool itself, not a shell or a wrapper: the command runs without a shell, and a shell string would hide what it runs');
}

/** Records what is wrong with an activation under `prop`. */
export function validateActivation(v: PropsValidator, prop: string, activation: AgentActivation, documentTimeoutSeconds: number): void {
  const command = activation.command;
  if (!Array.isArray(command) || command.length === 0) {
    v.require(false, `${prop}.command`, command, 'a list of ActivationArgument, the first a literal: the absolute path of the tool');
    return;
  }
  command.forEach((argument, i) => {
    const at = `${prop}.command[${i}]`;
    if (!(argument instanceof ActivationArgument)) {
      v.require(false, at, argument, 'an ActivationArgument (literal, secretFile or secretValue): a secret never as a plain string');
      return;
    }
    for (const [part, text] of [['', argument.text], ['.suffix', argument.suffix]] as const) {
      v.require(!literalProblem(text), `${at}${part}`, text, LITERAL_ALLOWED);
    }
    if (argument.kind !== 'literal') {
      if (argument.secret instanceof ActivationSecret) argument.secret._problems(v, `${at}.secret`);
      else v.require(false, `${at}.secret`, argument.secret, 'an ActivationSecret (fromSecret or fromSecureStringParameter)');
    }
  });
  if (command[0] instanceof ActivationArgument) {
    v.require(command[0].kind === 'literal', `${prop}.command[0]`, command[0].kind, "a literal: the tool's absolute path");
    if (command[0].kind === 'literal') checkProgram(v, `${prop}.command[0]`, command[0].text);
  }
  if (command.length === 1 && command[0] instanceof ActivationArgument && /\s/.test(command[0].text)) {
    v.require(false, `${prop}.command`, command[0].text, 'one list item per argument, not a command line for a shell');
  }
  if (activation.stdin !== undefined) {
    if (activation.stdin instanceof ActivationSecret) activation.stdin._problems(v, `${prop}.stdin`);
    else v.require(false, `${prop}.stdin`, activation.stdin, 'an ActivationSecret: a secret never as a plain string');
  }
  const check = activation.check;
  if (check !== undefined) {
    const ok = Array.isArray(check.command) && check.command.length > 0;
    v.require(ok, `${prop}.check.command`, check.command, "the check tool's absolute path and literal arguments");
    if (ok) {
      check.command.forEach((text, i) => v.require(!literalProblem(text), `${prop}.check.command[${i}]`, text, LITERAL_ALLOWED));
      checkProgram(v, `${prop}.check.command[0]`, check.command[0]);
    }
    for (const key of ['outputContains', 'outputLacks'] as const) {
      const text = check[key];
      if (text !== undefined) v.require(!literalProblem(text) && text.length > 0, `${prop}.check.${key}`, text, `non-empty ${LITERAL_ALLOWED}`);
    }
  }
  const timeout = activation.timeout;
  if (timeout !== undefined) {
    const seconds = timeout.isUnresolved() ? NaN : timeout.toSeconds({ integral: false });
    v.require(Number.isInteger(seconds) && seconds >= 10 && seconds <= 1800 && seconds * 2 <= documentTimeoutSeconds, `${prop}.timeout`, timeout,
      `whole seconds from 10 seconds to 30 minutes, at most half the document's timeout (${documentTimeoutSeconds} s)`);
  }
}
