/*
 * The whole loop, end to end: the real companion (bash, the host's curl) reads a loopback
 * instance metadata service, signs its heartbeat with the instance profile's credentials and
 * posts it to a front door that verifies the signature with @smithy/signature-v4 and calls the
 * real bundled heartbeat handler, which runs on dynalite; the coverage report and the spool
 * uploads go to s3rver (which checks the upload signatures too). EC2, SSM and EventBridge are
 * the loopback stub of backend-engines.test.ts. The agent's service and package are a fake
 * systemctl and dpkg-query on the companion's PATH (the real-host suite runs it on systemd).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { AwsStub } from './aws-stub';
import { FrontDoor, InstanceMetadata, instanceSession } from './front-door';
import { FakeCompanionHost } from '../helpers/companion';
import { ACCOUNT, backendEnv, REGION } from '../backend/fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (options: Record<string, unknown>) => { run(): Promise<AddressInfo>; close(): Promise<void> };

const ASSETS = path.join(__dirname, '..', '..', 'assets', 'backend');
const INSTANCE = 'i-0c0ffee0c0ffee001';
// s3rver accepts one key pair; the instance profile's session uses it, with a session token.
const session = instanceSession(ACCOUNT, INSTANCE, 'S3RVER', 'S3RVER');
const identity = {
  accountId: ACCOUNT, architecture: 'x86_64', availabilityZone: `${REGION}b`, imageId: 'ami-0123456789abcdef0',
  instanceId: INSTANCE, instanceType: 'm7i.large', pendingTime: '2026-03-01T10:00:00Z', privateIp: '10.0.1.17', region: REGION, version: '2017-09-30',
};
const env = backendEnv({ TAG_CACHE_SECONDS: '1' });
const PREFIX = `agents/${session.roleId}:${INSTANCE}/`;

const dynamo = dynalite({ createTableMs: 0 });
const stub = new AwsStub();
const imds = new InstanceMetadata(session, identity);
const savedEnv = { ...process.env };
let handlers: { heartbeat: (e: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>; coverage: () => Promise<any> };
let frontDoor: FrontDoor;
let s3rver: InstanceType<typeof S3rver>;
let s3Url: string;
/** A forwarder in front of s3rver that records each request's headers (s3rver keeps no SSE headers). */
let s3Recorder: http.Server;
const s3Requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }> = [];
let dir: string;
let ddb: DynamoDBDocumentClient;
let s3: S3Client;

let host: FakeCompanionHost;
const runCompanion = (...args: string[]) => host.run(...args);

const curlVersion = /^curl (\d+)\.(\d+)/.exec(spawnSync('curl', ['--version'], { encoding: 'utf8' }).stdout)!;
const curlSigns = Number(curlVersion[1]) > 7 || (Number(curlVersion[1]) === 7 && Number(curlVersion[2]) >= 88);

const registry = async () => (await ddb.send(new ScanCommand({ TableName: env.REGISTRY_TABLE }))).Items ?? [];
const answer = () => JSON.parse(fs.readFileSync(path.join(host.state, 'answer.json'), 'utf8'));
const lastBody = () => JSON.parse(frontDoor.requests[frontDoor.requests.length - 1].body);
const listKeys = async (prefix: string) =>
  ((await s3.send(new ListObjectsV2Command({ Bucket: env.TELEMETRY_BUCKET, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();

beforeAll(async () => {
  for (const name of ['heartbeat', 'coverage-report']) {
    if (!fs.existsSync(path.join(ASSETS, name, 'index.js'))) throw new Error(`assets/backend/${name}/index.js is missing: run 'npm run bundle' first`);
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-fleet-companion-'));
  await new Promise<void>((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
  s3rver = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: path.join(dir, 's3') });
  s3Url = `http://127.0.0.1:${(await s3rver.run()).port}`;
  s3Recorder = http.createServer((req, res) => {
    s3Requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const upstream = http.request(`${s3Url}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => s3Recorder.listen(0, '127.0.0.1', resolve));
  const stubUrl = await stub.start();
  Object.assign(process.env, env, {
    AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`,
    AWS_ENDPOINT_URL_S3: s3Url, AWS_ENDPOINT_URL_EC2: stubUrl, AWS_ENDPOINT_URL_SSM: stubUrl, AWS_ENDPOINT_URL_EVENTBRIDGE: stubUrl,
    AWS_MAX_ATTEMPTS: '1',
  });
  ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}));
  s3 = new S3Client({ forcePathStyle: true });
  await ddb.send(new CreateTableCommand({
    TableName: env.REGISTRY_TABLE, BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  }));
  await s3.send(new CreateBucketCommand({ Bucket: env.TELEMETRY_BUCKET }));
  /* eslint-disable @typescript-eslint/no-require-imports */
  handlers = {
    heartbeat: require(path.join(ASSETS, 'heartbeat', 'index.js')).handler,
    coverage: require(path.join(ASSETS, 'coverage-report', 'index.js')).handler,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  stub.instances = [{ instanceId: INSTANCE, tags: {}, ssmOnline: true }];

  frontDoor = new FrontDoor(REGION, handlers.heartbeat);
  frontDoor.allow(session);
  await frontDoor.start();
  await imds.start();

  host = new FakeCompanionHost(dir);
  host.install({
    url: frontDoor.url, region: REGION, intervalSeconds: 600, spoolMaxKb: 64,
    imdsUrl: imds.url, s3Endpoint: `http://127.0.0.1:${(s3Recorder.address() as AddressInfo).port}`,
    kmsKeyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/0a1b2c3d-4e5f-4a1b-8c2d-0123456789ab`,
  });

  jest.spyOn(process.stdout, 'write').mockImplementation(() => true); // EMF lines
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterAll(async () => {
  jest.restoreAllMocks();
  ddb?.destroy();
  s3?.destroy();
  await frontDoor?.stop();
  await imds.stop();
  s3Recorder?.closeAllConnections();
  await new Promise<void>((resolve) => (s3Recorder ? s3Recorder.close(() => resolve()) : resolve()));
  await s3rver?.close();
  await new Promise<void>((resolve) => dynamo.close(() => resolve()));
  await stub.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

describe('the companion, the front door and the backend, end to end', () => {
  test('a heartbeat: signature verified, one registry item, the answer for the agent, coverage covered', async () => {
    // WHEN the timer starts the companion for the first time
    const run = await runCompanion();

    // THEN the front door verified its signature and the handler accepted it
    expect(run.result).toMatchObject({ outcome: 'sent', httpStatus: '200' });
    expect(run.status).toBe(0);
    expect(frontDoor.requests.map((r) => [r.verdict, r.status, r.accessKeyId])).toEqual([['ok', 200, 'S3RVER']]);
    // signed by this host's curl (7.88 or later) with the session token
    expect(run.result.signer).toBe(curlSigns ? 'curl' : 'bash');
    expect(frontDoor.requests[0].signedHeaders.split(';')).toEqual(expect.arrayContaining(['host', 'x-amz-date', 'x-amz-security-token']));
    // read through IMDSv2 only
    expect(imds.requests.filter((r) => r.method === 'GET').every((r) => r.withToken)).toBe(true);
    expect(lastBody()).toEqual({
      agentVersion: '1.4.2-1', imdsVersion: 'v2',
      identityDocument: { accountId: ACCOUNT, region: REGION, availabilityZone: `${REGION}b`, instanceId: INSTANCE, instanceType: 'm7i.large', imageId: 'ami-0123456789abcdef0', architecture: 'x86_64' },
      agentService: { state: 'RUNNING', message: 'systemd: LoadState=loaded ActiveState=active SubState=running' },
      sensors: {},
    });
    const items = await registry();
    expect(items.map((i) => [i.pk, i.agentServiceState, i.agentVersion, i.imdsVersion])).toEqual([[`${ACCOUNT}#${REGION}#${INSTANCE}`, 'RUNNING', '1.4.2-1', 'v2']]);

    // AND the answer is where the agent reads it: root's, world-readable, the instance's own prefix
    const stat = fs.statSync(path.join(host.state, 'answer.json'));
    expect((stat.mode & 0o777).toString(8)).toBe('644');
    expect(answer()).toMatchObject({ instanceId: INSTANCE, nextHeartbeatSeconds: 600, telemetryBucket: env.TELEMETRY_BUCKET, telemetryPrefix: PREFIX });
    expect(answer().instructions.map((i: any) => i.assessment)).toEqual(['baseline']);
    expect((fs.statSync(path.join(host.state, 'state')).mode & 0o777).toString(8)).toBe('700');

    // AND the next run is due within the interval, less its jitter
    // (up to a tenth less: 540 itself one run in 61, as a CI run saw)
    expect(run.result.nextRunInSeconds).toBeGreaterThanOrEqual(540);
    expect(run.result.nextRunInSeconds).toBeLessThanOrEqual(600);
    const report = await handlers.coverage();
    expect(report.counts).toMatchObject({ covered: 1, agentUnhealthy: 0, agentMissing: 0 });
  });

  test('the timer\'s next start before the interval has passed sends nothing', async () => {
    const run = await runCompanion();
    expect(run.result.outcome).toBe('not-due');
    expect(frontDoor.requests).toHaveLength(1);
  });

  test('the agent\'s service stops: the next heartbeat says so, the report says agentUnhealthy, with an event', async () => {
    // GIVEN
    host.service('inactive');

    // WHEN
    const run = await runCompanion('--now');
    await new Promise((resolve) => setTimeout(resolve, 5)); // a report key of its own
    const report = await handlers.coverage();

    // THEN the sensors the backend switched on are FAILED, and why
    expect(run.result.outcome).toBe('sent');
    expect(lastBody()).toMatchObject({
      agentService: { state: 'STOPPED', message: 'systemd: LoadState=loaded ActiveState=inactive SubState=dead' },
      sensors: {
        PACKAGE_INVENTORY: { state: 'FAILED', message: 'the agent\'s service is STOPPED' },
        PROCESS_EVENTS: { state: 'IDLE' }, NETWORK_EVENTS: { state: 'IDLE' }, FILE_INTEGRITY: { state: 'IDLE' }, SOFTWARE_CONFIGURATION: { state: 'IDLE' },
      },
    });
    expect(report.counts).toMatchObject({ covered: 0, agentUnhealthy: 1 });
    const detail = JSON.parse(String(stub.putEvents[stub.putEvents.length - 1].Detail));
    expect(detail).toMatchObject({ instanceId: INSTANCE, previousCategory: 'covered', currentCategory: 'agentUnhealthy', agentServiceState: 'STOPPED' });
  });

  test('a running agent\'s enabled sensors are RUNNING', async () => {
    host.service('active');
    await runCompanion('--now');
    expect(lastBody().sensors).toMatchObject({ PACKAGE_INVENTORY: { state: 'RUNNING' }, PROCESS_EVENTS: { state: 'IDLE' } });
  });

  test('429 with Retry-After: the companion waits as long as it says; 503 without: exponential backoff', async () => {
    frontDoor.refuseNext.push({ status: 429, retryAfter: '120' });
    const throttled = await runCompanion('--now');
    expect(throttled.result).toMatchObject({ outcome: 'backing-off', httpStatus: '429', nextRunInSeconds: 120 });
    expect(throttled.stderr).toContain('the backend answered 429; next try in 120s');

    frontDoor.refuseNext.push({ status: 503 });
    const unavailable = await runCompanion('--now');
    // second failure in a row: 60 s, plus up to 14 s of jitter
    expect(unavailable.result).toMatchObject({ outcome: 'backing-off', httpStatus: '503' });
    expect(unavailable.result.nextRunInSeconds).toBeGreaterThanOrEqual(60);
    expect(unavailable.result.nextRunInSeconds).toBeLessThan(75);

    const recovered = await runCompanion('--now');
    expect(recovered.result.outcome).toBe('sent');
    expect(fs.existsSync(path.join(host.state, 'state', 'failures'))).toBe(false);
  });

  test('spooled telemetry goes to the instance\'s own prefix, encrypted with the store\'s key, and leaves the spool', async () => {
    // GIVEN two finished files and one the agent is still writing (a dot name)
    fs.mkdirSync(path.join(host.spool, 'baseline-run'));
    fs.writeFileSync(path.join(host.spool, 'baseline-run', 'packages.json'), '{"packages":[]}');
    fs.writeFileSync(path.join(host.spool, 'events-0001.jsonl'), '{"event":1}\n');
    fs.writeFileSync(path.join(host.spool, '.events-0002.jsonl'), 'partial');

    // WHEN
    const run = await runCompanion('--now');

    // THEN
    expect(run.stderr).toContain(`uploaded 2 telemetry files to s3://${env.TELEMETRY_BUCKET}/${PREFIX}`);
    expect(await listKeys(PREFIX)).toEqual([`${PREFIX}baseline-run/packages.json`, `${PREFIX}events-0001.jsonl`]);
    const object = await s3.send(new GetObjectCommand({ Bucket: env.TELEMETRY_BUCKET, Key: `${PREFIX}events-0001.jsonl` }));
    expect(await object.Body!.transformToString()).toBe('{"event":1}\n');
    // with the headers the bucket policy accepts, signed (s3rver verified the signature)
    const puts = s3Requests.filter((r) => r.method === 'PUT');
    expect(puts.map((r) => decodeURIComponent(r.url))).toEqual([`/${env.TELEMETRY_BUCKET}/${PREFIX}baseline-run/packages.json`, `/${env.TELEMETRY_BUCKET}/${PREFIX}events-0001.jsonl`]);
    for (const put of puts) {
      expect(put.headers).toMatchObject({
        'x-amz-server-side-encryption': 'aws:kms',
        'x-amz-server-side-encryption-aws-kms-key-id': `arn:aws:kms:${REGION}:${ACCOUNT}:key/0a1b2c3d-4e5f-4a1b-8c2d-0123456789ab`,
        'x-amz-security-token': session.sessionToken,
      });
      expect(put.headers.authorization).toContain('SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-server-side-encryption;x-amz-server-side-encryption-aws-kms-key-id,');
    }
    expect(fs.readdirSync(host.spool, { recursive: true }).sort()).toEqual(['.events-0002.jsonl', 'baseline-run']);
  });

  test('a spool over its bound drops the oldest files and says so', async () => {
    // GIVEN 3 files of 30 KB, oldest first, in a spool bounded at 64 KB (with the 7-byte partial one)
    for (const [n, name] of ['old', 'middle', 'new'].entries()) {
      const file = path.join(host.spool, `${name}.bin`);
      fs.writeFileSync(file, Buffer.alloc(30 * 1024, n));
      fs.utimesSync(file, 1_000 + n, 1_000 + n);
    }

    // WHEN
    const run = await runCompanion('--now');

    // THEN
    expect(run.stderr).toContain('the telemetry spool was over its bound of 64 KB: dropped the 1 oldest files (30720 bytes)');
    expect(JSON.parse(fs.readFileSync(path.join(host.state, 'spool-status.json'), 'utf8'))).toMatchObject({ droppedFiles: 1, droppedBytes: 30720 });
    expect(await listKeys(`${PREFIX}`)).toEqual(expect.arrayContaining([`${PREFIX}middle.bin`, `${PREFIX}new.bin`]));
    expect(await listKeys(`${PREFIX}old`)).toEqual([]);
  });

  test('tagged out of the fleet: no runs, every sensor off, the report says excluded', async () => {
    stub.instances = [{ instanceId: INSTANCE, tags: { SecurityAgentManaged: 'false' }, ssmOnline: true }];
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the tag cache's second

    const run = await runCompanion('--now');
    const report = await handlers.coverage();

    expect(run.result.outcome).toBe('sent');
    expect(answer().instructions).toEqual([]);
    expect(new Set(Object.values(answer().sensors))).toEqual(new Set(['DISABLED']));
    expect(report.counts).toMatchObject({ excluded: 1, covered: 0 });
  });

  test('IMDSv1, where the instance still allows it, is used and reported as such', async () => {
    imds.allowV1 = true;
    const put = jest.spyOn(imds as any, 'answer');
    // The token request fails (as on an instance whose hop limit stops PUT): simulate by refusing PUT.
    put.mockImplementationOnce((...args: unknown[]) => {
      const res = args[1] as import('node:http').ServerResponse;
      res.writeHead(403);
      res.end();
    });
    const run = await runCompanion('--now');
    put.mockRestore();
    imds.allowV1 = false;
    expect(run.result.outcome).toBe('sent');
    expect(run.stderr).toContain('used IMDSv1, which this instance still allows');
    expect(lastBody().imdsVersion).toBe('v1');
  });

  test('a curl older than 7.88: the bash signer, which the front door verifies too', async () => {
    // GIVEN a curl that says it is Ubuntu 22.04's
    const wrapper = path.join(host.bin, 'curl');
    fs.writeFileSync(wrapper, '#!/bin/bash\nif [[ "$1" == --version ]]; then echo "curl 7.81.0 (x86_64-pc-linux-gnu)"; exit 0; fi\nexec /usr/bin/curl "$@"\n', { mode: 0o755 });
    const run = await runCompanion('--now');
    fs.rmSync(wrapper);
    expect(run.result).toMatchObject({ outcome: 'sent', signer: 'bash' });
    expect(frontDoor.requests[frontDoor.requests.length - 1]).toMatchObject({ verdict: 'ok', signedHeaders: 'host;x-amz-content-sha256;x-amz-date;x-amz-security-token' });
  });

  test('a signature the front door cannot verify is refused, and the companion says why', async () => {
    // GIVEN IAM knows another secret for the session than the one IMDS hands out
    frontDoor.allow({ ...session, secretAccessKey: 'not-the-secret' });
    const run = await runCompanion('--now');
    frontDoor.allow(session);
    expect(run.result).toMatchObject({ outcome: 'refused', httpStatus: '403' });
    expect(run.stderr).toContain('the backend refused the heartbeat with 403: The request signature we calculated does not match');
    expect(frontDoor.requests[frontDoor.requests.length - 1].verdict).toBe('InvalidSignatureException');
  });
});
