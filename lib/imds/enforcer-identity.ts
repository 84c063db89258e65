/**
 * The IAM path of every role an Imdsv2Enforcement modifies instances with, in every stack.
 * CloudTrail records it in `userIdentity.sessionContext.sessionIssuer.arn`, so drift
 * correction can tell the enforcements' own changes from anybody else's: two enforcements
 * with overlapping scopes then never answer each other's changes in a loop. Creating a role
 * under this path takes iam:CreateRole, which is how it is protected from being borrowed.
 */
export const ENFORCER_ROLE_PATH = '/cdk-agent-fleet/imds-enforcer/';
