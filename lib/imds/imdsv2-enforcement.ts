import { CustomResource, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { declareDeadLetterQueue } from '../core/control-tower';
import { createHandlerFunction, lambdaRuleAcks } from '../core/handler-function';
import { warnOnWideHopLimit } from './hop-limit';
import { HopLimitPolicy } from './imds-policy-options';
import { grantSweepReport, preflightStatements, reportPrefixOf } from './imds-enforcement-extras';
import { DriftCorrection } from './drift-correction';
import { acknowledgeEnforcementFindings, createEnforcementKey, createSweepStateMachine, deadLetterStatements, modifyMetadataStatement, onEventStatements,
  writeLogsStatement } from './enforcement-resources';
import { validateEnforcementProps } from './enforcement-validation';
import { EnforcementMonitoring, enforcementWidgets } from './enforcement-monitoring';
import { ENFORCER_ROLE_PATH } from './enforcer-identity';
import { MODIFY_THROTTLE_TABLE_NAME, ModifyThrottleTable } from './modify-throttle';

/**
 * What Imdsv2Enforcement does with instances that do not comply.
 */
export enum ImdsEnforcementMode {
  /** Modify non-compliant instances and set the account defaults for new ones. */
  ENFORCE = 'ENFORCE',
  /** Find and report non-compliant instances; change nothing, not even the account defaults. */
  AUDIT = 'AUDIT',
}

/**
 * Properties of an Imdsv2Enforcement.
 */
export interface Imdsv2EnforcementProps {
  /**
   * The HTTP PUT response hop limit of IMDSv2 tokens, per fleet class:
   * - `1`: only processes on the host itself reach IMDS;
   * - `2`: also containers on a Docker bridge network (the bridge adds a hop) — they can
   *   then read the instance role's credentials too;
   * - `3`: also overlay networks and Docker-in-Docker.
   *
   * An integer from 1 to 64. Values above 2 are allowed with a warning.
   */
  readonly hopLimit: number;

  /**
   * ENFORCE modifies; AUDIT only finds and reports.
   *
   * @default ImdsEnforcementMode.ENFORCE
   */
  readonly mode?: ImdsEnforcementMode;

  /**
   * Only instances carrying all of these tags (exact key and value) are enforced.
   *
   * @default - every instance in the account and region
   */
  readonly instanceTags?: Record<string, string>;

  /**
   * Instances tagged with this key and the value `true` (in any case) are never modified,
   * and are reported as exempt. The handlers' IAM policy denies modifying them as well.
   *
   * @default 'ImdsEnforcementExempt'
   */
  readonly exemptionTagKey?: string;

  /**
   * Whether instance metadata tags must be enabled. Agents read their exclusion tag from
   * IMDS (`/latest/meta-data/tags/instance/<key>`). When false, the setting is left as it is.
   *
   * @default true
   */
  readonly instanceMetadataTags?: boolean;

  /**
   * Whether to hold back instances that still made IMDSv1 calls recently (CloudWatch
   * metric `MetadataNoToken`): they are reported as at risk and not modified, because
   * requiring IMDSv2 would break whatever makes those calls.
   *
   * @default true
   */
  readonly protectImdsv1Users?: boolean;

  /**
   * How many days back `MetadataNoToken` is read. A whole number from 1 to 455.
   *
   * @default 14
   */
  readonly imdsv1LookbackDays?: number;

  /**
   * Whether to set the account's IMDS defaults for new instances in this region
   * (`ModifyInstanceMetadataDefaults`) to the same settings. Deleting the enforcement
   * restores the previous defaults, except that HttpTokens stays `required`.
   * Only in ENFORCE mode.
   *
   * @default true
   */
  readonly accountDefaults?: boolean;

  /**
   * Whether instances that enter `running` are enforced at once (an EventBridge rule),
   * rather than only by the next sweep.
   *
   * @default true
   */
  readonly enforceOnLaunch?: boolean;

  /**
   * How often the whole fleet is swept again, to correct drift the events do not show
   * (CloudTrail not recorded, an event lost). Whole minutes, from 1 hour to 30 days.
   * Changes made by others are also corrected within minutes from their CloudTrail records.
   *
   * @default Duration.days(1)
   */
  readonly driftCheckInterval?: Duration;

  /**
   * The topic the `MetadataNoTokenRejected` alarm notifies (ENFORCE mode). A topic you bring
   * that is encrypted must let `cloudwatch.amazonaws.com` use its key.
   *
   * @default - a new topic encrypted with `encryptionKey`
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * VPC to run the handlers in, each with a security group of its own that admits nothing
   * and lets out HTTPS only. They call only AWS APIs (EC2, CloudWatch, Step Functions,
   * DynamoDB, S3 for the sweep reports) and the custom resource answers CloudFormation
   * through a presigned S3 URL (the `cloudformation-custom-resource-response-<region>`
   * bucket): the subnets need a route to them, through a NAT gateway or VPC endpoints.
   * Needed for AWS Control Tower's CT.LAMBDA.PR.3.
   *
   * @default - the handlers run outside any VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Subnets of `vpc` for the handlers. Only together with `vpc`.
   *
   * @default - the private subnets of `vpc`
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * How long the handlers' and the sweep's logs are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * Customer-managed key that encrypts the log groups and the dead-letter queue. A key you
   * bring must allow the CloudWatch Logs service principal of this region to use it.
   *
   * @default - a new key with automatic yearly rotation
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * What happens to the log groups and the key created here when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * How `hopLimit` applies to instances that already have a hop limit: `AT_LEAST` raises
   * lower limits and keeps higher ones (containers or overlay networks on those hosts may
   * need them), `EXACT` sets every instance to `hopLimit`, lowering higher limits too.
   * Instances whose higher limit is kept are reported (metric `HopLimitKept`).
   *
   * @default HopLimitPolicy.AT_LEAST
   */
  readonly hopLimitPolicy?: HopLimitPolicy;

  /**
   * Whether instances with the metadata endpoint turned off (`HttpEndpoint=disabled`) get it
   * turned back on. By default IMDS stays off on them (their other settings are still
   * tightened) and they are reported (metric `EndpointLeftDisabled`): someone turned it off
   * on purpose, and agents on them cannot read IMDS anyway.
   *
   * @default false
   */
  readonly enableDisabledEndpoints?: boolean;

  /**
   * Whether to turn on EC2's account-level IMDSv2 enforcement in this region
   * (`ModifyInstanceMetadataDefaults` `HttpTokensEnforced=enabled`): launches that do not
   * require IMDSv2 are then refused, also those whose launch template or API call asks for
   * `HttpTokens=optional`. Deleting the enforcement, or turning this off, restores the value
   * from before. Only in ENFORCE mode with `accountDefaults`. Where an organization's
   * declarative policy manages the IMDS defaults, the policy decides and this is left alone.
   *
   * @default false
   */
  readonly httpTokensEnforced?: boolean;

  /**
   * Bucket for the per-instance report of every sweep: one JSON Lines object per sweep
   * under `reportPrefix` (`reports/<sweep id>.jsonl`), one line per instance with its state,
   * metadata options before and after, outcome and reason. `AgentFleet` passes its
   * telemetry store. The sweep may only write, read and delete under that prefix, and use
   * the bucket's KMS key only through S3.
   *
   * @default - no report object: each instance is a JSON line in the sweep's log group
   */
  readonly reportBucket?: s3.IBucket;

  /**
   * Key prefix of the reports in `reportBucket`. Only together with `reportBucket`.
   *
   * @default 'imds-enforcement/<a name unique to this construct>/'
   */
  readonly reportPrefix?: string;
}

/** How long CloudFormation waits for the custom resource before it fails it. */
const SERVICE_TIMEOUT = Duration.minutes(5);

/**
 * Requires IMDSv2, with a chosen hop limit, on the EC2 instances of an account and region:
 * the ones that exist, and the ones still to come.
 *
 * - A custom resource dry-runs the modification (a denied preflight fails the deployment at
 *   once), sets the account defaults for new instances and starts a sweep; it answers
 *   CloudFormation within seconds, whatever the size of the fleet.
 * - The sweep, a Step Functions state machine, pages through DescribeInstances (1,000 at a
 *   time, checkpointed) and modifies the non-compliant instances at the rate of EC2's token
 *   bucket for `ModifyInstanceMetadataOptions` (100 burst, 5 per second). It reports
 *   scanned, compliant, modified, exempt, at-risk and failed instances as CloudWatch metrics
 *   (namespace `AgentFleet/ImdsEnforcement`), and every instance's before, after, outcome and
 *   reason in a per-instance report (one object per sweep in `reportBucket`, else log lines).
 * - It only tightens: hop limits are raised, never lowered, and disabled endpoints stay
 *   disabled, unless `hopLimitPolicy` and `enableDisabledEndpoints` say otherwise.
 * - An EventBridge rule applies the same policy to each instance that enters `running`.
 *
 * Deleting it never sets HttpTokens back to optional on any instance.
 */
export class Imdsv2Enforcement extends Construct {
  /** The state machine that sweeps the fleet; start an execution to sweep again. */
  public readonly sweep: sfn.IStateMachine;

  /** The function that applies the policy to one page of instances. */
  public readonly sweepFunction: lambda.IFunction;

  /** The function that applies the policy to each instance entering `running`, if enabled. */
  public readonly launchFunction?: lambda.IFunction;

  /** The function that sweeps again on schedule and corrects changes made by others. */
  public readonly driftFunction: lambda.IFunction;

  /**
   * The name of the DynamoDB table of the limiter that every enforcement of the account and
   * Region shares (ENFORCE mode only).
   */
  public readonly limiterTableName?: string;

  /**
   * In alarm while instances refuse IMDSv1 calls (`MetadataNoTokenRejected`, summed over the
   * account and Region): callers that broke once IMDSv2 was required. ENFORCE mode only.
   */
  public readonly imdsv1RejectedAlarm?: cloudwatch.Alarm;

  /** The topic `imdsv1RejectedAlarm` notifies (ENFORCE mode only). */
  public readonly alarmTopic?: sns.ITopic;

  /** Launch events and custom resource requests that failed after their retries. */
  public readonly deadLetterQueue: sqs.IQueue;

  /** The key that encrypts the log groups and the dead-letter queue. */
  public readonly encryptionKey: kms.IKey;

  /** The hop limit enforced. */
  public readonly hopLimit: number;

  /** The mode it runs in. */
  public readonly mode: ImdsEnforcementMode;

  /** Where the sweep writes its per-instance reports (`reports/` under this prefix), if in a bucket. */
  public readonly reportPrefix?: string;

  constructor(scope: Construct, id: string, props: Imdsv2EnforcementProps) {
    super(scope, id);
    validateEnforcementProps(this, props);
    warnOnWideHopLimit(this, props.hopLimit);

    const stack = Stack.of(this);
    this.hopLimit = props.hopLimit;
    this.mode = props.mode ?? ImdsEnforcementMode.ENFORCE;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    const exemptionTagKey = props.exemptionTagKey ?? 'ImdsEnforcementExempt';
    const instanceTags = props.instanceTags ?? {};
    const policy = {
      mode: this.mode,
      hopLimit: props.hopLimit,
      instanceMetadataTags: props.instanceMetadataTags ?? true,
      instanceTags,
      exemptionTagKey,
      imdsv1LookbackDays: (props.protectImdsv1Users ?? true) ? (props.imdsv1LookbackDays ?? 14) : 0,
      hopLimitPolicy: props.hopLimitPolicy ?? HopLimitPolicy.AT_LEAST,
      enableDisabledEndpoints: props.enableDisabledEndpoints ?? false,
    };
    const enforce = this.mode === ImdsEnforcementMode.ENFORCE;

    this.encryptionKey = props.encryptionKey ?? createEnforcementKey(this, removalPolicy);
    const logGroup = (name: string) => new logs.LogGroup(this, `${name}Logs`, {
      retention, encryptionKey: this.encryptionKey, removalPolicy,
    });

    // One role for the two functions that look at and modify instances.
    const enforcerRole = new iam.Role(this, 'EnforcerRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      // Drift correction tells the enforcements' own changes from others' by this path.
      path: ENFORCER_ROLE_PATH,
      description: `Applies the IMDS policy of ${this.node.path} to EC2 instances`,
    });
    const enforcerPolicy = new iam.ManagedPolicy(this, 'EnforcerPolicy', {
      description: `What the IMDS sweep and launch handlers of ${this.node.path} may do`,
      roles: [enforcerRole],
    });
    enforcerPolicy.addStatements(new iam.PolicyStatement({
      sid: 'ListInstancesAndReadImdsv1Usage',
      // Neither action supports resource-level permissions.
      actions: ['ec2:DescribeInstances', 'cloudwatch:GetMetricData'],
      resources: ['*'],
    }));
    const modifyStatement = (sid: string) => modifyMetadataStatement(this, sid, exemptionTagKey, instanceTags);
    if (enforce) enforcerPolicy.addStatements(modifyStatement('ModifyMetadataOptionsOfInScopeInstancesNotExempt'));
    const policyJson = stack.toJsonString(policy);
    // Every path that modifies instances paces itself by the limiter the account and Region share.
    const limiterEnvironment: Record<string, string> = enforce ? { IMDS_LIMITER_TABLE: MODIFY_THROTTLE_TABLE_NAME } : {};
    const dlq = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: this.encryptionKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy,
    });
    declareDeadLetterQueue(dlq);
    this.deadLetterQueue = dlq;
    const fn = (name: string, options: {
      handler: string; description: string; timeout: Duration; role: iam.IRole; logGroup: logs.ILogGroup;
      concurrency: number; asynchronous: boolean;
    }) => {
      const f = createHandlerFunction(this, name, {
        area: 'imds',
        handler: options.handler,
        description: options.description,
        timeout: options.timeout,
        memorySize: 256,
        role: options.role,
        logGroup: options.logGroup,
        reservedConcurrentExecutions: options.concurrency,
        environment: { IMDS_POLICY: policyJson, ...limiterEnvironment },
        vpc: props.vpc,
        vpcSubnets: props.vpcSubnets,
        // The role does not take policy updates: the DLQ statements are granted below.
        deadLetterQueue: options.asynchronous ? dlq : undefined,
        acknowledgments: [
          ...(options.asynchronous ? [] : lambdaRuleAcks('LambdaDLQ',
            'Invoked synchronously by the sweep state machine, which retries failed steps and records failures in its execution history; '
            + 'a dead-letter queue only ever receives asynchronous invocations.', ['NIST.800.53.R5', 'HIPAA.Security'])),
          ...lambdaRuleAcks('LambdaInsideVPC',
            'Calls only AWS service APIs (EC2, CloudWatch, Step Functions, SQS) and serves no network traffic; pass `vpc` to run it in a VPC.'),
        ],
      });
      return f;
    };

    const throttle = enforce ? new ModifyThrottleTable(this, 'ModifyThrottle', {
      createFunction: (id, role, policy) => {
        const throttleLogs = logGroup('ModifyThrottle');
        policy.addStatements(writeLogsStatement([throttleLogs]), ...deadLetterStatements(dlq, this.encryptionKey));
        return fn(`ModifyThrottle${id}`, {
          handler: 'limiter-table',
          description: 'Custom resource of Imdsv2Enforcement: creates the shared ModifyInstanceMetadataOptions limiter table if missing',
          timeout: Duration.minutes(4), role, logGroup: throttleLogs, concurrency: 1, asynchronous: true,
        });
      },
    }) : undefined;
    if (throttle) enforcerPolicy.addStatements(throttle.useStatement());
    this.limiterTableName = throttle?.tableName;

    // The sweep: a state machine looping one Lambda over DescribeInstances pages.
    const sweepLogs = logGroup('Sweep');
    const sweepFunction = fn('SweepFunction', {
      handler: 'sweep-page',
      description: 'Applies the IMDS policy to one page of instances (Imdsv2Enforcement sweep)',
      timeout: Duration.minutes(15),
      role: enforcerRole.withoutPolicyUpdates(),
      logGroup: sweepLogs,
      // One step at a time: two sweeps at once would only throttle each other.
      concurrency: 1,
      asynchronous: false,
    });
    this.sweepFunction = sweepFunction;
    if (props.reportBucket) {
      this.reportPrefix = props.reportPrefix ?? reportPrefixOf(this);
      const reportPolicy = grantSweepReport(this, enforcerRole, props.reportBucket, this.reportPrefix);
      sweepFunction.addEnvironment('IMDS_REPORT', stack.toJsonString({ bucket: props.reportBucket.bucketName, prefix: this.reportPrefix }));
      sweepFunction.node.addDependency(reportPolicy);
    }
    const stateMachineLogs = logGroup('StateMachine');
    const stateMachine = createSweepStateMachine(this, sweepFunction, stateMachineLogs);
    this.sweep = stateMachine.machine;
    const logWriters = [sweepLogs];

    // New instances: EventBridge on instances entering running.
    if (props.enforceOnLaunch ?? true) {
      const launchLogs = logGroup('Launch');
      logWriters.push(launchLogs);
      const launchFunction = fn('LaunchFunction', {
        handler: 'instance-running',
        description: 'Applies the IMDS policy to an instance entering running (Imdsv2Enforcement)',
        timeout: Duration.minutes(2),
        role: enforcerRole.withoutPolicyUpdates(),
        logGroup: launchLogs,
        // A mass launch queues up (Lambda retries throttled events for hours) instead of
        // draining EC2's modify bucket from many handlers at once.
        concurrency: 5,
        asynchronous: true,
      });
      launchFunction.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: Duration.hours(6) });
      enforcerPolicy.addStatements(...deadLetterStatements(dlq, this.encryptionKey));
      this.launchFunction = launchFunction;
      const rule = new events.Rule(this, 'InstanceRunning', {
        description: 'Enforces the IMDS policy on each EC2 instance that enters running',
        eventPattern: {
          source: ['aws.ec2'],
          detailType: ['EC2 Instance State-change Notification'],
          detail: { state: ['running'] },
        },
        targets: [new targets.LambdaFunction(launchFunction, { deadLetterQueue: dlq, retryAttempts: 8, maxEventAge: Duration.hours(6) })],
      });
      rule.node.addDependency(enforcerPolicy);
    }
    enforcerPolicy.addStatements(writeLogsStatement(logWriters));

    // Drift: a scheduled re-sweep, and changes made by others corrected from CloudTrail.
    const drift = new DriftCorrection(this, 'Drift', {
      checkInterval: props.driftCheckInterval ?? Duration.days(1),
      sweep: stateMachine.machine,
      enforcerPolicy,
      scopeTagKeys: Object.keys(instanceTags),
      exemptionTagKey,
      deadLetterQueue: dlq,
      createFunction: (id, role, policy) => {
        const driftLogs = logGroup('Drift');
        policy.addStatements(writeLogsStatement([driftLogs]), ...deadLetterStatements(dlq, this.encryptionKey));
        return fn(`Drift${id}`, {
          handler: 'drift',
          description: 'Sweeps again on schedule and applies the IMDS policy after changes made by others (Imdsv2Enforcement)',
          timeout: Duration.minutes(5), role, logGroup: driftLogs,
          // Like the launch handler: a burst of changes queues up instead of crowding the limiter.
          concurrency: 5, asynchronous: true,
        });
      },
    });
    this.driftFunction = drift.function;

    // The custom resource: CloudFormation invokes this function directly, with a short service timeout.
    const onEventRole = new iam.Role(this, 'OnEventRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Sets the account IMDS defaults and starts the sweep of ${this.node.path}`,
    });
    const onEventLogs = logGroup('OnEvent');
    const onEventPolicy = new iam.ManagedPolicy(this, 'OnEventPolicy', {
      description: `What the custom resource handler of ${this.node.path} may do`,
      roles: [onEventRole],
      statements: [
        ...onEventStatements(stateMachine.machine),
        writeLogsStatement([onEventLogs]),
      ],
    });
    onEventPolicy.addStatements(...deadLetterStatements(dlq, this.encryptionKey));
    // The preflight dry-runs the sweep's modification with the same conditions.
    if (enforce) onEventPolicy.addStatements(...preflightStatements(modifyStatement('PreflightDryRunModifyMetadataOptions')));
    const onEventFunction = fn('OnEventFunction', {
      handler: 'on-event',
      description: 'Custom resource of Imdsv2Enforcement: sets account IMDS defaults and starts the sweep',
      timeout: Duration.minutes(1),
      role: onEventRole.withoutPolicyUpdates(),
      logGroup: onEventLogs,
      concurrency: 1,
      asynchronous: true,
    });

    const resource = new CustomResource(this, 'Resource', {
      resourceType: 'Custom::Imdsv2Enforcement',
      serviceToken: onEventFunction.functionArn,
      serviceTimeout: SERVICE_TIMEOUT,
      properties: {
        Policy: policy,
        StateMachineArn: stateMachine.machine.stateMachineArn,
        AccountDefaults: String(props.accountDefaults ?? true),
        ...(props.httpTokensEnforced ? { HttpTokensEnforced: 'true' } : {}),
      },
    });
    // The handlers need their permissions before the first request and until the last.
    resource.node.addDependency(onEventPolicy, enforcerPolicy, stateMachine.policy);
    // The sweep it starts paces itself by the shared limiter: the table must exist first.
    if (throttle) resource.node.addDependency(throttle.resource);

    if (enforce) {
      const monitoring = new EnforcementMonitoring(this, 'Monitoring', {
        alarmTopic: props.alarmTopic, encryptionKey: this.encryptionKey, owner: this.node.path,
      });
      this.imdsv1RejectedAlarm = monitoring.imdsv1RejectedAlarm;
      this.alarmTopic = monitoring.alarmTopic;
    }

    acknowledgeEnforcementFindings(this, enforce, {
      enforcerPolicy, onEventPolicy, stateMachine: stateMachine.machine, stateMachinePolicy: stateMachine.policy,
    });
  }

  /**
   * Dashboard widgets with the enforcement's failed, at-risk and modified instances
   * (namespace `AgentFleet/ImdsEnforcement`, per account and Region) and its alarm.
   */
  public dashboardWidgets(): cloudwatch.IWidget[] {
    return enforcementWidgets(this.imdsv1RejectedAlarm);
  }
}

