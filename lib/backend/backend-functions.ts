import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { declareDeadLetterQueue } from '../core/control-tower';
import { createHandlerFunction, lambdaRuleAcks } from '../core/handler-function';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';

/** The dead-letter queue of the backend's scheduled functions. */
export function createBackendDeadLetterQueue(backend: Construct, encryptionKey: kms.IKey): sqs.Queue {
  const queue = new sqs.Queue(backend, 'DeadLetters', {
    encryption: sqs.QueueEncryption.KMS,
    encryptionMasterKey: encryptionKey,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  declareDeadLetterQueue(queue);
  acknowledgeNagFindings(cfnResourceOf(queue), {
    rule: 'AwsSolutions-SQS3',
    reason: 'This queue is itself the dead-letter queue of the scheduled registry sweep and coverage report functions.',
  });
  return queue;
}

/**
 * One backend function in the backend's scope: `<id>Logs`, `<id>Role`, `<id>Policy` (every permission,
 * in one customer-managed policy) and the function `<id>`.
 */
export function createBackendFunction(backend: Construct, encryptionKey: kms.IKey, id: string, handlerName: string, options: {
  description: string;
  environment: Record<string, string>;
  memorySize: number;
  timeout: Duration;
  reservedConcurrentExecutions: number;
  logRetention: logs.RetentionDays;
  vpc?: ec2.IVpc;
  vpcSubnets?: ec2.SubnetSelection;
  deadLetterQueue?: sqs.IQueue;
  statements: iam.PolicyStatement[];
  wildcardReasons?: Record<string, string>;
  /** The bundle to run and its export, when not `handlerName`'s own `handler`. */
  bundle?: { name: string; entryPoint: string };
}): { fn: lambda.Function; policy: iam.ManagedPolicy } {
  const logGroup = new logs.LogGroup(backend, `${id}Logs`, {
    retention: options.logRetention,
    encryptionKey: encryptionKey,
    removalPolicy: RemovalPolicy.RETAIN,
  });
  const role = new iam.Role(backend, `${id}Role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the ${handlerName} function of ${backend.node.path}`,
  });
  // Every permission is listed here, in one customer-managed policy: no AWS managed
  // policies, no inline policies added behind our back (hence withoutPolicyUpdates).
  const statements = [
    new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }),
    ...options.statements,
  ];
  if (options.deadLetterQueue) {
    statements.push(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [options.deadLetterQueue.queueArn] }));
    statements.push(new iam.PolicyStatement({
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [encryptionKey.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `sqs.${Stack.of(backend).region}.${Stack.of(backend).urlSuffix}` } },
    }));
  }
  const policy = new iam.ManagedPolicy(backend, `${id}Policy`, { statements, roles: [role] });
  for (const [finding, reason] of Object.entries(options.wildcardReasons ?? {})) {
    acknowledgeNagFindings(cfnResourceOf(policy), { rule: 'AwsSolutions-IAM5', finding, reason });
  }

  const fn = createHandlerFunction(backend, id, {
    area: 'backend',
    handler: options.bundle?.name ?? handlerName,
    entryPoint: options.bundle?.entryPoint,
    description: options.description,
    role: role.withoutPolicyUpdates(),
    environment: options.environment,
    memorySize: options.memorySize,
    timeout: options.timeout,
    reservedConcurrentExecutions: options.reservedConcurrentExecutions,
    logGroup,
    loggingFormat: lambda.LoggingFormat.JSON,
    deadLetterQueue: options.deadLetterQueue,
    vpc: options.vpc,
    vpcSubnets: options.vpcSubnets,
    dependsOn: [policy],
    acknowledgments: [
      ...lambdaRuleAcks('LambdaInsideVPC',
        'The function only calls AWS APIs (DynamoDB, EC2, SSM, S3, EventBridge) over TLS with IAM credentials and reaches nothing inside a VPC; pass `vpc` to run it in one.'),
      ...(options.deadLetterQueue ? [] : lambdaRuleAcks('LambdaDLQ',
        'API Gateway invokes this function synchronously and the agent receives the error; a dead-letter queue only ever receives asynchronous invocations.')),
    ],
  });
  return { fn, policy };
}

/** Runs `fn` every `every`. */
export function scheduleBackendFunction(backend: Construct, id: string, fn: lambda.IFunction, every: Duration): void {
  new events.Rule(backend, id, {
    description: `Runs ${fn.node.id} every ${every.toHumanString()}`,
    schedule: events.Schedule.rate(every),
    targets: [new targets.LambdaFunction(fn, { retryAttempts: 2, maxEventAge: every })],
  });
}
