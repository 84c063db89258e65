import { DynamoDBDocumentClient, ScanCommand, ScanCommandInput } from '@aws-sdk/lib-dynamodb';

/** Status of an agent in the registry. */
export type AgentStatus = 'ACTIVE' | 'INACTIVE';

/** A heartbeat counts as missed once it is half an interval late. */
export const MISSED_GRACE_INTERVALS = 0.5;
/** An agent is INACTIVE after this many missed heartbeats. */
export const MISSED_HEARTBEATS_FOR_INACTIVE = 2;

/** One agent's record: one per instance, however often it re-registers. */
export interface RegistryRecord {
  /** `<account>#<region>#<instanceId>` */
  readonly pk: string;
  readonly accountId: string;
  readonly region: string;
  readonly instanceId: string;
  readonly instanceType?: string;
  readonly agentVersion?: string;
  readonly imdsVersion?: 'v1' | 'v2';
  /** The agent's service as its last heartbeat reported it (`UNREPORTED` when it did not say). */
  readonly agentServiceState?: string;
  /** Epoch seconds of the last heartbeat. */
  readonly lastHeartbeat: number;
  /** The interval the agent was told to use at its last heartbeat, in seconds. */
  readonly heartbeatIntervalSeconds: number;
  /** Epoch seconds when the record is removed (DynamoDB TTL and the sweep). */
  readonly expiresAt: number;
  readonly status?: AgentStatus;
}

/** The registry key of an instance. */
export function registryKey(accountId: string, region: string, instanceId: string): string {
  return `${accountId}#${region}#${instanceId}`;
}

/** Seconds without a heartbeat after which an agent is INACTIVE. */
export function inactiveAfterSeconds(heartbeatIntervalSeconds: number): number {
  return (MISSED_HEARTBEATS_FOR_INACTIVE + MISSED_GRACE_INTERVALS) * heartbeatIntervalSeconds;
}

/**
 * ACTIVE while the agent has missed fewer than two heartbeats (the interval it was told at
 * its last heartbeat, plus half an interval of grace), INACTIVE after.
 */
export function agentStatus(record: Pick<RegistryRecord, 'lastHeartbeat' | 'heartbeatIntervalSeconds'>, nowSeconds: number): AgentStatus {
  return nowSeconds - record.lastHeartbeat > inactiveAfterSeconds(record.heartbeatIntervalSeconds) ? 'INACTIVE' : 'ACTIVE';
}

/** True when the record is past `cleanupAfter` without a heartbeat. */
export function isExpired(record: Pick<RegistryRecord, 'expiresAt'>, nowSeconds: number): boolean {
  return record.expiresAt <= nowSeconds;
}

/** Every record of the registry, page by page (eventually consistent, which is enough here). */
export async function* scanRegistry(
  ddb: DynamoDBDocumentClient,
  input: Omit<ScanCommandInput, 'ExclusiveStartKey'>,
): AsyncGenerator<RegistryRecord> {
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await ddb.send(new ScanCommand({ ...input, ExclusiveStartKey: startKey }));
    for (const item of page.Items ?? []) {
      yield item as RegistryRecord;
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey);
}
