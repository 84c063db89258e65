/*
 * The simulation the IMDS benchmark and the limiter tests run on: a virtual clock, EC2's
 * throttled DescribeInstances and ModifyInstanceMetadataOptions with the service's own token
 * buckets, CloudWatch, and a model of the DynamoDB item the shared limiter writes to.
 *
 * Buckets, per account and region (EC2 API request throttling documentation):
 * - ModifyInstanceMetadataOptions: 100 burst, 5 per second refill;
 * - DescribeInstances (non-mutating actions): 100 burst, 20 per second refill.
 */
import { Ec2Api, MODIFY_BUCKET, PAGE_SIZE } from '../lib/imds/handler/shared/enforcer';
import { MetricsApi } from '../lib/imds/handler/shared/imdsv1-usage';
import { InstanceView, MetadataOptionsChange } from '../lib/imds/handler/shared/policy';
import type { ThrottleRecord, ThrottleStore } from '../lib/imds/handler/shared/shared-limiter';
import { Clock } from '../lib/imds/handler/shared/throttle';

/** A clock whose time only moves when every task is waiting on it: deterministic and fast. */
export class VirtualClock implements Clock {
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
export class ServiceBucket {
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

export const throttled = () => Object.assign(new Error('Request limit exceeded.'), { name: 'RequestLimitExceeded' });

export interface SimInstance {
  InstanceId: string;
  State: { Name: string };
  Tags: Array<{ Key: string; Value: string }>;
  MetadataOptions: { HttpTokens: string; HttpPutResponseHopLimit: number; HttpEndpoint: string; InstanceMetadataTags: string };
}

/** DescribeInstances and ModifyInstanceMetadataOptions of one account and region, throttled like EC2. */
export class SimulatedEc2 implements Ec2Api {
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

  /** An instance launched: listed from now on (at the end, so pages already read do not shift). */
  public launch(instance: SimInstance): void {
    this.instances.push(instance);
    this.byId.set(instance.InstanceId, instance);
  }

  public instance(instanceId: string): SimInstance | undefined {
    return this.byId.get(instanceId);
  }

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
    const tags = input.Filters.filter((f) => f.Name.startsWith('tag:')).map((f) => [f.Name.slice(4), f.Values] as const);
    const matching = (ids ? ids.map((id) => this.byId.get(id)!).filter(Boolean) : this.instances)
      .filter((i) => !states || states.includes(i.State.Name))
      .filter((i) => tags.every(([key, values]) => i.Tags.some((t) => t.Key === key && values.includes(t.Value))));
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
export class SimulatedCloudWatch implements MetricsApi {
  public calls = 0;

  constructor(private readonly clock: Clock) {}

  public async getMetricData(input: { MetricDataQueries: Array<{ Id: string }> }) {
    this.calls++;
    await this.clock.sleep(200);
    return { MetricDataResults: input.MetricDataQueries.map((q) => ({ Id: q.Id, Values: [] as number[] })) };
  }
}


/**
 * The DynamoDB item of the shared limiter, as a model: each operation is the conditional
 * UpdateItem the DynamoDB store sends, applied atomically half-way through a simulated
 * round trip, so concurrent callers interleave as they would against the service.
 */
export class ThrottleStoreModel implements ThrottleStore {
  public writes = 0;
  public conditionFailures = 0;
  private item: { tat?: number; rate?: number; throttledAt?: number } = {};

  constructor(private readonly clock: Clock, private readonly latencyMs = 4) {}

  public advance(interval: number, now: number, horizon: number) {
    return this.update((i) => i.tat !== undefined && i.tat >= now && i.tat <= horizon, (i) => ({ ...i, tat: i.tat! + interval }));
  }

  public restart(interval: number, now: number, horizon: number) {
    return this.update((i) => i.tat === undefined || i.tat < now || i.tat > horizon, (i) => ({ ...i, tat: now + interval }));
  }

  public async pushBack(at: number): Promise<void> {
    await this.update((i) => i.tat === undefined || i.tat < at, (i) => ({ ...i, tat: at }));
  }

  public async slowDown(rate: number, now: number, since: number): Promise<boolean> {
    return (await this.update((i) => i.throttledAt === undefined || i.throttledAt < since, (i) => ({ ...i, rate, throttledAt: now }))) !== undefined;
  }

  private async update(
    condition: (item: ThrottleStoreModel['item']) => boolean,
    change: (item: ThrottleStoreModel['item']) => ThrottleStoreModel['item'],
  ): Promise<ThrottleRecord | undefined> {
    await this.clock.sleep(this.latencyMs / 2);
    let result: ThrottleRecord | undefined;
    if (condition(this.item)) {
      this.writes++;
      this.item = change(this.item);
      result = { tat: this.item.tat ?? 0, rate: this.item.rate, throttledAt: this.item.throttledAt };
    } else {
      this.conditionFailures++;
    }
    await this.clock.sleep(this.latencyMs / 2);
    return result;
  }
}
