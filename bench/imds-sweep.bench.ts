/*
 * The IMDS sweep against a simulated EC2 with EC2's published token buckets, on a simulated
 * clock (hours of sweeping run in seconds). It drives the handlers' own code: `sweepPage`
 * step after step, as the state machine does, each step with a Lambda's 15-minute budget,
 * and the launch handler's path for each launched instance (see imds-sim.ts).
 *
 * Table 1, per fleet (30% non-compliant), with the per-execution limiter and the shared one:
 * - modify calls / non-compliant instances (goal 1.00: no call wasted, none throttled);
 * - describe calls / ceil(N / 1000) (goal 1.00: one call per page);
 * - achieved modify rate / refill rate, where the achieved rate is the successful modifications
 *   beyond the burst divided by the time from the first to the last one (goal >= 0.9);
 * - failures (goal 0).
 *
 * Table 2, one account and Region: two Imdsv2Enforcement constructs (different scope tags)
 * sweeping 10,000 instances each at once, and 600 instances launched during the sweeps; the
 * per-execution limiters (and their give-up after 10 throttled attempts) side by side with
 * the shared limiter (a model of its DynamoDB item): failures and instances left
 * non-compliant (goal 0), and the time until all is done against the floor (N − 100) / 5 s
 * for the N modifications needed (goal ≤ 1.05).
 */
import { MODIFY_BUCKET, PAGE_SIZE, SweepState, sweepPage } from '../lib/imds/handler/shared/enforcer';
import { ImdsPolicy } from '../lib/imds/handler/shared/policy';
import { SharedTokenBucket } from '../lib/imds/handler/shared/shared-limiter';
import { SimInstance, SimulatedCloudWatch, SimulatedEc2, ThrottleStoreModel, VirtualClock } from './imds-sim';
import { runScenario } from './imds-shared-limiter';

/** 3 of every 10 instances non-compliant, spread over all pages; every 7th stopped. */
function fleet(size: number): SimInstance[] {
  return Array.from({ length: size }, (_, n) => {
    const bad = n % 10 < 3;
    return {
      InstanceId: `i-${n.toString(16).padStart(17, '0')}`,
      State: { Name: n % 7 === 0 ? 'stopped' : 'running' },
      Tags: [],
      MetadataOptions: {
        HttpTokens: bad ? 'optional' : 'required',
        HttpPutResponseHopLimit: bad && n % 2 === 0 ? 1 : 2,
        HttpEndpoint: 'enabled',
        InstanceMetadataTags: 'enabled',
      },
    };
  });
}

const POLICY: ImdsPolicy = {
  mode: 'ENFORCE', hopLimit: 2, instanceMetadataTags: true, instanceTags: {}, exemptionTagKey: 'ImdsEnforcementExempt', imdsv1LookbackDays: 14,
};
const LAMBDA_BUDGET_MS = 15 * 60_000;
const RESERVE_MS = 90_000;

interface Result {
  size: number;
  nonCompliant: number;
  ec2: SimulatedEc2;
  cloudwatch: SimulatedCloudWatch;
  steps: number;
  failed: number;
  modified: number;
  sweepSeconds: number;
}

async function simulate(size: number, neighbourPerSecond: number, shared: boolean): Promise<Result> {
  const clock = new VirtualClock();
  const store = new ThrottleStoreModel(clock);
  const instances = fleet(size);
  const nonCompliant = instances.filter((i) => i.MetadataOptions.HttpTokens !== 'required' || i.MetadataOptions.HttpPutResponseHopLimit !== 2).length;
  const ec2 = new SimulatedEc2(clock, instances);
  const cloudwatch = new SimulatedCloudWatch(clock);
  let sweeping = true;
  if (neighbourPerSecond > 0) {
    void (async () => {
      while (sweeping) {
        await clock.sleep(1000 / neighbourPerSecond);
        ec2.spendModifyToken();
      }
    })();
  }

  const sweep = async () => {
    let state: SweepState = {};
    let steps = 0;
    while (!state.done) {
      steps++;
      const deadline = clock.now() + LAMBDA_BUDGET_MS - RESERVE_MS;
      // Each step is a new Lambda invocation: a new limiter object, the shared one's state in the item.
      const limiter = shared ? new SharedTokenBucket({ ...MODIFY_BUCKET, clock, store }) : undefined;
      ({ state } = await sweepPage({ ec2, cloudwatch, policy: POLICY, clock, deadline, limiter }, state));
      await clock.sleep(50); // a Step Functions state transition
    }
    return { state, steps };
  };
  const started = clock.now();
  const { state, steps } = await clock.run(sweep());
  sweeping = false;
  return {
    size,
    nonCompliant,
    ec2,
    cloudwatch,
    steps,
    failed: state.tally?.failed ?? 0,
    modified: state.tally?.modified ?? 0,
    sweepSeconds: (clock.now() - started) / 1000,
  };
}

function achievedRate(modifiedAt: number[]): number {
  if (modifiedAt.length <= MODIFY_BUCKET.capacity + 1) return Number.NaN;
  const seconds = (modifiedAt[modifiedAt.length - 1] - modifiedAt[0]) / 1000;
  return (modifiedAt.length - MODIFY_BUCKET.capacity) / seconds;
}

export async function run(): Promise<void> {
  console.log('| fleet | limiter | non-compliant | modify calls / non-compliant | describe calls / ceil(N/1000) | achieved modify rate / refill rate | failures | throttled modify calls (retried) | sweep steps | simulated sweep time | wall time |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const rows: Array<[number, number, boolean]> = [
    [1_000, 0, false], [1_000, 0, true], [10_000, 0, false], [10_000, 0, true], [50_000, 0, false], [50_000, 0, true],
    [10_000, 1, false], [10_000, 1, true],
  ];
  for (const [size, neighbour, shared] of rows) {
    const wallStart = process.hrtime.bigint();
    const r = await simulate(size, neighbour, shared);
    const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
    const rate = achievedRate(r.ec2.modifiedAt) / MODIFY_BUCKET.refillPerSecond;
    const label = neighbour
      ? `${size.toLocaleString('en-US')}, another tool spending ${neighbour}/s from the bucket (${r.ec2.neighbourRefused} of its calls refused)`
      : size.toLocaleString('en-US');
    console.log(`| ${label} | ${shared ? 'shared' : 'per execution'} | ${r.nonCompliant.toLocaleString('en-US')} | ${(r.ec2.modifyCalls / r.nonCompliant).toFixed(2)} `
      + `| ${(r.ec2.describeCalls / Math.ceil(size / PAGE_SIZE)).toFixed(2)} | ${rate.toFixed(2)} `
      + `| ${r.failed} | ${r.ec2.modifyThrottled} | ${r.steps} | ${(r.sweepSeconds / 60).toFixed(1)} min | ${wall.toFixed(1)} s |`);
    if (r.modified !== r.nonCompliant) throw new Error(`modified ${r.modified} of ${r.nonCompliant} non-compliant instances`);
  }
  await runScenario();
}
