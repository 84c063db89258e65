/*
 * Coverage status change events, found by comparing two reports and put on the account's
 * default EventBridge bus in batches. The event's contract is in ../../coverage-event.ts.
 */
import { EventBridgeClient, PutEventsCommand, PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import { Category, CATEGORIES, COVERAGE_CHANGE_DETAIL_TYPE, COVERAGE_EVENT_SOURCE, CoverageChangeDetail, HEALTHY_CATEGORIES } from '../../coverage-event';

export { Category, CATEGORIES, COVERAGE_CHANGE_DETAIL_TYPE, COVERAGE_EVENT_SOURCE, CoverageChangeDetail };

/** What a report says, as far as change events need it. */
export interface ReportSnapshot {
  readonly generatedAt: string;
  readonly instanceIds: Partial<Record<Category, string[]>>;
}

/** Each instance's category in a report. */
function categoriesOf(report: ReportSnapshot): Map<string, Category> {
  const byInstance = new Map<string, Category>();
  for (const category of CATEGORIES) {
    for (const id of report.instanceIds[category] ?? []) byInstance.set(id, category);
  }
  return byInstance;
}

/**
 * The changes between two reports: instances whose category differs, and instances new
 * since the previous report. Instances that left (terminated, stopped) are no change.
 */
export function coverageChanges(
  previous: ReportSnapshot,
  current: ReportSnapshot,
  meta: Pick<CoverageChangeDetail, 'backend' | 'accountId' | 'region' | 'reportKey'>,
  serviceState: (instanceId: string) => string | undefined,
): CoverageChangeDetail[] {
  const before = categoriesOf(previous);
  const changes: CoverageChangeDetail[] = [];
  for (const [instanceId, now] of [...categoriesOf(current)].sort(([a], [b]) => a.localeCompare(b))) {
    const was = before.get(instanceId) ?? null;
    if (was === now) continue;
    changes.push({
      schemaVersion: '1', ...meta, instanceId, previousCategory: was, currentCategory: now, healthy: HEALTHY_CATEGORIES.includes(now),
      agentServiceState: serviceState(instanceId) ?? null, previousReportAt: previous.generatedAt, reportAt: current.generatedAt,
    });
  }
  return changes;
}

/** PutEvents takes at most 10 entries and 256 KiB per call. */
export const MAX_ENTRIES_PER_CALL = 10;
export const MAX_BYTES_PER_CALL = 256 * 1024;
/** Attempts for entries EventBridge reports as failed. */
export const PUT_ATTEMPTS = 3;

/** An entry's size as EventBridge counts it (source, detail-type, detail, resources, time). */
export function entrySize(entry: PutEventsRequestEntry): number {
  const bytes = (s?: string) => (s ? Buffer.byteLength(s, 'utf8') : 0);
  return bytes(entry.Source) + bytes(entry.DetailType) + bytes(entry.Detail)
    + (entry.Resources ?? []).reduce((n, r) => n + bytes(r), 0) + (entry.Time ? 14 : 0);
}

/** Splits entries into calls of at most 10 entries and 256 KiB. */
export function batches(entries: PutEventsRequestEntry[]): PutEventsRequestEntry[][] {
  const calls: PutEventsRequestEntry[][] = [];
  let call: PutEventsRequestEntry[] = [];
  let size = 0;
  for (const entry of entries) {
    const bytes = entrySize(entry);
    if (bytes > MAX_BYTES_PER_CALL) throw new Error(`an event of ${bytes} bytes exceeds the PutEvents limit of ${MAX_BYTES_PER_CALL}`);
    if (call.length === MAX_ENTRIES_PER_CALL || size + bytes > MAX_BYTES_PER_CALL) {
      calls.push(call);
      call = [];
      size = 0;
    }
    call.push(entry);
    size += bytes;
  }
  if (call.length > 0) calls.push(call);
  return calls;
}

/** What became of the events. */
export interface PutResult {
  readonly sent: number;
  /** Entries still failed after every attempt, with EventBridge's error code. */
  readonly failed: Array<{ readonly instanceId: string; readonly errorCode: string }>;
}

/**
 * Puts the changes on the default bus, in batches; entries EventBridge reports as failed
 * (FailedEntryCount) are put again, up to PUT_ATTEMPTS times with backoff. A failing call
 * (throttling, access) throws: the caller then keeps the previous report as the baseline,
 * so the next run sends the changes again (at least once).
 */
export async function putCoverageChanges(
  client: EventBridgeClient,
  changes: CoverageChangeDetail[],
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<PutResult> {
  let pending = changes.map((detail) => ({
    instanceId: detail.instanceId,
    entry: { Source: COVERAGE_EVENT_SOURCE, DetailType: COVERAGE_CHANGE_DETAIL_TYPE, Detail: JSON.stringify(detail) } as PutEventsRequestEntry,
  }));
  let sent = 0;
  let failed: PutResult['failed'] = [];
  for (let attempt = 1; attempt <= PUT_ATTEMPTS && pending.length > 0; attempt++) {
    if (attempt > 1) await sleep(200 * 2 ** (attempt - 2));
    const retry: typeof pending = [];
    failed = [];
    let offset = 0;
    for (const batch of batches(pending.map((p) => p.entry))) {
      const owners = pending.slice(offset, offset + batch.length);
      offset += batch.length;
      const res = await client.send(new PutEventsCommand({ Entries: batch }));
      // Results are in request order; an entry with an ErrorCode was not put.
      (res.Entries ?? []).forEach((result, i) => {
        if (result.ErrorCode) {
          retry.push(owners[i]);
          failed.push({ instanceId: owners[i].instanceId, errorCode: result.ErrorCode });
        } else {
          sent++;
        }
      });
      if ((res.Entries ?? []).length < batch.length) throw new Error(`PutEvents answered ${res.Entries?.length ?? 0} results for ${batch.length} entries`);
    }
    pending = retry;
  }
  return { sent, failed };
}
