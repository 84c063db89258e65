import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENFORCER_ROLE_PATH } from './enforcer-identity';

/** What DriftCorrection needs from the enforcement that holds it. */
export interface DriftCorrectionProps {
  /** How often the whole fleet is swept again. */
  readonly checkInterval: Duration;
  /** The sweep to start on schedule. */
  readonly sweep: sfn.IStateMachine;
  /** The enforcement's policy for the roles that modify instances. */
  readonly enforcerPolicy: iam.ManagedPolicy;
  /** Tag keys of the enforcement's scope (`instanceTags`): tagging an instance with one may bring it in. */
  readonly scopeTagKeys: string[];
  /** The exemption tag key: removing it brings an instance back. */
  readonly exemptionTagKey: string;
  /** Where events that still fail after their retries go. */
  readonly deadLetterQueue: sqs.IQueue;
  /** Creates the handler with the enforcement's settings (logs, key, VPC, DLQ), with this role and policy. */
  readonly createFunction: (id: string, role: iam.IRole, policy: iam.ManagedPolicy) => lambda.Function;
}

/**
 * Corrects drift between deployments: a scheduled re-sweep, and EventBridge rules on the
 * CloudTrail records of changes made by others — ModifyInstanceMetadataOptions (a revert to
 * IMDSv1, a lower hop limit), CreateTags / DeleteTags of the scope and exemption tags —
 * after which the instance gets the policy again within minutes. CloudTrail events reach
 * EventBridge only where a trail records management events in the Region.
 */
export class DriftCorrection extends Construct {
  /** The function that handles both the schedule and the CloudTrail events. */
  public readonly function: lambda.Function;

  /** The scheduled re-sweep. */
  public readonly scheduleRule: events.Rule;

  /** ModifyInstanceMetadataOptions called by anybody but an enforcement. */
  public readonly revertRule: events.Rule;

  /** Scope or exemption tags added to or removed from instances. */
  public readonly tagRule: events.Rule;

  constructor(scope: Construct, id: string, props: DriftCorrectionProps) {
    super(scope, id);

    // Under the enforcers' path: its own corrections must not look like drift either.
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      path: ENFORCER_ROLE_PATH,
      description: `Corrects IMDS drift for ${scope.node.path}`,
    });
    props.enforcerPolicy.attachToRole(role);
    const policy = new iam.ManagedPolicy(this, 'Policy', {
      description: `What the IMDS drift handler of ${scope.node.path} may do besides enforcing`,
      roles: [role],
      statements: [new iam.PolicyStatement({
        sid: 'StartScheduledSweepUnlessRunning',
        actions: ['states:ListExecutions', 'states:StartExecution'],
        resources: [props.sweep.stateMachineArn],
      })],
    });
    this.function = props.createFunction('Function', role.withoutPolicyUpdates(), policy);
    this.function.addEnvironment('IMDS_SWEEP_STATE_MACHINE', props.sweep.stateMachineArn);
    this.function.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: Duration.hours(6) });
    const target = new targets.LambdaFunction(this.function, { deadLetterQueue: props.deadLetterQueue, retryAttempts: 8, maxEventAge: Duration.hours(6) });

    this.scheduleRule = new events.Rule(this, 'Schedule', {
      description: 'Sweeps the fleet again for IMDS drift (Imdsv2Enforcement)',
      schedule: events.Schedule.rate(props.checkInterval),
      targets: [target],
    });
    this.revertRule = new events.Rule(this, 'Reverted', {
      description: 'Applies the IMDS policy again when anybody but an Imdsv2Enforcement changes an instance\'s metadata options',
      eventPattern: {
        source: ['aws.ec2'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: revertPattern(),
      },
      targets: [target],
    });
    this.tagRule = new events.Rule(this, 'Tagged', {
      description: 'Applies the IMDS policy to instances tagged into the scope or out of their exemption',
      eventPattern: {
        source: ['aws.ec2'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: tagPattern([...new Set([...props.scopeTagKeys, props.exemptionTagKey])]),
      },
      targets: [target],
    });
    for (const rule of [this.scheduleRule, this.revertRule, this.tagRule]) rule.node.addDependency(policy, props.enforcerPolicy);
  }
}

/**
 * ModifyInstanceMetadataOptions that succeeded, made by anybody but a role under the
 * enforcers' path: IAM users and the root user have no session issuer, so they match the
 * first branch; roles match the second unless they are an enforcement's.
 */
export function revertPattern(): Record<string, unknown> {
  return {
    eventSource: ['ec2.amazonaws.com'],
    eventName: ['ModifyInstanceMetadataOptions'],
    errorCode: [{ exists: false }],
    $or: [
      { userIdentity: { type: [{ 'anything-but': 'AssumedRole' }] } },
      { userIdentity: { sessionContext: { sessionIssuer: { arn: [{ 'anything-but': { wildcard: `*:role${ENFORCER_ROLE_PATH}*` } }] } } } },
    ],
  };
}

/** CreateTags / DeleteTags that succeeded on an instance with one of these tag keys. */
export function tagPattern(keys: string[]): Record<string, unknown> {
  return {
    eventSource: ['ec2.amazonaws.com'],
    eventName: ['CreateTags', 'DeleteTags'],
    errorCode: [{ exists: false }],
    requestParameters: {
      resourcesSet: { items: { resourceId: [{ prefix: 'i-' }] } },
      tagSet: { items: { key: keys } },
    },
  };
}
