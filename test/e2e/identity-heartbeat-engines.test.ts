/*
 * The identity-document path in its real bundle (assets/backend/heartbeat/index.js, export identityHandler)
 * against dynalite (DynamoDB) and a loopback EC2 (aws-stub.ts) that answers DescribeInstances and
 * DescribeVpcEndpoints in EC2's own XML, so the SDK's real parsing of the fields the binding
 * reads (state, primary private address, VPC, type, image, instance profile) is exercised.
 * Documents are signed by an openssl test CA standing in for AWS. Then the real companion of
 * an instance without a role sends its signed document through the front door's private path.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import * as fs from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { AwsStub, StubInstance } from './aws-stub';
import { FrontDoor, InstanceMetadata, instanceSession } from './front-door';
import { ACCOUNT, backendEnv, heartbeatEvent, REGION, validBody } from '../backend/fixtures';
import { FakeCompanionHost } from '../helpers/companion';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;

const BUNDLE = path.join(__dirname, '..', '..', 'assets', 'backend', 'heartbeat', 'index.js');
const INSTANCE = 'i-0ddddddddddddddd4';
const ENDPOINT = 'vpce-0a1b2c3d4e5f60718';
const VPC = 'vpc-0123456789abcdef0';
const IP = '10.0.2.44';

const stub = new AwsStub();
/** The instance as the loopback EC2 describes it; the test changes it between steps. */
const ec2Says = (changes: Partial<StubInstance> = {}): void => {
  stub.instances = [{
    instanceId: INSTANCE, tags: {}, ssmOnline: true, state: 'running', privateIp: IP, vpcId: VPC,
    instanceType: 'm7g.large', imageId: 'ami-0abcdef1234567890', instanceProfile: false, ...changes,
  }];
};

const dynamo = dynalite({ createTableMs: 0 });
const savedEnv = { ...process.env };
const env = backendEnv({ ASSESSMENT_TEMPLATES: '[]', IDENTITY_VPC_ENDPOINTS: ENDPOINT, INSTANCE_CACHE_SECONDS: '1' });
let dir: string;
let document: string;
let signature: string;
let ddb: DynamoDBDocumentClient;
let handler: (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;

beforeAll(async () => {
  if (!fs.existsSync(BUNDLE)) throw new Error('assets/backend/heartbeat/index.js is missing: run \'npm run bundle\' first');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'identity-engines-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'),
    '-days', '30', '-subj', '/O=Test AWS'], { stdio: 'ignore' });
  document = JSON.stringify({
    accountId: ACCOUNT, architecture: 'arm64', availabilityZone: 'eu-west-1a', imageId: 'ami-0abcdef1234567890', instanceId: INSTANCE,
    instanceType: 'm7g.large', pendingTime: '2026-02-27T08:00:00Z', privateIp: IP, region: REGION, version: '2017-09-30',
  }, null, 2);
  signature = sign('sha256', Buffer.from(document), createPrivateKey(fs.readFileSync(path.join(dir, 'ca.key')))).toString('base64');

  await new Promise<void>((resolve) => dynamo.listen(0, '127.0.0.1', resolve));
  const stubUrl = await stub.start();
  stub.endpoints = [{ vpcEndpointId: ENDPOINT, vpcId: VPC }];
  ec2Says();
  Object.assign(process.env, env, {
    IDENTITY_DOCUMENT_CERTIFICATE: fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`,
    AWS_ENDPOINT_URL_EC2: stubUrl,
    AWS_MAX_ATTEMPTS: '1',
  });
  ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}));
  await ddb.send(new CreateTableCommand({
    TableName: env.REGISTRY_TABLE, BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  handler = require(BUNDLE).identityHandler;
  jest.spyOn(process.stdout, 'write').mockImplementation(() => true); // EMF lines
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
});

afterAll(async () => {
  jest.restoreAllMocks();
  ddb?.destroy();
  await new Promise<void>((resolve) => dynamo.close(() => resolve()));
  await stub.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

async function beat(sourceIp = IP) {
  const body = validBody({
    identityDocument: { ...validBody().identityDocument, instanceId: INSTANCE },
    agentService: { state: 'RUNNING' },
    signedIdentityDocument: { document, signature },
  });
  const event = heartbeatEvent(body) as any;
  event.resource = '/v1/identity-heartbeat';
  event.requestContext.identity = { sourceIp, vpceId: ENDPOINT, userArn: null, user: null };
  const res = await handler(event);
  return { status: res.statusCode, body: JSON.parse(res.body) };
}
const registry = async () => (await ddb.send(new ScanCommand({ TableName: env.REGISTRY_TABLE }))).Items ?? [];
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the identity-document path on real engines', () => {
  test('registers the instance; a replay from elsewhere, a stopped instance or one with a role are refused and write nothing', async () => {
    const ok = await beat();
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ instanceId: INSTANCE, instructions: [] });
    let items = await registry();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ pk: `${ACCOUNT}#${REGION}#${INSTANCE}`, status: 'ACTIVE', instanceType: 'm7g.large', agentServiceState: 'RUNNING' });
    const first = items[0].lastHeartbeat;
    expect(stub.calls).toEqual(['ec2:DescribeInstances', 'ec2:DescribeVpcEndpoints']);

    expect((await beat('10.0.2.99')).status).toBe(403);

    ec2Says({ state: 'stopped' });
    await pause(1100); // the bundle's instance cache (1 s here)
    const stopped = await beat();
    expect(stopped.status).toBe(403);
    expect(stopped.body.message).toBe(`instance ${INSTANCE} is stopped, not running`);

    ec2Says({ instanceProfile: true });
    await pause(1100);
    const withRole = await beat();
    expect(withRole.status).toBe(403);
    expect(withRole.body.message).toMatch(/has an instance profile/);

    items = await registry();
    expect(items).toHaveLength(1);
    expect(items[0].lastHeartbeat).toBe(first);
  });
});

describe('the companion of an instance without a role, through the private path', () => {
  const NO_ROLE = 'i-0eeeeeeeeeeeeeee5';
  const imds = new InstanceMetadata(instanceSession(ACCOUNT, NO_ROLE), {
    accountId: ACCOUNT, architecture: 'arm64', availabilityZone: `${REGION}a`, imageId: 'ami-0abcdef1234567890', instanceId: NO_ROLE,
    // The front door reports the TCP peer as the source address, as API Gateway does.
    instanceType: 'm7g.large', pendingTime: '2026-02-27T08:00:00Z', privateIp: '127.0.0.1', region: REGION, version: '2017-09-30',
  });
  let frontDoor: FrontDoor;
  let host: FakeCompanionHost;
  const settings = () => ({ url: frontDoor.url, region: REGION, intervalSeconds: 600, spoolMaxKb: 64, imdsUrl: imds.url });

  beforeAll(async () => {
    imds.role = false;
    // Wrapped at 64 characters: the companion must carry the newlines, the backend ignores them.
    imds.signature = sign('sha256', Buffer.from(imds.document), createPrivateKey(fs.readFileSync(path.join(dir, 'ca.key'))))
      .toString('base64').replace(/.{64}/g, '$&\n');
    frontDoor = new FrontDoor(REGION, () => Promise.reject(new Error('the role path was called')), { handler, accountId: ACCOUNT, vpceId: ENDPOINT });
    await Promise.all([imds.start(), frontDoor.start()]);
    host = new FakeCompanionHost(fs.mkdtempSync(path.join(dir, 'host-')));
    // The fleet's proxy: the identity heartbeat must not take it (the backend binds it to the instance's own address).
    host.env = { http_proxy: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' };
    ec2Says({ instanceId: NO_ROLE, privateIp: '127.0.0.1' });
  });

  afterAll(async () => {
    await frontDoor?.stop();
    await imds.stop();
  });

  test('sends the document and its signature byte for byte, straight to the endpoint: registered, answered with no instructions', async () => {
    host.install({ ...settings(), identityUrl: frontDoor.identityUrl });

    const run = await host.run();

    expect(run.result).toMatchObject({ outcome: 'sent', httpStatus: '200', signer: 'identity-document' });
    expect(run.status).toBe(0);
    expect(frontDoor.requests.map((r) => [r.verdict, r.status])).toEqual([['ok', 200]]);
    const body = JSON.parse(frontDoor.requests[0].body);
    expect(body.signedIdentityDocument).toEqual({ document: imds.document, signature: imds.signature });
    expect(body.identityDocument).toMatchObject({ instanceId: NO_ROLE, accountId: ACCOUNT, region: REGION });
    // it asked for a role first, and read everything through IMDSv2
    expect(imds.requests.map((r) => r.path)).toContain('/latest/meta-data/iam/security-credentials/');
    expect(imds.requests.filter((r) => r.method === 'GET').every((r) => r.withToken)).toBe(true);
    const item = (await registry()).find((i) => i.pk === `${ACCOUNT}#${REGION}#${NO_ROLE}`);
    expect(item).toMatchObject({ status: 'ACTIVE', agentServiceState: 'RUNNING', instanceType: 'm7g.large' });
    expect(JSON.parse(fs.readFileSync(path.join(host.state, 'answer.json'), 'utf8'))).toMatchObject({ instanceId: NO_ROLE, instructions: [] });
  });

  test('once EC2 says the instance has a role, the backend refuses it: refused, the reason logged, nothing written', async () => {
    const before = (await registry()).find((i) => i.pk === `${ACCOUNT}#${REGION}#${NO_ROLE}`)?.lastHeartbeat;
    ec2Says({ instanceId: NO_ROLE, privateIp: '127.0.0.1', instanceProfile: true });
    await pause(1100); // the bundle's instance cache (1 s here)

    const run = await host.run('--now');

    expect(run.result).toMatchObject({ outcome: 'refused', httpStatus: '403', signer: 'identity-document' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('has an instance profile');
    expect(run.stderr).toContain('(authenticated by the signed identity document)');
    expect((await registry()).find((i) => i.pk === `${ACCOUNT}#${REGION}#${NO_ROLE}`)?.lastHeartbeat).toBe(before);
  });

  test('without the identity path (the backend does not offer it) it sends nothing: no-credentials', async () => {
    host.install(settings());
    const sent = frontDoor.requests.length;

    const run = await host.run('--now');

    expect(run.result).toMatchObject({ outcome: 'no-credentials', signer: '' });
    expect(run.stderr).toContain('identityDocumentHeartbeats');
    expect(frontDoor.requests).toHaveLength(sent);
  });
});
