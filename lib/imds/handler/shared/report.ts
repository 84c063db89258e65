/*
 * What the enforcement tells operators: CloudWatch metrics as Embedded Metric Format log
 * lines (no PutMetricData permission needed) and one structured JSON line per outcome.
 */
import type { Failure, Tally } from './enforcer';

export const METRIC_NAMESPACE = 'AgentFleet/ImdsEnforcement';

const METRICS: Array<[keyof Tally, string]> = [
  ['scanned', 'Scanned'], ['compliant', 'Compliant'], ['exempt', 'Exempt'], ['atRisk', 'AtRisk'],
  ['nonCompliant', 'NonCompliant'], ['modified', 'Modified'], ['skipped', 'Skipped'], ['failed', 'Failed'],
  ['notReady', 'NotReady'], ['hopLimitKept', 'HopLimitKept'], ['endpointLeftDisabled', 'EndpointLeftDisabled'],
];

/**
 * One EMF line with the counts of one unit of work (a sweep page, one launched instance).
 * CloudWatch sums them, so a run's totals are the sum over its lines.
 *
 * @param source `Sweep`, `Launch` or `Drift` (the metric dimension)
 */
export function emfLine(source: 'Sweep' | 'Launch' | 'Drift', mode: string, tally: Tally, timestamp: number): string {
  const values = Object.fromEntries(METRICS.map(([key, name]) => [name, tally[key]]));
  return JSON.stringify({
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [{
        Namespace: METRIC_NAMESPACE,
        Dimensions: [['Source']],
        Metrics: METRICS.map(([, name]) => ({ Name: name, Unit: 'Count' })),
      }],
    },
    Source: source,
    Mode: mode,
    ...values,
  });
}

/** The structured line that sums up a run, with the ids behind `failed` and `atRisk`. */
export function summaryLine(message: string, fields: {
  mode: string;
  tally: Tally;
  failures: readonly Failure[];
  atRiskInstanceIds: readonly string[];
  [extra: string]: unknown;
}): string {
  const { tally, failures, atRiskInstanceIds, ...rest } = fields;
  return JSON.stringify({
    level: tally.failed > 0 ? 'ERROR' : 'INFO',
    message,
    ...rest,
    ...tally,
    failedInstanceIds: failures.map((f) => f.instanceId),
    failures,
    atRiskInstanceIds,
  });
}
