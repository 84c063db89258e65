/*
 * One step of the fleet sweep, looped by the state machine until `done`: lists a page of
 * instances (or resumes the changes a previous step ran out of time for), enforces the
 * policy on it at EC2's rate, and returns the checkpoint for the next step.
 */
import type { Context } from 'aws-lambda';
import { ec2Api, metricsApi } from './shared/aws';
import { sharedModifyLimiter } from './shared/dynamodb-throttle-store';
import { SweepState, sweepPage } from './shared/enforcer';
import { parsePolicy } from './shared/policy';
import { emfLine, summaryLine } from './shared/report';
import { systemClock } from './shared/throttle';

const ec2 = ec2Api();
const cloudwatch = metricsApi();

/** Time kept back at the end of an invocation to finish in-flight calls and return the checkpoint. */
const RESERVE_MS = 90_000;

export interface SweepInput extends SweepState {
  /** Set by the custom resource when it starts the sweep: what triggered it. */
  readonly trigger?: string;
  readonly startedAt?: string;
}

export async function handler(input: SweepInput, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<SweepInput> {
  const policy = parsePolicy(process.env.IMDS_POLICY);
  const clock = systemClock;
  const startedAt = input.startedAt ?? new Date(clock.now()).toISOString();
  const { state, page } = await sweepPage(
    {
      ec2, cloudwatch, policy, clock, deadline: clock.now() + context.getRemainingTimeInMillis() - RESERVE_MS,
      // Every sweep, launch and drift correction of the account and Region paces itself by the same limiter.
      limiter: sharedModifyLimiter(clock),
    },
    input,
  );
  console.log(emfLine('Sweep', policy.mode, page, clock.now()));
  if (state.done) {
    console.log(summaryLine('IMDS sweep finished', {
      mode: policy.mode,
      trigger: input.trigger,
      startedAt,
      pages: state.pages,
      tally: state.tally!,
      failures: state.failures ?? [],
      atRiskInstanceIds: state.atRiskInstanceIds ?? [],
    }));
  }
  return { ...state, trigger: input.trigger, startedAt };
}
