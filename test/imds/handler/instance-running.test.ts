import { DescribeInstancesCommand, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { handler } from '../../../lib/imds/handler/instance-running';
import { awsError, compliant, instance, mockedImdsClients, page, POLICY } from './fleet';

const { ec2, logs } = mockedImdsClients();

function running(instanceId: string, state = 'running') {
  return {
    version: '0', id: 'e1', 'detail-type': 'EC2 Instance State-change Notification' as const, source: 'aws.ec2',
    account: '111122223333', time: '2025-01-01T00:00:00Z', region: 'eu-west-1', resources: [],
    detail: { 'instance-id': instanceId, state },
  };
}


describe('the EventBridge path for one launched instance', () => {
  test('enforces the policy on the instance that entered running', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000001' })]));

    await handler(running('i-0abc0000000000001'));

    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters).toEqual([
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
      { Name: 'instance-id', Values: ['i-0abc0000000000001'] },
    ]);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).map((c) => c.args[0].input)).toEqual([{
      InstanceId: 'i-0abc0000000000001', HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled',
    }]);
    expect(JSON.parse(logs[0])).toMatchObject({ Source: 'Launch', Modified: 1, Scanned: 1 });
    expect(JSON.parse(logs[1])).toMatchObject({ message: 'IMDS policy applied to a launched instance', instanceId: 'i-0abc0000000000001', modified: 1 });
  });

  test('leaves an exempt, a compliant and an out-of-scope instance alone', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, instanceTags: { Fleet: 'agents' } });
    for (const inst of [
      instance({ id: 'i-0abc0000000000002', tags: { Fleet: 'agents', ImdsEnforcementExempt: 'true' } }),
      compliant('i-0abc0000000000003', { tags: { Fleet: 'agents' } }),
      instance({ id: 'i-0abc0000000000004', tags: { Fleet: 'other' } }),
    ]) {
      ec2.on(DescribeInstancesCommand).resolves(page([inst]));
      await handler(running(inst.InstanceId));
    }
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters).toContainEqual({ Name: 'tag:Fleet', Values: ['agents'] });
  });

  test('an instance already gone again is not a failure', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    await expect(handler(running('i-0abc0000000000005'))).resolves.toBeUndefined();
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
  });

  test('AUDIT reports the launched instance and changes nothing', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, mode: 'AUDIT' });
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000006' })]));
    await handler(running('i-0abc0000000000006'));
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
    expect(JSON.parse(logs[1])).toMatchObject({ mode: 'AUDIT', nonCompliant: 1, modified: 0 });
  });

  test('a denied modification throws, so Lambda retries the event and dead-letters it at last', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000007' })]));
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    await expect(handler(running('i-0abc0000000000007'))).rejects.toThrow(
      /IMDS enforcement failed for i-0abc0000000000007: ec2:ModifyInstanceMetadataOptions failed with UnauthorizedOperation/);
    expect(JSON.parse(logs[1])).toMatchObject({ level: 'ERROR', failedInstanceIds: ['i-0abc0000000000007'] });
  });

  test('ignores events that are not an instance entering running', async () => {
    await handler(running('i-0abc0000000000008', 'stopped'));
    await handler(running('not-an-instance-id'));
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
  });
});
