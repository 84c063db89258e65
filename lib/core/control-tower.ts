import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { IConstruct } from 'constructs';

/*
 * What AWS Control Tower's proactive controls ask of resources every construct creates the
 * same way. Each tightens (or, for the queue, states) what the resource already does.
 */

/**
 * CT.KMS.PR.3: nobody creates grants on the key except for AWS resources (a service that
 * integrates with KMS, e.g. DynamoDB, creating a grant for the caller) or AWS services
 * themselves. The library never creates grants; this stops anyone with key access from
 * delegating it through a grant that IAM and the key policy do not show.
 */
export function limitGrantsToAwsResources(key: kms.Key): void {
  key.addToResourcePolicy(new iam.PolicyStatement({
    sid: 'DenyGrantsNotForAwsResources',
    effect: iam.Effect.DENY,
    principals: [new iam.AnyPrincipal()],
    actions: ['kms:CreateGrant'],
    resources: ['*'],
    conditions: { BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' } },
  }));
}

/**
 * CT.SQS.PR.1: a queue that is a dead-letter queue says so with a redrive-allow policy.
 *
 * These queues receive a Lambda function's failed asynchronous invocations, not messages
 * redriven from source queues. `allowAll` (any queue of the account may name it as its
 * dead-letter queue) is what SQS does when the policy is absent, so declaring it changes
 * nothing; `byQueue` needs at least one source queue, and `denyAll` would not mark the queue
 * as a dead-letter queue.
 */
export function declareDeadLetterQueue(queue: sqs.Queue): void {
  (queue.node.defaultChild as sqs.CfnQueue).redriveAllowPolicy = { redrivePermission: 'allowAll' };
}

/**
 * CT.LAMBDA.PR.2: a permission for a service principal names the source account as well as
 * the source ARN (the control cannot read an ARN built with `Fn::Join`). Only a stack with a
 * concrete account passes: in an environment-agnostic stack the account is a reference too.
 */
export function requireSourceAccount(scope: IConstruct): void {
  for (const node of scope.node.findAll()) {
    if (node instanceof lambda.CfnPermission && node.sourceArn !== undefined && node.sourceAccount === undefined) {
      node.sourceAccount = Stack.of(node).account;
    }
  }
}
