/*
 * Applies the IMDS policy to instances: judge each (policy.ts), hold back the ones still
 * using IMDSv1 (imdsv1-usage.ts), and modify the rest at EC2's rate (throttle.ts).
 * `sweepPage` is one checkpointed step of the fleet sweep; `enforceInstances` also serves
 * the instance-running handler and the benchmark.
 */
import { imdsv1Usage, MetricsApi } from './imdsv1-usage';
import { describeFilters, evaluate, ImdsPolicy, InstanceView, MetadataOptionsChange } from './policy';
import { InstanceRecord, recordOf } from './instance-record';
import type { RateLimiter } from './shared-limiter';
import {
  AdaptiveTokenBucket, Clock, describeFailure, errorCode, isThrottling, isTransient, LimiterState, withRetries,
} from './throttle';

/** The subset of EC2 the enforcement needs (the SDK client or a simulation). */
export interface Ec2Api {
  describeInstances(input: DescribeInstancesInput): Promise<DescribeInstancesOutput>;
  /** With `DryRun`, only checks the permission (the preflight of the custom resource). */
  modifyInstanceMetadataOptions(input: MetadataOptionsChange & { DryRun?: boolean }): Promise<unknown>;
}

export interface DescribeInstancesInput {
  Filters: Array<{ Name: string; Values: string[] }>;
  MaxResults?: number;
  NextToken?: string;
}

export interface DescribeInstancesOutput {
  Reservations?: ReadonlyArray<{ Instances?: readonly InstanceView[] }>;
  NextToken?: string;
}

/** EC2's published bucket for ModifyInstanceMetadataOptions, per account and region. */
export const MODIFY_BUCKET = { capacity: 100, refillPerSecond: 5 };
/** DescribeInstances pages hold at most this many instances. */
export const PAGE_SIZE = 1000;
/** Calls in flight at once: enough to keep the bucket's rate despite API latency. */
const CONCURRENCY = 8;
/** Attempts of one modification that fails with a transient error before it is reported as failed. */
const MODIFY_ATTEMPTS = 10;
/** Lists capped so the sweep state stays far below Step Functions' 256 KB payload limit. */
const MAX_LISTED = 200;

/** Counts of one run. In ENFORCE mode `nonCompliant = modified + skipped + failed + notReady`. */
export interface Tally {
  /** Instances listed (in the scope's tags and a live state). */
  scanned: number;
  /** Already compliant: no call made. */
  compliant: number;
  /** Carrying the exemption tag: never modified. */
  exempt: number;
  /**
   * Non-compliant, but made IMDSv1 calls within the look-back window, or CloudWatch could not
   * say whether they did: not modified.
   */
  atRisk: number;
  /** Non-compliant and not at risk: what ENFORCE modifies (and AUDIT only reports). */
  nonCompliant: number;
  modified: number;
  /** Gone or changed between listing and modifying (terminated, state change): not a failure. */
  skipped: number;
  failed: number;
  /** EC2 refused them while pending or stopping (IncorrectInstanceState), through every retry of this run. */
  notReady: number;
  /** Hop limit above the fleet's, kept (hopLimitPolicy AT_LEAST). */
  hopLimitKept: number;
  /** HttpEndpoint disabled, kept (enableDisabledEndpoints false). */
  endpointLeftDisabled: number;
}

export interface Failure {
  readonly instanceId: string;
  readonly reason: string;
}

export interface EnforcementResult {
  readonly tally: Tally;
  readonly failures: Failure[];
  readonly atRiskInstanceIds: string[];
  /** Changes not yet made because the deadline came; the caller resumes them. */
  readonly pending: string[];
  /** One record per instance judged (those in `pending` excepted: the step that resumes them records them). */
  readonly records: InstanceRecord[];
}

export interface EnforceOptions {
  readonly ec2: Ec2Api;
  readonly cloudwatch: MetricsApi;
  readonly policy: ImdsPolicy;
  readonly clock: Clock;
  /** Paces ModifyInstanceMetadataOptions: the limiter shared by the account and Region, or a local bucket. */
  readonly limiter: RateLimiter;
  /** No new modification starts after this time (clock ms); what is left is `pending`. @default - none */
  readonly deadline?: number;
  /**
   * Waits before trying again the instances EC2 refused in `pending` or `stopping`
   * (IncorrectInstanceState), counted from the first refusal.
   * @default - 15, 30, 60 and 120 s with a deadline; 15 and 30 s without one
   */
  readonly notReadyRetryDelaysMs?: readonly number[];
  /**
   * Throttled attempts of one modification before it fails. Throttling only says the bucket
   * is shared, so by default a modification is retried until it is done or the deadline comes.
   * @default - no limit
   */
  readonly maxThrottledAttempts?: number;
}

const NOT_READY_DELAYS_MS = [15_000, 30_000, 60_000, 120_000];
const NOT_READY_DELAYS_NO_DEADLINE_MS = [15_000, 30_000];

export function emptyTally(): Tally {
  return {
    scanned: 0, compliant: 0, exempt: 0, atRisk: 0, nonCompliant: 0, modified: 0, skipped: 0, failed: 0,
    notReady: 0, hopLimitKept: 0, endpointLeftDisabled: 0,
  };
}

export function addTally(a: Tally, b: Tally): Tally {
  const sum = emptyTally();
  for (const key of Object.keys(sum) as Array<keyof Tally>) sum[key] = (a[key] ?? 0) + (b[key] ?? 0);
  return sum;
}

/**
 * Judges the instances and, in ENFORCE mode, modifies the non-compliant ones that are
 * neither exempt nor at risk. Already-compliant instances cost no call.
 */
export async function enforceInstances(options: EnforceOptions, instances: readonly InstanceView[]): Promise<EnforcementResult> {
  const { policy } = options;
  const tally = emptyTally();
  const records: InstanceRecord[] = [];
  const candidates: Array<{ instance: InstanceView; change: MetadataOptionsChange; reasons: string[]; notes: string[] }> = [];
  for (const instance of instances) {
    const verdict = evaluate(instance, policy);
    if (verdict.kind === 'gone' || verdict.kind === 'out-of-scope') continue;
    tally.scanned++;
    if (verdict.kind === 'exempt') {
      tally.exempt++;
      records.push(recordOf(instance, 'exempt', `tagged ${policy.exemptionTagKey}=true`));
      continue;
    }
    tally.hopLimitKept += verdict.leftAlone.includes('hop-limit-above-fleet') ? 1 : 0;
    tally.endpointLeftDisabled += verdict.leftAlone.includes('endpoint-disabled') ? 1 : 0;
    if (verdict.kind === 'compliant') {
      tally.compliant++;
      records.push(recordOf(instance, 'compliant', verdict.notes.join('; ') || undefined));
    } else {
      candidates.push({ instance, change: verdict.change, reasons: verdict.reasons, notes: verdict.notes });
    }
  }

  const usage = await imdsv1Usage(options.cloudwatch, candidates.map((c) => c.change.InstanceId), policy.imdsv1LookbackDays, options.clock);
  const atRiskInstanceIds: string[] = [];
  const changes: typeof candidates = [];
  for (const candidate of candidates) {
    const id = candidate.change.InstanceId;
    const why = usage.users.has(id)
      ? `made IMDSv1 calls (MetadataNoToken > 0) in the last ${policy.imdsv1LookbackDays} days`
      : usage.unknown.get(id);
    if (why === undefined) {
      changes.push(candidate);
      continue;
    }
    atRiskInstanceIds.push(id);
    records.push(recordOf(candidate.instance, 'at-risk', [`not modified: ${why}`, ...candidate.reasons, ...candidate.notes].join('; ')));
  }
  tally.atRisk = atRiskInstanceIds.length;
  tally.nonCompliant = changes.length;

  if (policy.mode === 'AUDIT') {
    for (const c of changes) {
      records.push(recordOf(c.instance, 'non-compliant', [`AUDIT: would set ${describeChange(c.change)}`, ...c.reasons, ...c.notes].join('; ')));
    }
    return { tally, failures: [], atRiskInstanceIds, pending: [], records };
  }
  const applied = await applyChanges(options, changes);
  return {
    tally: addTally(tally, applied.tally), failures: applied.failures, atRiskInstanceIds, pending: applied.pending,
    records: [...records, ...applied.records],
  };
}

function describeChange(change: MetadataOptionsChange): string {
  const { InstanceId: _id, ...options } = change;
  return Object.entries(options).map(([k, v]) => `${k}=${v}`).join(', ');
}

type Candidate = { instance: InstanceView; change: MetadataOptionsChange; reasons: string[]; notes: string[] };

/**
 * Makes the calls, at most CONCURRENCY at a time, each after taking a token. Instances that
 * vanished are skipped, throttling is retried, anything else is a failure of that instance.
 * Instances EC2 refuses while pending or stopping are tried again, looked up afresh, after
 * the others (see `notReadyRetryDelaysMs`); those still refused are reported `not-ready`.
 */
async function applyChanges(options: EnforceOptions, changes: readonly Candidate[]) {
  const tally = emptyTally();
  const failures: Failure[] = [];
  const pending: string[] = [];
  const records: InstanceRecord[] = [];
  let notReady: Array<Candidate & { state: string }> = [];

  const run = async (batch: readonly Candidate[], lastRound: boolean): Promise<void> => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batch.length) {
        const candidate = batch[next++];
        const { change, instance } = candidate;
        if (options.deadline !== undefined && options.clock.now() >= options.deadline) {
          pending.push(change.InstanceId);
          continue;
        }
        const outcome = await modifyOne(options, change);
        const detail = [...candidate.reasons, ...candidate.notes];
        if (outcome === 'modified') {
          tally.modified++;
          records.push(recordOf(instance, 'modified', [`set ${describeChange(change)}`, ...detail].join('; '), change));
        } else if (outcome === 'skipped') {
          tally.skipped++;
          records.push(recordOf(instance, 'skipped', ['gone before it could be modified (InvalidInstanceID)', ...detail].join('; ')));
        } else if (outcome === 'pending') {
          // Throttled or failing transiently until the deadline: the next step carries on.
          pending.push(change.InstanceId);
        } else if (outcome === 'not-ready' && !lastRound) {
          notReady.push({ ...candidate, state: instance.State?.Name ?? 'unknown' });
        } else if (outcome === 'not-ready') {
          tally.notReady++;
          records.push(recordOf(instance, 'not-ready', [
            `EC2 refused the change while the instance was ${instance.State?.Name ?? 'changing state'} (IncorrectInstanceState) through every retry; `
            + 'the next sweep, or the launch rule when it starts, enforces it', ...detail].join('; ')));
        } else {
          tally.failed++;
          failures.push({ instanceId: change.InstanceId, reason: outcome.reason });
          records.push(recordOf(instance, 'failed', [outcome.reason, ...detail].join('; ')));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, batch.length) }, worker));
  };

  await run(changes, false);
  const delays = options.notReadyRetryDelaysMs ?? (options.deadline === undefined ? NOT_READY_DELAYS_NO_DEADLINE_MS : NOT_READY_DELAYS_MS);
  const firstRefusal = options.clock.now();
  for (let round = 0; round < delays.length && notReady.length > 0; round++) {
    const due = firstRefusal + delays[round];
    if (options.deadline !== undefined && due >= options.deadline) {
      // No time left in this step: the next one looks at them again.
      pending.push(...notReady.map((c) => c.change.InstanceId));
      notReady = [];
      break;
    }
    await options.clock.sleep(Math.max(0, due - options.clock.now()));
    const waiting = notReady;
    notReady = [];
    const fresh = await lookAgain(options, waiting);
    for (const c of waiting) {
      if (fresh.retry.some((r) => r.change.InstanceId === c.change.InstanceId)) continue;
      tally.skipped++;
      records.push(recordOf(fresh.seen.get(c.change.InstanceId) ?? c.instance, 'skipped',
        fresh.seen.has(c.change.InstanceId)
          ? 'no longer needs a change (compliant, exempt or out of scope when looked at again)'
          : 'gone (terminated) before it could be modified'));
    }
    await run(fresh.retry, round === delays.length - 1);
  }
  // Without any retry configured, what EC2 refused is reported rather than forgotten.
  for (const c of notReady) {
    tally.notReady++;
    records.push(recordOf(c.instance, 'not-ready', `EC2 refused the change while the instance was ${c.state} (IncorrectInstanceState)`));
  }
  return { tally, failures, pending, records };
}

/** Lists the instances again, and what each now needs. */
async function lookAgain(options: EnforceOptions, waiting: readonly Candidate[]) {
  const seen = new Map<string, InstanceView>();
  const retry: Candidate[] = [];
  for (let i = 0; i < waiting.length; i += 200) {
    const ids = waiting.slice(i, i + 200).map((c) => c.change.InstanceId);
    const page = await describe(options, { Filters: [...describeFilters(options.policy), { Name: 'instance-id', Values: ids }] });
    for (const instance of instancesOf(page)) {
      seen.set(instance.InstanceId!, instance);
      const verdict = evaluate(instance, options.policy);
      if (verdict.kind === 'non-compliant') retry.push({ instance, change: verdict.change, reasons: verdict.reasons, notes: verdict.notes });
    }
  }
  return { seen, retry };
}

const VANISHED = new Set(['InvalidInstanceID.NotFound', 'InvalidInstanceID.Malformed']);

async function modifyOne(options: EnforceOptions, change: MetadataOptionsChange): Promise<'modified' | 'skipped' | 'not-ready' | 'pending' | { reason: string }> {
  let throttled = 0;
  let transient = 0;
  for (;;) {
    // A retry after the deadline is left to the next step (or the next invocation).
    if ((throttled > 0 || transient > 0) && options.deadline !== undefined && options.clock.now() >= options.deadline) return 'pending';
    await options.limiter.take();
    try {
      await options.ec2.modifyInstanceMetadataOptions(change);
      options.limiter.onSuccess();
      return 'modified';
    } catch (err) {
      if (VANISHED.has(errorCode(err))) return 'skipped';
      if (errorCode(err) === 'IncorrectInstanceState') return 'not-ready';
      if (isThrottling(err)) {
        await options.limiter.onThrottled();
        if (++throttled < (options.maxThrottledAttempts ?? Number.POSITIVE_INFINITY)) continue;
      } else if (isTransient(err) && ++transient < MODIFY_ATTEMPTS) {
        await options.clock.sleep(Math.min(10_000, 200 * 2 ** transient));
        continue;
      }
      return { reason: describeFailure('ec2:ModifyInstanceMetadataOptions', err) };
    }
  }
}

/** The checkpoint the state machine carries from one page to the next. */
export interface SweepState {
  /** Where DescribeInstances continues; absent for the first page. */
  readonly nextToken?: string;
  /** Instances of the last page whose change the deadline interrupted. */
  readonly pending?: string[];
  readonly pages?: number;
  readonly tally?: Tally;
  readonly failures?: Failure[];
  readonly atRiskInstanceIds?: string[];
  readonly limiter?: LimiterState;
  /** True once every page has been handled. */
  readonly done?: boolean;
}

export interface SweepPageResult {
  readonly state: SweepState;
  /** What this invocation alone did (for per-page metrics). */
  readonly page: Tally;
  readonly describeCalls: number;
  /** The per-instance report lines of this invocation. */
  readonly records: InstanceRecord[];
}

/**
 * One step of the sweep: resumes the interrupted changes of the previous page if any,
 * otherwise lists the next page (MaxResults 1000) and enforces the policy on it.
 * Stops starting changes at `deadline` and hands the rest to the next step.
 */
export async function sweepPage(
  options: Omit<EnforceOptions, 'limiter'> & { readonly limiter?: RateLimiter },
  state: SweepState,
): Promise<SweepPageResult> {
  // Without a shared limiter, a local bucket carried from step to step in the checkpoint.
  const limiter = options.limiter ?? new AdaptiveTokenBucket({ ...MODIFY_BUCKET, clock: options.clock, resumeFrom: state.limiter });
  const enforce = { ...options, limiter };
  let describeCalls = 0;
  let instances: InstanceView[];
  let nextToken: string | undefined;

  if (state.pending && state.pending.length > 0) {
    // Look again before changing: an instance may have been exempted or terminated meanwhile.
    instances = [];
    for (let i = 0; i < state.pending.length; i += 200) {
      const ids = state.pending.slice(i, i + 200);
      describeCalls++;
      const page = await describe(options, {
        Filters: [...describeFilters(options.policy), { Name: 'instance-id', Values: ids }],
      });
      instances.push(...instancesOf(page));
    }
    nextToken = state.nextToken;
  } else {
    describeCalls++;
    const page = await describe(options, {
      Filters: describeFilters(options.policy),
      MaxResults: PAGE_SIZE,
      ...(state.nextToken ? { NextToken: state.nextToken } : {}),
    });
    instances = instancesOf(page);
    nextToken = page.NextToken || undefined;
  }

  const resuming = state.pending?.length ?? 0;
  // Resumed instances passed the IMDSv1 check minutes ago: no need to ask CloudWatch again.
  const policy = resuming > 0 ? { ...options.policy, imdsv1LookbackDays: 0 } : options.policy;
  const result = await enforceInstances({ ...enforce, policy }, instances);
  let page = result.tally;
  const records = result.records;
  if (resuming > 0) {
    // Already counted as scanned and non-compliant when first listed: only outcomes are new.
    // Whatever neither changed nor failed nor waits again has vanished, was exempted or was fixed meanwhile.
    const { modified, failed, notReady } = page;
    page = { ...emptyTally(), modified, failed, notReady, skipped: resuming - modified - failed - notReady - result.pending.length };
    const listed = new Set(instances.map((i) => i.InstanceId));
    for (const id of state.pending!.filter((p) => !listed.has(p))) {
      records.push(recordOf({ InstanceId: id, State: { Name: 'gone' } }, 'skipped', 'gone (terminated) before it could be modified'));
    }
  }

  const tally = addTally(state.tally ?? emptyTally(), page);
  const pending = result.pending;
  return {
    page,
    describeCalls,
    records,
    state: {
      ...(nextToken ? { nextToken } : {}),
      ...(pending.length > 0 ? { pending } : {}),
      pages: (state.pages ?? 0) + (state.pending?.length ? 0 : 1),
      tally,
      failures: [...(state.failures ?? []), ...result.failures].slice(0, MAX_LISTED),
      atRiskInstanceIds: [...(state.atRiskInstanceIds ?? []), ...result.atRiskInstanceIds].slice(0, MAX_LISTED),
      ...(limiter instanceof AdaptiveTokenBucket ? { limiter: limiter.snapshot() } : {}),
      done: !nextToken && pending.length === 0,
    },
  };
}

/** DescribeInstances with retries; a failure that remains says what was denied or broke. */
export async function describe(options: Pick<EnforceOptions, 'ec2' | 'clock'>, input: DescribeInstancesInput): Promise<DescribeInstancesOutput> {
  try {
    return await withRetries(() => options.ec2.describeInstances(input), { clock: options.clock });
  } catch (err) {
    throw new EnforcementError(describeFailure('ec2:DescribeInstances', err), err);
  }
}

/** A failure of a whole step (not of one instance), with a reason an operator can act on. */
export class EnforcementError extends Error {
  constructor(message: string, public override readonly cause?: unknown) {
    super(message);
    this.name = 'EnforcementError';
  }
}

export function instancesOf(page: DescribeInstancesOutput): InstanceView[] {
  return (page.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}
