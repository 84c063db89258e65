/*
 * One line of a sweep's per-instance report: which instance, in which state, its metadata
 * options before and after, what happened and why.
 */
import type { InstanceView, MetadataOptionsChange } from './policy';

/** What happened to one instance. */
export type Outcome =
  | 'compliant' // nothing to change
  | 'exempt' // carries the exemption tag
  | 'at-risk' // IMDSv1 in use, or unknown: not modified
  | 'non-compliant' // AUDIT: would be modified
  | 'modified'
  | 'skipped' // gone, or no longer needing a change, when it came to it
  | 'not-ready' // pending/stopping through every retry (IncorrectInstanceState)
  | 'failed';

export interface MetadataOptionsView {
  readonly HttpTokens?: string;
  readonly HttpPutResponseHopLimit?: number;
  readonly HttpEndpoint?: string;
  readonly InstanceMetadataTags?: string;
}

export interface InstanceRecord {
  readonly instanceId: string;
  /** The instance state when it was listed. */
  readonly state: string;
  readonly before: MetadataOptionsView;
  /** The options after this run: `before` with the change applied when modified, else `before`. */
  readonly after: MetadataOptionsView;
  readonly outcome: Outcome;
  readonly reason?: string;
}

export function optionsOf(instance: InstanceView): MetadataOptionsView {
  const o = instance.MetadataOptions ?? {};
  return {
    HttpTokens: o.HttpTokens,
    HttpPutResponseHopLimit: o.HttpPutResponseHopLimit,
    HttpEndpoint: o.HttpEndpoint,
    InstanceMetadataTags: o.InstanceMetadataTags,
  };
}

export function recordOf(instance: InstanceView, outcome: Outcome, reason?: string, change?: MetadataOptionsChange): InstanceRecord {
  const before = optionsOf(instance);
  let after = before;
  if (change) {
    const { InstanceId: _id, ...applied } = change;
    after = { ...before, ...applied };
  }
  return {
    instanceId: instance.InstanceId ?? 'unknown',
    state: instance.State?.Name ?? 'unknown',
    before,
    after,
    outcome,
    ...(reason ? { reason } : {}),
  };
}
