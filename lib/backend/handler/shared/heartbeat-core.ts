/*
 * What every heartbeat path shares once it knows who is calling: the body's closed schema,
 * the refusals, the registry write and the answer. The instance-role path (heartbeat.ts)
 * and the identity-document path (identity-heartbeat.ts) differ only in how they establish
 * the origin; everything after that is this one code.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { Sensor } from '../../sensor';
import { BackendConfig } from './config';
import { AGENT_SERVICE_STATES, HEARTBEAT_SCHEMA, MAX_HEARTBEAT_BYTES, SchemaNode } from './heartbeat-schema';
import type { InstanceCaller } from './identity';
import { instructionsFor, selectTemplates, sensorSwitches } from './instructions';
import { registryKey } from './registry';
import { InstanceTagCache, TagsUnavailableError } from './tags';
import { validate } from './validate';

const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } });

/** The identity document fields a heartbeat reports (the signed document has privateIp too). */
export interface IdentityDocumentFields {
  readonly accountId: string;
  readonly region: string;
  readonly availabilityZone: string;
  readonly instanceId: string;
  readonly instanceType: string;
  readonly imageId: string;
  readonly architecture?: string;
}

/** A heartbeat body that passed the schema. */
export interface HeartbeatBody {
  readonly agentVersion: string;
  readonly imdsVersion: 'v1' | 'v2';
  readonly identityDocument: IdentityDocumentFields;
  readonly sensors: Partial<Record<Sensor, { state: string; runId?: string; message?: string }>>;
  readonly agentService?: { state: typeof AGENT_SERVICE_STATES[number]; message?: string };
}

/** Why a request was rejected; also the `Reason` dimension of the rejection metric. */
export type Rejection = 'BodyTooLarge' | 'InvalidJson' | 'SchemaViolation' | 'NotAnInstance' | 'IdentityMismatch'
  | 'BadSignature' | 'NotBoundToInstance';

export class Rejected extends Error {
  constructor(public readonly statusCode: 400 | 403, public readonly reason: Rejection, message: string) {
    super(message);
  }
}

export const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  body: JSON.stringify(body),
});

/** The body as a validated heartbeat, or a Rejected error saying what is wrong with it. */
export function parseBody<T = HeartbeatBody>(
  event: Pick<APIGatewayProxyEvent, 'body' | 'isBase64Encoded'>,
  schema: SchemaNode = HEARTBEAT_SCHEMA,
  maxBytes: number = MAX_HEARTBEAT_BYTES,
): T {
  if (typeof event.body !== 'string' || event.body.length === 0) {
    throw new Rejected(400, 'SchemaViolation', 'the request has no body');
  }
  const raw = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
  if (raw.length > maxBytes) {
    throw new Rejected(400, 'BodyTooLarge', `the body has ${raw.length} bytes; at most ${maxBytes} are accepted`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new Rejected(400, 'InvalidJson', `the body is not valid JSON: ${err instanceof Error ? err.message.slice(0, 120) : 'parse error'}`);
  }
  const problem = validate(schema, parsed);
  if (problem) throw new Rejected(400, 'SchemaViolation', problem);
  return parsed as T;
}

/** Where the heartbeat is from, taken from the caller and the backend only, never from the body. */
export interface HeartbeatOrigin extends InstanceCaller {
  /** The backend's own Region: an instance heartbeats to the backend of its Region. */
  readonly region: string;
}

/**
 * The body's identity fields may only confirm the origin: the same instance and account, and
 * the backend's own Region and one of its zones. A body that disagrees is refused.
 */
export function confirmOrigin(doc: HeartbeatBody['identityDocument'], caller: { instanceId: string; accountId: string }, backendRegion: string): void {
  if (caller.instanceId !== doc.instanceId) {
    throw new Rejected(403, 'IdentityMismatch', `identityDocument.instanceId ${doc.instanceId} is not the calling instance ${caller.instanceId}`);
  }
  if (caller.accountId !== doc.accountId) {
    throw new Rejected(403, 'IdentityMismatch', `identityDocument.accountId ${doc.accountId} is not the calling account ${caller.accountId}`);
  }
  if (doc.region !== backendRegion) {
    throw new Rejected(403, 'IdentityMismatch',
      `identityDocument.region ${doc.region} is not this backend's Region ${backendRegion}: an instance sends heartbeats to the backend of its own Region`);
  }
  const zone = doc.availabilityZone;
  if (!zone.startsWith(backendRegion) || !/^([a-z]|-[a-z0-9-]+)$/.test(zone.slice(backendRegion.length))) {
    throw new Rejected(403, 'IdentityMismatch', `identityDocument.availabilityZone ${doc.availabilityZone} is not in the Region ${backendRegion}`);
  }
}

async function register(config: BackendConfig, origin: HeartbeatOrigin, body: HeartbeatBody, nowSeconds: number): Promise<void> {
  const doc = body.identityDocument;
  await ddb.send(new UpdateCommand({
    TableName: config.tableName,
    // The key and the identifying attributes come from the caller and the backend, not the body.
    Key: { pk: registryKey(origin.accountId, origin.region, origin.instanceId) },
    UpdateExpression: 'SET accountId = :account, #region = :region, instanceId = :instance, availabilityZone = :az, '
      + 'instanceType = :type, imageId = :image, architecture = :arch, agentVersion = :version, imdsVersion = :imds, '
      + 'sensors = :sensors, agentServiceState = :service, lastHeartbeat = :now, heartbeatIntervalSeconds = :interval, expiresAt = :expires, '
      + '#status = :active, firstSeen = if_not_exists(firstSeen, :now)',
    ExpressionAttributeNames: { '#region': 'region', '#status': 'status' },
    ExpressionAttributeValues: {
      ':account': origin.accountId,
      ':region': origin.region,
      ':instance': origin.instanceId,
      ':az': doc.availabilityZone,
      ':type': doc.instanceType,
      ':image': doc.imageId,
      ':arch': doc.architecture ?? 'unknown',
      ':version': body.agentVersion,
      ':imds': body.imdsVersion,
      ':sensors': body.sensors,
      // UNREPORTED: a client that cannot see the service; the report then trusts the heartbeat.
      ':service': body.agentService?.state ?? 'UNREPORTED',
      ':now': nowSeconds,
      ':interval': config.heartbeatIntervalSeconds,
      // DynamoDB TTL removes the record cleanupAfter after the last heartbeat; each heartbeat pushes it back.
      ':expires': nowSeconds + config.cleanupAfterSeconds,
      ':active': 'ACTIVE',
    },
  }));
}

/**
 * Records the heartbeat of an established origin and answers it: the instructions of the
 * templates its tags select (none when the configuration has no templates), or a 503 with
 * Retry-After when AWS fails.
 */
export async function recordAndAnswer(
  config: BackendConfig,
  tags: InstanceTagCache,
  origin: HeartbeatOrigin,
  body: HeartbeatBody,
  now: number,
  metric: (name: string) => void,
): Promise<APIGatewayProxyResult> {
  const nowSeconds = Math.floor(now / 1000);
  try {
    await register(config, origin, body, nowSeconds);
    // EC2 shows the backend only the tags of its own account's instances. Whether the
    // exclusion tag applies depends on the caller's account (from its signature), never the body.
    const local = origin.accountId === config.accountId;
    const instanceTags = local ? await tags.tagsOf(origin.instanceId) : {};
    const selected = selectTemplates(config.templates, instanceTags, config.exclusionTagKey);
    // The instance's own folder: the instance role may write below it and nowhere else.
    const telemetryPrefix = `${config.agentPrefix}${origin.userId}/`;
    const instructions = instructionsFor(selected, registryKey(origin.accountId, origin.region, origin.instanceId), telemetryPrefix, nowSeconds);
    metric('Heartbeats');
    return json(200, {
      instanceId: origin.instanceId,
      nextHeartbeatSeconds: config.heartbeatIntervalSeconds,
      telemetryBucket: config.telemetryBucket,
      telemetryPrefix,
      sensors: sensorSwitches(instructions),
      instructions,
    });
  } catch (err) {
    metric('HeartbeatErrors');
    console.error(JSON.stringify({ message: 'heartbeat failed', error: String(err), instanceId: origin.instanceId }));
    const what = err instanceof TagsUnavailableError ? 'instance tags' : 'the agent registry';
    return json(503, { message: `${what} could not be reached; retry at the next heartbeat` }, { 'retry-after': '60' });
  }
}
