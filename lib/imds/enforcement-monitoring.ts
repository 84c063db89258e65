import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** Where the handlers write their counts (embedded metric format, dimension `Source`). */
const NAMESPACE = 'AgentFleet/ImdsEnforcement';
const SOURCES = ['Sweep', 'Launch', 'Drift'];

/**
 * Every IMDSv1 call an instance of the account and Region refused in the period: the metric
 * exists per instance only, so a Metrics Insights query sums it (alarms can evaluate those).
 */
const REJECTED_QUERY = 'SELECT SUM(MetadataNoTokenRejected) FROM SCHEMA("AWS/EC2", InstanceId)';

/** What EnforcementMonitoring needs. */
export interface EnforcementMonitoringProps {
  /** The topic to notify; when absent, one is created, encrypted with `encryptionKey`. */
  readonly alarmTopic?: sns.ITopic;
  /** Encrypts a topic created here; gets a statement that lets CloudWatch alarms publish through SNS. */
  readonly encryptionKey: kms.IKey;
  /** The path of the enforcement, for descriptions. */
  readonly owner: string;
}

/**
 * The alarm on callers that broke because IMDSv1 is now refused, and the enforcement's
 * counts as dashboard widgets.
 */
export class EnforcementMonitoring extends Construct {
  /** The topic the alarm notifies. */
  public readonly alarmTopic: sns.ITopic;

  /** In alarm while instances refuse IMDSv1 calls (`MetadataNoTokenRejected` > 0). */
  public readonly imdsv1RejectedAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: EnforcementMonitoringProps) {
    super(scope, id);
    const stack = Stack.of(this);
    if (props.alarmTopic) {
      this.alarmTopic = props.alarmTopic;
    } else {
      this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
        displayName: `IMDS enforcement alarms of ${props.owner}`,
        masterKey: props.encryptionKey,
        enforceSSL: true,
      });
      // CloudWatch alarms publish to the topic, which the key encrypts (a key you bring needs the same).
      props.encryptionKey.addToResourcePolicy(new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
        conditions: { StringEquals: { 'kms:ViaService': `sns.${stack.region}.${stack.urlSuffix}` } },
      }));
    }
    this.imdsv1RejectedAlarm = new cloudwatch.Alarm(this, 'Imdsv1RejectedAlarm', {
      alarmDescription: `Instances refuse IMDSv1 calls (MetadataNoTokenRejected) since ${props.owner} required IMDSv2: something on them still `
        + 'calls IMDS without a token and now fails. Find the instances with the metric per InstanceId, update the caller '
        + '(an old SDK or agent), or tag the instance exempt and set HttpTokens back to optional while you do.',
      metric: new cloudwatch.MathExpression({ expression: REJECTED_QUERY, usingMetrics: {}, period: Duration.minutes(5), label: 'IMDSv1 calls refused' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.imdsv1RejectedAlarm.addAlarmAction(new cwActions.SnsAction(this.alarmTopic));
    this.imdsv1RejectedAlarm.addOkAction(new cwActions.SnsAction(this.alarmTopic));
  }
}

/**
 * Widgets with the enforcement's failures and at-risk instances, what it modified, and the
 * alarm: for a dashboard of your own, or the agent backend's.
 */
export function enforcementWidgets(alarm?: cloudwatch.IAlarm): cloudwatch.IWidget[] {
  const metric = (name: string, source: string) => new cloudwatch.Metric({
    namespace: NAMESPACE, metricName: name, dimensionsMap: { Source: source },
    statistic: cloudwatch.Stats.SUM, period: Duration.hours(1), label: `${name} (${source.toLowerCase()})`,
  });
  const widgets: cloudwatch.IWidget[] = [
    new cloudwatch.GraphWidget({
      title: 'IMDS enforcement: failed and at-risk instances',
      width: alarm ? 8 : 12,
      left: [...SOURCES.map((s) => metric('Failed', s)), metric('AtRisk', 'Sweep'), metric('AtRisk', 'Launch')],
    }),
    new cloudwatch.GraphWidget({
      title: 'IMDS enforcement: modified and non-compliant',
      width: alarm ? 8 : 12,
      left: [...SOURCES.map((s) => metric('Modified', s)), metric('NonCompliant', 'Sweep')],
    }),
  ];
  if (alarm) widgets.push(new cloudwatch.AlarmWidget({ title: 'IMDSv1 calls refused since enforcing', width: 8, alarm }));
  return widgets;
}
