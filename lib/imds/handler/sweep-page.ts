/*
 * One step of the fleet sweep, looped by the state machine until `done`: lists a page of
 * instances (or resumes the changes a previous step ran out of time for), enforces the
 * policy on it at EC2's rate, and returns the checkpoint for the next step.
 */
import type { Context } from 'aws-lambda';
import { ec2Api, metricsApi, reportStore } from './shared/aws';
import { sharedModifyLimiter } from './shared/dynamodb-throttle-store';
import { SweepState, sweepPage } from './shared/enforcer';
import { parsePolicy } from './shared/policy';
import { emfLine, summaryLine } from './shared/report';
import { systemClock } from './shared/throttle';
import { newSweepId, readLocation, recordStep } from './shared/sweep-report';

const ec2 = ec2Api();
const cloudwatch = metricsApi();

/** Time kept back at the end of an invocation to finish in-flight calls and return the checkpoint. */
const RESERVE_MS = 90_000;

export interface SweepInput extends SweepState {
  /** Set by the custom resource when it starts the sweep: what triggered it. */
  readonly trigger?: string;
  readonly startedAt?: string;
  /** The per-instance report (sweep-report.ts): which sweep, how many step objects so far. */
  readonly sweepId?: string;
  readonly reportSteps?: number;
  /** Where the finished sweep's report was written. */
  readonly reportKey?: string;
}

let reports: { bucket: string; store: ReturnType<typeof reportStore> } | undefined;
/** The report's bucket client, made once per bucket. */
function reportStoreFor(bucket: string) {
  if (reports?.bucket !== bucket) reports = { bucket, store: reportStore(bucket) };
  return reports.store;
}

export async function handler(input: SweepInput, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<SweepInput> {
  const policy = parsePolicy(process.env.IMDS_POLICY);
  const clock = systemClock;
  const startedAt = input.startedAt ?? new Date(clock.now()).toISOString();
  const sweepId = input.sweepId ?? newSweepId(startedAt);
  const reportLocation = readLocation(process.env.IMDS_REPORT);
  const { state, page, records } = await sweepPage(
    {
      ec2, cloudwatch, policy, clock, deadline: clock.now() + context.getRemainingTimeInMillis() - RESERVE_MS,
      // Every sweep, launch and drift correction of the account and Region paces itself by the same limiter.
      limiter: sharedModifyLimiter(clock),
    },
    input,
  );
  console.log(emfLine('Sweep', policy.mode, page, clock.now()));
  const report = await recordStep({
    store: reportLocation && reportStoreFor(reportLocation.bucket), location: reportLocation, progress: { sweepId, steps: input.reportSteps ?? 0 }, records, done: state.done === true,
  });
  if (state.done) {
    console.log(summaryLine('IMDS sweep finished', {
      mode: policy.mode,
      trigger: input.trigger,
      startedAt,
      sweepId,
      report: report.reportKey ? `s3://${reportLocation!.bucket}/${report.reportKey}` : 'the "IMDS sweep instance" lines of this log group',
      pages: state.pages,
      tally: state.tally!,
      failures: state.failures ?? [],
      atRiskInstanceIds: state.atRiskInstanceIds ?? [],
    }));
  }
  return {
    ...state, trigger: input.trigger, startedAt, sweepId, reportSteps: report.progress.steps,
    ...(report.reportKey ? { reportKey: report.reportKey } : {}),
  };
}
