/* Test fixtures: instances as DescribeInstances returns them, and the policy the construct renders. */
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
