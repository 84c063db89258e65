/*
 * The heartbeat handler in-process on one core (Node runs it on one thread), with the
 * DynamoDB and EC2 clients mocked by aws-sdk-client-mock: what the handler itself costs per
 * heartbeat (parse, validate, identity, instructions, metrics), not the network or AWS.
 * Side by side in the same run: the cheapest path (a rejected body) and the full path.
 *
 * Then the registry's DynamoDB cost per 10,000 agents per day, computed from the writes the
 * handler actually issues (item size by DynamoDB's sizing rules) and the sweep's and the
 * coverage report's scans, at the on-demand prices stated below as assumptions.
 */
import { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient, UpdateCommand, UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, resetForTests } from '../lib/backend/handler/heartbeat';
import { clock } from '../lib/backend/handler/shared/clock';
import { metricSink } from '../lib/backend/handler/shared/emf';
import { applyEnv, backendEnv, heartbeatEvent, NOW, validBody } from '../test/backend/fixtures';

/** us-east-1 on-demand prices (USD) assumed for the cost figures. */
const PRICES = {
  perMillionWriteUnits: 0.625,
  perMillionReadUnits: 0.125,
  storagePerGbMonth: 0.25,
  pitrPerGbMonth: 0.20,
  apiGatewayRestPerMillion: 3.5,
  lambdaPerMillionRequests: 0.2,
};
const AGENTS = 10_000;
const INTERVAL_SECONDS = 600;

const instanceId = (n: number) => `i-${n.toString(16).padStart(17, '0')}`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** DynamoDB's item size: attribute names plus values (strings in UTF-8 bytes, numbers ~1 byte per 2 digits + 1, maps 3 bytes + 1 per element). */
function attributeSize(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value);
  if (typeof value === 'number') return Math.ceil(String(Math.abs(value)).replace(/[.-]/g, '').replace(/^0+/, '').length / 2) + 1;
  if (typeof value === 'boolean' || value === null) return 1;
  if (typeof value === 'object') {
    return 3 + Object.entries(value as Record<string, unknown>).reduce((n, [k, v]) => n + Buffer.byteLength(k) + attributeSize(v) + 1, 0);
  }
  return 0;
}

/** The item an UpdateItem of the handler leaves behind (every SET attribute, firstSeen included). */
function itemOf(input: UpdateCommandInput): Record<string, unknown> {
  const values = input.ExpressionAttributeValues ?? {};
  const names = input.ExpressionAttributeNames ?? {};
  const item: Record<string, unknown> = { ...input.Key };
  for (const assignment of input.UpdateExpression!.replace(/^SET /, '').split(/,\s*(?![^(]*\))/)) {
    const [lhs, rhs] = assignment.split(/\s*=\s*/);
    const name = names[lhs] ?? lhs;
    const placeholder = /(:[a-z]+)\)?$/.exec(rhs)![1];
    item[name] = values[placeholder];
  }
  return item;
}

const itemSize = (item: Record<string, unknown>) =>
  Object.entries(item).reduce((n, [k, v]) => n + Buffer.byteLength(k) + attributeSize(v), 0);

async function timeHeartbeats(count: number, makeEvent: (i: number) => ReturnType<typeof heartbeatEvent>, expectStatus: number) {
  const latencies = new Float64Array(count);
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const res = await handler(makeEvent(i));
    latencies[i] = Number(process.hrtime.bigint() - t0) / 1e3;
    if (res.statusCode !== expectStatus) throw new Error(`heartbeat ${i}: ${res.statusCode} ${res.body}`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  return { perSecond: count / seconds, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

export async function run(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  applyEnv(backendEnv({ HEARTBEAT_INTERVAL_SECONDS: String(INTERVAL_SECONDS) }));
  resetForTests();
  clock.now = () => NOW;
  let metricLines = 0;
  metricSink.write = () => { metricLines++; };
  const warn = console.warn;
  console.warn = () => undefined;

  const ddb = mockClient(DynamoDBDocumentClient);
  const ec2 = mockClient(EC2Client);
  const writes: UpdateCommandInput[] = [];
  ddb.on(UpdateCommand).callsFake((input: UpdateCommandInput) => { if (writes.length < 100) writes.push(input); return {}; });
  // A fleet of 10,000 instances, every other one tagged Environment=prod: the tag snapshot has 5,000 entries.
  ec2.on(DescribeTagsCommand).resolves({
    Tags: Array.from({ length: AGENTS / 2 }, (_, n) => ({ ResourceId: instanceId(n * 2), ResourceType: 'instance' as const, Key: 'Environment', Value: 'prod' })),
  });

  const bodies = Array.from({ length: AGENTS }, (_, n) => {
    const body = validBody();
    body.identityDocument.instanceId = instanceId(n);
    return JSON.stringify(body);
  });
  const valid = (i: number) => heartbeatEvent(bodies[i % AGENTS], { instanceId: instanceId(i % AGENTS) }, { raw: true });
  const rejected = (i: number) => heartbeatEvent(bodies[i % AGENTS].replace('"v2"', '"v3"'), { instanceId: instanceId(i % AGENTS) }, { raw: true });

  await timeHeartbeats(5_000, valid, 200); // warm up the JIT and the tag snapshot
  await timeHeartbeats(5_000, rejected, 400);
  const rounds = 3;
  const full: Array<Awaited<ReturnType<typeof timeHeartbeats>>> = [];
  const reject: Array<Awaited<ReturnType<typeof timeHeartbeats>>> = [];
  for (let r = 0; r < rounds; r++) {
    // Interleaved so that machine noise hits both sides alike.
    reject.push(await timeHeartbeats(20_000, rejected, 400));
    full.push(await timeHeartbeats(20_000, valid, 200));
  }
  console.warn = warn;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const row = (name: string, xs: typeof full) =>
    `| ${name} | ${median(xs.map((x) => x.perSecond)).toFixed(0)} | ${median(xs.map((x) => x.p50)).toFixed(0)} | ${median(xs.map((x) => x.p99)).toFixed(0)} |`;
  console.log('| path (in-process, one core, mocked AWS clients) | heartbeats/s | p50 (µs) | p99 (µs) |');
  console.log('| --- | --- | --- | --- |');
  console.log(row('rejected: schema violation (400)', reject));
  console.log(row('accepted: register + instructions (200)', full));
  console.log(`\nfull path / rejected path time per heartbeat: ${(median(reject.map((x) => x.perSecond)) / median(full.map((x) => x.perSecond))).toFixed(2)}x; `
    + `EMF lines written: ${metricLines}; DescribeTags calls: ${ec2.commandCalls(DescribeTagsCommand).length}`);

  // Registry cost per 10,000 agents per day.
  const item = itemOf(writes[0]);
  const bytes = itemSize(item);
  const writeUnits = Math.ceil(bytes / 1024);
  const heartbeatsPerDay = AGENTS * (86400 / INTERVAL_SECONDS);
  const sweepsPerDay = 86400 / Math.max(300, INTERVAL_SECONDS);
  const reportsPerDay = 24;
  const tableBytes = AGENTS * (bytes + 100); // + DynamoDB's 100 bytes of per-item overhead for storage
  const scanReadUnits = Math.ceil(tableBytes / 4096) * 0.5; // eventually consistent scan
  const writeUnitsPerDay = heartbeatsPerDay * writeUnits;
  const readUnitsPerDay = (sweepsPerDay + reportsPerDay) * scanReadUnits;
  const gb = tableBytes / 1024 ** 3;
  const cost = {
    writes: (writeUnitsPerDay / 1e6) * PRICES.perMillionWriteUnits,
    reads: (readUnitsPerDay / 1e6) * PRICES.perMillionReadUnits,
    storage: (gb * (PRICES.storagePerGbMonth + PRICES.pitrPerGbMonth)) / 30,
  };
  const total = cost.writes + cost.reads + cost.storage;
  console.log(`\nRegistry item written per heartbeat: ${bytes} bytes -> ${writeUnits} write unit(s) per UpdateItem.`);
  console.log('\n| registry, 10,000 agents, heartbeat every 10 min | per day | units | USD/day |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| heartbeat UpdateItem | ${heartbeatsPerDay.toLocaleString('en-US')} | ${writeUnitsPerDay.toLocaleString('en-US')} WRU | ${cost.writes.toFixed(3)} |`);
  console.log(`| sweep + coverage scans (${sweepsPerDay} + ${reportsPerDay}) | ${sweepsPerDay + reportsPerDay} | ${readUnitsPerDay.toLocaleString('en-US')} RRU | ${cost.reads.toFixed(4)} |`);
  console.log(`| storage + PITR (${(tableBytes / 1e6).toFixed(1)} MB) | — | — | ${cost.storage.toFixed(5)} |`);
  console.log(`| **registry total** | | | **${total.toFixed(2)}** (≈ ${(total * 30).toFixed(0)}/month) |`);
  const apiPerDay = (heartbeatsPerDay / 1e6) * PRICES.apiGatewayRestPerMillion;
  const lambdaPerDay = (heartbeatsPerDay / 1e6) * PRICES.lambdaPerMillionRequests;
  console.log(`\nFor scale, the same heartbeats cost ${apiPerDay.toFixed(2)} USD/day in API Gateway REST requests and `
    + `${lambdaPerDay.toFixed(2)} USD/day in Lambda requests (before duration): registry writes / API requests = ${(cost.writes / apiPerDay).toFixed(2)}.`);
  ddb.restore();
  ec2.restore();
}
