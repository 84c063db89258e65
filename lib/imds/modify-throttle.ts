import { CustomResource, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/**
 * The one DynamoDB table per account and Region that holds the shared limiter of
 * `ec2:ModifyInstanceMetadataOptions` (one item, keyed by the API it paces).
 *
 * A fixed name rather than a table of some stack: two enforcements in two stacks (or two
 * apps) find the same table without being wired together, and no stack's deletion can
 * take it from the others. DynamoDB table names are unique per account and Region already.
 */
export const MODIFY_THROTTLE_TABLE_NAME = 'cdk-agent-fleet-imds-modify-throttle';

/** The item of the table the handlers may write (IAM `dynamodb:LeadingKeys`). */
const MODIFY_THROTTLE_ITEM = 'ec2:ModifyInstanceMetadataOptions';

/** What ModifyThrottleTable needs from the enforcement that holds it. */
export interface ModifyThrottleTableProps {
  /** Creates the custom resource's function with the enforcement's settings (logs, key, VPC, DLQ). */
  readonly createFunction: (id: string, role: iam.IRole, policy: iam.ManagedPolicy) => lambda.Function;
}

/**
 * Makes sure the shared limiter table exists (a custom resource: created by whichever
 * enforcement deploys first, found by the others, never deleted with a stack) and grants
 * the use of its one item.
 */
export class ModifyThrottleTable extends Construct {
  /** The table's name, the same in every stack. */
  public readonly tableName: string = MODIFY_THROTTLE_TABLE_NAME;

  /** The table's ARN. */
  public readonly tableArn: string;

  /** The custom resource that creates the table when it is missing. */
  public readonly resource: CustomResource;

  /** The custom resource's function. */
  public readonly function: lambda.Function;

  constructor(scope: Construct, id: string, props: ModifyThrottleTableProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.tableArn = stack.formatArn({ service: 'dynamodb', resource: 'table', resourceName: MODIFY_THROTTLE_TABLE_NAME });

    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Creates the shared IMDS limiter table for ${scope.node.path} if it is missing`,
    });
    const policy = new iam.ManagedPolicy(this, 'Policy', {
      description: `What the limiter table custom resource of ${scope.node.path} may do`,
      roles: [role],
      statements: [new iam.PolicyStatement({
        sid: 'CreateTheLimiterTableIfMissing',
        actions: ['dynamodb:DescribeTable', 'dynamodb:CreateTable', 'dynamodb:TagResource'],
        resources: [this.tableArn],
      })],
    });
    const fn = props.createFunction('Function', role.withoutPolicyUpdates(), policy);
    this.function = fn;
    this.resource = new CustomResource(this, 'Resource', {
      resourceType: 'Custom::ImdsModifyThrottleTable',
      serviceToken: fn.functionArn,
      serviceTimeout: Duration.minutes(5),
      properties: { TableName: MODIFY_THROTTLE_TABLE_NAME },
    });
    this.resource.node.addDependency(policy);
  }

  /** Lets a handler reserve slots: UpdateItem on the limiter's one item, nothing else. */
  public useStatement(): iam.PolicyStatement {
    return new iam.PolicyStatement({
      sid: 'PaceBySharedModifyThrottle',
      actions: ['dynamodb:UpdateItem'],
      resources: [this.tableArn],
      conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [MODIFY_THROTTLE_ITEM] } },
    });
  }
}
