/*
 * Which instances still made IMDSv1 calls recently: the CloudWatch metric MetadataNoToken
 * (namespace AWS/EC2, per InstanceId), summed over the look-back window, read in batches
 * of up to 500 queries per GetMetricData call.
 */
import { Clock, describeFailure, withRetries } from './throttle';

/** The subset of CloudWatch the check needs (the SDK client or a simulation). */
export interface MetricsApi {
  getMetricData(input: GetMetricDataInput): Promise<GetMetricDataOutput>;
}

export interface GetMetricDataInput {
  MetricDataQueries: Array<{
    Id: string;
    MetricStat: {
      Metric: { Namespace: string; MetricName: string; Dimensions: Array<{ Name: string; Value: string }> };
      Period: number;
      Stat: string;
    };
    ReturnData: boolean;
  }>;
  StartTime: Date;
  EndTime: Date;
  NextToken?: string;
}

export interface GetMetricDataOutput {
  /** `StatusCode` is `Complete`, `InternalError`, `PartialData` or `Forbidden`. */
  MetricDataResults?: Array<{ Id?: string; Values?: number[]; StatusCode?: string }>;
  NextToken?: string;
}

/** What CloudWatch says about each instance: IMDSv1 calls seen, or no answer to rely on. */
export interface Imdsv1Usage {
  /** Instances with a MetadataNoToken sum above zero. */
  readonly users: Set<string>;
  /** Instances CloudWatch gave no complete answer for, with why: not known to be safe. */
  readonly unknown: Map<string, string>;
}

/** GetMetricData accepts at most 500 queries per call. */
export const QUERIES_PER_CALL = 500;

/**
 * The instances among `instanceIds` with a MetadataNoToken sum above zero in the last
 * `lookbackDays` days. Only a `Complete` answer without a positive value means "no IMDSv1
 * use" (no datapoint at all is such an answer: a stopped instance makes no calls). An answer
 * that is `InternalError`, `Forbidden`, still `PartialData` after the last page, or missing
 * for an instance leaves that instance unknown, and unknown is treated as at risk.
 */
export async function imdsv1Usage(
  cloudwatch: MetricsApi,
  instanceIds: readonly string[],
  lookbackDays: number,
  clock: Clock,
): Promise<Imdsv1Usage> {
  const users = new Set<string>();
  const unknown = new Map<string, string>();
  if (lookbackDays <= 0 || instanceIds.length === 0) return { users, unknown };
  // One datapoint per instance: the period is the whole window, a multiple of an hour,
  // which CloudWatch requires for start times older than 63 days.
  const period = lookbackDays * 86_400;
  const end = new Date(Math.floor(clock.now() / 3_600_000) * 3_600_000);
  const start = new Date(end.getTime() - period * 1000);

  for (let offset = 0; offset < instanceIds.length; offset += QUERIES_PER_CALL) {
    const batch = instanceIds.slice(offset, offset + QUERIES_PER_CALL);
    const queries = batch.map((id, i) => ({
      Id: `q${i}`,
      MetricStat: {
        Metric: { Namespace: 'AWS/EC2', MetricName: 'MetadataNoToken', Dimensions: [{ Name: 'InstanceId', Value: id }] },
        Period: period,
        Stat: 'Sum',
      },
      ReturnData: true,
    }));
    // The last status seen per query (PartialData means "more on the next page"), and errors seen on any page.
    const status = new Map<number, string>();
    const errors = new Map<number, string>();
    let nextToken: string | undefined;
    do {
      const token = nextToken;
      const page = await withRetries(() => cloudwatch.getMetricData({
        MetricDataQueries: queries, StartTime: start, EndTime: end, ...(token ? { NextToken: token } : {}),
      }), { clock }).catch((err) => {
        // Without the data nobody can tell who still uses IMDSv1: stop rather than flip blindly.
        throw Object.assign(new Error(describeFailure('cloudwatch:GetMetricData', err), { cause: err }), { name: 'EnforcementError' });
      });
      for (const result of page.MetricDataResults ?? []) {
        const index = Number(result.Id?.slice(1));
        if (!batch[index]) continue;
        if ((result.Values ?? []).some((v) => v > 0)) users.add(batch[index]);
        const code = result.StatusCode ?? 'Complete';
        status.set(index, code);
        if (code !== 'Complete' && code !== 'PartialData') errors.set(index, code);
      }
      nextToken = page.NextToken;
    } while (nextToken);
    batch.forEach((id, index) => {
      if (users.has(id)) return;
      const code = errors.get(index) ?? status.get(index);
      if (code === undefined) unknown.set(id, 'IMDSv1 use unknown: GetMetricData returned no result for MetadataNoToken');
      else if (code !== 'Complete') unknown.set(id, `IMDSv1 use unknown: GetMetricData answered MetadataNoToken with StatusCode ${code}`);
    });
  }
  return { users, unknown };
}

/** The instances known to have made IMDSv1 calls (see `imdsv1Usage`, which also gives the unknown ones). */
export async function instancesUsingImdsv1(
  cloudwatch: MetricsApi,
  instanceIds: readonly string[],
  lookbackDays: number,
  clock: Clock,
): Promise<Set<string>> {
  return (await imdsv1Usage(cloudwatch, instanceIds, lookbackDays, clock)).users;
}
