/*
 * Example: a telemetry store for a fleet whose evidence must be kept 90 days, with access
 * logs going to the organisation's central log bucket, and an instance role that may only
 * write into its own instance's folder.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { TelemetryStore } from '../lib';

export function build(app: App): Stack {
  const stack = new Stack(app, 'TelemetryStoreExample');

  const centralLogs = s3.Bucket.fromBucketName(stack, 'CentralLogs', 'example-org-access-logs');
  const telemetry = new TelemetryStore(stack, 'Telemetry', {
    retention: Duration.days(90),
    accessLogsBucket: centralLogs,
    accessLogsPrefix: 'agent-fleet/telemetry/',
  });

  const instanceRole = new iam.Role(stack, 'InstanceRole', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: 'Role of the fleet instances that run the security agent',
  });
  telemetry.grantAgentWrite(instanceRole);
  return stack;
}

if (require.main === module) {
  const app = new App();
  build(app);
  app.synth();
}
