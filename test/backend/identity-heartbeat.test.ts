import { execFileSync } from 'node:child_process';
import { createPrivateKey, KeyObject, sign } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DescribeInstancesCommand, DescribeTagsCommand, DescribeVpcEndpointsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, resetForTests } from '../../lib/backend/handler/shared/identity-heartbeat-handler';
import { clock } from '../../lib/backend/handler/shared/clock';
import { metricSink } from '../../lib/backend/handler/shared/emf';
import { ACCOUNT, applyEnv, backendEnv, heartbeatEvent, INSTANCE, NOW, REGION, validBody } from './fixtures';

/*
 * A test CA stands in for AWS: openssl makes an RSA key and a self-signed certificate (the
 * backend is given the certificate, as the construct gives it AWS's), node's crypto signs
 * documents with the key exactly as AWS's `signature` is made (SHA256withRSA over the bytes).
 */
const ENDPOINT = 'vpce-0a1b2c3d4e5f60718';
const VPC = 'vpc-0123456789abcdef0';
const PRIVATE_IP = '10.0.1.23';

const ddb = mockClient(DynamoDBDocumentClient);
const ec2 = mockClient(EC2Client);
let dir: string;
let certificate: string;
let awsKey: KeyObject;
let otherKey: KeyObject;
let metrics: any[];

function makeCertificate(name: string): { cert: string; key: KeyObject } {
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '3650',
    '-subj', `/C=US/O=Test ${name}`], { stdio: 'ignore' });
  return { cert: fs.readFileSync(certFile, 'utf8'), key: createPrivateKey(fs.readFileSync(keyFile)) };
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'identity-heartbeat-'));
  const aws = makeCertificate('aws');
  certificate = aws.cert;
  awsKey = aws.key;
  otherKey = makeCertificate('other').key;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** An identity document as IMDS serves it (pretty-printed, AWS's field order). */
function documentText(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    accountId: ACCOUNT, architecture: 'arm64', availabilityZone: 'eu-west-1a', billingProducts: null, devpayProductCodes: null,
    marketplaceProductCodes: null, imageId: 'ami-0abcdef1234567890', instanceId: INSTANCE, instanceType: 'm7g.large', kernelId: null,
    pendingTime: '2026-02-27T08:00:00Z', privateIp: PRIVATE_IP, ramdiskId: null, region: REGION, version: '2017-09-30', ...overrides,
  }, null, 2);
}

/** AWS's base64 signature, wrapped at 64 columns as IMDS wraps it. */
function signatureOf(document: string, key: KeyObject = awsKey): string {
  return sign('sha256', Buffer.from(document, 'utf8'), key).toString('base64').match(/.{1,64}/g)!.join('\n');
}

function identityBody(document = documentText(), signature = signatureOf(document), overrides: Record<string, unknown> = {}) {
  return validBody({ signedIdentityDocument: { document, signature }, ...overrides });
}

/** The proxy event of an unauthenticated call through a private API's interface endpoint. */
function identityEvent(body: unknown, network: { sourceIp?: string; vpceId?: string | null; headers?: Record<string, string> } = {}): APIGatewayProxyEvent {
  const event = heartbeatEvent(body) as any;
  event.path = '/v1/identity-heartbeat';
  event.resource = '/v1/identity-heartbeat';
  event.headers = { 'content-type': 'application/json', ...network.headers };
  event.requestContext.identity = {
    sourceIp: network.sourceIp ?? PRIVATE_IP,
    vpceId: network.vpceId === undefined ? ENDPOINT : network.vpceId,
    userArn: null, user: null, caller: null, accountId: null,
  };
  return event;
}

function ec2Knows(instance: Record<string, unknown> = {}, endpointVpc = VPC) {
  ec2.on(DescribeInstancesCommand).resolves({
    Reservations: [{ OwnerId: ACCOUNT, Instances: [{
      InstanceId: INSTANCE, State: { Name: 'running', Code: 16 }, PrivateIpAddress: PRIVATE_IP, VpcId: VPC, InstanceType: 'm7g.large', ImageId: 'ami-0abcdef1234567890', ...instance,
    }] }],
  });
  ec2.on(DescribeVpcEndpointsCommand).resolves({ VpcEndpoints: [{ VpcEndpointId: ENDPOINT, VpcId: endpointVpc }] });
}

async function call(body: unknown, network?: Parameters<typeof identityEvent>[1]) {
  const res = await handler(identityEvent(body, network));
  return { status: res.statusCode, body: JSON.parse(res.body), headers: res.headers };
}

beforeEach(() => {
  ddb.reset();
  ec2.reset();
  ddb.on(UpdateCommand).resolves({});
  // The construct gives this function no templates: the identity path hands out no instructions.
  applyEnv(backendEnv({ ASSESSMENT_TEMPLATES: '[]', IDENTITY_DOCUMENT_CERTIFICATE: certificate, IDENTITY_VPC_ENDPOINTS: `${ENDPOINT},vpce-0ffffffffffffffff` }));
  resetForTests();
  clock.now = () => NOW;
  metrics = [];
  metricSink.write = (line) => { metrics.push(JSON.parse(line)); };
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

const registryWrites = () => ddb.commandCalls(UpdateCommand).length;
const rejectedFor = () => metrics.filter((m) => m.HeartbeatsRejected === 1).map((m) => m.Reason);

describe('an identity heartbeat from the instance itself', () => {
  test('is registered under account#region#instance from the signed document and answered with no instructions', async () => {
    ec2Knows();
    const res = await call(identityBody());
    expect(res.status).toBe(200);
    expect(res.body.instanceId).toBe(INSTANCE);
    expect(res.body.instructions).toEqual([]);
    expect(Object.values(res.body.sensors).every((s) => s === 'DISABLED')).toBe(true);
    const update = ddb.commandCalls(UpdateCommand)[0].args[0].input;
    expect(update.Key).toEqual({ pk: `${ACCOUNT}#${REGION}#${INSTANCE}` });
    expect(update.ExpressionAttributeValues![':type']).toBe('m7g.large');
    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input).toEqual({ InstanceIds: [INSTANCE] });
    // No tags are read: without instructions, no tag decides anything.
    expect(ec2.commandCalls(DescribeTagsCommand)).toHaveLength(0);
    expect(metrics.find((m) => m.Heartbeats === 1)).toMatchObject({ Backend: 'Stack/Backend', Path: 'IdentityDocument' });
  });

  test('asks EC2 once per instance per minute and function container, however often it calls', async () => {
    ec2Knows();
    for (let i = 0; i < 5; i++) expect((await call(identityBody())).status).toBe(200);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(1);
    expect(ec2.commandCalls(DescribeVpcEndpointsCommand)).toHaveLength(1);
    clock.now = () => NOW + 61_000;
    expect((await call(identityBody())).status).toBe(200);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(2);
  });
});

describe('a replayed or forged document is refused, and nothing is written', () => {
  test('from another address of the VPC (a replay from another instance)', async () => {
    ec2Knows();
    const res = await call(identityBody(), { sourceIp: '10.0.1.99' });
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/comes from 10\.0\.1\.99, not from the signed document's private address/);
    expect(registryWrites()).toBe(0);
    // Refused before any EC2 call: replays cannot turn into EC2 traffic.
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
    expect(rejectedFor()).toEqual(['NotBoundToInstance']);
  });

  test('from the document\'s address when EC2 says the instance now has another one (address reused)', async () => {
    ec2Knows({ PrivateIpAddress: '10.0.1.77' });
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/not from the instance's primary private address/);
    expect(registryWrites()).toBe(0);
  });

  test.each(['stopped', 'stopping', 'pending', 'shutting-down', 'terminated'])('when the instance is %s', async (state) => {
    ec2Knows({ State: { Name: state } });
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toBe(`instance ${INSTANCE} is ${state}, not running`);
    expect(registryWrites()).toBe(0);
  });

  test('when EC2 does not know the instance (another account, or gone)', async () => {
    ec2.on(DescribeInstancesCommand).rejects(Object.assign(new Error('not found'), { name: 'InvalidInstanceID.NotFound' }));
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/EC2 does not know instance/);
    expect(registryWrites()).toBe(0);
  });

  test('when the signed document is of another Region or another account', async () => {
    ec2Knows();
    const otherRegion = documentText({ region: 'us-east-1', availabilityZone: 'us-east-1a' });
    let res = await call(identityBody(otherRegion, signatureOf(otherRegion), {
      identityDocument: { ...validBody().identityDocument, region: 'us-east-1', availabilityZone: 'us-east-1a' },
    }));
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/signed document's Region us-east-1 is not this backend's Region eu-west-1/);
    const otherAccount = documentText({ accountId: '444455556666' });
    res = await call(identityBody(otherAccount, signatureOf(otherAccount), { identityDocument: { ...validBody().identityDocument, accountId: '444455556666' } }));
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/account 444455556666 is not this backend's account/);
    expect(registryWrites()).toBe(0);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
  });

  test('when the document was changed after signing (tampered)', async () => {
    ec2Knows();
    const original = documentText();
    const tampered = original.replace('m7g.large', 'm7g.16xlarge');
    const res = await call(identityBody(tampered, signatureOf(original), { identityDocument: { ...validBody().identityDocument, instanceType: 'm7g.16xlarge' } }));
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/does not verify against the AWS certificate of this Region/);
    expect(rejectedFor()).toEqual(['BadSignature']);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
  });

  test('when the signature is another key\'s, garbage, or cut short', async () => {
    ec2Knows();
    const doc = documentText();
    for (const signature of [signatureOf(doc, otherKey), Buffer.alloc(256, 7).toString('base64'), signatureOf(doc).slice(0, 100)]) {
      const res = await call(identityBody(doc, signature));
      expect(res.status).toBe(403);
      expect(res.body.message).toMatch(/does not verify/);
    }
    expect(registryWrites()).toBe(0);
  });

  test('when the body claims other facts than the signed document (the registry meters by them)', async () => {
    ec2Knows();
    const res = await call(identityBody(undefined, undefined, { identityDocument: { ...validBody().identityDocument, instanceType: 'm7g.16xlarge' } }));
    expect(res.status).toBe(403);
    expect(res.body.message).toBe('identityDocument.instanceType m7g.16xlarge is not the signed document\'s m7g.large');
  });

  test('when the request did not come through one of the backend\'s endpoints', async () => {
    ec2Knows();
    for (const vpceId of ['vpce-0999999999999999a', null]) {
      const res = await call(identityBody(), { vpceId });
      expect(res.status).toBe(403);
      expect(res.body.message).toMatch(/did not come through one of this backend's interface VPC endpoints/);
    }
  });

  test('when the endpoint is in another VPC than the instance (overlapping address ranges)', async () => {
    ec2Knows({}, 'vpc-0fedcba9876543210');
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/endpoint of another VPC/);
    expect(registryWrites()).toBe(0);
  });

  test('when a forwarding header names another address, or the caller uses IPv6', async () => {
    ec2Knows();
    let res = await call(identityBody(), { headers: { 'X-Forwarded-For': `10.0.1.99, ${PRIVATE_IP}` } });
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/forwarding header/);
    res = await call(identityBody(), { sourceIp: 'fd00::17' });
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/call over IPv4/);
    // A forwarding header naming the caller itself is what API Gateway may add: accepted.
    res = await call(identityBody(), { headers: { 'x-forwarded-for': PRIVATE_IP } });
    expect(res.status).toBe(200);
  });

  test('when EC2 says the instance has another type or image than the signed document (metering never rests on the signature alone)', async () => {
    ec2Knows({ InstanceType: 'm7g.medium' });
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/EC2 says instance .* is a m7g.medium from ami-0abcdef1234567890, not what the signed document says/);
    expect(registryWrites()).toBe(0);
  });

  test('a document signed the way the EC2 User Guide verifies it (openssl dgst -sha256) is accepted', async () => {
    ec2Knows();
    const doc = documentText();
    const docFile = path.join(dir, 'document');
    fs.writeFileSync(docFile, doc);
    const signature = execFileSync('openssl', ['dgst', '-sha256', '-sign', path.join(dir, 'aws.key'), docFile]).toString('base64');
    // And openssl verifies node's signature with the certificate's key, as the guide does.
    fs.writeFileSync(path.join(dir, 'signature'), Buffer.from(signatureOf(doc), 'base64'));
    execFileSync('sh', ['-c', `openssl x509 -pubkey -noout -in "${path.join(dir, 'aws.pem')}" > "${path.join(dir, 'key')}"`]);
    const verified = execFileSync('openssl', ['dgst', '-sha256', '-verify', path.join(dir, 'key'), '-signature', path.join(dir, 'signature'), docFile]).toString();
    expect(verified.trim()).toBe('Verified OK');
    expect((await call(identityBody(doc, signature))).status).toBe(200);
  });

  test('when the instance has an instance profile (it must sign with its role)', async () => {
    ec2Knows({ IamInstanceProfile: { Arn: `arn:aws:iam::${ACCOUNT}:instance-profile/fleet`, Id: 'AIPAEXAMPLE' } });
    const res = await call(identityBody());
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(/has an instance profile/);
  });

  test('when the signed document is missing or not closed-schema', async () => {
    ec2Knows();
    let res = await call(validBody());
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('body.signedIdentityDocument is required');
    res = await call(identityBody(undefined, undefined, { signedIdentityDocument: { document: documentText(), signature: 'x'.repeat(20), extra: '1' } }));
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/unknown field "extra"/);
  });

  test('refusals are cached with the answer: a refused instance costs one EC2 call per minute', async () => {
    ec2Knows({ State: { Name: 'stopped' } });
    for (let i = 0; i < 5; i++) expect((await call(identityBody())).status).toBe(403);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(1);
  });
});

describe('when EC2 cannot answer', () => {
  test('the heartbeat gets a 503 with Retry-After, never a pass or a refusal, and nothing is written', async () => {
    ec2.on(DescribeInstancesCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'RequestLimitExceeded' }));
    const res = await call(identityBody());
    expect(res.status).toBe(503);
    expect(res.headers!['retry-after']).toBe('60');
    expect(registryWrites()).toBe(0);
    // Not cached: the next heartbeat asks again.
    ec2Knows();
    expect((await call(identityBody())).status).toBe(200);
  });
});
