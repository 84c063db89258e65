import {
  GetServiceSettingCommand,
  ResetServiceSettingCommand,
  SSMClient,
  UpdateServiceSettingCommand,
} from '@aws-sdk/client-ssm';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, SETTING_ID } from '../../lib/targeting/handler/default-host-management';

const ssm = mockClient(SSMClient);
const responses: any[] = [];
const context = { getRemainingTimeInMillis: () => 60_000 } as Context;

const base = {
  ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:f',
  ResponseURL: 'https://cloudformation-response.example.com/presigned',
  StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/Stack/guid',
  RequestId: 'request-1',
  LogicalResourceId: 'DefaultHostManagement',
  ResourceType: 'Custom::DefaultHostManagement',
};

function event(type: 'Create' | 'Update' | 'Delete', roleName: string, physicalResourceId?: string): CloudFormationCustomResourceEvent {
  const props = { ServiceToken: base.ServiceToken, RoleName: roleName };
  if (type === 'Create') return { ...base, RequestType: 'Create', ResourceProperties: props };
  if (type === 'Update') return { ...base, RequestType: 'Update', ResourceProperties: props, OldResourceProperties: props, PhysicalResourceId: physicalResourceId! };
  return { ...base, RequestType: 'Delete', ResourceProperties: props, PhysicalResourceId: physicalResourceId! };
}

function setting(value: string | undefined, status = 'Customized') {
  ssm.on(GetServiceSettingCommand).resolves({ ServiceSetting: { SettingId: SETTING_ID, SettingValue: value, Status: status } });
}

beforeEach(() => {
  ssm.reset();
  responses.length = 0;
  ssm.on(UpdateServiceSettingCommand).resolves({});
  ssm.on(ResetServiceSettingCommand).resolves({});
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  global.fetch = jest.fn(async (url: any, init: any) => {
    responses.push({ url, method: init.method, body: JSON.parse(init.body) });
    return { ok: true, status: 200 } as Response;
  }) as any;
});

describe('default host management handler', () => {
  test('create on a never-configured account sets the role and remembers to reset on delete', async () => {
    setting('$None', 'Default');

    await handler(event('Create', 'DhmcRole'), context);

    expect(ssm.commandCalls(UpdateServiceSettingCommand).map((c) => c.args[0].input)).toEqual([{ SettingId: SETTING_ID, SettingValue: 'DhmcRole' }]);
    expect(responses).toEqual([{
      url: base.ResponseURL,
      method: 'PUT',
      body: expect.objectContaining({ Status: 'SUCCESS', PhysicalResourceId: 'default-host-management:default', RequestId: 'request-1', LogicalResourceId: 'DefaultHostManagement', Data: { PreviousValue: '' } }),
    }]);
  });

  test('create where another role was configured remembers that role', async () => {
    setting('service-role/TheirRole');
    await handler(event('Create', 'DhmcRole'), context);
    expect(responses[0].body).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'default-host-management:role=service-role/TheirRole' });
  });

  test('update sets the new role and keeps the physical id (no replacement)', async () => {
    await handler(event('Update', 'NewRole', 'default-host-management:role=TheirRole'), context);
    expect(ssm.commandCalls(UpdateServiceSettingCommand)[0].args[0].input.SettingValue).toBe('NewRole');
    expect(responses[0].body).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'default-host-management:role=TheirRole' });
  });

  test('delete puts the previous role back', async () => {
    setting('DhmcRole');
    await handler(event('Delete', 'DhmcRole', 'default-host-management:role=service-role/TheirRole'), context);
    expect(ssm.commandCalls(UpdateServiceSettingCommand).map((c) => c.args[0].input.SettingValue)).toEqual(['service-role/TheirRole']);
    expect(ssm.commandCalls(ResetServiceSettingCommand)).toHaveLength(0);
    expect(responses[0].body.Status).toBe('SUCCESS');
  });

  test('delete resets a setting that was never configured before', async () => {
    setting('DhmcRole');
    await handler(event('Delete', 'DhmcRole', 'default-host-management:default'), context);
    expect(ssm.commandCalls(ResetServiceSettingCommand).map((c) => c.args[0].input)).toEqual([{ SettingId: SETTING_ID }]);
  });

  test('delete leaves the setting alone when someone else changed it since', async () => {
    setting('SomeoneElsesRole');
    await handler(event('Delete', 'DhmcRole', 'default-host-management:default'), context);
    expect(ssm.commandCalls(UpdateServiceSettingCommand)).toHaveLength(0);
    expect(ssm.commandCalls(ResetServiceSettingCommand)).toHaveLength(0);
    expect(responses[0].body.Status).toBe('SUCCESS');
  });

  test('delete after a failed create does nothing', async () => {
    await handler(event('Delete', 'DhmcRole', 'failed-create:request-0'), context);
    expect(ssm.calls()).toHaveLength(0);
    expect(responses[0].body.Status).toBe('SUCCESS');
  });

  test('an SSM error is reported to CloudFormation readably, with an id delete will ignore', async () => {
    ssm.on(GetServiceSettingCommand).rejects(Object.assign(new Error('User is not authorized to perform ssm:GetServiceSetting'), { name: 'AccessDeniedException' }));
    await handler(event('Create', 'DhmcRole'), context);
    expect(responses[0].body).toMatchObject({
      Status: 'FAILED',
      Reason: 'AccessDeniedException: User is not authorized to perform ssm:GetServiceSetting',
      PhysicalResourceId: 'failed-create:request-1',
    });
  });

  test('a bad role name fails fast without calling SSM', async () => {
    await handler(event('Create', 'not a role name'), context);
    expect(ssm.calls()).toHaveLength(0);
    expect(responses[0].body.Status).toBe('FAILED');
    expect(responses[0].body.Reason).toContain('RoleName must be an IAM role name');
  });

  test('a hanging SSM call is reported as a failure before the Lambda times out', async () => {
    ssm.on(GetServiceSettingCommand).callsFake(() => new Promise(() => undefined));
    await handler(event('Create', 'DhmcRole'), { getRemainingTimeInMillis: () => 6_000 } as Context);
    expect(responses[0].body).toMatchObject({ Status: 'FAILED', Reason: 'timed out waiting for SSM' });
  });
});
