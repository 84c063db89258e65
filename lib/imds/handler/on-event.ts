/*
 * The custom resource of Imdsv2Enforcement, invoked by CloudFormation directly. It checks
 * its input, dry-runs the modification (preflight), sets the account's IMDS defaults for
 * new instances (remembering the values from before in the physical id), starts the fleet
 * sweep and answers within seconds: deployment time does not depend on the size of the fleet.
 *
 * The physical id changes when what it records changes (account defaults turned on or off),
 * and CloudFormation then deletes the old id. So every sweep is started under a name that
 * carries its physical id (sweep-execution.ts), and a Delete stops only the sweeps started
 * under the id it deletes: never the one the update that replaced it just started.
 *
 * Delete restores the account defaults (HttpTokens never below `required`) unless an
 * organization's declarative policy owns them now. It never touches an instance.
 */
import { SFNClient } from '@aws-sdk/client-sfn';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import {
  AccountDefaults, AccountDefaultsApi, AccountDefaultsReading, defaultsFor, defaultsInPhysicalId, physicalIdWith, PHYSICAL_ID,
  readAccountDefaults, restorableDefaults,
} from './shared/account-defaults';
import { ec2Api } from './shared/aws';
import { CfnOutcome, Fetch, sendResponse } from './shared/cfn-response';
import type { Ec2Api } from './shared/enforcer';
import { ImdsPolicy, parsePolicy } from './shared/policy';
import { preflight } from './shared/preflight';
import { startSweep, stopSweepsOf } from './shared/sweep-execution';
import { describeFailure, systemClock, withRetries } from './shared/throttle';

const ec2 = ec2Api();
const sfn = new SFNClient({ maxAttempts: 1 });

export interface Dependencies {
  readonly ec2: AccountDefaultsApi & Pick<Ec2Api, 'describeInstances' | 'modifyInstanceMetadataOptions'>;
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly fetch: Fetch;
}

interface Input {
  readonly policy: ImdsPolicy;
  readonly stateMachineArn: string;
  readonly accountDefaults: boolean;
  /** Account-level IMDSv2 enforcement (`HttpTokensEnforced`), only with account defaults. */
  readonly httpTokensEnforced: boolean;
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
  const enforced = properties.HttpTokensEnforced ?? 'false';
  if (enforced !== 'true' && enforced !== 'false' && enforced !== true && enforced !== false) {
    throw new InputError(`HttpTokensEnforced: got ${JSON.stringify(enforced)}; allowed: true or false`);
  }
  return {
    policy: parsePolicy(properties.Policy),
    stateMachineArn,
    accountDefaults: flag === true || flag === 'true',
    httpTokensEnforced: enforced === true || enforced === 'true',
  };
}

const retry = <T>(fn: () => Promise<T>) => withRetries(fn, { clock: systemClock, attempts: 5 });

async function call<T>(action: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await retry(fn);
  } catch (err) {
    throw new Error(describeFailure(action, err), { cause: err });
  }
}

async function setDefaults(deps: Dependencies, defaults: AccountDefaults): Promise<void> {
  await call('ec2:ModifyInstanceMetadataDefaults', () => deps.ec2.modifyInstanceMetadataDefaults(defaults));
}

const readDefaults = (deps: Dependencies) => call('ec2:GetInstanceMetadataDefaults', () => readAccountDefaults(deps.ec2));

/** What the custom resource says when an organization's declarative policy owns the defaults. */
function policyOwned(reading: AccountDefaultsReading, action: string): string {
  const message = `The account's IMDS defaults are managed by a declarative policy of the organization (ManagedBy declarative-policy)`
    + `${reading.managedMessage ? `: "${reading.managedMessage}"` : ''}; ${action}`;
  console.log(JSON.stringify({ level: 'WARN', message }));
  return 'managed-by-declarative-policy';
}

/**
 * Restores the recorded defaults unless a declarative policy owns them now; a change that
 * fails because a policy took over meanwhile is not a failure of the delete.
 */
async function restoreDefaults(deps: Dependencies, before: AccountDefaults, httpTokensEnforcedSet: boolean): Promise<string> {
  const leaveAlone = 'left them as the policy sets them, and did not restore the values recorded before';
  const reading = await readDefaults(deps);
  if (reading.managedByPolicy) return policyOwned(reading, leaveAlone);
  try {
    await setDefaults(deps, restorableDefaults(before, httpTokensEnforcedSet));
    return 'restored';
  } catch (err) {
    const again = await readDefaults(deps).catch(() => undefined);
    if (again?.managedByPolicy) return policyOwned(again, leaveAlone);
    throw err;
  }
}

async function handleDelete(event: CloudFormationCustomResourceEvent & { PhysicalResourceId: string }, deps: Dependencies): Promise<CfnOutcome> {
  const before = defaultsInPhysicalId(event.PhysicalResourceId);
  const arn = String(event.ResourceProperties.StateMachineArn ?? '');
  // Only the sweeps started under this physical id: an update that replaced it started a newer one.
  if (STATE_MACHINE_ARN.test(arn)) await stopSweepsOf(deps.sfn, arn, event.PhysicalResourceId, call);
  const enforced = event.ResourceProperties.HttpTokensEnforced === 'true' || event.ResourceProperties.HttpTokensEnforced === true;
  const accountDefaults = before ? await restoreDefaults(deps, before, enforced) : 'untouched';
  return { status: 'SUCCESS', physicalResourceId: event.PhysicalResourceId, data: { AccountDefaults: accountDefaults } };
}

/**
 * Applies the request. Returns the physical id and data; throws with a readable reason.
 * `physicalId` is set as soon as account defaults were changed, so that a failure after
 * that point still reports the values to restore (CloudFormation then sends a Delete).
 */
export async function apply(event: CloudFormationCustomResourceEvent, deps: Dependencies, progress: { physicalId?: string }): Promise<CfnOutcome> {
  if (event.RequestType === 'Delete') return handleDelete(event, deps);

  const input = readInput(event.ResourceProperties);
  const wantDefaults = input.policy.mode === 'ENFORCE' && input.accountDefaults;
  const recorded = event.RequestType === 'Update' ? defaultsInPhysicalId(event.PhysicalResourceId) : undefined;
  let physicalId = event.RequestType === 'Update' ? event.PhysicalResourceId : PHYSICAL_ID;
  progress.physicalId = physicalId;
  let accountDefaults = 'untouched';

  // Before anything changes: would the sweep be allowed to modify instances at all?
  let preflightResult = 'not needed (AUDIT)';
  if (input.policy.mode === 'ENFORCE') {
    const outcome = await preflight(deps.ec2, input.policy, systemClock, 'the roles of this Imdsv2Enforcement (custom resource and sweep)');
    preflightResult = outcome.result === 'allowed' ? `allowed (dry run on ${outcome.instanceId})` : `${outcome.result}: ${outcome.detail}`;
    // Response bodies above 4 KiB are refused by CloudFormation: the attribute stays short, the log has it all.
    if (preflightResult.length > 400) {
      console.log(JSON.stringify({ level: 'WARN', message: 'IMDS preflight', detail: preflightResult }));
      preflightResult = `${preflightResult.slice(0, 397)}...`;
    }
  }

  if (wantDefaults) {
    // Read every time: a declarative policy may have taken the defaults over since the last deployment.
    const current = await readDefaults(deps);
    if (current.managedByPolicy) {
      accountDefaults = policyOwned(current, 'left them alone; instances are still swept');
    } else {
      const before = recorded ?? current.defaults;
      // A new id when none was recorded: CloudFormation then deletes the old one, which restores nothing.
      physicalId = physicalIdWith(before);
      progress.physicalId = physicalId;
      const wanted = defaultsFor(input.policy, input.httpTokensEnforced);
      // Account-level enforcement turned off: give back what was there before this resource turned it on.
      const giveBack = !input.httpTokensEnforced && wasEnforced(event) ? { HttpTokensEnforced: before.HttpTokensEnforced ?? 'no-preference' } : {};
      await setDefaults(deps, { ...wanted, ...giveBack });
      accountDefaults = 'set';
    }
  } else if (recorded) {
    // Defaults no longer wanted: a new id, and CloudFormation's delete of the old one restores them.
    physicalId = PHYSICAL_ID;
  }

  const executionArn = await startSweep(deps.sfn, input.stateMachineArn, physicalId, event.RequestId, event.RequestType.toLowerCase(), call);
  return {
    status: 'SUCCESS',
    physicalResourceId: physicalId,
    data: { SweepExecutionArn: executionArn, AccountDefaults: accountDefaults, Preflight: preflightResult },
  };
}

function wasEnforced(event: CloudFormationCustomResourceEvent): boolean {
  if (event.RequestType !== 'Update') return false;
  const old = event.OldResourceProperties?.HttpTokensEnforced;
  return old === 'true' || old === true;
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
