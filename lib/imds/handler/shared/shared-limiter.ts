/*
 * One limiter for EC2's ModifyInstanceMetadataOptions bucket, shared by every handler of
 * every Imdsv2Enforcement in an account and Region: the state lives in one DynamoDB item,
 * so it survives Lambda restarts and serves concurrent executions alike.
 *
 * The item holds a generic cell rate algorithm (GCRA): `tat`, the theoretical arrival time
 * of the next request. A caller reserves a slot with one conditional write, without reading
 * first — `tat += interval` while the bucket is busy, `tat = now + interval` once it is idle —
 * then sleeps until its slot. Slots are handed out in order of arrival, and no two callers
 * ever get the same one, however many there are. When EC2 throttles anyway (something
 * outside the limiter spent from the bucket), the shared rate halves, at most once a second,
 * and climbs back linearly with time; the item records that, so every caller slows down.
 */
import { AdaptiveTokenBucket, Clock, errorCode, errorMessage, isThrottling, isTransient, TokenBucketOptions } from './throttle';

/** What the enforcement needs of a rate limiter; the local `AdaptiveTokenBucket` is one too. */
export interface RateLimiter {
  /** Waits for a slot and spends it. */
  take(): Promise<void>;
  /** EC2 throttled a call made in a slot: slow down. */
  onThrottled(): void | Promise<void>;
  /** A call went through. */
  onSuccess(): void;
}

/** The shared item, as the store returns it after a write. */
export interface ThrottleRecord {
  /** Theoretical arrival time, in ms since the epoch. */
  readonly tat: number;
  /** The rate set by the last slow-down, tokens per second. */
  readonly rate?: number;
  /** When the last slow-down happened, ms since the epoch. */
  readonly throttledAt?: number;
}

/**
 * The four conditional writes the limiter makes. Each is atomic; `undefined` / `false`
 * means its condition did not hold and nothing was written.
 */
export interface ThrottleStore {
  /** `tat = tat + interval` if `now <= tat <= horizon` (the bucket is busy). */
  advance(interval: number, now: number, horizon: number): Promise<ThrottleRecord | undefined>;
  /** `tat = now + interval` if there is no `tat`, or it is before `now` (idle) or after `horizon` (implausible). */
  restart(interval: number, now: number, horizon: number): Promise<ThrottleRecord | undefined>;
  /** `tat = at` if there is no `tat` or it is earlier: never moves it back. */
  pushBack(at: number): Promise<void>;
  /** `rate = rate, throttledAt = now` unless a slow-down was recorded after `since`. */
  slowDown(rate: number, now: number, since: number): Promise<boolean>;
}

export interface SharedLimiterOptions {
  readonly store: ThrottleStore;
  /** Tokens the bucket holds when full (EC2's burst). */
  readonly capacity: number;
  /** Tokens added per second (EC2's refill): the most the limiter ever hands out. */
  readonly refillPerSecond: number;
  /** Must be wall-clock time (ms since the epoch): the item is shared between hosts. */
  readonly clock: Clock;
  /**
   * Tokens kept back for what the limiter cannot see: request latency that differs between
   * callers and hosts' clocks that differ by a few milliseconds.
   * @default 2
   */
  readonly reserve?: number;
  /** The shared rate never drops below this. @default refillPerSecond / 10 */
  readonly minRatePerSecond?: number;
  /** How fast the rate climbs back after a slow-down, tokens per second per second. @default refillPerSecond / 40 */
  readonly recoveryPerSecond?: number;
  /** Where to log that the store failed and the limiter went local. @default console.log */
  readonly log?: (line: string) => void;
}

/** A `tat` further ahead than this is not believed (a clock far off, a hand-edited item). */
const HORIZON_MS = 15 * 60_000;
/** Store calls are retried this often on throttling or transient errors before going local. */
const STORE_ATTEMPTS = 4;

/**
 * The GCRA limiter over a ThrottleStore. If the store fails (table missing, access denied,
 * an outage past the retries) it says so once and carries on with a local adaptive bucket:
 * uncoordinated, but EC2's throttling is still retried, so nothing is lost but speed.
 */
export class SharedTokenBucket implements RateLimiter {
  private readonly fullRate: number;
  private readonly minRate: number;
  private readonly recovery: number;
  /** How far `tat` may run ahead of now while a slot is still free at once: the burst. */
  private readonly tolerance: number;
  private rate: number;
  private throttledAt: number | undefined;
  private local: AdaptiveTokenBucket | undefined;

  constructor(private readonly options: SharedLimiterOptions) {
    this.fullRate = options.refillPerSecond;
    this.minRate = options.minRatePerSecond ?? options.refillPerSecond / 10;
    this.recovery = options.recoveryPerSecond ?? options.refillPerSecond / 40;
    const burst = Math.max(1, options.capacity - (options.reserve ?? 2));
    this.tolerance = (burst - 1) * (1000 / this.fullRate);
    this.rate = this.fullRate;
  }

  /** True once the store failed and the limiter runs on a local bucket. */
  public get isLocal(): boolean {
    return this.local !== undefined;
  }

  /** The rate this limiter hands out slots at now, tokens per second. */
  public currentRate(now = this.options.clock.now()): number {
    if (this.throttledAt === undefined) return this.rate;
    const climbed = this.rate + (this.recovery * Math.max(0, now - this.throttledAt)) / 1000;
    return Math.min(this.fullRate, Math.max(this.minRate, climbed));
  }

  public async take(): Promise<void> {
    if (this.local) return this.local.take();
    const { clock } = this.options;
    let slot: number | undefined;
    try {
      for (let attempt = 0; slot === undefined; attempt++) {
        const now = clock.now();
        const interval = 1000 / this.currentRate(now);
        const busy = await this.call(() => this.options.store.advance(interval, now, now + HORIZON_MS));
        if (busy) {
          this.observe(busy);
          // The slot the write just reserved: where `tat` stood, less the burst allowance.
          slot = busy.tat - interval - this.tolerance;
          continue;
        }
        const idle = await this.call(() => this.options.store.restart(interval, now, now + HORIZON_MS));
        if (idle) {
          this.observe(idle);
          slot = now;
        } else if (attempt > 50) {
          // Both conditions failing 50 times in a row means something else is wrong with the item.
          throw new Error('the limiter item kept changing under every conditional write');
        }
      }
    } catch (err) {
      return this.goLocal(err).take();
    }
    const wait = slot - clock.now();
    if (wait > 0) await clock.sleep(wait);
  }

  public async onThrottled(): Promise<void> {
    if (this.local) return this.local.onThrottled();
    const { clock, store } = this.options;
    const now = clock.now();
    const slower = Math.max(this.minRate, this.currentRate(now) / 2);
    try {
      // Once a second at most, whoever sees it first: many callers throttled at once are one event.
      if (await this.call(() => store.slowDown(slower, now, now - 1000))) {
        this.rate = slower;
        this.throttledAt = now;
        // EC2 says its bucket is empty: no burst left for anyone until it refills.
        await this.call(() => store.pushBack(now + this.tolerance + 1000 / slower));
      }
    } catch (err) {
      this.goLocal(err).onThrottled();
    }
  }

  public onSuccess(): void {
    this.local?.onSuccess();
  }

  private observe(record: ThrottleRecord): void {
    if (typeof record.rate === 'number' && typeof record.throttledAt === 'number'
      && Number.isFinite(record.rate) && Number.isFinite(record.throttledAt) && record.rate > 0) {
      this.rate = record.rate;
      this.throttledAt = record.throttledAt;
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const retriable = isThrottling(err) || isTransient(err) || errorCode(err) === 'ProvisionedThroughputExceededException';
        if (attempt >= STORE_ATTEMPTS || !retriable) throw err;
        await this.options.clock.sleep(Math.random() * 50 * 2 ** attempt);
      }
    }
  }

  private goLocal(err: unknown): AdaptiveTokenBucket {
    if (!this.local) {
      (this.options.log ?? console.log)(JSON.stringify({
        level: 'WARN',
        message: 'the shared ModifyInstanceMetadataOptions limiter is unavailable; this invocation paces itself alone',
        error: `${errorCode(err)}: ${errorMessage(err)}`,
      }));
      const local: TokenBucketOptions = {
        capacity: this.options.capacity, refillPerSecond: this.fullRate, clock: this.options.clock,
        // Others may be spending from the bucket too: no burst, EC2's throttling says the rest.
        resumeFrom: { tokens: 0, at: this.options.clock.now(), ratePerSecond: this.currentRate() },
      };
      this.local = new AdaptiveTokenBucket(local);
    }
    return this.local;
  }
}
