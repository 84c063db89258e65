import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DescribeInstancesCommand, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { ListExecutionsCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, instanceIdsOf } from '../../../lib/imds/handler/drift';
import { awsError, instance, mockedImdsClients, page, POLICY } from './fleet';

const { ec2, logs } = mockedImdsClients();
const sfn = mockClient(SFNClient);
const dynamodb = mockClient(DynamoDBClient);
const STATE_MACHINE = 'arn:aws:states:eu-west-1:111122223333:stateMachine:ImdsSweep';
const context = { getRemainingTimeInMillis: () => 300_000 };

beforeEach(() => {
  sfn.reset();
  dynamodb.reset();
  process.env.IMDS_SWEEP_STATE_MACHINE = STATE_MACHINE;
  process.env.IMDS_LIMITER_TABLE = 'cdk-agent-fleet-imds-modify-throttle';
  dynamodb.on(UpdateItemCommand).callsFake(() => ({ Attributes: { tat: { N: String(Date.now()) } } }));
});
afterEach(() => {
  delete process.env.IMDS_SWEEP_STATE_MACHINE;
  delete process.env.IMDS_LIMITER_TABLE;
});

const scheduled = { 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} };
function cloudTrail(eventName: string, requestParameters: unknown, identity: Record<string, unknown> = otherRole, extra: Record<string, unknown> = {}) {
  return {
    'detail-type': 'AWS API Call via CloudTrail', source: 'aws.ec2',
    detail: { eventSource: 'ec2.amazonaws.com', eventName, userIdentity: identity, requestParameters, ...extra },
  };
}
const otherRole = {
  type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Admin/alice',
  sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/Admin' } },
};
const ourRole = {
  type: 'AssumedRole', arn: 'arn:aws:sts::111122223333:assumed-role/Fleet-EnforcerRole-ABC/i-1',
  sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/cdk-agent-fleet/imds-enforcer/Fleet-EnforcerRole-ABC' } },
};
const revert = (id: string) => ({ ModifyInstanceMetadataOptionsRequest: { InstanceId: id, HttpTokens: 'optional' } });

describe('scheduled re-sweep', () => {
  test('starts a sweep when none is running', async () => {
    sfn.on(ListExecutionsCommand).resolves({ executions: [] });
    sfn.on(StartExecutionCommand).resolves({ executionArn: `${STATE_MACHINE}:x`, startDate: new Date() });
    await handler(scheduled, context);
    expect(sfn.commandCalls(ListExecutionsCommand)[0].args[0].input).toMatchObject({ stateMachineArn: STATE_MACHINE, statusFilter: 'RUNNING' });
    expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input).toEqual({ stateMachineArn: STATE_MACHINE, input: JSON.stringify({ trigger: 'schedule' }) });
  });

  test('leaves a running sweep alone instead of starting a second one', async () => {
    sfn.on(ListExecutionsCommand).resolves({ executions: [{ executionArn: `${STATE_MACHINE}:running`, stateMachineArn: STATE_MACHINE, name: 'r', status: 'RUNNING', startDate: new Date() }] });
    await handler(scheduled, context);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    expect(JSON.parse(logs[0])).toMatchObject({ message: 'scheduled re-sweep skipped: a sweep is still running' });
  });

  test('a denied StartExecution fails with the action named', async () => {
    sfn.on(ListExecutionsCommand).resolves({ executions: [] });
    sfn.on(StartExecutionCommand).rejects(awsError('AccessDeniedException', 'not authorized'));
    await expect(handler(scheduled, context)).rejects.toThrow(/^states:StartExecution failed with AccessDeniedException/);
  });
});

describe('changes made by others', () => {
  test('a revert to IMDSv1 by another role is enforced again, through the shared limiter', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000001' })]));
    await handler(cloudTrail('ModifyInstanceMetadataOptions', revert('i-0abc0000000000001')), context);

    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters).toContainEqual({ Name: 'instance-id', Values: ['i-0abc0000000000001'] });
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).map((c) => c.args[0].input)).toEqual([{
      InstanceId: 'i-0abc0000000000001', HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled',
    }]);
    expect(dynamodb.commandCalls(UpdateItemCommand).length).toBeGreaterThan(0);
    expect(JSON.parse(logs[0])).toMatchObject({ Source: 'Drift', Modified: 1 });
    expect(JSON.parse(logs[1])).toMatchObject({ eventName: 'ModifyInstanceMetadataOptions', changedBy: otherRole.arn, modified: 1 });
  });

  test('the change of an enforcement\'s own role, and a call that failed, are not drift', async () => {
    await handler(cloudTrail('ModifyInstanceMetadataOptions', revert('i-0abc0000000000002'), ourRole), context);
    await handler(cloudTrail('ModifyInstanceMetadataOptions', revert('i-0abc0000000000002'), otherRole, { errorCode: 'Client.UnauthorizedOperation' }), context);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(0);
  });

  test('an instance tagged into the scope after launch gets the policy; others the tag call names are left to the filters', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, instanceTags: { Fleet: 'agents' } });
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000003', tags: { Fleet: 'agents' } })]));
    await handler(cloudTrail('CreateTags', {
      resourcesSet: { items: [{ resourceId: 'i-0abc0000000000003' }, { resourceId: 'i-0abc0000000000004' }, { resourceId: 'vol-0abc000000000001' }] },
      tagSet: { items: [{ key: 'Fleet', value: 'agents' }] },
    }), context);

    const filters = ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters;
    expect(filters).toContainEqual({ Name: 'tag:Fleet', Values: ['agents'] });
    expect(filters).toContainEqual({ Name: 'instance-id', Values: ['i-0abc0000000000003', 'i-0abc0000000000004'] });
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).map((c) => c.args[0].input.InstanceId)).toEqual(['i-0abc0000000000003']);
  });

  test('a correction that EC2 denies is thrown, so Lambda retries and finally dead-letters the event', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0abc0000000000005' })]));
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    await expect(handler(cloudTrail('ModifyInstanceMetadataOptions', revert('i-0abc0000000000005')), context))
      .rejects.toThrow(/IMDS drift correction failed for i-0abc0000000000005: ec2:ModifyInstanceMetadataOptions failed with UnauthorizedOperation/);
  });
});

describe('instanceIdsOf', () => {
  test('finds the instances of both request shapes CloudTrail records, and nothing else', () => {
    expect(instanceIdsOf(revert('i-0abc0000000000001'))).toEqual(['i-0abc0000000000001']);
    expect(instanceIdsOf({ instanceId: 'i-0abc0000000000002', httpTokens: 'optional' })).toEqual(['i-0abc0000000000002']);
    expect(instanceIdsOf({ resourcesSet: { items: [{ resourceId: 'i-0abc0000000000003' }, { resourceId: 'sg-0123456789abcdef0' }] } }))
      .toEqual(['i-0abc0000000000003']);
    expect(instanceIdsOf(null)).toEqual([]);
    expect(instanceIdsOf({ InstanceId: 'i-; rm -rf /' })).toEqual([]);
  });
});
