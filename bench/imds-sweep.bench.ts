/*
 * The IMDS sweep against a simulated EC2 with EC2's published token buckets, on a simulated
 * clock (hours of sweeping run in seconds). It drives the handlers' own code: `sweepPage`
 * step after step, as the state machine does, each step with a Lambda's 15-minute budget.
 *
 * Buckets, per account and region (EC2 API request throttling documentation):
 * - ModifyInstanceMetadataOptions: 100 burst, 5 per second refill;
 * - DescribeInstances (non-mutating actions): 100 burst, 20 per second refill.
 *
 * Printed per fleet (30% non-compliant):
 * - modify calls / non-compliant instances (goal 1.00: no call wasted, none throttled);
 * - describe calls / ceil(N / 1000) (goal 1.00: one call per page);
 * - achieved modify rate / refill rate, where the achieved rate is the successful modifications
 *   beyond the burst divided by the time from the first to the last one (goal >= 0.9);
 * - failures (goal 0).
 */
import { Ec2Api, MODIFY_BUCKET, PAGE_SIZE, SweepState, sweepPage } from '../lib/imds/handler/shared/enforcer';
import { MetricsApi } from '../lib/imds/handler/shared/imdsv1-usage';
import { ImdsPolicy, InstanceView, MetadataOptionsChange } from '../lib/imds/handler/shared/policy';
import { Clock } from '../lib/imds/handler/shared/throttle';

/** A clock whose time only moves when every task is waiting on it: deterministic and fast. */
class VirtualClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly heap: Array<{ at: number; seq: number; resolve: () => void }> = [];

  public now(): number {
    return this.t;
  }

  public sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.push({ at: this.t + Math.max(0, ms), seq: this.seq++, resolve }));
  }

  /** Runs `work` to completion, advancing time to the next timer whenever all tasks wait. */
  public async run<T>(work: Promise<T>): Promise<T> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    work.then((value) => { outcome = { ok: true, value }; }, (error) => { outcome = { ok: false, error }; });
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (outcome) break;
      const next = this.pop();
      if (!next) throw new Error('simulation deadlock: nothing is waiting on the clock');
      this.t = next.at;
      next.resolve();
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  private push(timer: { at: number; seq: number; resolve: () => void }): void {
    const h = this.heap;
    h.push(timer);
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private pop() {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }

  private less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

/** EC2's token bucket, as the service keeps it. */
class ServiceBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly capacity: number, private readonly refillPerSecond: number, private readonly clock: Clock) {
    this.tokens = capacity;
    this.last = clock.now();
  }

  public tryTake(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.refillPerSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const throttled = () => Object.assign(new Error('Request limit exceeded.'), { name: 'RequestLimitExceeded' });

interface SimInstance {
  InstanceId: string;
  State: { Name: string };
  Tags: Array<{ Key: string; Value: string }>;
  MetadataOptions: { HttpTokens: string; HttpPutResponseHopLimit: number; HttpEndpoint: string; InstanceMetadataTags: string };
}

/** DescribeInstances and ModifyInstanceMetadataOptions of one account and region, throttled like EC2. */
class SimulatedEc2 implements Ec2Api {
  public describeCalls = 0;
  public modifyCalls = 0;
  public modifyThrottled = 0;
  public describeThrottled = 0;
  public readonly modifiedAt: number[] = [];
  private readonly describeBucket: ServiceBucket;
  private readonly modifyBucket: ServiceBucket;
  private readonly byId = new Map<string, SimInstance>();

  constructor(private readonly clock: Clock, private readonly instances: SimInstance[]) {
    this.describeBucket = new ServiceBucket(100, 20, clock);
    this.modifyBucket = new ServiceBucket(MODIFY_BUCKET.capacity, MODIFY_BUCKET.refillPerSecond, clock);
    for (const i of instances) this.byId.set(i.InstanceId, i);
  }

  public neighbourRefused = 0;

  /** Another tool of the account spending from the same modify bucket (it does not retry). */
  public spendModifyToken(): void {
    if (!this.modifyBucket.tryTake()) this.neighbourRefused++;
  }

  public async describeInstances(input: { Filters: Array<{ Name: string; Values: string[] }>; MaxResults?: number; NextToken?: string }) {
    this.describeCalls++;
    await this.clock.sleep(150);
    if (!this.describeBucket.tryTake()) {
      this.describeThrottled++;
      throw throttled();
    }
    const ids = input.Filters.find((f) => f.Name === 'instance-id')?.Values;
    const states = input.Filters.find((f) => f.Name === 'instance-state-name')?.Values;
    const matching = (ids ? ids.map((id) => this.byId.get(id)!).filter(Boolean) : this.instances)
      .filter((i) => !states || states.includes(i.State.Name));
    const start = Number(input.NextToken ?? 0);
    const end = ids ? matching.length : Math.min(matching.length, start + (input.MaxResults ?? PAGE_SIZE));
    // Large pages take a while to serialise.
    await this.clock.sleep(150 + (end - start) / 4);
    const page: InstanceView[] = matching.slice(start, end).map((i) => structuredClone(i));
    return { Reservations: [{ Instances: page }], ...(end < matching.length && !ids ? { NextToken: String(end) } : {}) };
  }

  public async modifyInstanceMetadataOptions(change: MetadataOptionsChange) {
    this.modifyCalls++;
    await this.clock.sleep(30);
    if (!this.modifyBucket.tryTake()) {
      this.modifyThrottled++;
      await this.clock.sleep(30);
      throw throttled();
    }
    const instance = this.byId.get(change.InstanceId)!;
    instance.MetadataOptions = {
      HttpTokens: change.HttpTokens,
      HttpPutResponseHopLimit: change.HttpPutResponseHopLimit,
      HttpEndpoint: change.HttpEndpoint,
      InstanceMetadataTags: change.InstanceMetadataTags ?? instance.MetadataOptions.InstanceMetadataTags,
    };
    this.modifiedAt.push(this.clock.now());
    await this.clock.sleep(30);
    return {};
  }
}

/** GetMetricData answering that nobody used IMDSv1 (the at-risk path is covered by the handler tests). */
class SimulatedCloudWatch implements MetricsApi {
  public calls = 0;

  constructor(private readonly clock: Clock) {}

  public async getMetricData(input: { MetricDataQueries: Array<{ Id: string }> }) {
    this.calls++;
    await this.clock.sleep(200);
    return { MetricDataResults: input.MetricDataQueries.map((q) => ({ Id: q.Id, Values: [] as number[] })) };
  }
}

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

async function simulate(size: number, neighbourPerSecond = 0): Promise<Result> {
  const clock = new VirtualClock();
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
      ({ state } = await sweepPage({ ec2, cloudwatch, policy: POLICY, clock, deadline }, state));
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
  console.log('| fleet | non-compliant | modify calls / non-compliant | describe calls / ceil(N/1000) | achieved modify rate / refill rate | failures | throttled modify calls (retried) | sweep steps | simulated sweep time | wall time |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const rows: Array<[number, number]> = [[1_000, 0], [10_000, 0], [50_000, 0], [10_000, 1]];
  for (const [size, neighbour] of rows) {
    const wallStart = process.hrtime.bigint();
    const r = await simulate(size, neighbour);
    const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
    const rate = achievedRate(r.ec2.modifiedAt) / MODIFY_BUCKET.refillPerSecond;
    const label = neighbour
      ? `${size.toLocaleString('en-US')}, another tool spending ${neighbour}/s from the bucket (${r.ec2.neighbourRefused} of its calls refused)`
      : size.toLocaleString('en-US');
    console.log(`| ${label} | ${r.nonCompliant.toLocaleString('en-US')} | ${(r.ec2.modifyCalls / r.nonCompliant).toFixed(2)} `
      + `| ${(r.ec2.describeCalls / Math.ceil(size / PAGE_SIZE)).toFixed(2)} | ${rate.toFixed(2)} `
      + `| ${r.failed} | ${r.ec2.modifyThrottled} | ${r.steps} | ${(r.sweepSeconds / 60).toFixed(1)} min | ${wall.toFixed(1)} s |`);
    if (r.modified !== r.nonCompliant) throw new Error(`modified ${r.modified} of ${r.nonCompliant} non-compliant instances`);
  }
}
