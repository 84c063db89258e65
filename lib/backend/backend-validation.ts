import { Token } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { BackendEndpointType, type AgentBackendProps } from './agent-backend';
import { AssessmentTemplate } from './assessment-template';
import { Sensor } from './sensor';
import { PropsValidator } from '../core/validation';
import { validateIdentityOptions } from './identity-document-heartbeats';

/** The templates as the handlers read them (one environment variable). */
export function renderTemplates(assessments: AssessmentTemplate[]): string {
  return JSON.stringify(assessments.map((a) => ({
    name: a.name,
    sensors: a.sensors,
    durationSeconds: a.duration.toSeconds(),
    targetTags: a.targetTags,
  })));
}

const TEMPLATE_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;
/** EC2 tag keys: up to 128 Unicode letters, digits, spaces and _.:/=+-@, not starting with aws:. */
const TAG_KEY = /^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;
/** Lambda allows 4 KB of environment in total; the templates get most of it. */
const MAX_RENDERED_TEMPLATES = 3000;

export function validateProps(scope: Construct, props: AgentBackendProps, assessments: AssessmentTemplate[]): void {
  const v = new PropsValidator(scope);
  const interval = props.heartbeatInterval;
  if (interval && !interval.isUnresolved()) {
    const minutes = interval.toSeconds() / 60;
    v.require(Number.isInteger(minutes) && minutes >= 1 && minutes <= 60, 'heartbeatInterval', interval, 'a whole number of minutes from 1 to 60');
  }
  v.wholeDays('cleanupAfter', props.cleanupAfter, 1, 365);
  const report = props.coverageReportInterval;
  if (report && !report.isUnresolved()) {
    const minutes = report.toSeconds() / 60;
    v.require(Number.isInteger(minutes) && minutes >= 5 && minutes <= 24 * 60, 'coverageReportInterval', report, 'a whole number of minutes from 5 minutes to 24 hours');
  }
  v.integerInRange('throttlingRateLimit', props.throttlingRateLimit, 1, 10000);
  v.integerInRange('throttlingBurstLimit', props.throttlingBurstLimit, 1, 5000);
  v.integerInRange('heartbeatReservedConcurrency', props.heartbeatReservedConcurrency, 1, 1000);
  v.require(!(props.vpcSubnets && !props.vpc), 'vpcSubnets', props.vpcSubnets, 'only together with vpc');
  const threshold = props.coverageAlarmThreshold;
  if (threshold !== undefined && !Token.isUnresolved(threshold)) {
    v.require(Number.isFinite(threshold) && threshold >= 0 && threshold <= 100, 'coverageAlarmThreshold', threshold, 'a percentage from 0 to 100');
  }
  if (props.exclusionTagKey !== undefined && !Token.isUnresolved(props.exclusionTagKey)) {
    v.require(TAG_KEY.test(props.exclusionTagKey), 'exclusionTagKey', props.exclusionTagKey, 'an EC2 tag key: 1 to 128 letters, digits, spaces and _.:/=+-@, not starting with aws:');
  }
  if (props.principalOrgId !== undefined && !Token.isUnresolved(props.principalOrgId)) {
    v.require(/^o-[a-z0-9]{10,32}$/.test(props.principalOrgId), 'principalOrgId', props.principalOrgId, 'an AWS Organizations id: o- followed by 10 to 32 lower-case letters or digits');
  }
  const endpointType = props.endpointType ?? BackendEndpointType.REGIONAL;
  const endpoints = props.vpcEndpoints ?? [];
  if (endpointType === BackendEndpointType.PRIVATE) {
    v.require(endpoints.length > 0, 'vpcEndpoints', props.vpcEndpoints, 'at least one interface VPC endpoint for execute-api when endpointType is PRIVATE');
  } else {
    v.require(endpoints.length === 0, 'vpcEndpoints', `${endpoints.length} endpoint(s)`, 'none unless endpointType is PRIVATE');
  }
  validateIdentityOptions(v, props.identityDocumentHeartbeats, endpointType === BackendEndpointType.PRIVATE);
  if (props.webAclArn !== undefined && !Token.isUnresolved(props.webAclArn)) {
    v.require(/^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional\/webacl\/.+$/.test(props.webAclArn), 'webAclArn', props.webAclArn, 'the ARN of a REGIONAL AWS WAF web ACL');
  }
  if (props.metricNamespace !== undefined && !Token.isUnresolved(props.metricNamespace)) {
    v.require(/^(?!AWS\/)[A-Za-z0-9._\-/#:]{1,255}$/.test(props.metricNamespace), 'metricNamespace', props.metricNamespace, 'a CloudWatch namespace: 1 to 255 letters, digits and ._-/#:, not starting with AWS/');
  }

  v.require(assessments.length <= 20, 'assessments', `${assessments.length} templates`, 'at most 20 templates');
  const names = new Set<string>();
  const intervalSeconds = interval && !interval.isUnresolved() ? interval.toSeconds() : 600;
  const targetKeys = new Set<string>();
  assessments.forEach((a, i) => {
    const at = `assessments[${i}]`;
    v.require(TEMPLATE_NAME.test(a.name), `${at}.name`, a.name, '1 to 40 lower-case letters, digits and hyphens, starting with a letter or digit');
    v.require(!names.has(a.name), `${at}.name`, a.name, 'a name no other template of this backend has');
    names.add(a.name);
    v.require(a.sensors.length > 0, `${at}.sensors`, a.sensors, `at least one of ${Object.values(Sensor).join(', ')}`);
    v.require(new Set(a.sensors).size === a.sensors.length, `${at}.sensors`, a.sensors, 'each sensor at most once');
    v.require(a.sensors.every((s) => Object.values(Sensor).includes(s)), `${at}.sensors`, a.sensors, `sensors of ${Object.values(Sensor).join(', ')}`);
    if (!a.duration.isUnresolved()) {
      const seconds = a.duration.toSeconds({ integral: false });
      v.require(Number.isInteger(seconds / 60) && seconds >= 15 * 60 && seconds <= 24 * 3600, `${at}.duration`, a.duration, 'a whole number of minutes from 15 minutes to 24 hours');
      v.require(seconds >= intervalSeconds, `${at}.duration`, a.duration, `at least the heartbeat interval (${intervalSeconds / 60} minutes), or an agent could miss a run`);
    }
    const tags = Object.entries(a.targetTags);
    v.require(tags.length <= 10, `${at}.targetTags`, `${tags.length} tags`, 'at most 10 tags');
    for (const [key, value] of tags) {
      targetKeys.add(key);
      v.require(TAG_KEY.test(key), `${at}.targetTags`, key, 'tag keys of 1 to 128 letters, digits, spaces and _.:/=+-@, not starting with aws:');
      v.require(typeof value === 'string' && TAG_VALUE.test(value), `${at}.targetTags[${JSON.stringify(key)}]`, value, 'a tag value of 0 to 256 letters, digits, spaces and _.:/=+-@');
    }
  });
  const rendered = renderTemplates(assessments).length;
  v.require(rendered <= MAX_RENDERED_TEMPLATES, 'assessments', `${rendered} characters of configuration`, `at most ${MAX_RENDERED_TEMPLATES} characters once rendered (Lambda environment limit); use fewer or shorter templates`);
  v.throwIfInvalid();
}
