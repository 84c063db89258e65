/*
 * EventBridge target for "EC2 Instance State-change Notification" with state `running`:
 * enforces the same policy on that one instance, through the limiter the account and Region
 * share. A failure is thrown, so Lambda retries the event and finally hands it to the
 * dead-letter queue; so is a modification still throttled when the invocation runs out of time.
 */
import type { Context, EventBridgeEvent } from 'aws-lambda';
import { ec2Api, metricsApi } from './shared/aws';
import { modifyLimiter } from './shared/dynamodb-throttle-store';
import { INSTANCE_ID, enforceInstanceIds } from './shared/enforce-ids';
import { parsePolicy } from './shared/policy';
import { emfLine, summaryLine } from './shared/report';
import { systemClock } from './shared/throttle';

const ec2 = ec2Api();
const cloudwatch = metricsApi();

/** Time kept back at the end of an invocation to log and answer. */
const RESERVE_MS = 15_000;

type StateChange = EventBridgeEvent<'EC2 Instance State-change Notification', { 'instance-id'?: string; state?: string }>;

export async function handler(event: StateChange, context?: Pick<Context, 'getRemainingTimeInMillis'>): Promise<void> {
  const policy = parsePolicy(process.env.IMDS_POLICY);
  const instanceId = event.detail?.['instance-id'];
  if (event.detail?.state !== 'running' || typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) {
    console.log(JSON.stringify({ level: 'WARN', message: 'ignored an event that is not an instance entering running', detail: event.detail }));
    return;
  }
  const clock = systemClock;
  const deadline = context ? clock.now() + context.getRemainingTimeInMillis() - RESERVE_MS : undefined;
  const result = await enforceInstanceIds({ ec2, cloudwatch, policy, clock, limiter: modifyLimiter(clock), deadline }, [instanceId]);

  console.log(emfLine('Launch', policy.mode, result.tally, clock.now()));
  console.log(summaryLine('IMDS policy applied to a launched instance', {
    mode: policy.mode, instanceId, tally: result.tally, failures: result.failures, atRiskInstanceIds: result.atRiskInstanceIds,
    ...(result.pending.length > 0 ? { pendingInstanceIds: result.pending } : {}),
  }));
  if (result.failures.length > 0) {
    throw new Error(`IMDS enforcement failed for ${instanceId}: ${result.failures[0].reason}`);
  }
  if (result.pending.length > 0) {
    throw new Error(`IMDS enforcement of ${instanceId} was still waiting for EC2's throttle when the invocation ran out of time; the event is retried`);
  }
}
