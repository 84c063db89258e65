/*
 * The backend's real bundled handlers (assets/backend/<name>/index.js, as Lambda runs
 * them) against real engines on loopback: dynalite for DynamoDB, s3rver for S3. EC2, SSM
 * and EventBridge have no local engine: a loopback stub answers them and records
 * PutEvents. Everything starts on port 0 and stops at the end.
 */
import * as fs from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import Ajv from 'ajv';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { AwsStub } from './aws-stub';
import { COVERAGE_CHANGE_DETAIL_SCHEMA } from '../../lib/backend/coverage-event';
import { ACCOUNT, backendEnv, heartbeatEvent, REGION, validBody } from '../backend/fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: { createTableMs?: number; deleteTableMs?: number; updateTableMs?: number }) => Server;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (options: Record<string, unknown>) => { run(): Promise<AddressInfo>; close(): Promise<void> };

const ASSETS = path.join(__dirname, '..', '..', 'assets', 'backend');
/** s3rver accepts this one key pair (its default). */
const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const A = 'i-0aaaaaaaaaaaaaaa1';
const B = 'i-0bbbbbbbbbbbbbbb2';
const C = 'i-0ccccccccccccccc3';

interface Handlers {
  heartbeat: (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;
  sweep: () => Promise<any>;
  coverage: () => Promise<any>;
}

const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
const stub = new AwsStub();
const savedEnv = { ...process.env };
let s3rver: InstanceType<typeof S3rver>;
let s3Dir: string;
let ddb: DynamoDBDocumentClient;
let s3: S3Client;
let handlers: Handlers;
// Tags are re-read after a second, so a tag change shows at the next heartbeat.
const env = backendEnv({ TAG_CACHE_SECONDS: '1' });

beforeAll(async () => {
  for (const name of ['heartbeat', 'registry-sweep', 'coverage-report']) {
    if (!fs.existsSync(path.join(ASSETS, name, 'index.js'))) throw new Error(`assets/backend/${name}/index.js is missing: run 'npm run bundle' first`);
  }
  await new Promise<void>((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
  s3Dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-fleet-engines-'));
  s3rver = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: s3Dir });
  const s3Address = await s3rver.run();
  const stubUrl = await stub.start();

  Object.assign(process.env, env, CREDENTIALS, {
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Address.port}`,
    AWS_ENDPOINT_URL_EC2: stubUrl,
    AWS_ENDPOINT_URL_SSM: stubUrl,
    AWS_ENDPOINT_URL_EVENTBRIDGE: stubUrl,
    AWS_MAX_ATTEMPTS: '1',
  });
  // Clients the test itself uses to set up and inspect the engines, with the same endpoints.
  ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}));
  s3 = new S3Client({ forcePathStyle: true });
  await ddb.send(new CreateTableCommand({
    TableName: env.REGISTRY_TABLE,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  }));
  await s3.send(new CreateBucketCommand({ Bucket: env.TELEMETRY_BUCKET }));

  // The bundles create their clients when loaded, from the environment above.
  /* eslint-disable @typescript-eslint/no-require-imports */
  handlers = {
    heartbeat: require(path.join(ASSETS, 'heartbeat', 'index.js')).handler,
    sweep: require(path.join(ASSETS, 'registry-sweep', 'index.js')).handler,
    coverage: require(path.join(ASSETS, 'coverage-report', 'index.js')).handler,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  stub.instances = [A, B, C].map((instanceId) => ({ instanceId, tags: {}, ssmOnline: true }));
  jest.spyOn(process.stdout, 'write').mockImplementation(() => true); // EMF lines
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterAll(async () => {
  jest.restoreAllMocks();
  ddb?.destroy();
  s3?.destroy();
  await s3rver?.close();
  await new Promise<void>((resolve) => dynamo.close(() => resolve()));
  await stub.stop();
  if (s3Dir) fs.rmSync(s3Dir, { recursive: true, force: true });
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

const bodyFor = (instanceId: string, overrides: Record<string, unknown> = {}, document: Record<string, unknown> = {}) =>
  validBody({ identityDocument: { ...validBody().identityDocument, instanceId, ...document }, ...overrides });
const beat = async (instanceId: string, overrides: Record<string, unknown> = {}, document: Record<string, unknown> = {}) => {
  const res = await handlers.heartbeat(heartbeatEvent(bodyFor(instanceId, overrides, document), { instanceId }));
  return { status: res.statusCode, body: JSON.parse(res.body) };
};
const registry = async () => ((await ddb.send(new ScanCommand({ TableName: env.REGISTRY_TABLE }))).Items ?? [])
  .sort((x, y) => String(x.pk).localeCompare(String(y.pk)));
const readObject = async (key: string) =>
  JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: env.TELEMETRY_BUCKET, Key: key }))).Body!.transformToString());

describe('the backend on real engines (dynalite, s3rver)', () => {
  test('heartbeats from two instances: one registry item each, keyed by the caller and the backend\'s Region', async () => {
    expect((await beat(A)).status).toBe(200);
    expect((await beat(B, { agentVersion: '1.5.0' })).status).toBe(200);

    const items = await registry();
    expect(items.map((i) => i.pk)).toEqual([`${ACCOUNT}#${REGION}#${A}`, `${ACCOUNT}#${REGION}#${B}`]);
    expect(items.map((i) => [i.accountId, i.region, i.instanceId, i.status, i.agentServiceState])).toEqual([
      [ACCOUNT, REGION, A, 'ACTIVE', 'UNREPORTED'], [ACCOUNT, REGION, B, 'ACTIVE', 'UNREPORTED'],
    ]);
  });

  test.each(['ap-south-1', 'zz-fake-9', 'eu-wset-1'])('a body naming the Region %s is refused and adds no item', async (region) => {
    const res = await beat(A, {}, { region, availabilityZone: `${region}a` });
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(`identityDocument.region ${region} is not this backend's Region ${REGION}`);
    expect((await registry()).map((i) => i.pk)).toEqual([`${ACCOUNT}#${REGION}#${A}`, `${ACCOUNT}#${REGION}#${B}`]);
  });

  test('the registry sweep marks an agent that stopped calling INACTIVE, and its counts add up', async () => {
    // GIVEN A's last heartbeat 3 intervals ago (2.5 are the limit)
    await ddb.send(new UpdateCommand({
      TableName: env.REGISTRY_TABLE, Key: { pk: `${ACCOUNT}#${REGION}#${A}` },
      UpdateExpression: 'SET lastHeartbeat = lastHeartbeat - :late', ExpressionAttributeValues: { ':late': 3 * 600 },
    }));

    // WHEN
    const result = await handlers.sweep();

    // THEN
    expect(result).toMatchObject({ active: 1, inactive: 1, markedInactive: 1, removed: 0, byInstanceType: { 'm7g.large': 1 }, byAgentVersion: { '1.5.0': 1 } });
    const a = await ddb.send(new GetCommand({ TableName: env.REGISTRY_TABLE, Key: { pk: `${ACCOUNT}#${REGION}#${A}` } }));
    expect(a.Item?.status).toBe('INACTIVE');
  });

  test('coverage reports in the store; a change between two reports is an event with the published schema', async () => {
    // WHEN the first report runs (no previous one: no events)
    const first = await handlers.coverage();
    expect(first.counts).toMatchObject({ covered: 1, agentInactive: 1, agentMissing: 1, agentUnhealthy: 0 });
    expect(first.changeEvents).toBe(0);
    const latest = await readObject('reports/coverage/latest.json');
    expect(latest.instanceIds).toMatchObject({ covered: [B], agentInactive: [A], agentMissing: [C] });

    // AND B's heartbeat then says its agent's service stopped
    expect((await beat(B, { agentVersion: '1.5.0', agentService: { state: 'STOPPED', message: 'inactive (dead)' } })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 5)); // a report key of its own (millisecond timestamps)
    const second = await handlers.coverage();

    // THEN one event: B covered -> agentUnhealthy, valid against the schema
    expect(second.counts).toMatchObject({ covered: 0, agentUnhealthy: 1, agentInactive: 1, agentMissing: 1 });
    expect(stub.putEvents).toHaveLength(1);
    const [event] = stub.putEvents;
    expect(event).toMatchObject({ Source: 'cdk-agent-fleet', DetailType: 'Agent Coverage Status Change' });
    const detail = JSON.parse(String(event.Detail));
    const validate = new Ajv().compile(COVERAGE_CHANGE_DETAIL_SCHEMA);
    expect(validate(detail) ? [] : validate.errors).toEqual([]);
    expect(detail).toMatchObject({ instanceId: B, previousCategory: 'covered', currentCategory: 'agentUnhealthy', agentServiceState: 'STOPPED', reportKey: second.reportKey });

    // AND the store holds both timestamped reports and latest.json, which is the second
    const keys = (await s3.send(new ListObjectsV2Command({ Bucket: env.TELEMETRY_BUCKET, Prefix: 'reports/coverage/' }))).Contents!.map((o) => o.Key);
    expect(keys.sort()).toEqual([first.reportKey, second.reportKey, 'reports/coverage/latest.json'].sort());
    expect((await readObject('reports/coverage/latest.json')).generatedAt).toBe((await readObject(second.reportKey)).generatedAt);
    expect(stub.calls).toEqual(expect.arrayContaining(['ec2:DescribeInstances', 'AmazonSSM:DescribeInstanceInformation', 'AWSEvents:PutEvents']));
  });

  test('tagged out of the fleet: no runs at the next heartbeat, and an event saying it is excluded', async () => {
    // GIVEN B tagged SecurityAgentManaged=false, after the tag cache's second
    stub.instances = stub.instances.map((i) => (i.instanceId === B ? { ...i, tags: { SecurityAgentManaged: 'false' } } : i));
    await new Promise((resolve) => setTimeout(resolve, 1100));

    // WHEN B heartbeats, claiming another Region and then its own, and the report runs
    expect((await beat(B, {}, { region: 'us-west-2', availabilityZone: 'us-west-2a' })).status).toBe(403);
    const res = await beat(B, { agentVersion: '1.5.0', agentService: { state: 'STOPPED' } });
    const report = await handlers.coverage();

    // THEN no runs, every sensor off, and B's change to excluded is an event (healthy: nothing to cover)
    expect(res.status).toBe(200);
    expect(res.body.instructions).toEqual([]);
    expect(new Set(Object.values(res.body.sensors))).toEqual(new Set(['DISABLED']));
    expect(report.counts).toMatchObject({ excluded: 1, agentUnhealthy: 0 });
    const last = JSON.parse(String(stub.putEvents[stub.putEvents.length - 1].Detail));
    expect(last).toMatchObject({ instanceId: B, previousCategory: 'agentUnhealthy', currentCategory: 'excluded', healthy: true });
    expect(stub.calls).toContain('ec2:DescribeTags');
  });
});
