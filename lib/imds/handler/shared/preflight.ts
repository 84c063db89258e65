/*
 * Before a deployment starts a sweep that would modify instances: one dry run of
 * ModifyInstanceMetadataOptions on an instance in scope. EC2 answers DryRunOperation when
 * the call would be allowed and UnauthorizedOperation when IAM, a service control policy or
 * a permissions boundary denies it; a denial then fails the deployment within seconds,
 * instead of every instance failing one by one in the sweep.
 */
import { describe, Ec2Api, instancesOf } from './enforcer';
import { describeFilters, evaluate, ImdsPolicy } from './policy';
import { Clock, describeFailure, errorCode, errorMessage, isAccessDenied, withRetries } from './throttle';

export type PreflightOutcome =
  | { readonly result: 'allowed'; readonly instanceId: string }
  | { readonly result: 'no-instance'; readonly detail: string }
  | { readonly result: 'inconclusive'; readonly instanceId: string; readonly detail: string };

/** The preflight failed: the sweep would not be allowed to modify instances. */
export class PreflightDenied extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PreflightDenied';
  }
}

/** Instances listed to find one to dry-run against (DescribeInstances' smallest page is 5). */
const LOOK_AT = 50;

/**
 * Dry-runs the modification on one in-scope, non-exempt instance. Throws PreflightDenied
 * naming the permission when it is denied; any other answer does not hold the deployment.
 */
export async function preflight(ec2: Pick<Ec2Api, 'describeInstances' | 'modifyInstanceMetadataOptions'>, policy: ImdsPolicy, clock: Clock,
  roleName: string): Promise<PreflightOutcome> {
  const page = await describe({ ec2, clock }, { Filters: describeFilters(policy), MaxResults: LOOK_AT });
  const target = instancesOf(page).map((i) => ({ i, verdict: evaluate(i, policy) }))
    .sort((a, b) => Number(b.verdict.kind === 'non-compliant') - Number(a.verdict.kind === 'non-compliant'))
    .find(({ verdict }) => verdict.kind === 'non-compliant' || verdict.kind === 'compliant');
  if (!target) return { result: 'no-instance', detail: `no instance in scope among the first ${LOOK_AT} listed: nothing to dry-run against` };

  const instanceId = target.i.InstanceId!;
  // The change the sweep would make; for a compliant instance, the same values it already has.
  const change = target.verdict.kind === 'non-compliant'
    ? target.verdict.change
    : {
      InstanceId: instanceId,
      HttpTokens: 'required' as const,
      HttpPutResponseHopLimit: target.i.MetadataOptions?.HttpPutResponseHopLimit ?? policy.hopLimit,
      HttpEndpoint: (target.i.MetadataOptions?.HttpEndpoint === 'disabled' ? 'disabled' : 'enabled') as 'enabled' | 'disabled',
    };
  try {
    await withRetries(() => ec2.modifyInstanceMetadataOptions({ ...change, DryRun: true }), { clock, attempts: 5 });
    // EC2 always answers a dry run with an error; success would mean the flag was ignored.
    return { result: 'inconclusive', instanceId, detail: 'the dry run returned without DryRunOperation' };
  } catch (err) {
    if (errorCode(err) === 'DryRunOperation') return { result: 'allowed', instanceId };
    if (isAccessDenied(err)) {
      throw new PreflightDenied(`preflight: ec2:ModifyInstanceMetadataOptions is denied on ${instanceId} (${errorCode(err)}: `
        + `${errorMessage(err).slice(0, 300)}). The sweep would fail on every instance. Allow ec2:ModifyInstanceMetadataOptions for the `
        + `role ${roleName}, or exempt it from the service control policy or permissions boundary that denies it `
        + '(`aws sts decode-authorization-message` decodes the reason), then deploy again');
    }
    return { result: 'inconclusive', instanceId, detail: describeFailure('ec2:ModifyInstanceMetadataOptions (DryRun)', err) };
  }
}
