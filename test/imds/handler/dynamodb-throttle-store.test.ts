/*
 * The DynamoDB store of the shared limiter against dynalite (DynamoDB on LevelDB) on
 * loopback: the conditional writes as DynamoDB evaluates them, under concurrency.
 */
import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDbThrottleStore, LIMITER_KEY_ATTRIBUTE, MODIFY_METADATA_OPTIONS_ITEM } from '../../../lib/imds/handler/shared/dynamodb-throttle-store';
import { SharedTokenBucket } from '../../../lib/imds/handler/shared/shared-limiter';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => import('node:net').Server;

const server = dynalite({ createTableMs: 0 });
let client: DynamoDBClient;
let tables = 0;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', maxAttempts: 1,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
});

afterAll(async () => {
  client?.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A fresh table shaped like the one the construct creates. */
async function table(): Promise<string> {
  const name = `imds-limiter-test-${++tables}`;
  await client.send(new CreateTableCommand({
    TableName: name,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: LIMITER_KEY_ATTRIBUTE, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: LIMITER_KEY_ATTRIBUTE, KeyType: 'HASH' }],
  }));
  return name;
}

/** A clock standing still at `now`, recording what each caller was told to wait. */
function stoppedClock(now: number) {
  const waits: number[] = [];
  return { waits, now: () => now, sleep: async (ms: number) => { waits.push(ms); } };
}

describe('DynamoDbThrottleStore on dynalite', () => {
  test('concurrent limiters in separate invocations each get a slot of their own, in one interval steps', async () => {
    const tableName = await table();
    const store = new DynamoDbThrottleStore({ tableName, client });
    const clock = stoppedClock(1_700_000_000_000);
    // capacity 10 less a reserve of 2: a burst of 8, then one slot every 200 ms.
    const limiters = Array.from({ length: 4 }, () => new SharedTokenBucket({ capacity: 10, refillPerSecond: 5, clock, store }));
    await Promise.all(Array.from({ length: 40 }, (_, n) => limiters[n % 4].take()));

    // Every take that waited was told a different slot: 200, 400, ... 6400 ms.
    expect(clock.waits.map((w) => Math.round(w)).sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, k) => (k + 1) * 200));
    const item = await client.send(new GetItemCommand({ TableName: tableName, Key: { [LIMITER_KEY_ATTRIBUTE]: { S: MODIFY_METADATA_OPTIONS_ITEM } } }));
    expect(Number(item.Item!.tat.N)).toBe(1_700_000_000_000 + 40 * 200);
  });

  test('advance only while busy, restart only when idle or implausible', async () => {
    const store = new DynamoDbThrottleStore({ tableName: await table(), client });
    const now = 1_700_000_000_000;
    expect(await store.advance(200, now, now + 60_000)).toBeUndefined(); // no item yet
    expect(await store.restart(200, now, now + 60_000)).toEqual({ tat: now + 200, rate: undefined, throttledAt: undefined });
    expect(await store.restart(200, now, now + 60_000)).toBeUndefined(); // busy now
    expect(await store.advance(200, now, now + 60_000)).toMatchObject({ tat: now + 400 });
    expect(await store.advance(200, now + 1_000, now + 61_000)).toBeUndefined(); // idle again a second later
    await store.pushBack(now + 3_600_000);
    expect(await store.advance(200, now, now + 60_000)).toBeUndefined(); // beyond the horizon
    expect(await store.restart(200, now, now + 60_000)).toMatchObject({ tat: now + 200 });
  });

  test('pushBack never moves the arrival time back; slowDown is recorded once per window', async () => {
    const store = new DynamoDbThrottleStore({ tableName: await table(), client });
    const now = 1_700_000_000_000;
    await store.restart(200, now, now + 60_000);
    await store.pushBack(now + 5_000);
    await store.pushBack(now + 1_000);
    expect(await store.advance(200, now, now + 60_000)).toMatchObject({ tat: now + 5_200 });

    expect(await store.slowDown(2.5, now, now - 1_000)).toBe(true);
    expect(await store.slowDown(1.25, now + 500, now - 500)).toBe(false);
    expect(await store.slowDown(1.25, now + 1_500, now + 500)).toBe(true);
    expect(await store.advance(200, now, now + 60_000)).toMatchObject({ rate: 1.25, throttledAt: now + 1_500 });
  });

  test('a missing table sends the limiter to a local bucket, with one warning', async () => {
    const logs: string[] = [];
    const clock = stoppedClock(1_700_000_000_000);
    const limiter = new SharedTokenBucket({
      capacity: 100, refillPerSecond: 5, clock, store: new DynamoDbThrottleStore({ tableName: 'imds-limiter-not-there', client }), log: (l) => logs.push(l),
    });
    await limiter.take();
    await limiter.take();
    expect(limiter.isLocal).toBe(true);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain('ResourceNotFoundException');
  });
});
