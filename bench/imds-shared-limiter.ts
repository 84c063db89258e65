/*
 * One account and Region, every path that modifies instances at once: two Imdsv2Enforcement
 * constructs (scope tags Fleet=containers and Fleet=hosts) sweep 10,000 instances each, and
 * 600 instances launch while they do. Each construct's launch handler runs at most 5 at a
 * time (its reserved concurrency); an invocation that fails is retried twice by Lambda
 * (after 1 and 2 minutes), then dead-lettered: that launch stays non-compliant.
 *
 * - per execution: what the handlers did before the shared limiter — each sweep step a bucket
 *   of its own (carried in the checkpoint), each launch invocation a fresh one, and a
 *   modification given up after 10 throttled attempts;
 * - shared: every sweep step and launch invocation a new SharedTokenBucket on one DynamoDB
 *   item (a model with 4 ms round trips), throttled modifications retried until done.
 */
import { EnforcementResult, MODIFY_BUCKET, SweepState, sweepPage } from '../lib/imds/handler/shared/enforcer';
import { enforceInstanceIds } from '../lib/imds/handler/shared/enforce-ids';
import { ImdsPolicy } from '../lib/imds/handler/shared/policy';
import { RateLimiter, SharedTokenBucket } from '../lib/imds/handler/shared/shared-limiter';
import { AdaptiveTokenBucket } from '../lib/imds/handler/shared/throttle';
import { SimInstance, SimulatedCloudWatch, SimulatedEc2, ThrottleStoreModel, VirtualClock } from './imds-sim';
import { mulberry32 } from '../test/helpers/prng';

const FLEETS = ['containers', 'hosts'] as const;
const LAMBDA_BUDGET_MS = 15 * 60_000;
const SWEEP_RESERVE_MS = 90_000;
const LAUNCH_TIMEOUT_MS = 2 * 60_000;
const LAUNCH_RESERVE_MS = 15_000;
const LAUNCH_CONCURRENCY = 5;
const LAUNCH_RETRY_DELAYS_MS = [60_000, 120_000];
const OLD_THROTTLED_ATTEMPTS = 10;

const policyOf = (fleet: string): ImdsPolicy => ({
  mode: 'ENFORCE', hopLimit: 2, instanceMetadataTags: true, instanceTags: { Fleet: fleet },
  exemptionTagKey: 'ImdsEnforcementExempt', imdsv1LookbackDays: 14,
});

function simInstance(id: number, fleet: string, nonCompliant: boolean): SimInstance {
  return {
    InstanceId: `i-${id.toString(16).padStart(17, '0')}`,
    State: { Name: id % 7 === 0 ? 'stopped' : 'running' },
    Tags: [{ Key: 'Fleet', Value: fleet }],
    MetadataOptions: {
      HttpTokens: nonCompliant ? 'optional' : 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled',
    },
  };
}

const compliant = (i: SimInstance) => i.MetadataOptions.HttpTokens === 'required' && i.MetadataOptions.HttpPutResponseHopLimit >= 2;

/** A semaphore: at most `size` holders, the others wait in order. */
class Concurrency {
  private busy = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly size: number) {}

  public async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.busy++;
    try {
      return await fn();
    } finally {
      this.busy--;
      this.waiting.shift()?.();
    }
  }
}

export interface ScenarioResult {
  readonly needed: number;
  readonly sweepFailures: number;
  readonly launchesDeadLettered: number;
  readonly leftNonCompliant: number;
  readonly throttled: number;
  readonly seconds: number;
  readonly storeWrites: number;
}

export async function simulateScenario(shared: boolean, fleetSize: number, nonCompliantShare: number, launches: number): Promise<ScenarioResult> {
  const clock = new VirtualClock();
  const store = new ThrottleStoreModel(clock);
  // Deterministic, so both variants see the same launches.
  const rnd = mulberry32(12);
  let id = 1;
  const instances = FLEETS.flatMap((fleet) => Array.from({ length: fleetSize }, () => simInstance(id++, fleet, rnd() < nonCompliantShare)));
  const ec2 = new SimulatedEc2(clock, instances);
  const cloudwatch = new SimulatedCloudWatch(clock);
  const needed = instances.filter((i) => !compliant(i) && i.State.Name !== 'terminated').length + launches;
  const floorSeconds = (needed - MODIFY_BUCKET.capacity) / MODIFY_BUCKET.refillPerSecond;

  const limiter = (): RateLimiter => (shared
    ? new SharedTokenBucket({ ...MODIFY_BUCKET, clock, store })
    : new AdaptiveTokenBucket({ ...MODIFY_BUCKET, clock }));
  const maxThrottledAttempts = shared ? undefined : OLD_THROTTLED_ATTEMPTS;

  let sweepFailures = 0;
  const sweep = async (fleet: string) => {
    let state: SweepState = {};
    while (!state.done) {
      const deadline = clock.now() + LAMBDA_BUDGET_MS - SWEEP_RESERVE_MS;
      ({ state } = await sweepPage({
        ec2, cloudwatch, policy: policyOf(fleet), clock, deadline, maxThrottledAttempts, limiter: shared ? limiter() : undefined,
      }, state));
      await clock.sleep(50); // a Step Functions state transition
    }
    sweepFailures += state.tally?.failed ?? 0;
  };

  let deadLettered = 0;
  const launchQueues = Object.fromEntries(FLEETS.map((f) => [f, new Concurrency(LAUNCH_CONCURRENCY)]));
  const launch = async (at: number, fleet: string) => {
    await clock.sleep(at);
    const instance = simInstance(id++, fleet, true);
    instance.State.Name = 'running';
    ec2.launch(instance);
    for (let attempt = 0; ; attempt++) {
      const result: EnforcementResult = await launchQueues[fleet].run(() => enforceInstanceIds({
        ec2, cloudwatch, policy: policyOf(fleet), clock, limiter: limiter(), maxThrottledAttempts,
        // The old handler had no deadline; the Lambda timeout was never reached.
        deadline: shared ? clock.now() + LAUNCH_TIMEOUT_MS - LAUNCH_RESERVE_MS : undefined,
      }, [instance.InstanceId]));
      if (result.failures.length === 0 && result.pending.length === 0) return;
      if (attempt >= LAUNCH_RETRY_DELAYS_MS.length) {
        deadLettered++;
        return;
      }
      await clock.sleep(LAUNCH_RETRY_DELAYS_MS[attempt]);
    }
  };

  // Launches arrive at random times while the sweeps run (over the first 90% of the floor).
  const launchTimes = Array.from({ length: launches }, () => Math.floor(rnd() * floorSeconds * 900));
  const started = clock.now();
  await clock.run(Promise.all([
    ...FLEETS.map((fleet) => sweep(fleet)),
    ...launchTimes.map((at, n) => launch(at, FLEETS[n % FLEETS.length])),
  ]));
  const all = FLEETS.flatMap((fleet) => [...Array(id).keys()].map((n) => ec2.instance(`i-${n.toString(16).padStart(17, '0')}`))
    .filter((i): i is SimInstance => i !== undefined && i.Tags[0].Value === fleet));
  return {
    needed,
    sweepFailures,
    launchesDeadLettered: deadLettered,
    leftNonCompliant: all.filter((i) => !compliant(i)).length,
    throttled: ec2.modifyThrottled,
    seconds: (clock.now() - started) / 1000,
    storeWrites: store.writes,
  };
}

export async function runScenario(): Promise<void> {
  console.log('\nTwo Imdsv2Enforcement constructs sweeping 10,000 instances each at once, 600 launches during the sweeps:\n');
  console.log('| non-compliant share | limiter | modifications needed (N) | failed in sweeps | launches dead-lettered | left non-compliant | throttled modify calls | time until done | floor (N − 100) / 5 s | time / floor | limiter item writes | wall time |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const share of [0.3, 1]) {
    for (const shared of [false, true]) {
      const wallStart = process.hrtime.bigint();
      const r = await simulateScenario(shared, 10_000, share, 600);
      const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
      const floor = (r.needed - MODIFY_BUCKET.capacity) / MODIFY_BUCKET.refillPerSecond;
      console.log(`| ${Math.round(share * 100)}% | ${shared ? 'shared' : 'per execution'} | ${r.needed.toLocaleString('en-US')} | ${r.sweepFailures} `
        + `| ${r.launchesDeadLettered} | ${r.leftNonCompliant} | ${r.throttled.toLocaleString('en-US')} | ${(r.seconds / 60).toFixed(1)} min `
        + `| ${(floor / 60).toFixed(1)} min | ${(r.seconds / floor).toFixed(3)} | ${shared ? r.storeWrites.toLocaleString('en-US') : '—'} | ${wall.toFixed(1)} s |`);
    }
  }
}
