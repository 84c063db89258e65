import { sweepPage } from '../../../lib/imds/handler/shared/enforcer';
import { evaluate, parsePolicy } from '../../../lib/imds/handler/shared/policy';
import { AdaptiveTokenBucket } from '../../../lib/imds/handler/shared/throttle';
import { compliant, instance, instantClock, page, POLICY } from './fleet';

const noMetrics = { getMetricData: async () => ({ MetricDataResults: [] }) };

describe('a sweep step that runs out of time', () => {
  test('hands the unchanged instances to the next step, which looks at them again and finishes them', async () => {
    // GIVEN a page of 150 non-compliant instances: 100 go with the burst, then 5 per second
    const clock = instantClock();
    const ids = Array.from({ length: 150 }, (_, i) => `i-${String(i).padStart(17, '0')}`);
    const fixed = new Set<string>();
    const modifyCalls: string[] = [];
    const ec2 = {
      describeInstances: async (input: any) => {
        const wanted = input.Filters.find((f: any) => f.Name === 'instance-id')?.Values as string[] | undefined;
        const listed = (wanted ?? ids).filter((id) => id !== 'i-00000000000000149'); // terminated meanwhile
        return page(listed.map((id) => (fixed.has(id) ? compliant(id) : instance({ id }))));
      },
      modifyInstanceMetadataOptions: async (input: any) => { modifyCalls.push(input.InstanceId); fixed.add(input.InstanceId); return {}; },
    };
    const policy = { ...POLICY, imdsv1LookbackDays: 0 };

    // WHEN the first step may only start changes for 4 seconds
    const first = await sweepPage({ ec2, cloudwatch: noMetrics, policy, clock, deadline: clock.now() + 4_000 }, {});

    // THEN about 100 + 4 × 5 changes are made and the rest is pending
    expect(first.page.modified).toBeGreaterThanOrEqual(115);
    expect(first.page.modified).toBeLessThanOrEqual(125);
    expect(first.state.pending).toHaveLength(149 - first.page.modified);
    expect(first.state.done).toBe(false);
    expect(first.state.tally).toMatchObject({ scanned: 149, nonCompliant: 149 });

    // WHEN the next step resumes (with the limiter where the first left it)
    await clock.sleep(1_000);
    const second = await sweepPage({ ec2, cloudwatch: noMetrics, policy, clock }, first.state);

    // THEN every instance was modified exactly once, and the counts add up
    expect(second.state.done).toBe(true);
    expect(new Set(modifyCalls).size).toBe(modifyCalls.length);
    expect(second.state.tally).toMatchObject({ scanned: 149, nonCompliant: 149, modified: 149, skipped: 0, failed: 0 });
    expect(second.state.pages).toBe(1);
  });
});

describe('AdaptiveTokenBucket', () => {
  test('gives the burst at once (one token kept in reserve), then tokens at the refill rate', async () => {
    const clock = instantClock();
    const start = clock.now();
    const bucket = new AdaptiveTokenBucket({ capacity: 100, refillPerSecond: 5, clock });
    for (let i = 0; i < 99; i++) await bucket.take();
    expect(clock.now()).toBe(start);
    for (let i = 0; i < 50; i++) await bucket.take();
    expect(clock.now() - start).toBeCloseTo(10_000, -1);
  });

  test('resumes where the previous invocation left it, refilled for the time in between', () => {
    const clock = instantClock();
    const bucket = new AdaptiveTokenBucket({ capacity: 100, refillPerSecond: 5, clock, resumeFrom: { tokens: 0, at: clock.now() - 4_000, ratePerSecond: 5 } });
    expect(bucket.snapshot().tokens).toBeCloseTo(20);
  });

  test('halves its rate when EC2 throttles (once a second at most) and climbs back on success', () => {
    const clock = instantClock();
    const bucket = new AdaptiveTokenBucket({ capacity: 100, refillPerSecond: 5, clock });
    bucket.onThrottled();
    bucket.onThrottled();
    expect(bucket.ratePerSecond).toBe(2.5);
    expect(bucket.snapshot().tokens).toBe(0);
    for (let i = 0; i < 100; i++) bucket.onSuccess();
    expect(bucket.ratePerSecond).toBe(5);
  });
});

describe('the policy', () => {
  test('an exemption tag wins over everything, and matches "true" in any case', () => {
    for (const value of ['true', 'TRUE', ' True ']) {
      expect(evaluate(instance({ id: 'i-1', tags: { ImdsEnforcementExempt: value } }), POLICY).kind).toBe('exempt');
    }
    expect(evaluate(instance({ id: 'i-1', tags: { ImdsEnforcementExempt: 'yes' } }), POLICY).kind).toBe('non-compliant');
  });

  test('instanceMetadataTags false leaves the tags setting out of the policy', () => {
    const policy = { ...POLICY, instanceMetadataTags: false };
    expect(evaluate(compliant('i-1', { metadataTags: 'disabled' }), policy).kind).toBe('compliant');
    const verdict = evaluate(instance({ id: 'i-1' }), policy);
    expect(verdict.kind === 'non-compliant' && verdict.change).toEqual({
      InstanceId: 'i-1', HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled',
    });
  });

  test('parsePolicy reads the strings CloudFormation passes and lists every problem', () => {
    expect(parsePolicy({ ...POLICY, hopLimit: '3', instanceMetadataTags: 'false', imdsv1LookbackDays: '0' }))
      .toMatchObject({ hopLimit: 3, instanceMetadataTags: false, imdsv1LookbackDays: 0 });
    expect(() => parsePolicy({ ...POLICY, mode: 'FIX', hopLimit: 1.5, instanceTags: { k: 1 } })).toThrow(
      'invalid IMDS policy: mode: got "FIX"; allowed: ENFORCE or AUDIT; hopLimit: got 1.5; allowed: an integer from 1 to 64; '
      + 'instanceTags: got {"k":1}; allowed: an object of tag keys to string values');
  });
});
