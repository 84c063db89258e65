/*
 * The policy applied to a few named instances (a launch, a revert seen in CloudTrail, a tag
 * added later): listed again with the policy's own filters, so an instance that left the
 * scope, became exempt or is gone is simply not there, then enforced like a sweep page.
 */
import { describe, EnforceOptions, EnforcementResult, enforceInstances, instancesOf } from './enforcer';
import { describeFilters, InstanceView } from './policy';

/** DescribeInstances takes at most this many values in one filter. */
const IDS_PER_CALL = 200;

export const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;

export async function enforceInstanceIds(options: EnforceOptions, instanceIds: readonly string[]): Promise<EnforcementResult> {
  const ids = [...new Set(instanceIds.filter((id) => INSTANCE_ID.test(id)))];
  const instances: InstanceView[] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_CALL) {
    // A filter (not InstanceIds) so that an instance already terminated lists as nothing instead of failing.
    const page = await describe(options, {
      Filters: [...describeFilters(options.policy), { Name: 'instance-id', Values: ids.slice(i, i + IDS_PER_CALL) }],
    });
    instances.push(...instancesOf(page));
  }
  return enforceInstances(options, instances);
}
