/*
 * Throws a few thousand malformed heartbeats at the handler, from a seeded generator so a
 * failure reproduces. Each mutation is malformed by construction (a required field removed,
 * an unknown field added, a wrong type, a string breaking its pattern or enum, truncated or
 * random JSON, random bytes, deep nesting, an oversized body), while the caller's identity
 * is valid: anything but a 400 with a message, or any write to the registry, fails the test.
 */
import { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, resetForTests } from '../../lib/backend/handler/heartbeat';
import { clock } from '../../lib/backend/handler/shared/clock';
import { metricSink } from '../../lib/backend/handler/shared/emf';
import { applyEnv, backendEnv, heartbeatEvent, NOW, validBody } from './fixtures';
import { mulberry32 } from '../helpers/prng';

const CASES = 4000;
const SEED = 20260301;

const random = mulberry32(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

const ODD_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 1e300, [], {}, [1, 2], { a: 1 }, '', ' ', '\u0000', 'x'.repeat(300), '😀', '<script>', "'; DROP TABLE", '${jndi:ldap://x}'];
const REQUIRED_PATHS = [['agentVersion'], ['imdsVersion'], ['identityDocument'], ['sensors'],
  ...['accountId', 'region', 'availabilityZone', 'instanceId', 'instanceType', 'imageId'].map((k) => ['identityDocument', k])];
/** Fields whose value any appended character or wrong value breaks (pattern or enum with an end anchor). */
const STRICT_STRING_PATHS = [['agentVersion'], ['imdsVersion'], ...['region', 'availabilityZone', 'instanceType', 'imageId', 'architecture'].map((k) => ['identityDocument', k]),
  ['sensors', 'PACKAGE_INVENTORY', 'state'], ['sensors', 'PACKAGE_INVENTORY', 'runId']];
const OBJECT_PATHS = [[], ['identityDocument'], ['sensors'], ['sensors', 'PACKAGE_INVENTORY']];
const UNKNOWN_KEYS = ['tags', 'debug', 'command', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'AgentVersion', 'agentversion', ' agentVersion', 'agentVersion\u0000', 'x'.repeat(500), 'KEYLOGGER', ''];

function at(obj: any, path: string[]): any {
  return path.reduce((o, k) => o[k], obj);
}

function setAt(obj: any, path: string[], value: unknown): void {
  const parent = at(obj, path.slice(0, -1));
  Object.defineProperty(parent, path[path.length - 1], { value, enumerable: true, configurable: true, writable: true });
}

/** One malformed body as the raw string the gateway would pass on. */
function malformed(): { kind: string; raw: string } {
  const body = validBody();
  switch (int(9)) {
    case 0: { // a required field removed
      const path = pick(REQUIRED_PATHS);
      delete at(body, path.slice(0, -1))[path[path.length - 1]];
      return { kind: 'missing field', raw: JSON.stringify(body) };
    }
    case 1: { // an unknown field added to some object
      const target = at(body, pick(OBJECT_PATHS));
      Object.defineProperty(target, pick(UNKNOWN_KEYS) + (random() < 0.3 ? String(int(1000)) : ''), { value: pick(ODD_VALUES), enumerable: true });
      return { kind: 'unknown field', raw: JSON.stringify(body) };
    }
    case 2: { // a wrong type where a string or object belongs
      const path = pick([...REQUIRED_PATHS, ...STRICT_STRING_PATHS]);
      const current = at(body, path);
      const wrong = ODD_VALUES.filter((v) => typeof v !== typeof current || (typeof v === 'object') !== (typeof current === 'object'));
      setAt(body, path, pick(wrong.length ? wrong : [42]));
      if (typeof current === 'string' && typeof at(body, path) === 'string') setAt(body, path, 42);
      return { kind: 'wrong type', raw: JSON.stringify(body) };
    }
    case 3: { // a string that breaks its pattern or enum
      const path = pick(STRICT_STRING_PATHS);
      const value = String(at(body, path));
      // Upper case breaks every strict field but the run id, whose pattern allows it.
      const upper = path[path.length - 1] === 'runId' || value.toUpperCase() === value ? `${value}x!` : value.toUpperCase();
      const broken = pick([`${value}!`, `${value} `, ` ${value}`, upper, `${value}\n`, '', value.repeat(20) + '#']);
      setAt(body, path, broken);
      return { kind: 'bad string', raw: JSON.stringify(body) };
    }
    case 4: { // truncated JSON
      const raw = JSON.stringify(body);
      return { kind: 'truncated JSON', raw: raw.slice(0, int(raw.length - 1)) };
    }
    case 5: { // random bytes
      const bytes = Buffer.alloc(1 + int(600));
      for (let i = 0; i < bytes.length; i++) bytes[i] = int(256);
      return { kind: 'random bytes', raw: bytes.toString('latin1') };
    }
    case 6: { // JSON that is not an object, or an object full of junk
      const value = pick<unknown>([null, 1, 'heartbeat', [validBody()], true, ODD_VALUES, { [pick(UNKNOWN_KEYS)]: 1 }]);
      return { kind: 'not a heartbeat', raw: JSON.stringify(value) };
    }
    case 7: { // deep nesting
      const depth = 100 + int(20000);
      const open = pick(['[', '{"a":']);
      return { kind: 'deep nesting', raw: open.repeat(depth) + '1' + (open === '[' ? ']' : '}').repeat(depth) };
    }
    default: { // oversized, with a valid heartbeat inside
      return { kind: 'oversized', raw: JSON.stringify(body) + ' '.repeat(16 * 1024 + int(100_000)) };
    }
  }
}

const ddb = mockClient(DynamoDBDocumentClient);
const ec2 = mockClient(EC2Client);

test(`${CASES} malformed heartbeats: every one is a 400 with a reason, none reaches the registry`, async () => {
  // GIVEN
  applyEnv(backendEnv());
  resetForTests();
  clock.now = () => NOW;
  metricSink.write = () => undefined;
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  ddb.on(UpdateCommand).resolves({});
  ec2.on(DescribeTagsCommand).resolves({ Tags: [] });
  // The generator's control: the valid body itself passes.
  expect((await handler(heartbeatEvent(validBody()))).statusCode).toBe(200);
  ddb.resetHistory();

  // WHEN
  const outcomes = new Map<string, number>();
  const failures: string[] = [];
  for (let i = 0; i < CASES; i++) {
    const { kind, raw } = malformed();
    const base64 = random() < 0.1;
    const res = await handler(heartbeatEvent(raw, {}, { raw: true, base64 }));
    outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
    const message = (() => { try { return JSON.parse(res.body).message; } catch { return undefined; } })();
    if (res.statusCode !== 400 || typeof message !== 'string' || message.length === 0) {
      failures.push(`case ${i} (${kind}): ${res.statusCode} ${res.body.slice(0, 200)} for ${JSON.stringify(raw.slice(0, 200))}`);
    }
  }

  // THEN
  expect(failures).toEqual([]);
  expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
  // Every kind of malformation was exercised a fair number of times.
  expect([...outcomes.values()].every((n) => n > CASES / 20)).toBe(true);
  expect(outcomes.size).toBe(9);
});
