import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { AssessmentTemplate } from './assessment-template';
import { cfnResourceOf } from '../core/nag';
import { TelemetryStore } from '../telemetry/telemetry-store';
import { createBackendApi } from './backend-api';
import { createBackendDeadLetterQueue, createBackendFunction, scheduleBackendFunction } from './backend-functions';
import { createBackendKey, createRegistry, registryKeyStatements } from './backend-registry';
import { createBackendAlarms, createBackendDashboard } from './backend-dashboard';
import { renderTemplates, validateProps } from './backend-validation';
import { COVERAGE_CHANGE_DETAIL_TYPE, COVERAGE_EVENT_SOURCE } from './coverage-event';
import { IdentityDocumentHeartbeatOptions } from './identity-document-heartbeat-options';
import { addIdentityHeartbeats, IDENTITY_HEARTBEAT_PATH } from './identity-document-heartbeats';

/**
 * How agents reach the backend's API.
 */
export enum BackendEndpointType {
  /** A regional endpoint, reachable over the internet (still IAM-authorized and limited by the resource policy). */
  REGIONAL = 'REGIONAL',
  /** A private endpoint, reachable only through the given interface VPC endpoints for `execute-api`. */
  PRIVATE = 'PRIVATE',
}

/**
 * What tunes an AgentBackend, without what connects it to other parts (the telemetry store,
 * the exclusion tag, the VPC endpoints, the removal policy). `AgentFleet` takes these.
 */
export interface AgentBackendOptions {
  /**
   * What agents run, and on which instances. Names must be unique.
   *
   * @default - none: heartbeats register agents, and every sensor is disabled
   */
  readonly assessments?: AssessmentTemplate[];

  /**
   * How often agents call. An agent is INACTIVE after two missed heartbeats (a heartbeat
   * counts as missed when it is half an interval late).
   *
   * A whole number of minutes from 1 to 60.
   *
   * @default Duration.minutes(10)
   */
  readonly heartbeatInterval?: Duration;

  /**
   * How long after its last heartbeat an agent's record is removed from the registry.
   *
   * A whole number of days from 1 to 365.
   *
   * @default Duration.days(30)
   */
  readonly cleanupAfter?: Duration;

  /**
   * Whether the API is regional or private.
   *
   * @default BackendEndpointType.REGIONAL
   */
  readonly endpointType?: BackendEndpointType;

  /**
   * Also accept agents of other accounts of this AWS Organization (`aws:PrincipalOrgID`).
   * Their own instance roles still need the permission (`grantHeartbeat` in their account).
   * Instance tags of other accounts cannot be read, so their agents only get the
   * assessments without `targetTags`.
   *
   * @default - only this account's principals
   */
  readonly principalOrgId?: string;

  /**
   * Also accept heartbeats of instances that have no role to sign with (Default Host
   * Management), authenticated by the instance's signed identity document on
   * `POST /v1/identity-heartbeat` and bound to the instance by its network origin. Only with
   * `endpointType` PRIVATE. Such heartbeats are recorded, and answered with no instructions.
   * Read the README's threat model first.
   *
   * @default - off: only heartbeats signed with an instance role
   */
  readonly identityDocumentHeartbeats?: IdentityDocumentHeartbeatOptions;

  /**
   * Steady-state requests per second the API stage accepts.
   * An integer from 1 to 10000; a fleet of N agents sends N / interval.
   *
   * @default 100
   */
  readonly throttlingRateLimit?: number;

  /**
   * Burst of requests the API stage accepts. An integer from 1 to 5000.
   *
   * @default 200
   */
  readonly throttlingBurstLimit?: number;

  /**
   * Concurrent executions reserved for the heartbeat function, so a heartbeat storm can
   * neither starve other functions of the account nor be starved by them.
   * An integer from 1 to 1000.
   *
   * @default 20
   */
  readonly heartbeatReservedConcurrency?: number;

  /**
   * How often the coverage report runs. A whole number of minutes from 5 minutes to 24 hours.
   *
   * @default Duration.hours(1)
   */
  readonly coverageReportInterval?: Duration;

  /**
   * The coverage alarm goes off when the share of non-excluded instances with an active
   * agent falls below this percentage (or when reports stop). A number from 0 to 100.
   *
   * @default 90
   */
  readonly coverageAlarmThreshold?: number;

  /**
   * SNS topic the alarms notify (on alarm and back to OK).
   *
   * @default - a new topic encrypted with the backend's key; subscribe to `alarmTopic`
   */
  readonly alarmTopic?: sns.ITopic;

  /**
   * Customer-managed key for the registry table, the log groups and the dead-letter queue.
   * A key you bring must let CloudWatch Logs of this Region use it.
   *
   * @default - a new key with yearly rotation
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * How long the API access logs and the functions' logs are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * Level of API Gateway execution logging. Needs the account's API Gateway CloudWatch Logs
   * role to be set (once per account and Region, usually by the landing zone).
   *
   * @default apigw.MethodLoggingLevel.ERROR
   */
  readonly executionLoggingLevel?: apigw.MethodLoggingLevel;

  /**
   * ARN of an AWS WAF web ACL (scope REGIONAL) to associate with the API stage, such as
   * one your organization manages centrally.
   *
   * @default - none: SigV4 authorization, the resource policy and stage throttling are the
   * controls in front of the API
   */
  readonly webAclArn?: string;

  /**
   * CloudWatch namespace of the backend's metrics. Every metric carries the dimension
   * `Backend` (this construct's path), so several backends can share a namespace.
   *
   * @default 'CdkAgentFleet'
   */
  readonly metricNamespace?: string;

  /**
   * VPC to run the backend's functions in (heartbeat, registry sweep, coverage report), each
   * with a security group of its own that admits nothing and lets out HTTPS only. They call
   * DynamoDB, EC2, SSM, S3 and EventBridge: the subnets need a route to those APIs, through
   * a NAT gateway or VPC endpoints. Needed for AWS Control Tower's CT.LAMBDA.PR.3.
   *
   * @default - the functions run outside any VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Subnets of `vpc` for the functions. Only together with `vpc`; public subnets are refused.
   *
   * @default - the private subnets of `vpc`
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
}

/**
 * Properties of an AgentBackend.
 */
export interface AgentBackendProps extends AgentBackendOptions {
  /**
   * The store agents send telemetry to. Instructions name folders in it, and the coverage
   * report is written to it under `reports/coverage/`.
   */
  readonly telemetry: TelemetryStore;

  /**
   * The instance tag that excludes an instance: the value `false` means no instructions
   * and "excluded" in the coverage report. Same key as the install and auto-configuration
   * constructs use.
   *
   * @default 'SecurityAgentManaged'
   */
  readonly exclusionTagKey?: string;

  /**
   * The interface VPC endpoints for `execute-api` through which a PRIVATE API is reached.
   * Required with `BackendEndpointType.PRIVATE`, not allowed otherwise.
   *
   * @default - none
   */
  readonly vpcEndpoints?: ec2.IInterfaceVpcEndpoint[];

  /**
   * What happens to the registry table and the key when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Where the coverage report goes in the telemetry store. */
const REPORT_PREFIX = 'reports/coverage/';
/** How long each heartbeat function container keeps its snapshot of instance tags. */
const TAG_CACHE = Duration.minutes(5);

/**
 * The backend host security agents talk to: a SigV4-authorized heartbeat API that answers
 * with instructions, the agent registry, inactive-agent cleanup, a fleet coverage report
 * and a dashboard with alarms.
 *
 * An agent calls `POST /v1/heartbeat` signed with its instance role. The backend takes
 * the instance from the caller's identity (never from the body alone), records it (one
 * record per instance) and answers with the assessment runs the instance's tags select.
 */
export class AgentBackend extends Construct {
  /**
   * `source` of the coverage change events the coverage report puts on the account's
   * default event bus (see the README for the detail's JSON Schema).
   */
  public static readonly COVERAGE_EVENT_SOURCE: string = COVERAGE_EVENT_SOURCE;

  /** `detail-type` of a coverage change event: one instance's coverage category changed. */
  public static readonly COVERAGE_CHANGE_DETAIL_TYPE: string = COVERAGE_CHANGE_DETAIL_TYPE;

  /** The heartbeat API. */
  public readonly api: apigw.RestApi;

  /** The agent registry: one item per instance, key `<account>#<region>#<instanceId>`. */
  public readonly registry: dynamodb.ITable;

  /** The key that encrypts the registry, the logs and the dead-letter queue. */
  public readonly encryptionKey: kms.IKey;

  /** The function behind `POST /v1/heartbeat`. */
  public readonly heartbeatFunction: lambda.IFunction;

  /** The function of `POST /v1/identity-heartbeat`, when `identityDocumentHeartbeats` is on. */
  public readonly identityHeartbeatFunction?: lambda.IFunction;

  /** The scheduled function that marks inactive agents, removes expired ones and publishes agent metrics. */
  public readonly registrySweepFunction: lambda.IFunction;

  /** The scheduled function that writes the coverage report. */
  public readonly coverageReportFunction: lambda.IFunction;

  /** The API's access log group. */
  public readonly accessLogGroup: logs.ILogGroup;

  /** The dashboard of the fleet's agents, heartbeats and coverage. */
  public readonly dashboard: cloudwatch.Dashboard;

  /** Alarm on heartbeat server errors (5xx). */
  public readonly heartbeatErrorsAlarm: cloudwatch.IAlarm;

  /** Alarm on the coverage ratio falling below the threshold, or reports stopping. */
  public readonly coverageAlarm: cloudwatch.IAlarm;

  /** The heartbeat interval agents are told to use. */
  public readonly heartbeatInterval: Duration;

  /** Namespace of the backend's metrics. */
  public readonly metricNamespace: string;

  /** The SNS topic the alarms notify. */
  public readonly alarmTopic: sns.ITopic;

  /** Value of the `Backend` dimension of the backend's metrics. */
  public readonly metricBackendName: string;

  /** Key prefix of the coverage reports in the telemetry store (`latest.json` is the newest). */
  public readonly coverageReportPrefix: string = REPORT_PREFIX;

  private readonly stage: apigw.Stage;

  constructor(scope: Construct, id: string, props: AgentBackendProps) {
    super(scope, id);
    const assessments = props.assessments ?? [];
    validateProps(this, props, assessments);

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.heartbeatInterval = props.heartbeatInterval ?? Duration.minutes(10);
    const cleanupAfter = props.cleanupAfter ?? Duration.days(30);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    this.metricNamespace = props.metricNamespace ?? 'CdkAgentFleet';
    this.metricBackendName = this.node.path;
    const exclusionTagKey = props.exclusionTagKey ?? 'SecurityAgentManaged';

    this.encryptionKey = props.encryptionKey ?? createBackendKey(this, removalPolicy);
    this.registry = createRegistry(this, removalPolicy, this.encryptionKey);

    const environment: Record<string, string> = {
      REGISTRY_TABLE: this.registry.tableName,
      HEARTBEAT_INTERVAL_SECONDS: String(this.heartbeatInterval.toSeconds()),
      CLEANUP_AFTER_SECONDS: String(cleanupAfter.toSeconds()),
      ASSESSMENT_TEMPLATES: renderTemplates(assessments),
      EXCLUSION_TAG_KEY: exclusionTagKey,
      TELEMETRY_BUCKET: props.telemetry.bucket.bucketName,
      TELEMETRY_AGENT_PREFIX: props.telemetry.agentPrefix,
      COVERAGE_REPORT_PREFIX: REPORT_PREFIX,
      METRIC_NAMESPACE: this.metricNamespace,
      BACKEND_NAME: this.metricBackendName,
      BACKEND_ACCOUNT_ID: Aws.ACCOUNT_ID,
      TAG_CACHE_SECONDS: String(TAG_CACHE.toSeconds()),
    };
    const stack = Stack.of(this);
    const describeStatement = (actions: string[]) => new iam.PolicyStatement({
      actions,
      resources: ['*'],
      conditions: { StringEquals: { 'aws:RequestedRegion': stack.region } },
    });

    // Heartbeat: write its own instance's record, read tags of this Region.
    const heartbeat = createBackendFunction(this, this.encryptionKey, 'Heartbeat', 'heartbeat', {
      description: 'Agent heartbeats: validates, registers the agent, answers with its instructions',
      environment,
      memorySize: 512,
      timeout: Duration.seconds(10),
      reservedConcurrentExecutions: props.heartbeatReservedConcurrency ?? 20,
      logRetention,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      statements: [
        new iam.PolicyStatement({ actions: ['dynamodb:UpdateItem'], resources: [this.registry.tableArn] }),
        ...registryKeyStatements(this, this.encryptionKey),
        describeStatement(['ec2:DescribeTags']),
      ],
      wildcardReasons: {
        'Resource::*': 'ec2:DescribeTags supports no resource-level permissions; the statement is limited to this Region by aws:RequestedRegion and only reads tags.',
      },
    });
    this.heartbeatFunction = heartbeat.fn;

    const deadLetters = createBackendDeadLetterQueue(this, this.encryptionKey);

    // Registry sweep: scan, mark INACTIVE, remove expired records.
    const sweep = createBackendFunction(this, this.encryptionKey, 'RegistrySweep', 'registry-sweep', {
      description: 'Agent registry: marks agents INACTIVE, removes expired records, publishes agent metrics',
      environment,
      memorySize: 512,
      timeout: Duration.minutes(5),
      reservedConcurrentExecutions: 1,
      logRetention,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      deadLetterQueue: deadLetters,
      statements: [
        new iam.PolicyStatement({ actions: ['dynamodb:Scan', 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'], resources: [this.registry.tableArn] }),
        ...registryKeyStatements(this, this.encryptionKey),
      ],
    });
    this.registrySweepFunction = sweep.fn;
    const sweepEvery = Duration.minutes(Math.max(5, this.heartbeatInterval.toMinutes()));
    scheduleBackendFunction(this, 'RegistrySweepSchedule', sweep.fn, sweepEvery);

    // Coverage report: read the fleet, write reports/coverage/ only.
    const coverage = createBackendFunction(this, this.encryptionKey, 'CoverageReport', 'coverage-report', {
      description: 'Fleet coverage: compares EC2, SSM, the agent registry and exclusion tags; writes a report',
      environment,
      memorySize: 1024,
      timeout: Duration.minutes(10),
      reservedConcurrentExecutions: 1,
      logRetention,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      deadLetterQueue: deadLetters,
      statements: [
        new iam.PolicyStatement({ actions: ['dynamodb:Scan'], resources: [this.registry.tableArn] }),
        ...registryKeyStatements(this, this.encryptionKey),
        describeStatement(['ec2:DescribeInstances', 'ssm:DescribeInstanceInformation']),
        new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [props.telemetry.bucket.arnForObjects(`${REPORT_PREFIX}*`)] }),
        // The previous report, to tell what changed; listing only it, so a first run reads "no such key", not "access denied".
        new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [props.telemetry.bucket.arnForObjects(`${REPORT_PREFIX}latest.json`)] }),
        new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [props.telemetry.bucket.bucketArn],
          conditions: { StringEquals: { 's3:prefix': `${REPORT_PREFIX}latest.json` } },
        }),
        // Coverage change events: the default bus of this account, only this source and detail-type.
        new iam.PolicyStatement({
          actions: ['events:PutEvents'],
          resources: [stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' })],
          conditions: { StringEquals: { 'events:source': COVERAGE_EVENT_SOURCE, 'events:detail-type': COVERAGE_CHANGE_DETAIL_TYPE } },
        }),
        new iam.PolicyStatement({
          actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
          resources: [props.telemetry.encryptionKey.keyArn],
          conditions: {
            StringEquals: {
              'kms:ViaService': `s3.${stack.region}.${stack.urlSuffix}`,
              // With S3 Bucket Keys the encryption context is the bucket, not the object.
              'kms:EncryptionContext:aws:s3:arn': props.telemetry.bucket.bucketArn,
            },
          },
        }),
      ],
      wildcardReasons: {
        'Resource::*': 'ec2:DescribeInstances and ssm:DescribeInstanceInformation support no resource-level permissions; the statement is limited to this Region by aws:RequestedRegion and only reads.',
        [`Resource::<${stack.getLogicalId(cfnResourceOf(props.telemetry.bucket))}.Arn>/${REPORT_PREFIX}*`]:
          'The report function writes timestamped report objects, so it needs every key below reports/coverage/ and nothing else of the store.',
      },
    });
    this.coverageReportFunction = coverage.fn;
    const coverageEvery = props.coverageReportInterval ?? Duration.hours(1);
    scheduleBackendFunction(this, 'CoverageReportSchedule', coverage.fn, coverageEvery);

    const api = createBackendApi(this, props, heartbeat.fn, logRetention, this.encryptionKey);
    this.api = api.api;
    this.stage = api.stage;
    this.accessLogGroup = api.accessLogs;
    if (props.identityDocumentHeartbeats && props.endpointType === BackendEndpointType.PRIVATE) {
      this.identityHeartbeatFunction = addIdentityHeartbeats(this, {
        options: props.identityDocumentHeartbeats, v1: api.v1, validator: api.validator, model: api.model, environment,
        vpcEndpointIds: (props.vpcEndpoints ?? []).map((e) => e.vpcEndpointId), registry: this.registry, encryptionKey: this.encryptionKey, logRetention,
      });
    }

    this.alarmTopic = props.alarmTopic ?? new sns.Topic(this, 'AlarmTopic', {
      displayName: `Alarms of the agent backend ${this.node.path}`,
      masterKey: this.encryptionKey,
      enforceSSL: true,
    });
    const alarms = createBackendAlarms(this, props, coverageEvery);
    this.heartbeatErrorsAlarm = alarms.heartbeatErrors;
    this.coverageAlarm = alarms.coverage;
    this.dashboard = createBackendDashboard(this, alarms.heartbeatErrors, alarms.coverage, props.coverageAlarmThreshold ?? 90, coverageEvery, sweepEvery);
  }

  /** The URL agents post heartbeats to. */
  public get heartbeatUrl(): string {
    return this.api.urlForPath('/v1/heartbeat');
  }

  /** The URL instances without a role post identity-document heartbeats to (when `identityDocumentHeartbeats` is on). */
  public get identityHeartbeatUrl(): string | undefined {
    return this.identityHeartbeatFunction ? this.api.urlForPath(IDENTITY_HEARTBEAT_PATH) : undefined;
  }

  /**
   * Lets instances with this role send heartbeats: `execute-api:Invoke` on exactly
   * `POST /v1/heartbeat` of this API's stage, nothing else.
   *
   * @param grantee the instance role
   */
  public grantHeartbeat(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [this.api.arnForExecuteApi('POST', '/v1/heartbeat', this.stage.stageName)],
    });
  }

  /**
   * A metric of the backend (emitted by its functions in embedded metric format).
   *
   * @param metricName e.g. `ActiveAgents`, `AgentsUsingImdsV1`, `CoverageRatio`, `Covered`
   * @param props statistic, period and the like
   */
  public metric(metricName: string, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: this.metricNamespace,
      metricName,
      dimensionsMap: { Backend: this.metricBackendName },
      statistic: cloudwatch.Stats.MAXIMUM,
      ...props,
    });
  }
}
