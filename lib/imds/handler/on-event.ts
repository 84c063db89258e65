/*
 * The custom resource of Imdsv2Enforcement, invoked by CloudFormation directly. It checks
 * its input, sets the account's IMDS defaults for new instances (remembering the values
 * from before in the physical id), starts the fleet sweep and answers within seconds:
 * deployment time does not depend on the size of the fleet.
 *
 * Delete restores the account defaults (HttpTokens never below `required`) and stops a
 * running sweep. It never touches an instance.
 */
import { ListExecutionsCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import {
  AccountDefaults, AccountDefaultsApi, defaultsFor, defaultsInPhysicalId, physicalIdWith, PHYSICAL_ID, readAccountDefaults,
  restorableDefaults,
} from './shared/account-defaults';
import { ec2Api } from './shared/aws';
import { CfnOutcome, Fetch, sendResponse } from './shared/cfn-response';
import { ImdsPolicy, parsePolicy } from './shared/policy';
import { describeFailure, errorCode, systemClock, withRetries } from './shared/throttle';

const ec2 = ec2Api();
const sfn = new SFNClient({ maxAttempts: 1 });

export interface Dependencies {
  readonly ec2: AccountDefaultsApi;
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly fetch: Fetch;
}

interface Input {
  readonly policy: ImdsPolicy;
  readonly stateMachineArn: string;
  readonly accountDefaults: boolean;
}

class InputError extends Error {}

const STATE_MACHINE_ARN = /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;

function readInput(properties: Record<string, unknown>): Input {
  const stateMachineArn = String(properties.StateMachineArn ?? '');
  if (!STATE_MACHINE_ARN.test(stateMachineArn)) {
    throw new InputError(`StateMachineArn: got ${JSON.stringify(properties.StateMachineArn)}; allowed: a Step Functions state machine ARN`);
  }
  const flag = properties.AccountDefaults;
  if (flag !== 'true' && flag !== 'false' && flag !== true && flag !== false) {
    throw new InputError(`AccountDefaults: got ${JSON.stringify(flag)}; allowed: true or false`);
  }
  return { policy: parsePolicy(properties.Policy), stateMachineArn, accountDefaults: flag === true || flag === 'true' };
}

const retry = <T>(fn: () => Promise<T>) => withRetries(fn, { clock: systemClock, attempts: 5 });

async function call<T>(action: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await retry(fn);
  } catch (err) {
    throw new Error(describeFailure(action, err), { cause: err });
  }
}

/** Stops the sweeps still running (a new one covers everything again) and starts one. */
async function restartSweep(deps: Dependencies, stateMachineArn: string, trigger: string): Promise<string> {
  await stopSweeps(deps, stateMachineArn, `superseded by a new sweep (${trigger})`);
  const started = await call('states:StartExecution', () => deps.sfn.send(new StartExecutionCommand({
    stateMachineArn,
    input: JSON.stringify({ trigger }),
  })));
  return started.executionArn ?? '';
}

async function stopSweeps(deps: Dependencies, stateMachineArn: string, cause: string): Promise<void> {
  let nextToken: string | undefined;
  do {
    const token = nextToken;
    const page = await call('states:ListExecutions', () => deps.sfn.send(new ListExecutionsCommand({
      stateMachineArn, statusFilter: 'RUNNING', ...(token ? { nextToken: token } : {}),
    })));
    for (const execution of page.executions ?? []) {
      await call('states:StopExecution', () => deps.sfn.send(new StopExecutionCommand({ executionArn: execution.executionArn, cause })))
        .catch((err) => {
          // It may have finished in the meantime.
          if (!String(err.message).includes('ExecutionDoesNotExist')) throw err;
        });
    }
    nextToken = page.nextToken;
  } while (nextToken);
}

async function setDefaults(deps: Dependencies, defaults: AccountDefaults): Promise<void> {
  await call('ec2:ModifyInstanceMetadataDefaults', () => deps.ec2.modifyInstanceMetadataDefaults(defaults));
}

/**
 * Applies the request. Returns the physical id and data; throws with a readable reason.
 * `physicalId` is set as soon as account defaults were changed, so that a failure after
 * that point still reports the values to restore (CloudFormation then sends a Delete).
 */
export async function apply(event: CloudFormationCustomResourceEvent, deps: Dependencies, progress: { physicalId?: string }): Promise<CfnOutcome> {
  if (event.RequestType === 'Delete') {
    const before = defaultsInPhysicalId(event.PhysicalResourceId);
    const arn = String(event.ResourceProperties.StateMachineArn ?? '');
    if (STATE_MACHINE_ARN.test(arn)) {
      await stopSweeps(deps, arn, 'the enforcement was deleted').catch((err) => {
        if (errorCode(err) !== 'StateMachineDoesNotExist' && !String(err.message).includes('StateMachineDoesNotExist')) throw err;
      });
    }
    if (before) await setDefaults(deps, restorableDefaults(before));
    return { status: 'SUCCESS', physicalResourceId: event.PhysicalResourceId, data: { AccountDefaults: before ? 'restored' : 'untouched' } };
  }

  const input = readInput(event.ResourceProperties);
  const wantDefaults = input.policy.mode === 'ENFORCE' && input.accountDefaults;
  const recorded = event.RequestType === 'Update' ? defaultsInPhysicalId(event.PhysicalResourceId) : undefined;
  let physicalId = event.RequestType === 'Update' ? event.PhysicalResourceId : PHYSICAL_ID;
  progress.physicalId = physicalId;
  let accountDefaults = 'untouched';

  if (wantDefaults) {
    let before = recorded;
    let managedByPolicy = false;
    if (!before) {
      const current = await call('ec2:GetInstanceMetadataDefaults', () => readAccountDefaults(deps.ec2));
      managedByPolicy = current.managedByPolicy;
      before = current.defaults;
    }
    if (managedByPolicy) {
      accountDefaults = 'managed-by-declarative-policy';
    } else {
      // A new id when none was recorded: CloudFormation then deletes the old one, which restores nothing.
      physicalId = physicalIdWith(before);
      progress.physicalId = physicalId;
      await setDefaults(deps, defaultsFor(input.policy));
      accountDefaults = 'set';
    }
  } else if (recorded) {
    // Defaults no longer wanted: a new id, and CloudFormation's delete of the old one restores them.
    physicalId = PHYSICAL_ID;
  }

  const executionArn = await restartSweep(deps, input.stateMachineArn, event.RequestType.toLowerCase());
  return { status: 'SUCCESS', physicalResourceId: physicalId, data: { SweepExecutionArn: executionArn, AccountDefaults: accountDefaults } };
}

/** Always answers CloudFormation, also when the request is malformed or a call fails. */
export async function handle(event: CloudFormationCustomResourceEvent, context: Pick<Context, 'logStreamName'>, deps: Dependencies): Promise<CfnOutcome> {
  const progress: { physicalId?: string } = {};
  let outcome: CfnOutcome;
  try {
    outcome = await apply(event, deps, progress);
  } catch (err) {
    const reason = `${event.RequestType} failed: ${err instanceof Error ? err.message : String(err)} (log stream ${context.logStreamName})`;
    outcome = {
      status: 'FAILED',
      reason,
      // A failed create that changed nothing gets an id recording nothing, so the delete that follows does nothing.
      physicalResourceId: progress.physicalId ?? ('PhysicalResourceId' in event ? event.PhysicalResourceId : `${PHYSICAL_ID}|create-failed`),
    };
  }
  console.log(JSON.stringify({
    level: outcome.status === 'SUCCESS' ? 'INFO' : 'ERROR',
    message: `IMDS enforcement ${event.RequestType} ${outcome.status}`,
    physicalResourceId: outcome.physicalResourceId,
    reason: outcome.reason,
    data: outcome.data,
  }));
  await sendResponse(event, outcome, deps.fetch);
  return outcome;
}

export async function handler(event: CloudFormationCustomResourceEvent, context: Context): Promise<void> {
  await handle(event, context, { ec2, sfn, fetch: (url, init) => fetch(url, init) });
}
