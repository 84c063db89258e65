/*
 * Living with EC2's API throttling: a clock that can be simulated, a client-side token
 * bucket that mirrors EC2's and adapts when others spend from it too, and retries for
 * throttled and transient errors.
 */

/** Time as the handlers see it; the benchmark swaps in a simulated one. */
export interface Clock {
  /** Milliseconds since some fixed origin. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** The error code of an AWS SDK (or simulated) error: `RequestLimitExceeded`, `UnauthorizedOperation`, ... */
export function errorCode(err: unknown): string {
  const e = err as { name?: unknown; Code?: unknown; code?: unknown } | undefined;
  for (const candidate of [e?.Code, e?.code, e?.name]) {
    if (typeof candidate === 'string' && candidate && candidate !== 'Error') return candidate;
  }
  return 'UnknownError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const THROTTLING = new Set([
  'RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'ThrottledException', 'TooManyRequestsException',
  'RequestThrottled', 'RequestThrottledException', 'SlowDown', 'EC2ThrottledException', 'LimitExceededException',
]);
const TRANSIENT = new Set([
  'InternalError', 'InternalFailure', 'InternalServerError', 'ServiceUnavailable', 'Unavailable', 'RequestTimeout',
  'RequestTimeoutException', 'TimeoutError', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED', 'EAI_AGAIN',
]);
const ACCESS_DENIED = new Set(['UnauthorizedOperation', 'AccessDenied', 'AccessDeniedException', 'AuthFailure']);

export const isThrottling = (err: unknown): boolean => THROTTLING.has(errorCode(err));
export const isTransient = (err: unknown): boolean => TRANSIENT.has(errorCode(err))
  || ((err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode ?? 0) >= 500;
export const isAccessDenied = (err: unknown): boolean => ACCESS_DENIED.has(errorCode(err));

/**
 * One line a human can act on: which call, which error, and for a denial, where to look.
 */
export function describeFailure(action: string, err: unknown): string {
  const code = errorCode(err);
  const hint = isAccessDenied(err)
    ? ` (the handler's role is not allowed ${action}, or a service control policy or permissions boundary denies it)`
    : '';
  return `${action} failed with ${code}: ${errorMessage(err)}${hint}`;
}

/** Where a rate limiter stands, carried from one Lambda invocation to the next. */
export interface LimiterState {
  readonly tokens: number;
  readonly at: number;
  readonly ratePerSecond: number;
}

export interface TokenBucketOptions {
  /** Tokens the bucket holds when full (EC2's burst). */
  readonly capacity: number;
  /** Tokens added per second (EC2's refill rate): the most this limiter ever sends. */
  readonly refillPerSecond: number;
  readonly clock: Clock;
  /** Where a previous invocation left off; a bucket refilled since then is full again. */
  readonly resumeFrom?: LimiterState;
  /** The rate never drops below this when throttled. @default refillPerSecond / 10 */
  readonly minRatePerSecond?: number;
  /**
   * Tokens kept in reserve. EC2's bucket starts refilling when a request reaches it, a
   * request's latency after this mirror does; the reserve absorbs that head start.
   * @default 1
   */
  readonly reserve?: number;
}

/**
 * A client-side mirror of EC2's token bucket.
 *
 * It starts as full as EC2's (or where the last invocation left it, refilled for the time
 * since), sends at most `refillPerSecond` once the burst is spent, so the sweep runs at
 * EC2's rate without being throttled. When EC2 throttles anyway (someone else spends from
 * the same bucket), the mirror empties and its rate halves, then climbs back additively.
 */
export class AdaptiveTokenBucket {
  private tokens: number;
  private last: number;
  private rate: number;
  private lastDecrease = Number.NEGATIVE_INFINITY;
  private readonly minRate: number;
  private readonly capacity: number;

  constructor(private readonly options: TokenBucketOptions) {
    const now = options.clock.now();
    this.minRate = options.minRatePerSecond ?? options.refillPerSecond / 10;
    this.capacity = Math.max(1, options.capacity - (options.reserve ?? 1));
    const resume = options.resumeFrom;
    if (resume && Number.isFinite(resume.tokens) && Number.isFinite(resume.at) && resume.at <= now) {
      this.rate = clamp(resume.ratePerSecond, this.minRate, options.refillPerSecond);
      this.tokens = Math.min(this.capacity, resume.tokens + ((now - resume.at) / 1000) * options.refillPerSecond);
    } else {
      this.rate = options.refillPerSecond;
      this.tokens = this.capacity;
    }
    this.last = now;
  }

  /** Waits for a token and spends it. Concurrent callers are served in order of arrival. */
  public async take(): Promise<void> {
    this.refill();
    this.tokens -= 1;
    if (this.tokens >= 0) return;
    await this.options.clock.sleep((-this.tokens / this.rate) * 1000);
  }

  /** EC2 said the bucket is empty: believe it, and slow down (at most once a second). */
  public onThrottled(): void {
    this.refill();
    this.tokens = Math.min(this.tokens, 0);
    const now = this.options.clock.now();
    if (now - this.lastDecrease >= 1000) {
      this.rate = Math.max(this.minRate, this.rate / 2);
      this.lastDecrease = now;
    }
  }

  /** A call went through: recover towards the full refill rate. */
  public onSuccess(): void {
    this.rate = Math.min(this.options.refillPerSecond, this.rate + this.options.refillPerSecond / 50);
  }

  public get ratePerSecond(): number {
    return this.rate;
  }

  public snapshot(): LimiterState {
    this.refill();
    return { tokens: Math.max(this.tokens, 0), at: this.last, ratePerSecond: this.rate };
  }

  private refill(): void {
    const now = this.options.clock.now();
    // Only refill a bucket that has not been over-reserved: reservations wait in take().
    const refilled = this.tokens + ((now - this.last) / 1000) * this.rate;
    this.tokens = Math.min(this.capacity, refilled);
    this.last = now;
  }
}

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : max;
}

export interface RetryOptions {
  readonly clock: Clock;
  /** Attempts in all, the first included. @default 8 */
  readonly attempts?: number;
  /** First backoff, doubled per attempt, with full jitter. @default 250 */
  readonly baseDelayMs?: number;
  /** @default 20000 */
  readonly maxDelayMs?: number;
  readonly random?: () => number;
}

/**
 * Calls `fn` until it succeeds, retrying throttling and transient errors with exponential
 * backoff and full jitter. Any other error (validation, access denied) is thrown at once.
 */
export async function withRetries<T>(fn: () => Promise<T>, options: RetryOptions): Promise<T> {
  const attempts = options.attempts ?? 8;
  const base = options.baseDelayMs ?? 250;
  const max = options.maxDelayMs ?? 20_000;
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !(isThrottling(err) || isTransient(err))) throw err;
      await options.clock.sleep(random() * Math.min(max, base * 2 ** (attempt - 1)));
    }
  }
}
