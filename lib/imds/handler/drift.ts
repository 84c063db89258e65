/*
 * Drift correction, between deployments:
 * - "Scheduled Event": starts a re-sweep of the fleet, unless a sweep is still running;
 * - "AWS API Call via CloudTrail": somebody else changed an instance's metadata options
 *   (ModifyInstanceMetadataOptions), or tagged it into the scope or out of its exemption
 *   (CreateTags, DeleteTags): the policy is applied again to those instances within
 *   minutes, through the limiter the account and Region share.
 * A failure, or work still waiting for EC2's throttle when time runs out, is thrown: Lambda
 * retries the event, then dead-letters it (the next scheduled sweep corrects it anyway).
 */
import { ListExecutionsCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { Context } from 'aws-lambda';
import { ENFORCER_ROLE_PATH } from '../enforcer-identity';
import { ec2Api, metricsApi } from './shared/aws';
import { modifyLimiter } from './shared/dynamodb-throttle-store';
import { enforceInstanceIds, INSTANCE_ID } from './shared/enforce-ids';
import type { Ec2Api } from './shared/enforcer';
import type { MetricsApi } from './shared/imdsv1-usage';
import { parsePolicy } from './shared/policy';
import { emfLine, summaryLine } from './shared/report';
import { Clock, describeFailure, systemClock, withRetries } from './shared/throttle';

const ec2 = ec2Api();
const cloudwatch = metricsApi();
const sfn = new SFNClient({ maxAttempts: 1 });

/** Time kept back at the end of an invocation to log and answer. */
const RESERVE_MS = 15_000;


export interface DriftEvent {
  readonly 'detail-type'?: string;
  readonly detail?: {
    readonly eventName?: string;
    readonly errorCode?: string;
    readonly userIdentity?: { readonly type?: string; readonly arn?: string; readonly sessionContext?: { readonly sessionIssuer?: { readonly arn?: string } } };
    readonly requestParameters?: unknown;
  };
}

export interface Dependencies {
  readonly ec2: Ec2Api;
  readonly cloudwatch: MetricsApi;
  readonly sfn: Pick<SFNClient, 'send'>;
  readonly clock: Clock;
}

/** The instances a CloudTrail record names: `instanceId`/`InstanceId` values, and `resourceId` of tagged resources. */
export function instanceIdsOf(requestParameters: unknown): string[] {
  const found = new Set<string>();
  const walk = (node: unknown, depth: number): void => {
    if (depth > 6 || node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (typeof value === 'string' && /^(instanceId|resourceId)$/i.test(key) && INSTANCE_ID.test(value)) found.add(value);
      else walk(value, depth + 1);
    }
  };
  walk(requestParameters, 0);
  return [...found];
}

/** Changes made by an enforcement's own roles are not drift (the rule filters them out too). */
function byOurOwnRole(detail: NonNullable<DriftEvent['detail']>): boolean {
  const issuer = detail.userIdentity?.sessionContext?.sessionIssuer?.arn ?? '';
  return issuer.includes(`:role${ENFORCER_ROLE_PATH}`);
}

async function resweep(deps: Dependencies, stateMachineArn: string): Promise<void> {
  const call = async <T>(action: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await withRetries(fn, { clock: deps.clock, attempts: 5 });
    } catch (err) {
      throw new Error(describeFailure(action, err), { cause: err });
    }
  };
  const running = await call('states:ListExecutions', () => deps.sfn.send(new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING', maxResults: 1 })));
  if ((running.executions ?? []).length > 0) {
    console.log(JSON.stringify({ level: 'INFO', message: 'scheduled re-sweep skipped: a sweep is still running', executionArn: running.executions![0].executionArn }));
    return;
  }
  const started = await call('states:StartExecution', () => deps.sfn.send(new StartExecutionCommand({
    stateMachineArn, input: JSON.stringify({ trigger: 'schedule' }),
  })));
  console.log(JSON.stringify({ level: 'INFO', message: 'scheduled re-sweep started', executionArn: started.executionArn }));
}

export async function apply(event: DriftEvent, deps: Dependencies, remainingMs?: number): Promise<void> {
  const policy = parsePolicy(process.env.IMDS_POLICY);
  if (event['detail-type'] === 'Scheduled Event') {
    const stateMachineArn = process.env.IMDS_SWEEP_STATE_MACHINE;
    if (!stateMachineArn) throw new Error('IMDS_SWEEP_STATE_MACHINE is not set: the construct passes the sweep state machine ARN');
    return resweep(deps, stateMachineArn);
  }
  const detail = event.detail;
  if (event['detail-type'] !== 'AWS API Call via CloudTrail' || !detail || detail.errorCode || byOurOwnRole(detail)) {
    console.log(JSON.stringify({ level: 'INFO', message: 'ignored an event that changed nothing or was our own', eventName: detail?.eventName, errorCode: detail?.errorCode }));
    return;
  }
  const instanceIds = instanceIdsOf(detail.requestParameters);
  if (instanceIds.length === 0) {
    console.log(JSON.stringify({ level: 'WARN', message: 'no instance in the CloudTrail record', eventName: detail.eventName }));
    return;
  }
  const { clock } = deps;
  const deadline = remainingMs !== undefined ? clock.now() + remainingMs - RESERVE_MS : undefined;
  const result = await enforceInstanceIds({ ...deps, policy, limiter: modifyLimiter(clock), deadline }, instanceIds);
  console.log(emfLine('Drift', policy.mode, result.tally, clock.now()));
  console.log(summaryLine('IMDS policy applied again after a change made by someone else', {
    mode: policy.mode, eventName: detail.eventName, changedBy: detail.userIdentity?.arn, instanceIds,
    tally: result.tally, failures: result.failures, atRiskInstanceIds: result.atRiskInstanceIds,
    ...(result.pending.length > 0 ? { pendingInstanceIds: result.pending } : {}),
  }));
  if (result.failures.length > 0) {
    throw new Error(`IMDS drift correction failed for ${result.failures.map((f) => f.instanceId).join(', ')}: ${result.failures[0].reason}`);
  }
  if (result.pending.length > 0) {
    throw new Error(`IMDS drift correction of ${result.pending.join(', ')} was still waiting for EC2's throttle when the invocation ran out of time; the event is retried`);
  }
}

export async function handler(event: DriftEvent, context?: Pick<Context, 'getRemainingTimeInMillis'>): Promise<void> {
  await apply(event, { ec2, cloudwatch, sfn, clock: systemClock }, context?.getRemainingTimeInMillis());
}
