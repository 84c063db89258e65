import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { AgentBackend, AgentBackendProps } from './agent-backend';

/** The backend's alarms, created in its scope, notifying its alarm topic. */
export function createBackendAlarms(backend: AgentBackend, props: AgentBackendProps, coverageEvery: Duration) {
  const heartbeatErrors = new cloudwatch.Alarm(backend, 'HeartbeatErrorsAlarm', {
    alarmDescription: `Heartbeats of ${backend.node.path} fail with server errors (5xx): agents get no instructions and may turn INACTIVE.`,
    metric: backend.api.metricServerError({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
    threshold: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
  const coverage = new cloudwatch.Alarm(backend, 'CoverageAlarm', {
    alarmDescription: `Fewer than ${props.coverageAlarmThreshold ?? 90}% of the non-excluded instances seen by ${backend.node.path} have an active agent, `
      + 'or the coverage report stopped. The latest report lists the instances per category.',
    metric: backend.metric('CoverageRatio', { period: coverageEvery, statistic: cloudwatch.Stats.MINIMUM }),
    threshold: props.coverageAlarmThreshold ?? 90,
    comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    evaluationPeriods: 2,
    datapointsToAlarm: 2,
    // A report that stops coming is a coverage failure too.
    treatMissingData: cloudwatch.TreatMissingData.BREACHING,
  });
  for (const alarm of [heartbeatErrors, coverage]) {
    alarm.addAlarmAction(new cwActions.SnsAction(backend.alarmTopic));
    alarm.addOkAction(new cwActions.SnsAction(backend.alarmTopic));
  }
  return { heartbeatErrors, coverage };
}

/** The dashboard of the fleet's agents, heartbeats and coverage, created in the backend's scope. */
export function createBackendDashboard(
  backend: AgentBackend,
  heartbeatErrors: cloudwatch.IAlarm,
  coverage: cloudwatch.IAlarm,
  coverageThreshold: number,
  coverageEvery: Duration,
  sweepEvery: Duration,
): cloudwatch.Dashboard {
  const five = Duration.minutes(5);
  const sweep = (name: string, label: string) => backend.metric(name, { period: sweepEvery, label });
  const report = (name: string, label: string) => backend.metric(name, { period: coverageEvery, label });
  const byDimension = (dimension: string, label: string) => new cloudwatch.MathExpression({
    expression: `SEARCH('{${backend.metricNamespace},Backend,${dimension}} MetricName="ActiveAgents" Backend="${backend.metricBackendName}"', 'Maximum', ${sweepEvery.toSeconds()})`,
    label,
    usingMetrics: {},
    period: sweepEvery,
  });

  const dashboard = new cloudwatch.Dashboard(backend, 'Dashboard', {
    defaultInterval: Duration.days(1),
  });
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Heartbeats',
      width: 8,
      left: [
        backend.api.metricCount({ period: five, statistic: cloudwatch.Stats.SUM, label: 'requests' }),
        backend.api.metricClientError({ period: five, statistic: cloudwatch.Stats.SUM, label: '4xx' }),
        backend.api.metricServerError({ period: five, statistic: cloudwatch.Stats.SUM, label: '5xx' }),
      ],
    }),
    new cloudwatch.GraphWidget({
      title: 'Heartbeat latency',
      width: 8,
      left: [backend.api.metricLatency({ period: five, statistic: cloudwatch.Stats.p(99), label: 'p99' })],
    }),
    new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width: 8, alarms: [heartbeatErrors, coverage] }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Agents',
      width: 8,
      left: [sweep('ActiveAgents', 'active'), sweep('InactiveAgents', 'inactive'), sweep('RemovedAgents', 'removed')],
    }),
    new cloudwatch.GraphWidget({ title: 'Active agents by instance type', width: 8, left: [byDimension('InstanceType', 'instance type')] }),
    new cloudwatch.GraphWidget({ title: 'Active agents by agent version', width: 8, left: [byDimension('AgentVersion', 'agent version')] }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Coverage',
      width: 12,
      left: [
        report('Covered', 'covered'), report('Excluded', 'excluded'), report('NotSsmManaged', 'not SSM-managed'),
        report('AgentUnhealthy', 'agent unhealthy'), report('AgentMissing', 'agent missing'), report('AgentInactive', 'agent inactive'),
      ],
    }),
    new cloudwatch.GraphWidget({
      title: 'Coverage ratio (%)',
      width: 6,
      left: [report('CoverageRatio', 'covered / not excluded')],
      leftYAxis: { min: 0, max: 100 },
      leftAnnotations: [{ value: coverageThreshold, label: 'alarm threshold' }],
    }),
    new cloudwatch.GraphWidget({
      title: 'IMDSv1',
      width: 6,
      left: [sweep('AgentsUsingImdsV1', 'agents using IMDSv1'), report('ImdsV1Allowed', 'instances allowing IMDSv1')],
    }),
  );
  // Instances whose agent heartbeats but whose service is down, and the events that told people.
  const changes = (name: string, label: string) => backend.metric(name, { period: coverageEvery, statistic: cloudwatch.Stats.SUM, label });
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Agents unhealthy (service not running)',
      width: 8,
      left: [report('AgentUnhealthy', 'agent unhealthy')],
      leftYAxis: { min: 0 },
    }),
    new cloudwatch.SingleValueWidget({
      title: 'Agents unhealthy (latest report)',
      width: 4,
      metrics: [report('AgentUnhealthy', 'agent unhealthy')],
    }),
    new cloudwatch.GraphWidget({
      title: 'Coverage change events',
      width: 12,
      left: [changes('CoverageChanges', 'events sent'), changes('CoverageEventsFailed', 'events failed (run retried)')],
      leftYAxis: { min: 0 },
    }),
  );
  return dashboard;
}
