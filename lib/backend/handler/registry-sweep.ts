/*
 * Scheduled every heartbeat interval (at least every 5 minutes). Walks the registry once:
 * - removes records past cleanupAfter without a heartbeat (DynamoDB TTL does the same, but
 *   only within days; the sweep makes the cleanup time exact),
 * - marks agents INACTIVE after two missed heartbeats,
 * - publishes the fleet's agent metrics: active agents by instance type and agent version,
 *   agents still using IMDSv1, inactive and removed agents.
 * Every write is conditional on the heartbeat it judged, so a heartbeat arriving meanwhile wins;
 * the record is then read again and counted as it now is, so the counts by instance type and
 * agent version always add up to ActiveAgents.
 */
import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { clock } from './shared/clock';
import { BackendConfig, loadConfig } from './shared/config';
import { MetricValue, putMetrics } from './shared/emf';
import { agentStatus, isExpired, RegistryRecord, scanRegistry } from './shared/registry';

const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}));

/** What one sweep found and did. */
export interface SweepResult {
  readonly active: number;
  readonly inactive: number;
  readonly markedInactive: number;
  readonly removed: number;
  readonly imdsV1: number;
  readonly byInstanceType: Record<string, number>;
  readonly byAgentVersion: Record<string, number>;
}

async function conditional(write: Promise<unknown>): Promise<boolean> {
  try {
    await write;
    return true;
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return false; // a heartbeat came in meanwhile
    throw err;
  }
}

function removeExpired(config: BackendConfig, record: RegistryRecord, nowSeconds: number): Promise<boolean> {
  return conditional(ddb.send(new DeleteCommand({
    TableName: config.tableName,
    Key: { pk: record.pk },
    ConditionExpression: 'expiresAt <= :now',
    ExpressionAttributeValues: { ':now': nowSeconds },
  })));
}

function markInactive(config: BackendConfig, record: RegistryRecord): Promise<boolean> {
  return conditional(ddb.send(new UpdateCommand({
    TableName: config.tableName,
    Key: { pk: record.pk },
    UpdateExpression: 'SET #status = :inactive',
    ConditionExpression: 'lastHeartbeat = :seen',
    ExpressionAttributeNames: { '#status': 'status' },
    ExpressionAttributeValues: { ':inactive': 'INACTIVE', ':seen': record.lastHeartbeat },
  })));
}

const PROJECTION = 'pk, lastHeartbeat, heartbeatIntervalSeconds, expiresAt, #status, instanceType, agentVersion, imdsVersion';

/** The record as it is now, after a heartbeat won the race with a conditional write. */
async function current(config: BackendConfig, pk: string): Promise<RegistryRecord | undefined> {
  const res = await ddb.send(new GetCommand({
    TableName: config.tableName,
    Key: { pk },
    ConsistentRead: true,
    ProjectionExpression: PROJECTION,
    ExpressionAttributeNames: { '#status': 'status' },
  }));
  return res.Item as RegistryRecord | undefined;
}

const increment = (counts: Record<string, number>, key: string | undefined) => {
  const k = key ?? 'unknown';
  counts[k] = (counts[k] ?? 0) + 1;
};

export async function handler(): Promise<SweepResult> {
  const config = loadConfig();
  const now = clock.now();
  const nowSeconds = Math.floor(now / 1000);
  let active = 0; let inactive = 0; let markedInactive = 0; let removed = 0; let imdsV1 = 0;
  const byInstanceType: Record<string, number> = {};
  const byAgentVersion: Record<string, number> = {};

  const countActive = (record: RegistryRecord) => {
    active++;
    increment(byInstanceType, record.instanceType);
    increment(byAgentVersion, record.agentVersion);
    if (record.imdsVersion === 'v1') imdsV1++;
  };
  /** Counts a record re-read after a lost race, as it now is, without writing again. */
  const countAsNow = (record: RegistryRecord | undefined) => {
    if (!record) return; // removed meanwhile (DynamoDB TTL)
    if (isExpired(record, nowSeconds) || agentStatus(record, nowSeconds) === 'INACTIVE') inactive++;
    else countActive(record);
  };

  const records = scanRegistry(ddb, {
    TableName: config.tableName,
    ProjectionExpression: PROJECTION,
    ExpressionAttributeNames: { '#status': 'status' },
  });
  for await (const record of records) {
    if (isExpired(record, nowSeconds)) {
      if (await removeExpired(config, record, nowSeconds)) removed++;
      else countAsNow(await current(config, record.pk)); // refreshed by a heartbeat while we looked
      continue;
    }
    if (agentStatus(record, nowSeconds) === 'INACTIVE') {
      if (record.status === 'INACTIVE') {
        inactive++;
      } else if (await markInactive(config, record)) {
        inactive++;
        markedInactive++;
      } else {
        countAsNow(await current(config, record.pk)); // a heartbeat came in: the agent is back
      }
      continue;
    }
    countActive(record);
  }

  const backend = { Backend: config.backendName };
  const fleet: MetricValue[] = [
    { name: 'ActiveAgents', value: active },
    { name: 'InactiveAgents', value: inactive },
    { name: 'RemovedAgents', value: removed },
    { name: 'AgentsUsingImdsV1', value: imdsV1 },
  ];
  putMetrics(config.metricNamespace, backend, fleet, now);
  for (const [instanceType, count] of Object.entries(byInstanceType)) {
    putMetrics(config.metricNamespace, { ...backend, InstanceType: instanceType }, [{ name: 'ActiveAgents', value: count }], now);
  }
  for (const [agentVersion, count] of Object.entries(byAgentVersion)) {
    putMetrics(config.metricNamespace, { ...backend, AgentVersion: agentVersion }, [{ name: 'ActiveAgents', value: count }], now);
  }
  const result = { active, inactive, markedInactive, removed, imdsV1, byInstanceType, byAgentVersion };
  console.log(JSON.stringify({ message: 'registry sweep', ...result }));
  return result;
}
