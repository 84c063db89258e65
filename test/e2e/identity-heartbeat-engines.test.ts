/*
 * The identity-document path in its real bundle (assets/backend/heartbeat/index.js, export identityHandler)
 * against dynalite (DynamoDB) and a loopback EC2 that answers DescribeInstances and
 * DescribeVpcEndpoints in EC2's own XML, so the SDK's real parsing of the fields the binding
 * reads (state, primary private address, VPC, type, image, instance profile) is exercised.
 * Documents are signed by an openssl test CA standing in for AWS.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer, IncomingMessage } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { ACCOUNT, backendEnv, heartbeatEvent, REGION, validBody } from '../backend/fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;

const BUNDLE = path.join(__dirname, '..', '..', 'assets', 'backend', 'heartbeat', 'index.js');
const INSTANCE = 'i-0ddddddddddddddd4';
const ENDPOINT = 'vpce-0a1b2c3d4e5f60718';
const VPC = 'vpc-0123456789abcdef0';
const IP = '10.0.2.44';

/** The instance as the loopback EC2 describes it; the test changes it between steps. */
const ec2State = { state: 'running', privateIp: IP, profile: false };
const ec2Calls: string[] = [];

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

const ec2 = createServer((req, res) => {
  void readBody(req).then((text) => {
    const action = new URLSearchParams(text).get('Action') ?? '';
    ec2Calls.push(action);
    const ns = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"';
    res.setHeader('content-type', 'text/xml;charset=UTF-8');
    if (action === 'DescribeInstances') {
      const profile = ec2State.profile ? `<iamInstanceProfile><arn>arn:aws:iam::${ACCOUNT}:instance-profile/fleet</arn><id>AIPAEXAMPLE</id></iamInstanceProfile>` : '';
      res.end(`<DescribeInstancesResponse ${ns}><requestId>stub</requestId><reservationSet><item><reservationId>r-0123456789abcdef0</reservationId>`
        + `<ownerId>${ACCOUNT}</ownerId><instancesSet><item><instanceId>${INSTANCE}</instanceId><imageId>ami-0abcdef1234567890</imageId>`
        + `<instanceState><code>16</code><name>${ec2State.state}</name></instanceState><instanceType>m7g.large</instanceType>`
        + `<privateIpAddress>${ec2State.privateIp}</privateIpAddress><vpcId>${VPC}</vpcId>${profile}</item></instancesSet></item></reservationSet></DescribeInstancesResponse>`);
      return;
    }
    if (action === 'DescribeVpcEndpoints') {
      res.end(`<DescribeVpcEndpointsResponse ${ns}><requestId>stub</requestId><vpcEndpointSet><item><vpcEndpointId>${ENDPOINT}</vpcEndpointId>`
        + `<vpcEndpointType>Interface</vpcEndpointType><vpcId>${VPC}</vpcId></item></vpcEndpointSet></DescribeVpcEndpointsResponse>`);
      return;
    }
    res.statusCode = 400;
    res.end(`<Response><Errors><Error><Code>InvalidAction</Code><Message>${action} is not stubbed</Message></Error></Errors></Response>`);
  });
});

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
  await new Promise<void>((resolve) => ec2.listen(0, '127.0.0.1', resolve));
  Object.assign(process.env, env, {
    IDENTITY_DOCUMENT_CERTIFICATE: fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`,
    AWS_ENDPOINT_URL_EC2: `http://127.0.0.1:${(ec2.address() as AddressInfo).port}`,
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
  await new Promise<void>((resolve) => ec2.close(() => resolve()));
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
    expect(ec2Calls).toEqual(['DescribeInstances', 'DescribeVpcEndpoints']);

    expect((await beat('10.0.2.99')).status).toBe(403);

    ec2State.state = 'stopped';
    await pause(1100); // the bundle's instance cache (1 s here)
    const stopped = await beat();
    expect(stopped.status).toBe(403);
    expect(stopped.body.message).toBe(`instance ${INSTANCE} is stopped, not running`);

    ec2State.state = 'running';
    ec2State.profile = true;
    await pause(1100);
    const withRole = await beat();
    expect(withRole.status).toBe(403);
    expect(withRole.body.message).toMatch(/has an instance profile/);

    items = await registry();
    expect(items).toHaveLength(1);
    expect(items[0].lastHeartbeat).toBe(first);
  });
});
