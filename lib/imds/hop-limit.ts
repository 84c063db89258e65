import { Annotations, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { PropsValidator } from '../core/validation';

/** What the IMDS hop limit means for the hosts, shared by the construct and the aspect. */
export const HOP_LIMIT_ALLOWED = 'an integer from 1 to 64 (1: the host only; 2: containers on a Docker bridge; 3: overlay networks or Docker-in-Docker)';

/** Records a problem unless `hopLimit` is an integer from 1 to 64 (tokens are skipped). */
export function validateHopLimit(v: PropsValidator, hopLimit: number | undefined): void {
  if (hopLimit === undefined || Token.isUnresolved(hopLimit)) {
    v.require(hopLimit !== undefined, 'hopLimit', hopLimit, HOP_LIMIT_ALLOWED);
    return;
  }
  v.require(Number.isInteger(hopLimit) && hopLimit >= 1 && hopLimit <= 64, 'hopLimit', hopLimit, HOP_LIMIT_ALLOWED);
}

/** A hop limit above 2 lets IMDS tokens travel beyond a container on the host: allowed, but said out loud. */
export function warnOnWideHopLimit(scope: IConstruct, hopLimit: number): void {
  if (Token.isUnresolved(hopLimit) || hopLimit <= 2) return;
  Annotations.of(scope).addWarningV2('cdk-agent-fleet:imdsHopLimitAbove2',
    `IMDS hop limit ${hopLimit}: IMDSv2 tokens, and with them the instance role's credentials, reach processes up to ${hopLimit} network hops `
    + 'from the instance (nested containers, overlay networks, forwarding hosts). Use 2 for containers on a Docker bridge and 1 for the host only, '
    + 'unless your agents really run that far away. Acknowledge this warning if they do.');
}
