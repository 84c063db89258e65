import { ServiceBucket, ThrottleStoreModel, VirtualClock } from '../../../bench/imds-sim';
import { SharedTokenBucket, ThrottleStore } from '../../../lib/imds/handler/shared/shared-limiter';
import { awsError } from './fleet';

const BUCKET = { capacity: 100, refillPerSecond: 5 };

/** Runs `fn` on a virtual clock starting at a wall-clock-like time. */
async function onClock<T>(fn: (clock: VirtualClock, store: ThrottleStoreModel) => Promise<T>): Promise<T> {
  const clock = new VirtualClock();
  const store = new ThrottleStoreModel(clock);
  return clock.run(fn(clock, store));
}

describe('SharedTokenBucket (GCRA on one shared item)', () => {
  test('hands out the burst at once, then one slot per refill interval', async () => {
    const times = await onClock(async (clock, store) => {
      const out: number[] = [];
      // A new limiter object per take, as if each were another Lambda invocation.
      for (let i = 0; i < 120; i++) {
        await new SharedTokenBucket({ ...BUCKET, clock, store }).take();
        out.push(clock.now());
      }
      return out;
    });
    // capacity 100 less the reserve of 2: 98 slots free at once (each only costs the store's round trip).
    expect(times[97]).toBeLessThan(98 * 10);
    // Never more than EC2's bucket (100, refilled at 5 per second) allows, in any window: the
    // reserve of 2 covers that a take returns a round trip after its slot was reserved...
    for (let i = 0; i < times.length; i++) {
      for (let j = i; j < times.length; j++) expect(j - i + 1).toBeLessThanOrEqual(100 + (times[j] - times[i]) / 200);
    }
    // ... and not much less: 120 takes in about (120 - 98) / 5 seconds.
    expect(times[119]).toBeGreaterThan(4_000);
    expect(times[119]).toBeLessThan(4_700);
  });

  test('many concurrent limiters (sweeps, launches, other constructs) are never throttled by EC2 together', async () => {
    const refused = await onClock(async (clock, store) => {
      const ec2 = new ServiceBucket(BUCKET.capacity, BUCKET.refillPerSecond, clock);
      let refusedCalls = 0;
      const worker = async (calls: number) => {
        for (let i = 0; i < calls; i++) {
          await new SharedTokenBucket({ ...BUCKET, clock, store }).take();
          await clock.sleep(30); // the call travels to EC2
          if (!ec2.tryTake()) refusedCalls++;
        }
      };
      await Promise.all(Array.from({ length: 21 }, () => worker(40)));
      return refusedCalls;
    });
    expect(refused).toBe(0);
  });

  test('a throttle halves the rate for every limiter sharing the item, once a second, then it climbs back', async () => {
    await onClock(async (clock, store) => {
      const a = new SharedTokenBucket({ ...BUCKET, clock, store });
      await a.take();
      await a.onThrottled();
      await a.onThrottled(); // the same event seen twice: halved once
      expect(a.currentRate()).toBeCloseTo(2.5);

      const b = new SharedTokenBucket({ ...BUCKET, clock, store });
      expect(b.currentRate()).toBe(5);
      await b.take(); // learns the shared rate from the item it writes
      expect(b.currentRate()).toBeCloseTo(2.5, 1);

      // EC2 said its bucket is empty: the burst is gone, the next slot is one (slower) interval away.
      const before = clock.now();
      await new SharedTokenBucket({ ...BUCKET, clock, store }).take();
      expect(clock.now() - before).toBeGreaterThan(150);

      await clock.sleep(20_000);
      expect(b.currentRate(clock.now())).toBe(5);
      await clock.sleep(1_000);
      await b.onThrottled();
      expect(b.currentRate()).toBeCloseTo(2.5);
    });
  });

  test('a slot far in the future (a skewed clock, an edited item) is not believed', async () => {
    await onClock(async (clock, store) => {
      await store.pushBack(clock.now() + 24 * 3600_000);
      const start = clock.now();
      await new SharedTokenBucket({ ...BUCKET, clock, store }).take();
      expect(clock.now() - start).toBeLessThan(100);
    });
  });

  test('when the store fails, it says so once and paces itself with a local bucket', async () => {
    const logs: string[] = [];
    const denied = () => Promise.reject(awsError('AccessDeniedException', 'not authorized to perform dynamodb:UpdateItem'));
    const store: ThrottleStore = { advance: denied, restart: denied, pushBack: denied, slowDown: denied };
    await onClock(async (clock) => {
      const limiter = new SharedTokenBucket({ ...BUCKET, clock, store, log: (l) => logs.push(l) });
      for (let i = 0; i < 5; i++) await limiter.take();
      await limiter.onThrottled();
      limiter.onSuccess();
      expect(limiter.isLocal).toBe(true);
    });
    expect(logs).toHaveLength(1);
    expect(JSON.parse(logs[0])).toMatchObject({ level: 'WARN', error: expect.stringContaining('AccessDeniedException') });
  });

  test('a throttled store is retried before the limiter gives up on it', async () => {
    await onClock(async (clock, model) => {
      let failures = 2;
      const store: ThrottleStore = {
        advance: (...args) => (failures-- > 0 ? Promise.reject(awsError('ProvisionedThroughputExceededException')) : model.advance(...args)),
        restart: (...args) => model.restart(...args),
        pushBack: (...args) => model.pushBack(...args),
        slowDown: (...args) => model.slowDown(...args),
      };
      const limiter = new SharedTokenBucket({ ...BUCKET, clock, store });
      await limiter.take();
      expect(limiter.isLocal).toBe(false);
    });
  });
});
