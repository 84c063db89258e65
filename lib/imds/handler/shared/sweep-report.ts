/*
 * The per-instance report of a sweep: one JSON line per instance judged (instance, state,
 * options before and after, outcome, reason), in ONE object per sweep.
 *
 * A sweep is many Lambda steps, and Step Functions carries at most 256 KB between them, so
 * the records never travel in the state: each step writes its own records to
 * `<prefix>steps/<sweep>/<step>.jsonl` as soon as it is done, and the last step combines
 * them, in order, into `<prefix>reports/<sweep>.jsonl` (a single PutObject up to 8 MiB, a
 * multipart upload of 8 MiB parts beyond, so memory stays bounded whatever the fleet) and
 * deletes the step objects. A step that is retried overwrites its own object, so nothing is
 * counted twice.
 *
 * Without a bucket, the records go to the sweep's log group instead, one line per instance.
 */
import type { InstanceRecord } from './instance-record';

/** The subset of S3 the report needs (the SDK client or a test double). */
export interface ReportStore {
  put(key: string, body: string): Promise<void>;
  get(key: string): Promise<string>;
  delete(key: string): Promise<void>;
  startMultipart(key: string): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: string): Promise<string>;
  completeMultipart(key: string, uploadId: string, parts: Array<{ PartNumber: number; ETag: string }>): Promise<void>;
  abortMultipart(key: string, uploadId: string): Promise<void>;
}

/** Where the report goes: `IMDS_REPORT` in the sweep function's environment. */
export interface ReportLocation {
  readonly bucket: string;
  /** Ends with `/`. */
  readonly prefix: string;
}

/** What the state machine carries about the report: a few bytes, whatever the fleet. */
export interface ReportProgress {
  readonly sweepId: string;
  /** Step objects written so far (numbered from 0). */
  readonly steps: number;
}

/** Parts of a multipart upload must be at least 5 MiB (except the last). */
export const PART_BYTES = 8 * 1024 * 1024;

export function readLocation(raw: string | undefined): ReportLocation | undefined {
  if (!raw) return undefined;
  const parsed = JSON.parse(raw) as Partial<ReportLocation>;
  if (typeof parsed.bucket !== 'string' || !parsed.bucket || typeof parsed.prefix !== 'string') {
    throw new Error(`IMDS_REPORT: got ${raw}; allowed: {"bucket": "<name>", "prefix": "<prefix>/"}`);
  }
  return { bucket: parsed.bucket, prefix: parsed.prefix };
}

export const stepKey = (location: ReportLocation, sweepId: string, step: number) =>
  `${location.prefix}steps/${sweepId}/${String(step).padStart(6, '0')}.jsonl`;
export const reportKey = (location: ReportLocation, sweepId: string) => `${location.prefix}reports/${sweepId}.jsonl`;

export function jsonLines(sweepId: string, records: readonly InstanceRecord[]): string {
  return records.map((r) => `${JSON.stringify({ sweepId, ...r })}\n`).join('');
}

/** Writes one step's records; returns the progress to carry to the next step. */
export async function writeStep(store: ReportStore, location: ReportLocation, progress: ReportProgress,
  records: readonly InstanceRecord[]): Promise<ReportProgress> {
  await store.put(stepKey(location, progress.sweepId, progress.steps), jsonLines(progress.sweepId, records));
  return { ...progress, steps: progress.steps + 1 };
}

/** Combines the step objects into the sweep's one report object, then deletes them. Returns its key. */
export async function combine(store: ReportStore, location: ReportLocation, progress: ReportProgress): Promise<string> {
  const key = reportKey(location, progress.sweepId);
  let buffer = '';
  let uploadId: string | undefined;
  const parts: Array<{ PartNumber: number; ETag: string }> = [];
  try {
    for (let step = 0; step < progress.steps; step++) {
      buffer += await store.get(stepKey(location, progress.sweepId, step));
      while (Buffer.byteLength(buffer) >= PART_BYTES) {
        uploadId ??= await store.startMultipart(key);
        const cut = cutAt(buffer, PART_BYTES);
        parts.push({ PartNumber: parts.length + 1, ETag: await store.uploadPart(key, uploadId, parts.length + 1, buffer.slice(0, cut)) });
        buffer = buffer.slice(cut);
      }
    }
    if (uploadId === undefined) {
      await store.put(key, buffer);
    } else {
      if (buffer.length > 0) parts.push({ PartNumber: parts.length + 1, ETag: await store.uploadPart(key, uploadId, parts.length + 1, buffer) });
      await store.completeMultipart(key, uploadId, parts);
    }
  } catch (err) {
    if (uploadId !== undefined) await store.abortMultipart(key, uploadId).catch(() => undefined);
    throw err;
  }
  for (let step = 0; step < progress.steps; step++) await store.delete(stepKey(location, progress.sweepId, step));
  return key;
}

/** The index of the first character after the last whole line within `bytes` UTF-8 bytes. */
function cutAt(text: string, bytes: number): number {
  let end = Math.min(text.length, bytes);
  while (end > 0 && Buffer.byteLength(text.slice(0, end)) > bytes) end--;
  const newline = text.lastIndexOf('\n', end - 1);
  return newline >= 0 ? newline + 1 : end;
}

/** A sweep id that sorts by start time and never repeats: `2025-01-31T12-00-00Z-<8 hex>`. */
export function newSweepId(startedAt: string, random: () => number = Math.random): string {
  const time = startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  return `${time}-${Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, '0')}`;
}

/**
 * Records one step of a sweep: into the bucket when there is one (combined into the sweep's
 * report when `done`), else as log lines. Returns what the next step needs.
 */
export async function recordStep(options: {
  store?: ReportStore;
  location?: ReportLocation;
  progress: ReportProgress;
  records: readonly InstanceRecord[];
  done: boolean;
  log?: (line: string) => void;
}): Promise<{ progress: ReportProgress; reportKey?: string }> {
  const { store, location, records } = options;
  if (!store || !location) {
    const log = options.log ?? console.log;
    for (const record of records) log(JSON.stringify({ level: 'INFO', message: 'IMDS sweep instance', sweepId: options.progress.sweepId, ...record }));
    return { progress: options.progress };
  }
  const progress = await writeStep(store, location, options.progress, records);
  if (!options.done) return { progress };
  return { progress, reportKey: await combine(store, location, progress) };
}
