/*
 * Parts of Imdsv2Enforcement created in its scope (same construct ids): its key, the sweep
 * state machine, the acknowledgments of its policies, and the statements its policies share.
 */
import { ArnFormat, Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { limitGrantsToAwsResources } from '../core/control-tower';
import { acknowledgeNagFindings, cfnResourceOf } from '../core/nag';

/** The enforcement's key: its logs and dead letters. */
export function createEnforcementKey(scope: Construct, removalPolicy: RemovalPolicy): kms.IKey {
  const stack = Stack.of(scope);
  const key = new kms.Key(scope, 'Key', {
    description: `Encrypts the logs and dead letters of ${scope.node.path}`,
    enableKeyRotation: true,
    removalPolicy,
  });
  limitGrantsToAwsResources(key);
  key.addToResourcePolicy(new iam.PolicyStatement({
    sid: 'CloudWatchLogsOfThisAccount',
    principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
    actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
    resources: ['*'],
    conditions: {
      ArnLike: {
        'kms:EncryptionContext:aws:logs:arn': stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
      },
    },
  }));
  return key;
}

/** The sweep: a state machine looping `sweepFunction` over DescribeInstances pages, with its role and policy. */
export function createSweepStateMachine(scope: Construct, sweepFunction: lambda.IFunction, logGroup: logs.ILogGroup) {
  const role = new iam.Role(scope, 'SweepRole', {
    assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
    description: `Runs the IMDS sweep of ${scope.node.path}`,
  });
  const policy = new iam.ManagedPolicy(scope, 'SweepPolicy', {
    description: `What the IMDS sweep state machine of ${scope.node.path} may do`,
    roles: [role],
    statements: [
      new iam.PolicyStatement({ sid: 'InvokeSweepStep', actions: ['lambda:InvokeFunction'], resources: [sweepFunction.functionArn] }),
      new iam.PolicyStatement({
        sid: 'DeliverExecutionLogs',
        // CloudWatch Logs vended log delivery does not support resource-level permissions.
        actions: [
          'logs:CreateLogDelivery', 'logs:GetLogDelivery', 'logs:UpdateLogDelivery', 'logs:DeleteLogDelivery',
          'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:DescribeResourcePolicies', 'logs:DescribeLogGroups',
        ],
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'TraceExecutions',
        actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets'],
        resources: ['*'],
      }),
    ],
  });

  const step = new tasks.LambdaInvoke(scope, 'EnforceOnePage', {
    lambdaFunction: sweepFunction,
    payloadResponseOnly: true,
    retryOnServiceExceptions: true,
  });
  // A page that failed (throttled past its retries, a transient outage) is tried again later;
  // its checkpoint is the input, so nothing is done twice.
  step.addRetry({ errors: ['States.TaskFailed'], interval: Duration.minutes(1), maxAttempts: 3, backoffRate: 2 });
  const done = new sfn.Succeed(scope, 'SweepDone');
  const definition = step.next(new sfn.Choice(scope, 'MorePages')
    .when(sfn.Condition.booleanEquals('$.done', true), done)
    .otherwise(step));

  const machine = new sfn.StateMachine(scope, 'Sweep', {
    comment: 'Applies the IMDS policy to every instance in scope, one DescribeInstances page per step',
    definitionBody: sfn.DefinitionBody.fromChainable(definition),
    role: role.withoutPolicyUpdates(),
    timeout: Duration.hours(24),
    tracingEnabled: true,
    logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
  });
  machine.node.addDependency(policy);
  return { machine, policy };
}

/** The IAM5 findings of the enforcement's policies, each on its one resource. */
export function acknowledgeEnforcementFindings(scope: Construct, enforce: boolean, resources: {
  enforcerPolicy: iam.ManagedPolicy;
  onEventPolicy: iam.ManagedPolicy;
  stateMachine: sfn.StateMachine;
  stateMachinePolicy: iam.ManagedPolicy;
}): void {
  const stack = Stack.of(scope);
  // cdk-nag names a finding after the resource as it renders in the template.
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  const machineId = stack.resolve(stack.getLogicalId(cfnResourceOf(resources.stateMachine) as never));
  const iam5 = (policy: iam.ManagedPolicy, finding: string, reason: string) =>
    acknowledgeNagFindings(cfnResourceOf(policy), { rule: 'AwsSolutions-IAM5', finding: `Resource::${finding}`, reason });

  iam5(resources.enforcerPolicy, '*',
    'ec2:DescribeInstances and cloudwatch:GetMetricData support no resource-level permissions; nothing else in this policy is granted on *.');
  if (enforce) {
    iam5(resources.enforcerPolicy, `arn:<AWS::Partition>:ec2:${region}:${account}:instance/*`,
      'ec2:ModifyInstanceMetadataOptions on any instance of this account and region, narrowed by IAM conditions to instances '
      + 'in scope (instanceTags) and without the exemption tag: which instances need it is only known at run time.');
  }
  iam5(resources.onEventPolicy, '*',
    'ec2:GetInstanceMetadataDefaults and ec2:ModifyInstanceMetadataDefaults act on account-level settings, and ec2:DescribeInstances '
    + '(preflight) supports no resource-level permissions.');
  if (enforce) {
    iam5(resources.onEventPolicy, `arn:<AWS::Partition>:ec2:${region}:${account}:instance/*`,
      'The preflight dry-runs ec2:ModifyInstanceMetadataOptions (DryRun, nothing changes) on one instance in scope, with the same tag '
      + 'conditions as the sweep: which instance is only known at deployment time.');
  }
  iam5(resources.onEventPolicy, `arn:<AWS::Partition>:states:${region}:${account}:execution:<${machineId}.Name>:*`,
    'states:StopExecution on the executions of this one state machine, to stop a sweep that a newer one supersedes; execution names are generated.');
  iam5(resources.stateMachinePolicy, '*',
    'CloudWatch Logs vended log delivery and X-Ray trace submission, which Step Functions logging and tracing require, support no resource-level permissions.');

}

export function writeLogsStatement(groups: logs.ILogGroup[]): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'WriteOwnLogs',
    actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
    // A log group's ARN attribute ends in ':*', which covers its log streams.
    resources: groups.map((g) => g.logGroupArn),
  });
}

export function deadLetterStatements(queue: sqs.IQueue, key: kms.IKey): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({ sid: 'SendDeadLetters', actions: ['sqs:SendMessage'], resources: [queue.queueArn] }),
    new iam.PolicyStatement({
      sid: 'EncryptDeadLetters',
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [key.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `sqs.${Stack.of(queue).region}.${Stack.of(queue).urlSuffix}` } },
    }),
  ];
}

/** ModifyInstanceMetadataOptions on the instances in scope (`instanceTags`) without the exemption tag. */
export function modifyMetadataStatement(scope: Construct, sid: string, exemptionTagKey: string, instanceTags: Record<string, string>): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid,
    actions: ['ec2:ModifyInstanceMetadataOptions'],
    resources: [Stack.of(scope).formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
    conditions: {
      StringNotEqualsIgnoreCase: { [`aws:ResourceTag/${exemptionTagKey}`]: 'true' },
      ...(Object.keys(instanceTags).length > 0
        ? { StringEquals: Object.fromEntries(Object.entries(instanceTags).map(([k, v]) => [`aws:ResourceTag/${k}`, v])) }
        : {}),
    },
  });
}

/** What the custom resource handler may do besides logging and dead letters: account defaults, and the sweeps of `machine`. */
export function onEventStatements(machine: sfn.StateMachine): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'ReadAndSetAccountImdsDefaults',
      // Account-level settings: no resource-level permissions exist. Granted in AUDIT mode
      // too, so that switching modes can still restore the defaults recorded before.
      actions: ['ec2:GetInstanceMetadataDefaults', 'ec2:ModifyInstanceMetadataDefaults'],
      resources: ['*'],
    }),
    new iam.PolicyStatement({
      sid: 'StartAndListSweeps',
      actions: ['states:StartExecution', 'states:ListExecutions'],
      resources: [machine.stateMachineArn],
    }),
    new iam.PolicyStatement({
      sid: 'StopSupersededSweeps',
      actions: ['states:StopExecution'],
      resources: [Stack.of(machine).formatArn({
        service: 'states', resource: 'execution', resourceName: `${machine.stateMachineName}:*`,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      })],
    }),
  ];
}
