import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, IDependable } from 'constructs';
import { handlerCode, HANDLER_RUNTIME } from './handler-code';
import { acknowledgeNagFindings, cfnResourceOf, NagAcknowledgment } from './nag';

/** The rule packs whose Lambda rules a handler function acknowledges. */
export const LAMBDA_NAG_PACKS = ['NIST.800.53.R5', 'HIPAA.Security', 'PCI.DSS.321'];

/**
 * One acknowledgment of a Lambda rule (`LambdaInsideVPC`, `LambdaDLQ`, ...) in each of `packs`.
 */
export function lambdaRuleAcks(rule: string, reason: string, packs: string[] = LAMBDA_NAG_PACKS): NagAcknowledgment[] {
  return packs.map((pack) => ({ rule: `${pack}-${rule}`, reason }));
}

/** How one of the library's handler functions is built. Internal: not exported from the package root. */
export interface HandlerFunctionOptions {
  /** The area and name of the prebuilt bundle (`lib/<area>/handler/<handler>.ts`). */
  readonly area: string;
  readonly handler: string;
  /** The bundle's export that Lambda calls (a bundle may serve two functions). Default: `handler`. */
  readonly entryPoint?: string;
  readonly description: string;
  /** A role that takes no policy updates: every permission is in the caller's managed policy. */
  readonly role: iam.IRole;
  /** The caller's encrypted log group with retention. */
  readonly logGroup: logs.ILogGroup;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly reservedConcurrentExecutions?: number;
  readonly environment?: Record<string, string>;
  readonly loggingFormat?: lambda.LoggingFormat;
  /**
   * Where failed asynchronous invocations go. Set on the L1 so that no grant is attempted on
   * the role: the caller's policy lists `sqs:SendMessage` itself.
   */
  readonly deadLetterQueue?: sqs.IQueue;
  /**
   * Runs the function in this VPC, with a security group of its own (no inbound, HTTPS out)
   * and the network-interface permissions Lambda needs in a policy of its own; its
   * `LambdaInsideVPC` acknowledgments are then dropped.
   */
  readonly vpc?: ec2.IVpc;
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** What the function must not be created before (its managed policies). */
  readonly dependsOn?: IDependable[];
  /** The cdk-nag findings acknowledged on the function, in this order. */
  readonly acknowledgments?: NagAcknowledgment[];
}

/**
 * A handler function of the library: the pinned runtime on ARM, its prebuilt bundle, the
 * caller's role, log group and dead-letter queue, and its acknowledgments.
 *
 * A function, not a construct: the function is created in `scope` under `id`, so the
 * construct tree, logical ids and templates stay where they were.
 */
export function createHandlerFunction(scope: Construct, id: string, options: HandlerFunctionOptions): lambda.Function {
  const network = options.vpc ? functionNetwork(scope, id, options.vpc, options.role) : undefined;
  const fn = new lambda.Function(scope, id, {
    description: options.description,
    runtime: HANDLER_RUNTIME,
    architecture: lambda.Architecture.ARM_64,
    handler: `index.${options.entryPoint ?? 'handler'}`,
    code: handlerCode(options.area, options.handler),
    role: options.role,
    environment: options.environment,
    memorySize: options.memorySize,
    timeout: options.timeout,
    reservedConcurrentExecutions: options.reservedConcurrentExecutions,
    logGroup: options.logGroup,
    loggingFormat: options.loggingFormat,
    ...(network ? { vpc: options.vpc, vpcSubnets: options.vpcSubnets, allowPublicSubnet: false, securityGroups: [network.securityGroup] } : {}),
  });
  if (network) fn.node.addDependency(network.policy);
  if (options.deadLetterQueue) {
    (fn.node.defaultChild as lambda.CfnFunction).deadLetterConfig = { targetArn: options.deadLetterQueue.queueArn };
  }
  if (options.dependsOn?.length) fn.node.addDependency(...options.dependsOn);
  const acks = (options.acknowledgments ?? []).filter((ack) => !(options.vpc && ack.rule.endsWith('-LambdaInsideVPC')));
  if (acks.length > 0) acknowledgeNagFindings(cfnResourceOf(fn), ...acks);
  return fn;
}

/** Reasons shared by every function in a VPC. */
const NETWORK_INTERFACE_REASON = 'Lambda creates, describes and deletes the network interfaces of a function in a VPC with the execution role; '
  + 'EC2 cannot scope DescribeNetworkInterfaces or DescribeSubnets to resources, and the interfaces do not exist before Lambda creates them. '
  + 'These are the actions of the AWS-managed AWSLambdaVPCAccessExecutionRole policy, without its log permissions.';

/**
 * What a function in a VPC needs besides the VPC: a security group that admits nothing and
 * lets out HTTPS only (the handlers call AWS APIs and nothing else), and the permissions
 * Lambda uses to attach the function to the subnets. The role takes no policy updates, so
 * aws-cdk-lib's own attachment of AWSLambdaVPCAccessExecutionRole is dropped: this policy
 * replaces it.
 */
function functionNetwork(scope: Construct, id: string, vpc: ec2.IVpc, role: iam.IRole) {
  const securityGroup = new ec2.SecurityGroup(scope, `${id}SecurityGroup`, {
    vpc,
    description: `${id} of ${scope.node.path}: no inbound, HTTPS out to AWS service APIs`,
    allowAllOutbound: false,
  });
  securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to AWS service APIs (endpoints or NAT)');
  const policy = new iam.ManagedPolicy(scope, `${id}NetworkPolicy`, {
    description: `Lets Lambda attach ${id} of ${scope.node.path} to its VPC`,
    roles: [role],
    statements: [new iam.PolicyStatement({
      actions: [
        'ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DescribeSubnets', 'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses',
      ],
      resources: ['*'],
    })],
  });
  acknowledgeNagFindings(cfnResourceOf(policy), { rule: 'AwsSolutions-IAM5', finding: 'Resource::*', reason: NETWORK_INTERFACE_REASON });
  return { securityGroup, policy };
}
