/*
 * Scheduled fleet coverage report. Compares, for the backend's account and Region:
 * - EC2: every pending or running instance, its exclusion tag and its IMDS settings,
 * - SSM: the managed instances that are online,
 * - the agent registry: which instances have an agent, and whether it is active,
 * and writes the counts and the instance ids per category as a JSON object to the
 * telemetry store (`<reportPrefix><timestamp>.json` and `<reportPrefix>latest.json`),
 * plus the counts as metrics.
 *
 * Each instance is in exactly one of covered, excluded, agentUnhealthy, agentInactive,
 * notSsmManaged and agentMissing (checked in that order); imdsV1Allowed and
 * misconfiguredTag are flags on top.
 *
 * Against the previous report (`latest.json`), every instance whose category changed gets
 * a coverage change event on the default EventBridge bus. `latest.json` moves on only once
 * the events are out, so a run that could not send them sends them again (at least once).
 */
import { DescribeInstancesCommand, EC2Client, Instance } from '@aws-sdk/client-ec2';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { clock } from './shared/clock';
import { CATEGORIES, Category, coverageChanges, putCoverageChanges, ReportSnapshot } from './shared/coverage-events';
import { loadConfig } from './shared/config';
import { putMetrics } from './shared/emf';
import { EXCLUDED_VALUE } from './shared/instructions';
import { agentStatus, isExpired, RegistryRecord, scanRegistry } from './shared/registry';

const ec2 = new EC2Client({});
const ssm = new SSMClient({});
const s3 = new S3Client({});
const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const events = new EventBridgeClient({});

export { CATEGORIES, Category };

/** Service states that count as a working agent (UNREPORTED: the client cannot tell). */
const SERVICE_WORKING = new Set(['RUNNING', 'UNREPORTED']);

/** What the report says about one instance, as input to categorisation. */
export interface InstanceFacts {
  readonly instanceId: string;
  /** Value of the exclusion tag, if the instance has it. */
  readonly exclusionTag?: string;
  /** True when IMDSv1 is still allowed (HttpTokens optional). */
  readonly imdsV1Allowed: boolean;
  readonly ssmOnline: boolean;
  readonly agent?: 'ACTIVE' | 'INACTIVE';
  /** The agent's service state from its last heartbeat. */
  readonly agentService?: string;
}

/** The report object. */
export interface CoverageReport {
  readonly generatedAt: string;
  readonly accountId: string;
  readonly region: string;
  readonly backend: string;
  readonly exclusionTagKey: string;
  readonly instances: number;
  readonly counts: Record<Category | 'imdsV1Allowed' | 'misconfiguredTag', number>;
  /** covered / (instances - excluded), in percent; 100 when nothing needs covering. */
  readonly coverageRatio: number;
  readonly instanceIds: Record<Category | 'imdsV1Allowed' | 'misconfiguredTag', string[]>;
}

/** One instance's category. */
export function categorise(facts: InstanceFacts): Category {
  if (facts.exclusionTag === EXCLUDED_VALUE) return 'excluded';
  if (facts.agent === 'ACTIVE') return facts.agentService === undefined || SERVICE_WORKING.has(facts.agentService) ? 'covered' : 'agentUnhealthy';
  if (facts.agent === 'INACTIVE') return 'agentInactive';
  if (!facts.ssmOnline) return 'notSsmManaged';
  return 'agentMissing';
}

/** The report over a fleet's facts. */
export function buildReport(
  facts: InstanceFacts[],
  meta: Pick<CoverageReport, 'generatedAt' | 'accountId' | 'region' | 'backend' | 'exclusionTagKey'>,
): CoverageReport {
  const ids = {
    covered: [], excluded: [], agentUnhealthy: [], agentInactive: [], notSsmManaged: [], agentMissing: [], imdsV1Allowed: [], misconfiguredTag: [],
  } as Record<Category | 'imdsV1Allowed' | 'misconfiguredTag', string[]>;
  for (const f of [...facts].sort((a, b) => a.instanceId.localeCompare(b.instanceId))) {
    ids[categorise(f)].push(f.instanceId);
    if (f.imdsV1Allowed) ids.imdsV1Allowed.push(f.instanceId);
    if (f.exclusionTag !== undefined && f.exclusionTag !== 'true' && f.exclusionTag !== EXCLUDED_VALUE) {
      ids.misconfiguredTag.push(f.instanceId);
    }
  }
  const counts = Object.fromEntries(Object.entries(ids).map(([k, v]) => [k, v.length])) as CoverageReport['counts'];
  const needing = facts.length - counts.excluded;
  const coverageRatio = needing === 0 ? 100 : Math.round((counts.covered / needing) * 10000) / 100;
  return { ...meta, instances: facts.length, counts, coverageRatio, instanceIds: ids };
}

async function runningInstances(): Promise<Instance[]> {
  const instances: Instance[] = [];
  let token: string | undefined;
  do {
    const page = await ec2.send(new DescribeInstancesCommand({
      Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running'] }],
      MaxResults: 1000,
      NextToken: token,
    }));
    for (const reservation of page.Reservations ?? []) instances.push(...(reservation.Instances ?? []));
    token = page.NextToken;
  } while (token);
  return instances;
}

async function ssmOnlineInstances(): Promise<Set<string>> {
  const online = new Set<string>();
  let token: string | undefined;
  do {
    const page = await ssm.send(new DescribeInstanceInformationCommand({
      Filters: [{ Key: 'ResourceType', Values: ['EC2Instance'] }],
      MaxResults: 50,
      NextToken: token,
    }));
    for (const info of page.InstanceInformationList ?? []) {
      if (info.InstanceId && info.PingStatus === 'Online') online.add(info.InstanceId);
    }
    token = page.NextToken;
  } while (token);
  return online;
}

interface AgentState {
  readonly status: 'ACTIVE' | 'INACTIVE';
  readonly service?: string;
}

async function agents(tableName: string, accountId: string, region: string, nowSeconds: number): Promise<Map<string, AgentState>> {
  const status = new Map<string, AgentState>();
  const records = scanRegistry(ddb, {
    TableName: tableName,
    ProjectionExpression: 'instanceId, lastHeartbeat, heartbeatIntervalSeconds, expiresAt, agentServiceState',
    FilterExpression: 'accountId = :account AND #region = :region',
    ExpressionAttributeNames: { '#region': 'region' },
    ExpressionAttributeValues: { ':account': accountId, ':region': region },
  });
  for await (const record of records as AsyncGenerator<RegistryRecord>) {
    if (!isExpired(record, nowSeconds)) {
      status.set(record.instanceId, { status: agentStatus(record, nowSeconds), service: record.agentServiceState });
    }
  }
  return status;
}

/** The previous report, or undefined when there is none (first run) or it cannot be read as one. */
async function previousReport(bucket: string, key: string): Promise<ReportSnapshot | undefined> {
  let text: string;
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    text = res.Body ? await res.Body.transformToString('utf8') : '';
  } catch (err) {
    if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as ReportSnapshot;
    if (typeof parsed.generatedAt === 'string' && typeof parsed.instanceIds === 'object' && parsed.instanceIds !== null) return parsed;
  } catch {
    // fall through: an unreadable baseline is no baseline
  }
  console.warn(JSON.stringify({ message: 'the previous coverage report is not a report; no change events this run', key }));
  return undefined;
}

/** What one run found and did. */
export interface CoverageRunResult extends Pick<CoverageReport, 'counts' | 'coverageRatio'> {
  readonly reportKey: string;
  /** Coverage change events put on the default bus. */
  readonly changeEvents: number;
}

export async function handler(): Promise<CoverageRunResult> {
  const config = loadConfig();
  const now = clock.now();
  const [instances, online, registry] = await Promise.all([
    runningInstances(),
    ssmOnlineInstances(),
    agents(config.tableName, config.accountId, config.region, Math.floor(now / 1000)),
  ]);
  const facts: InstanceFacts[] = instances.filter((i) => i.InstanceId).map((i) => ({
    instanceId: i.InstanceId!,
    exclusionTag: i.Tags?.find((t) => t.Key === config.exclusionTagKey)?.Value,
    imdsV1Allowed: i.MetadataOptions?.HttpEndpoint !== 'disabled' && i.MetadataOptions?.HttpTokens !== 'required',
    ssmOnline: online.has(i.InstanceId!),
    agent: registry.get(i.InstanceId!)?.status,
    agentService: registry.get(i.InstanceId!)?.service,
  }));
  const generatedAt = new Date(now).toISOString();
  const report = buildReport(facts, {
    generatedAt, accountId: config.accountId, region: config.region, backend: config.backendName, exclusionTagKey: config.exclusionTagKey,
  });

  const body = JSON.stringify(report);
  const reportKey = `${config.reportPrefix}${generatedAt.replace(/:/g, '-')}.json`;
  const latestKey = `${config.reportPrefix}latest.json`;
  const previous = await previousReport(config.telemetryBucket, latestKey);
  // No encryption headers: the store encrypts with its own key by default, and its policy denies any other.
  const put = (key: string) => s3.send(new PutObjectCommand({ Bucket: config.telemetryBucket, Key: key, Body: body, ContentType: 'application/json' }));
  await put(reportKey);

  const changes = previous ? coverageChanges(previous, report, {
    backend: config.backendName, accountId: config.accountId, region: config.region, reportKey,
  }, (id) => registry.get(id)?.service) : [];
  const sent = await putCoverageChanges(events, changes);
  if (sent.failed.length > 0) {
    putMetrics(config.metricNamespace, { Backend: config.backendName }, [{ name: 'CoverageEventsFailed', value: sent.failed.length }], now);
    console.error(JSON.stringify({ message: 'coverage change events failed; latest.json is kept so the next run sends them again', reportKey, failed: sent.failed }));
    throw new Error(`${sent.failed.length} of ${changes.length} coverage change events could not be put on the event bus (${sent.failed[0].errorCode})`);
  }
  await put(latestKey);

  const metricName = { covered: 'Covered', excluded: 'Excluded', agentUnhealthy: 'AgentUnhealthy', agentInactive: 'AgentInactive', notSsmManaged: 'NotSsmManaged',
    agentMissing: 'AgentMissing', imdsV1Allowed: 'ImdsV1Allowed', misconfiguredTag: 'MisconfiguredTag' } as const;
  putMetrics(config.metricNamespace, { Backend: config.backendName }, [
    { name: 'Instances', value: report.instances },
    ...Object.entries(report.counts).map(([k, v]) => ({ name: metricName[k as keyof typeof metricName], value: v })),
    { name: 'CoverageRatio', value: report.coverageRatio, unit: 'Percent' as const },
    { name: 'CoverageChanges', value: sent.sent },
  ], now);
  console.log(JSON.stringify({ message: 'coverage report', reportKey, counts: report.counts, coverageRatio: report.coverageRatio, changeEvents: sent.sent }));
  return { reportKey, counts: report.counts, coverageRatio: report.coverageRatio, changeEvents: sent.sent };
}
