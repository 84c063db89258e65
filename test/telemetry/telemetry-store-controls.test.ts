import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { TelemetryStore, TelemetryStoreProps } from '../../lib';
import { nagFindings } from '../helpers/nag';

function storeTemplate(props: TelemetryStoreProps): Template {
  const stack = new Stack(new App(), 'Stack', { env: { account: '111122223333', region: 'eu-west-1' } });
  new TelemetryStore(stack, 'Telemetry', props);
  return Template.fromStack(stack);
}

describe('TelemetryStore: the Control Tower options', () => {
  test('objectLockRetention locks each version in governance mode for that long', () => {
    const template = storeTemplate({ objectLockRetention: Duration.days(14) });
    template.hasResourceProperties('AWS::S3::Bucket', {
      ObjectLockEnabled: true,
      ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 14 } } },
    });
    // S3 refuses Object Lock on a server-access-log target bucket: only the telemetry bucket has it.
    expect(Object.values(template.findResources('AWS::S3::Bucket')).filter((b: any) => b.Properties.ObjectLockEnabled)).toHaveLength(1);
  });

  test('eventBridgeNotifications sends both buckets\' object events to EventBridge, without a custom resource', () => {
    const template = storeTemplate({ eventBridgeNotifications: true });
    template.allResourcesProperties('AWS::S3::Bucket', { NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } } });
    template.resourceCountIs('AWS::Lambda::Function', 0);
    template.resourceCountIs('Custom::S3BucketNotifications', 0);
  });

  test('neither by default', () => {
    const buckets = Object.values(storeTemplate({}).findResources('AWS::S3::Bucket')) as any[];
    expect(buckets.map((b) => [b.Properties.ObjectLockEnabled, b.Properties.NotificationConfiguration])).toEqual([[undefined, undefined], [undefined, undefined]]);
  });

  test('both keep the cdk-nag packs clean', () => {
    const stack = new Stack(new App(), 'Stack');
    new TelemetryStore(stack, 'Telemetry', { objectLockRetention: Duration.days(30), eventBridgeNotifications: true });
    expect(nagFindings(stack)).toEqual([]);
  });

  test('fails when the lock outlasts the retention, or is not whole days', () => {
    expect(() => storeTemplate({ objectLockRetention: Duration.days(31) })).toThrow(/objectLockRetention: got 31 days.*1 to 30/);
    expect(() => storeTemplate({ retention: Duration.days(7), objectLockRetention: Duration.days(8) })).toThrow(/objectLockRetention: got 8 days.*1 to 7/);
    expect(() => storeTemplate({ objectLockRetention: Duration.hours(36) })).toThrow(/objectLockRetention/);
  });
});
