/*
 * POST /v1/identity-heartbeat (exported by the heartbeat bundle as `identityHandler`, so both
 * paths ship as one asset): the heartbeat of an instance that has no role to sign with,
 * authenticated by its signed identity document and bound to the instance by the network
 * (README: "Instances without a role"). Only on a PRIVATE API, only through the backend's
 * interface endpoints. In order, each step refusing with a 403 and a reason:
 *
 *   1. the body's closed schema (the heartbeat's, plus the signed document);
 *   2. the signature, against the AWS certificate of this Region (no AWS call before it);
 *   3. the signed document is of this account and Region, and the body says the same;
 *   4. the request came through a listed endpoint, over IPv4, unproxied, from the document's address;
 *   5. EC2: the instance exists, is running, has that primary private address, the signed type
 *      and image, lives in the endpoint's VPC, and has no instance profile (instances with a
 *      role use the role path).
 *
 * Then the same registry write and answer as the role path, with no instructions: this path
 * reports liveness and the agent's health and does nothing else.
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { clock } from './clock';
import { BackendConfig, loadConfig } from './config';
import { putMetrics } from './emf';
import { HeartbeatOrigin, json, parseBody, recordAndAnswer, Rejected } from './heartbeat-core';
import {
  certificateKey, confirmSignedIdentity, IDENTITY_HEARTBEAT_SCHEMA, IdentityHeartbeatBody, MAX_IDENTITY_HEARTBEAT_BYTES, networkOrigin, verifySignedDocument,
} from './identity-document';
import { Ec2UnavailableError, InstanceLookup } from './instance-lookup';
import { InstanceTagCache } from './tags';

const ec2 = new EC2Client({});

/** Environment variables of this function beside the backend's. */
export const IDENTITY_ENV = {
  certificate: 'IDENTITY_DOCUMENT_CERTIFICATE',
  endpoints: 'IDENTITY_VPC_ENDPOINTS',
  instanceCacheSeconds: 'INSTANCE_CACHE_SECONDS',
} as const;

interface State {
  readonly config: BackendConfig;
  readonly tags: InstanceTagCache;
  readonly key: ReturnType<typeof certificateKey>;
  readonly endpoints: ReadonlySet<string>;
  readonly lookup: InstanceLookup;
}
let state: State | undefined;

function init(): State {
  if (!state) {
    const config = loadConfig();
    if (config.templates.length > 0) throw new Error('the identity-document path hands out no instructions; its function must have no templates');
    const certificate = process.env[IDENTITY_ENV.certificate];
    const endpoints = (process.env[IDENTITY_ENV.endpoints] ?? '').split(',').filter((e) => /^vpce-[0-9a-f]+$/.test(e));
    if (!certificate) throw new Error(`environment variable ${IDENTITY_ENV.certificate} is not set`);
    if (endpoints.length === 0) throw new Error(`environment variable ${IDENTITY_ENV.endpoints} names no VPC endpoint`);
    const ttl = Number(process.env[IDENTITY_ENV.instanceCacheSeconds] ?? '60');
    state = {
      config,
      tags: new InstanceTagCache(ec2, [], config.tagCacheSeconds * 1000, () => clock.now()),
      key: certificateKey(certificate),
      endpoints: new Set(endpoints),
      lookup: new InstanceLookup(ec2, (Number.isFinite(ttl) && ttl > 0 ? ttl : 60) * 1000, () => clock.now()),
    };
  }
  return state;
}

/** Forgets the configuration and the caches (tests change the environment between cases). */
export function resetForTests(): void {
  state = undefined;
}

async function establishOrigin(event: APIGatewayProxyEvent, s: State, body: IdentityHeartbeatBody): Promise<HeartbeatOrigin> {
  const signed = verifySignedDocument(body.signedIdentityDocument, s.key);
  confirmSignedIdentity(signed, body, s.config);
  const network = networkOrigin(event, signed, s.endpoints);
  const instance = await s.lookup.instance(signed.instanceId);
  const refuse = (why: string) => new Rejected(403, 'NotBoundToInstance', why);
  if (!instance.found) throw refuse(`EC2 does not know instance ${signed.instanceId} in this account and Region`);
  if (instance.state !== 'running') throw refuse(`instance ${signed.instanceId} is ${instance.state ?? 'in an unknown state'}, not running`);
  if (instance.privateIp !== network.sourceIp) throw refuse(`the request comes from ${network.sourceIp}, not from the instance's primary private address`);
  // The registry meters by these: EC2 confirms them too, so they never rest on the signature alone.
  if (instance.instanceType !== signed.instanceType || instance.imageId !== signed.imageId) {
    throw refuse(`EC2 says instance ${signed.instanceId} is a ${instance.instanceType ?? '?'} from ${instance.imageId ?? '?'}, not what the signed document says`);
  }
  if (instance.hasInstanceProfile) throw refuse(`instance ${signed.instanceId} has an instance profile: it signs its heartbeats with its role (POST /v1/heartbeat)`);
  const endpointVpc = await s.lookup.endpointVpc(network.vpceId);
  if (!endpointVpc || endpointVpc !== instance.vpcId) throw refuse('the request came through an endpoint of another VPC than the instance\'s');
  return {
    accountId: signed.accountId,
    region: signed.region,
    instanceId: signed.instanceId,
    roleName: '',
    userId: signed.instanceId,
    userArn: `arn:aws:ec2:${signed.region}:${signed.accountId}:instance/${signed.instanceId}`,
  };
}

export async function handler(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const s = init();
  const now = clock.now();
  const metric = (name: string, extra: Record<string, string> = {}) =>
    putMetrics(s.config.metricNamespace, { Backend: s.config.backendName, Path: 'IdentityDocument', ...extra }, [{ name, value: 1 }], now);

  let body: IdentityHeartbeatBody;
  let origin: HeartbeatOrigin;
  try {
    body = parseBody<IdentityHeartbeatBody>(event, IDENTITY_HEARTBEAT_SCHEMA, MAX_IDENTITY_HEARTBEAT_BYTES);
    origin = await establishOrigin(event, s, body);
  } catch (err) {
    if (err instanceof Ec2UnavailableError) {
      metric('HeartbeatErrors');
      console.error(JSON.stringify({ message: 'identity heartbeat failed', error: err.message, requestId: event.requestContext?.requestId ?? null }));
      return json(503, { message: 'EC2 could not be reached to bind the request to the instance; retry at the next heartbeat' }, { 'retry-after': '60' });
    }
    if (!(err instanceof Rejected)) throw err;
    metric('HeartbeatsRejected', { Reason: err.reason });
    console.warn(JSON.stringify({
      message: 'identity heartbeat rejected', status: err.statusCode, reason: err.reason, detail: err.message,
      sourceIp: event.requestContext?.identity?.sourceIp ?? null, requestId: event.requestContext?.requestId ?? null,
    }));
    return json(err.statusCode, { message: err.message });
  }
  return recordAndAnswer(s.config, s.tags, origin, body, now, (name) => metric(name));
}
