/* Test fixtures: instances as DescribeInstances returns them, and the policy the construct renders. */
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { EC2Client, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import type { ImdsPolicy } from '../../../lib/imds/handler/shared/policy';

export const POLICY: ImdsPolicy = {
  mode: 'ENFORCE',
  hopLimit: 2,
  instanceMetadataTags: true,
  instanceTags: {},
  exemptionTagKey: 'ImdsEnforcementExempt',
  imdsv1LookbackDays: 14,
};

export interface InstanceSpec {
  id: string;
  state?: string;
  tokens?: 'optional' | 'required';
  hop?: number;
  endpoint?: 'enabled' | 'disabled';
  tags?: Record<string, string>;
  metadataTags?: 'enabled' | 'disabled';
}

export function instance(spec: InstanceSpec) {
  return {
    InstanceId: spec.id,
    State: { Name: (spec.state ?? 'running') as 'running' },
    Tags: Object.entries(spec.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
    MetadataOptions: {
      State: 'applied' as const,
      HttpTokens: spec.tokens ?? 'optional',
      HttpPutResponseHopLimit: spec.hop ?? 1,
      HttpEndpoint: spec.endpoint ?? 'enabled',
      InstanceMetadataTags: spec.metadataTags ?? 'disabled',
    },
  };
}

export const compliant = (id: string, extra: Partial<InstanceSpec> = {}) =>
  instance({ id, tokens: 'required', hop: 2, metadataTags: 'enabled', ...extra });

export function page(instances: ReturnType<typeof instance>[], nextToken?: string) {
  return { Reservations: [{ Instances: instances }], ...(nextToken ? { NextToken: nextToken } : {}) };
}

export function awsError(name: string, message = `${name} (simulated)`): Error {
  return Object.assign(new Error(message), { name, $metadata: {} });
}

/** A clock that never waits: sleeping only moves its time forward. */
export function instantClock() {
  let t = 1_700_000_000_000;
  return { now: () => t, sleep: async (ms: number) => { t += ms; } };
}

/** A GetMetricData answer: `values` per instance id, `status` per instance id (default Complete). */
export function metricAnswer(values: Record<string, number[]> = {}, status: Record<string, string> = {}) {
  return (input: any) => ({
    MetricDataResults: input.MetricDataQueries.map((q: any) => {
      const id = q.MetricStat.Metric.Dimensions[0].Value;
      return { Id: q.Id, StatusCode: status[id] ?? 'Complete', Values: values[id] ?? [] };
    }),
  });
}

/**
 * The EC2 and CloudWatch clients mocked for a handler test file, and the log lines the
 * handler prints: reset before each test, with no IMDSv1 usage and modifies that succeed.
 */
export function mockedImdsClients() {
  const ec2 = mockClient(EC2Client);
  const cloudwatch = mockClient(CloudWatchClient);
  const logs: string[] = [];
  beforeEach(() => {
    ec2.reset();
    cloudwatch.reset();
    // CloudWatch answers every query, Complete and without datapoints: no IMDSv1 calls.
    cloudwatch.on(GetMetricDataCommand).callsFake((input) => ({
      MetricDataResults: input.MetricDataQueries.map((q: { Id: string }) => ({ Id: q.Id, StatusCode: 'Complete', Values: [] })),
    }));
    ec2.on(ModifyInstanceMetadataOptionsCommand).resolves({});
    process.env.IMDS_POLICY = JSON.stringify(POLICY);
    logs.length = 0;
    jest.spyOn(console, 'log').mockImplementation((line: string) => { logs.push(line); });
  });
  afterEach(() => jest.restoreAllMocks());
  return { ec2, cloudwatch, logs };
}
