/*
 * Sweep executions started by the custom resource carry the physical id that started them,
 * in their name: `cr-<8 hex digits of SHA-256(physical id)>-<CloudFormation request id>`.
 *
 * - Start stops every running sweep (a new one covers everything again), except one already
 *   started for this very request (Lambda may deliver a request twice), and starts its own;
 *   the name makes the start idempotent.
 * - Delete stops only the running sweeps named after the physical id being deleted. When an
 *   update replaces the physical id, CloudFormation deletes the old one after the update
 *   started the new sweep: that sweep carries the new id and keeps running.
 */
import { createHash } from 'node:crypto';
import { ListExecutionsCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { errorCode } from './throttle';

type Sfn = Pick<SFNClient, 'send'>;
/** Runs one AWS call with retries, and turns its failure into a readable error. */
type Call = <T>(action: string, fn: () => Promise<T>) => Promise<T>;

/** The name prefix of the executions started under `physicalId`. */
export function executionPrefix(physicalId: string): string {
  return `cr-${createHash('sha256').update(physicalId).digest('hex').slice(0, 8)}-`;
}

/** Execution names allow 80 characters of letters, digits, `-` and `_`. */
export function executionName(physicalId: string, requestId: string): string {
  return `${executionPrefix(physicalId)}${requestId.replace(/[^A-Za-z0-9_-]/g, '')}`.slice(0, 80);
}

/** Stops the sweeps running now and starts one under `physicalId`. Returns its ARN. */
export async function startSweep(sfn: Sfn, stateMachineArn: string, physicalId: string, requestId: string, trigger: string, call: Call): Promise<string> {
  const name = executionName(physicalId, requestId);
  await stopRunning(sfn, stateMachineArn, (n) => n !== name, `superseded by a new sweep (${trigger})`, call);
  try {
    const started = await call('states:StartExecution', () => sfn.send(new StartExecutionCommand({
      stateMachineArn, name, input: JSON.stringify({ trigger }),
    })));
    return started.executionArn ?? '';
  } catch (err) {
    // Started already by an earlier delivery of this request.
    if (!isCode(err, 'ExecutionAlreadyExists')) throw err;
    return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
  }
}

/** Stops the running sweeps started under `physicalId`; a state machine already gone is fine. */
export async function stopSweepsOf(sfn: Sfn, stateMachineArn: string, physicalId: string, call: Call): Promise<void> {
  const prefix = executionPrefix(physicalId);
  await stopRunning(sfn, stateMachineArn, (n) => n.startsWith(prefix), 'the enforcement that started it was deleted', call)
    .catch((err) => {
      if (!isCode(err, 'StateMachineDoesNotExist')) throw err;
    });
}

async function stopRunning(sfn: Sfn, stateMachineArn: string, which: (name: string) => boolean, cause: string, call: Call): Promise<void> {
  let nextToken: string | undefined;
  do {
    const token = nextToken;
    const page = await call('states:ListExecutions', () => sfn.send(new ListExecutionsCommand({
      stateMachineArn, statusFilter: 'RUNNING', ...(token ? { nextToken: token } : {}),
    })));
    for (const execution of page.executions ?? []) {
      if (!which(execution.name ?? execution.executionArn?.split(':').pop() ?? '')) continue;
      await call('states:StopExecution', () => sfn.send(new StopExecutionCommand({ executionArn: execution.executionArn, cause })))
        .catch((err) => {
          // It may have finished in the meantime.
          if (!isCode(err, 'ExecutionDoesNotExist')) throw err;
        });
    }
    nextToken = page.nextToken;
  } while (nextToken);
}

/** `call` wraps errors in a readable one; the code is in the cause, or in the message. */
function isCode(err: unknown, code: string): boolean {
  const cause = (err as { cause?: unknown })?.cause;
  return errorCode(err) === code || errorCode(cause) === code || String((err as Error)?.message).includes(code);
}
