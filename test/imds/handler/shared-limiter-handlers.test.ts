/*
 * The handlers with the construct's limiter table configured: every path takes its slots
 * from the shared DynamoDB item, and a throttled modification is retried until done.
 */
import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { handler as instanceRunning } from '../../../lib/imds/handler/instance-running';
import { handler as sweepPage } from '../../../lib/imds/handler/sweep-page';
import { awsError, instance, mockedImdsClients, page } from './fleet';

const { ec2, logs } = mockedImdsClients();
const dynamodb = mockClient(DynamoDBClient);
const TABLE = 'cdk-agent-fleet-imds-modify-throttle';

beforeEach(() => {
  dynamodb.reset();
  process.env.IMDS_LIMITER_TABLE = TABLE;
  // The bucket is busy, and the slot it hands out is now: no one waits in these tests.
  dynamodb.on(UpdateItemCommand).callsFake(() => ({ Attributes: { pk: { S: 'ec2:ModifyInstanceMetadataOptions' }, tat: { N: String(Date.now() + 200 + 19_400) } } }));
});
afterEach(() => {
  delete process.env.IMDS_LIMITER_TABLE;
});

const running = (instanceId: string) => ({
  version: '0', id: 'e1', 'detail-type': 'EC2 Instance State-change Notification' as const, source: 'aws.ec2',
  account: '111122223333', time: '2025-01-01T00:00:00Z', region: 'eu-west-1', resources: [],
  detail: { 'instance-id': instanceId, state: 'running' },
});
const throttledTimes = (n: number) => {
  let mock = ec2.on(ModifyInstanceMetadataOptionsCommand);
  for (let i = 0; i < n; i++) mock = mock.rejectsOnce(awsError('RequestLimitExceeded', 'Request limit exceeded.'));
  mock.resolves({});
};

describe('launch handler on the shared limiter', () => {
  test('takes its slot from the shared item of ModifyInstanceMetadataOptions', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000001' })]));
    await instanceRunning(running('i-0abc0000000000001'));

    const writes = dynamodb.commandCalls(UpdateItemCommand).map((c) => c.args[0].input);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatchObject({
      TableName: TABLE,
      Key: { pk: { S: 'ec2:ModifyInstanceMetadataOptions' } },
      UpdateExpression: 'SET #tat = #tat + :interval',
      ConditionExpression: '#tat BETWEEN :now AND :horizon',
    });
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(1);
  });

  test('a launch throttled more than 10 times (the bucket is shared, not broken) is still enforced', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000002' })]));
    throttledTimes(12);

    await instanceRunning(running('i-0abc0000000000002'), { getRemainingTimeInMillis: () => 120_000 });

    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(13);
    expect(JSON.parse(logs[1])).toMatchObject({ modified: 1, failed: 0 });
    // Each throttle slowed the shared rate down (at most once a second) and emptied its burst.
    expect(dynamodb.commandCalls(UpdateItemCommand).some((c) => c.args[0].input.UpdateExpression === 'SET #rate = :rate, #throttledAt = :now')).toBe(true);
  });

  test('still throttled when the invocation runs out of time: thrown, so Lambda retries the event', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000003' })]));
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.'));
    await expect(instanceRunning(running('i-0abc0000000000003'), { getRemainingTimeInMillis: () => 15_500 }))
      .rejects.toThrow(/i-0abc0000000000003 was still waiting for EC2's throttle when the invocation ran out of time/);
    expect(JSON.parse(logs[1])).toMatchObject({ pendingInstanceIds: ['i-0abc0000000000003'], failed: 0 });
  });
});

describe('sweep step on the shared limiter', () => {
  test('paces by the shared item, keeps no limiter of its own in the checkpoint, retries throttling past 10', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-00000000000000001' }), instance({ id: 'i-00000000000000002' })]));
    throttledTimes(11);

    const state = await sweepPage({}, { getRemainingTimeInMillis: () => 900_000 });

    expect(state.tally).toMatchObject({ modified: 2, failed: 0 });
    expect(state.limiter).toBeUndefined();
    expect(dynamodb.commandCalls(UpdateItemCommand).length).toBeGreaterThanOrEqual(13);
  });
});
