/*
 * The IMDS policy, in one place: what a compliant instance looks like, which instances are
 * in scope or exempt, and what to change on the others. The sweep, the instance-running
 * handler, the custom resource and the benchmark all use this module.
 */

/** What the enforcement does with non-compliant instances. */
export type EnforcementMode = 'ENFORCE' | 'AUDIT';

/** AT_LEAST raises lower hop limits and keeps higher ones; EXACT sets every instance to the fleet's. */
export type HopLimitPolicy = 'AT_LEAST' | 'EXACT';

/** The policy the construct renders into the handlers' environment and the custom resource. */
export interface ImdsPolicy {
  readonly mode: EnforcementMode;
  /** HttpPutResponseHopLimit every in-scope instance must have (at least, or exactly), 1–64. */
  readonly hopLimit: number;
  /** How `hopLimit` is applied. @default 'AT_LEAST' */
  readonly hopLimitPolicy?: HopLimitPolicy;
  /** Whether an instance with `HttpEndpoint=disabled` gets IMDS turned on. @default false */
  readonly enableDisabledEndpoints?: boolean;
  /** When true, instance metadata tags must be enabled; when false they are left as they are. */
  readonly instanceMetadataTags: boolean;
  /** Only instances carrying all these tags (exact key and value) are in scope. */
  readonly instanceTags: Readonly<Record<string, string>>;
  /** Instances whose tag of this key is `true` (any case) are never modified. */
  readonly exemptionTagKey: string;
  /** Instances that made IMDSv1 calls in this many days are not flipped; 0 turns the check off. */
  readonly imdsv1LookbackDays: number;
}

/** The parts of an EC2 instance description the policy looks at. */
export interface InstanceView {
  readonly InstanceId?: string;
  readonly State?: { readonly Name?: string };
  readonly Tags?: ReadonlyArray<{ readonly Key?: string; readonly Value?: string }>;
  readonly MetadataOptions?: {
    readonly HttpTokens?: string;
    readonly HttpPutResponseHopLimit?: number;
    readonly HttpEndpoint?: string;
    readonly InstanceMetadataTags?: string;
  };
}

/**
 * The parameters of one ModifyInstanceMetadataOptions call. The hop limit and the endpoint
 * are always sent, as the instance's own values where the policy keeps them.
 */
export interface MetadataOptionsChange {
  readonly InstanceId: string;
  readonly HttpTokens: 'required';
  readonly HttpPutResponseHopLimit: number;
  readonly HttpEndpoint: 'enabled' | 'disabled';
  readonly InstanceMetadataTags?: 'enabled';
}

/** A setting the policy deliberately leaves as the instance has it. */
export type LeftAlone = 'hop-limit-above-fleet' | 'endpoint-disabled';

/** Where one instance stands against the policy; `leftAlone` says what it deliberately kept. */
export type Verdict =
  | { readonly kind: 'out-of-scope' }
  | { readonly kind: 'gone' }
  | { readonly kind: 'exempt' }
  | { readonly kind: 'compliant'; readonly leftAlone: LeftAlone[]; readonly notes: string[] }
  | {
    readonly kind: 'non-compliant'; readonly change: MetadataOptionsChange; readonly reasons: string[];
    readonly leftAlone: LeftAlone[]; readonly notes: string[];
  };

/** States in which ModifyInstanceMetadataOptions is meaningful; later states are on their way out. */
export const ENFORCEABLE_STATES = ['pending', 'running', 'stopping', 'stopped'];

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

function tagValue(instance: InstanceView, key: string): string | undefined {
  return instance.Tags?.find((t) => t.Key === key)?.Value;
}

/** True when the instance carries the exemption tag with the value `true` (any case, surrounding blanks ignored). */
export function isExempt(instance: InstanceView, policy: ImdsPolicy): boolean {
  return tagValue(instance, policy.exemptionTagKey)?.trim().toLowerCase() === 'true';
}

/** True when the instance carries every tag of `instanceTags` with exactly that value. */
export function matchesInstanceTags(instance: InstanceView, policy: ImdsPolicy): boolean {
  return Object.entries(policy.instanceTags).every(([key, value]) => tagValue(instance, key) === value);
}

const hopLimitPolicyOf = (policy: ImdsPolicy): HopLimitPolicy => policy.hopLimitPolicy ?? 'AT_LEAST';

/**
 * Compares an instance's metadata options with the policy: what must change (`reasons`), and
 * what the policy deliberately keeps (a hop limit above the fleet's under AT_LEAST, a disabled
 * endpoint unless `enableDisabledEndpoints`). Enforcement only ever tightens by default.
 */
export function assess(instance: InstanceView, policy: ImdsPolicy): {
  reasons: string[]; leftAlone: LeftAlone[]; notes: string[]; hopLimit: number; endpoint: 'enabled' | 'disabled';
} {
  const options = instance.MetadataOptions ?? {};
  const reasons: string[] = [];
  const leftAlone: LeftAlone[] = [];
  const notes: string[] = [];
  if (options.HttpTokens !== 'required') reasons.push(`HttpTokens=${options.HttpTokens ?? 'unset'}`);

  const hop = options.HttpPutResponseHopLimit;
  let hopLimit = policy.hopLimit;
  if (hop !== policy.hopLimit) {
    if (hopLimitPolicyOf(policy) === 'AT_LEAST' && typeof hop === 'number' && hop > policy.hopLimit) {
      hopLimit = hop;
      leftAlone.push('hop-limit-above-fleet');
      notes.push(`HttpPutResponseHopLimit=${hop} kept: above the fleet's ${policy.hopLimit}, and hopLimitPolicy AT_LEAST never lowers it`);
    } else {
      reasons.push(`HttpPutResponseHopLimit=${hop ?? 'unset'}`);
    }
  }

  let endpoint: 'enabled' | 'disabled' = 'enabled';
  if (options.HttpEndpoint === 'disabled' && !policy.enableDisabledEndpoints) {
    endpoint = 'disabled';
    leftAlone.push('endpoint-disabled');
    notes.push('HttpEndpoint=disabled kept: IMDS was turned off on purpose, and enableDisabledEndpoints is false');
  } else if (options.HttpEndpoint !== 'enabled') {
    reasons.push(`HttpEndpoint=${options.HttpEndpoint ?? 'unset'}`);
  }
  if (policy.instanceMetadataTags && options.InstanceMetadataTags !== 'enabled') {
    reasons.push(`InstanceMetadataTags=${options.InstanceMetadataTags ?? 'unset'}`);
  }
  return { reasons, leftAlone, notes, hopLimit, endpoint };
}

/** Why the instance's metadata options differ from the policy; empty when compliant. */
export function deviations(instance: InstanceView, policy: ImdsPolicy): string[] {
  return assess(instance, policy).reasons;
}

/** The one ModifyInstanceMetadataOptions call that makes an instance compliant. */
export function changeFor(instance: InstanceView & { InstanceId: string }, policy: ImdsPolicy): MetadataOptionsChange {
  const { hopLimit, endpoint } = assess(instance, policy);
  return {
    InstanceId: instance.InstanceId,
    HttpTokens: 'required',
    HttpPutResponseHopLimit: hopLimit,
    HttpEndpoint: endpoint,
    ...(policy.instanceMetadataTags ? { InstanceMetadataTags: 'enabled' as const } : {}),
  };
}

/** Judges one instance. Scope and exemption come before compliance: an exempt instance is never touched. */
export function evaluate(instance: InstanceView, policy: ImdsPolicy): Verdict {
  if (!instance.InstanceId || !ENFORCEABLE_STATES.includes(instance.State?.Name ?? '')) return { kind: 'gone' };
  if (!matchesInstanceTags(instance, policy)) return { kind: 'out-of-scope' };
  if (isExempt(instance, policy)) return { kind: 'exempt' };
  const { reasons, leftAlone, notes } = assess(instance, policy);
  if (reasons.length === 0) return { kind: 'compliant', leftAlone, notes };
  return { kind: 'non-compliant', change: changeFor({ ...instance, InstanceId: instance.InstanceId }, policy), reasons, leftAlone, notes };
}

/**
 * DescribeInstances filters that narrow the listing server-side: live states and the scope tags.
 *
 * The metadata-options.* filters cannot express "non-compliant": filters of different names
 * are ANDed, and non-compliance is an OR (tokens, hop limit, endpoint or tags). The sweep also
 * reports how many instances are compliant, so it lists the whole scope and judges here.
 */
export function describeFilters(policy: ImdsPolicy): Array<{ Name: string; Values: string[] }> {
  return [
    { Name: 'instance-state-name', Values: [...ENFORCEABLE_STATES] },
    ...Object.entries(policy.instanceTags).map(([key, value]) => ({ Name: `tag:${key}`, Values: [value] })),
  ];
}

const TAG_KEY = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;

/**
 * Reads and checks a policy that crossed a process boundary (environment variable,
 * custom resource properties, where numbers and booleans may arrive as strings).
 */
export function parsePolicy(raw: unknown): ImdsPolicy {
  const input = (typeof raw === 'string' ? safeJson(raw) : raw) as Record<string, unknown> | undefined;
  if (!input || typeof input !== 'object') throw new PolicyError('the IMDS policy is missing or not an object');
  const problems: string[] = [];

  const mode = String(input.mode ?? '');
  if (mode !== 'ENFORCE' && mode !== 'AUDIT') problems.push(`mode: got ${JSON.stringify(input.mode)}; allowed: ENFORCE or AUDIT`);

  const hopLimit = Number(input.hopLimit);
  if (!Number.isInteger(hopLimit) || hopLimit < 1 || hopLimit > 64) {
    problems.push(`hopLimit: got ${JSON.stringify(input.hopLimit)}; allowed: an integer from 1 to 64`);
  }

  const instanceMetadataTags = parseBoolean(input.instanceMetadataTags);
  if (instanceMetadataTags === undefined) {
    problems.push(`instanceMetadataTags: got ${JSON.stringify(input.instanceMetadataTags)}; allowed: true or false`);
  }

  const instanceTags = input.instanceTags ?? {};
  const tagsOk = typeof instanceTags === 'object' && !Array.isArray(instanceTags)
    && Object.entries(instanceTags as object).every(([k, v]) => TAG_KEY.test(k) && typeof v === 'string');
  if (!tagsOk) problems.push(`instanceTags: got ${JSON.stringify(instanceTags)}; allowed: an object of tag keys to string values`);

  const exemptionTagKey = String(input.exemptionTagKey ?? '');
  if (!TAG_KEY.test(exemptionTagKey)) problems.push(`exemptionTagKey: got ${JSON.stringify(input.exemptionTagKey)}; allowed: a tag key`);

  const imdsv1LookbackDays = Number(input.imdsv1LookbackDays ?? 0);
  if (!Number.isInteger(imdsv1LookbackDays) || imdsv1LookbackDays < 0 || imdsv1LookbackDays > 455) {
    problems.push(`imdsv1LookbackDays: got ${JSON.stringify(input.imdsv1LookbackDays)}; allowed: an integer from 0 to 455`);
  }

  const hopLimitPolicy = String(input.hopLimitPolicy ?? 'AT_LEAST');
  if (hopLimitPolicy !== 'AT_LEAST' && hopLimitPolicy !== 'EXACT') {
    problems.push(`hopLimitPolicy: got ${JSON.stringify(input.hopLimitPolicy)}; allowed: AT_LEAST or EXACT`);
  }
  const enableDisabledEndpoints = parseBoolean(input.enableDisabledEndpoints ?? false);
  if (enableDisabledEndpoints === undefined) {
    problems.push(`enableDisabledEndpoints: got ${JSON.stringify(input.enableDisabledEndpoints)}; allowed: true or false`);
  }

  if (problems.length > 0) throw new PolicyError(`invalid IMDS policy: ${problems.join('; ')}`);
  return {
    mode: mode as EnforcementMode,
    hopLimit,
    hopLimitPolicy: hopLimitPolicy as HopLimitPolicy,
    enableDisabledEndpoints: enableDisabledEndpoints!,
    instanceMetadataTags: instanceMetadataTags!,
    instanceTags: instanceTags as Record<string, string>,
    exemptionTagKey,
    imdsv1LookbackDays,
  };
}

function parseBoolean(value: unknown): boolean | undefined {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new PolicyError('the IMDS policy is not valid JSON');
  }
}
