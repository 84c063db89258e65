/*
 * EventBridge target for "EC2 Instance State-change Notification" with state `running`:
 * enforces the same policy on that one instance. A failure is thrown, so Lambda retries
 * the event and finally hands it to the dead-letter queue.
 */
import type { EventBridgeEvent } from 'aws-lambda';
import { ec2Api, metricsApi } from './shared/aws';
import { describe, enforceInstances, instancesOf, MODIFY_BUCKET } from './shared/enforcer';
import { describeFilters, parsePolicy } from './shared/policy';
import { emfLine, summaryLine } from './shared/report';
import { AdaptiveTokenBucket, systemClock } from './shared/throttle';

const ec2 = ec2Api();
const cloudwatch = metricsApi();

type StateChange = EventBridgeEvent<'EC2 Instance State-change Notification', { 'instance-id'?: string; state?: string }>;

export async function handler(event: StateChange): Promise<void> {
  const policy = parsePolicy(process.env.IMDS_POLICY);
  const instanceId = event.detail?.['instance-id'];
  if (event.detail?.state !== 'running' || typeof instanceId !== 'string' || !/^i-[0-9a-f]{8,17}$/.test(instanceId)) {
    console.log(JSON.stringify({ level: 'WARN', message: 'ignored an event that is not an instance entering running', detail: event.detail }));
    return;
  }
  const clock = systemClock;
  // A filter (not InstanceIds) so that an instance already terminated lists as nothing instead of failing.
  const page = await describe({ ec2, clock }, {
    Filters: [...describeFilters(policy), { Name: 'instance-id', Values: [instanceId] }],
  });
  const limiter = new AdaptiveTokenBucket({ ...MODIFY_BUCKET, clock });
  const result = await enforceInstances({ ec2, cloudwatch, policy, clock, limiter }, instancesOf(page));

  console.log(emfLine('Launch', policy.mode, result.tally, clock.now()));
  console.log(summaryLine('IMDS policy applied to a launched instance', {
    mode: policy.mode, instanceId, tally: result.tally, failures: result.failures, atRiskInstanceIds: result.atRiskInstanceIds,
  }));
  if (result.failures.length > 0) {
    throw new Error(`IMDS enforcement failed for ${instanceId}: ${result.failures[0].reason}`);
  }
}
