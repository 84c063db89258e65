/*
 * POST /v1/heartbeat. Validates the body against the closed schema, checks it against the
 * caller's SigV4 identity, records the agent in the registry (one record per instance) and
 * answers with the instructions of the assessment templates the instance's tags select.
 *
 * Bad input is always a 4xx with a reason; 5xx only when AWS itself fails.
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { AGENT_SERVICE_STATES, HEARTBEAT_SCHEMA, MAX_HEARTBEAT_BYTES } from './shared/heartbeat-schema';
import { Sensor } from '../sensor';
import { clock } from './shared/clock';
import { BackendConfig, loadConfig } from './shared/config';
import { instanceCaller, InstanceCaller } from './shared/identity';
import { instructionsFor, selectTemplates, sensorSwitches } from './shared/instructions';
import { putMetrics } from './shared/emf';
import { registryKey } from './shared/registry';
import { InstanceTagCache, TagsUnavailableError } from './shared/tags';
import { validate } from './shared/validate';

const ec2 = new EC2Client({});
const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } });

/** A heartbeat body that passed the schema. */
export interface HeartbeatBody {
  readonly agentVersion: string;
  readonly imdsVersion: 'v1' | 'v2';
  readonly identityDocument: {
    readonly accountId: string;
    readonly region: string;
    readonly availabilityZone: string;
    readonly instanceId: string;
    readonly instanceType: string;
    readonly imageId: string;
    readonly architecture?: string;
  };
  readonly sensors: Partial<Record<Sensor, { state: string; runId?: string; message?: string }>>;
  readonly agentService?: { state: typeof AGENT_SERVICE_STATES[number]; message?: string };
}

/** Why a request was rejected; also the `Reason` dimension of the rejection metric. */
type Rejection = 'BodyTooLarge' | 'InvalidJson' | 'SchemaViolation' | 'NotAnInstance' | 'IdentityMismatch';

interface State {
  readonly config: BackendConfig;
  readonly tags: InstanceTagCache;
}
let state: State | undefined;

function init(): State {
  if (!state) {
    const config = loadConfig();
    const keys = [...new Set([config.exclusionTagKey, ...config.templates.flatMap((t) => Object.keys(t.targetTags))])];
    // Without a tag-targeted template, no tag needs reading: exclusion alone only ever removes instructions.
    const watched = config.templates.length > 0 ? keys : [];
    state = { config, tags: new InstanceTagCache(ec2, watched, config.tagCacheSeconds * 1000, () => clock.now()) };
  }
  return state;
}

/** Forgets the configuration and the tag cache (tests change the environment between cases). */
export function resetForTests(): void {
  state = undefined;
}

const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  body: JSON.stringify(body),
});

class Rejected extends Error {
  constructor(public readonly statusCode: 400 | 403, public readonly reason: Rejection, message: string) {
    super(message);
  }
}

/** The body as a validated heartbeat, or a Rejected error saying what is wrong with it. */
export function parseBody(event: Pick<APIGatewayProxyEvent, 'body' | 'isBase64Encoded'>): HeartbeatBody {
  if (typeof event.body !== 'string' || event.body.length === 0) {
    throw new Rejected(400, 'SchemaViolation', 'the request has no body');
  }
  const raw = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
  if (raw.length > MAX_HEARTBEAT_BYTES) {
    throw new Rejected(400, 'BodyTooLarge', `the body has ${raw.length} bytes; at most ${MAX_HEARTBEAT_BYTES} are accepted`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new Rejected(400, 'InvalidJson', `the body is not valid JSON: ${err instanceof Error ? err.message.slice(0, 120) : 'parse error'}`);
  }
  const problem = validate(HEARTBEAT_SCHEMA, parsed);
  if (problem) throw new Rejected(400, 'SchemaViolation', problem);
  return parsed as HeartbeatBody;
}

/** Where the heartbeat is from, taken from the caller and the backend only, never from the body. */
export interface HeartbeatOrigin extends InstanceCaller {
  /** The backend's own Region: an instance heartbeats to the backend of its Region. */
  readonly region: string;
}

/**
 * The caller must be an instance role session (which names the account and the instance),
 * and the body must describe that very instance, in that account and in the backend's own
 * Region. The body only ever confirms the origin; a body that disagrees is refused.
 */
export function checkIdentity(
  event: Pick<APIGatewayProxyEvent, 'requestContext'>,
  body: HeartbeatBody,
  backendRegion: string,
): HeartbeatOrigin {
  const caller = instanceCaller(event.requestContext?.identity);
  if ('problem' in caller) throw new Rejected(403, 'NotAnInstance', caller.problem);
  const doc = body.identityDocument;
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
  return { ...caller, region: backendRegion };
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

export async function handler(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const { config, tags } = init();
  const now = clock.now();
  const metric = (name: string, extra: Record<string, string> = {}) =>
    putMetrics(config.metricNamespace, { Backend: config.backendName, ...extra }, [{ name, value: 1 }], now);

  let body: HeartbeatBody;
  let origin: HeartbeatOrigin;
  try {
    body = parseBody(event);
    origin = checkIdentity(event, body, config.region);
  } catch (err) {
    if (!(err instanceof Rejected)) throw err;
    metric('HeartbeatsRejected', { Reason: err.reason });
    console.warn(JSON.stringify({
      message: 'heartbeat rejected', status: err.statusCode, reason: err.reason, detail: err.message,
      caller: event.requestContext?.identity?.userArn ?? null, requestId: event.requestContext?.requestId ?? null,
    }));
    return json(err.statusCode, { message: err.message });
  }

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
