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
  MetricDataResults?: Array<{ Id?: string; Values?: number[] }>;
  NextToken?: string;
}

/** GetMetricData accepts at most 500 queries per call. */
export const QUERIES_PER_CALL = 500;

/**
 * The instances among `instanceIds` with a MetadataNoToken sum above zero in the last
 * `lookbackDays` days.
 */
export async function instancesUsingImdsv1(
  cloudwatch: MetricsApi,
  instanceIds: readonly string[],
  lookbackDays: number,
  clock: Clock,
): Promise<Set<string>> {
  const users = new Set<string>();
  if (lookbackDays <= 0 || instanceIds.length === 0) return users;
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
        if ((result.Values ?? []).some((v) => v > 0) && batch[index]) users.add(batch[index]);
      }
      nextToken = page.NextToken;
    } while (nextToken);
  }
  return users;
}
