/**
 * CloudWatch embedded metric format: one log line that CloudWatch turns into metrics,
 * without a PutMetricData call or its IAM permission.
 */
export interface MetricValue {
  readonly name: string;
  readonly value: number;
  readonly unit?: 'Count' | 'Percent' | 'Milliseconds';
}

/** Builds one EMF document (exported for tests). */
export function emfDocument(
  namespace: string,
  dimensions: Record<string, string>,
  metrics: MetricValue[],
  timestamp: number,
): Record<string, unknown> {
  return {
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [{
        Namespace: namespace,
        Dimensions: [Object.keys(dimensions)],
        Metrics: metrics.map((m) => ({ Name: m.name, Unit: m.unit ?? 'Count' })),
      }],
    },
    ...dimensions,
    ...Object.fromEntries(metrics.map((m) => [m.name, m.value])),
  };
}

/** Where EMF lines go: the function's log (stdout); benchmarks count them instead. */
export const metricSink = {
  write: (line: string): void => {
    process.stdout.write(`${line}\n`);
  },
};

/** Writes one EMF document to the function's log. */
export function putMetrics(
  namespace: string,
  dimensions: Record<string, string>,
  metrics: MetricValue[],
  timestamp: number,
): void {
  if (metrics.length === 0) return;
  metricSink.write(JSON.stringify(emfDocument(namespace, dimensions, metrics, timestamp)));
}
