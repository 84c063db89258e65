import {
  DescribeInstancesCommand, EC2Client, GetInstanceMetadataDefaultsCommand, ModifyInstanceMetadataDefaultsCommand, ModifyInstanceMetadataOptionsCommand,
} from '@aws-sdk/client-ec2';
import { ListExecutionsCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../../lib/imds/handler/on-event';
import { awsError, instance, page, POLICY } from './fleet';

const ec2 = mockClient(EC2Client);
const sfn = mockClient(SFNClient);
const STATE_MACHINE = 'arn:aws:states:eu-west-1:111122223333:stateMachine:ImdsSweep';
let responses: any[];

const PROPS = { ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:f', StateMachineArn: STATE_MACHINE, AccountDefaults: 'true', Policy: POLICY };
const BASE = {
  ServiceToken: PROPS.ServiceToken, ResponseURL: 'https://cfn-response.example/abc', StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/S/1',
  RequestId: 'req-1', LogicalResourceId: 'Enforcement', ResourceType: 'Custom::Imdsv2Enforcement',
};
const context = { logStreamName: '2025/01/01/[$LATEST]abc' } as any;

function create(props: Record<string, unknown> = PROPS): CloudFormationCustomResourceEvent {
  return { ...BASE, RequestType: 'Create', ResourceProperties: props as any };
}
function update(physicalId: string, props: Record<string, unknown> = PROPS, old: Record<string, unknown> = PROPS): CloudFormationCustomResourceEvent {
  return { ...BASE, RequestType: 'Update', PhysicalResourceId: physicalId, ResourceProperties: props as any, OldResourceProperties: old as any };
}
function remove(physicalId: string, props: Record<string, unknown> = PROPS): CloudFormationCustomResourceEvent {
  return { ...BASE, RequestType: 'Delete', PhysicalResourceId: physicalId, ResourceProperties: props as any };
}

async function invoke(event: CloudFormationCustomResourceEvent) {
  await handler(event, context);
  return responses[responses.length - 1];
}

beforeEach(() => {
  ec2.reset();
  sfn.reset();
  ec2.on(GetInstanceMetadataDefaultsCommand).resolves({ AccountLevel: { HttpTokens: 'optional', HttpPutResponseHopLimit: 1 } });
  ec2.on(ModifyInstanceMetadataDefaultsCommand).resolves({ Return: true });
  // The preflight: one instance to dry-run against, and EC2 saying the call would be allowed.
  ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0aaa0000000000001' })]));
  ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.'));
  sfn.on(ListExecutionsCommand).resolves({ executions: [] });
  sfn.on(StartExecutionCommand).resolves({ executionArn: `${STATE_MACHINE.replace('stateMachine', 'execution')}:run-1`, startDate: new Date() });
  responses = [];
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(global, 'fetch').mockImplementation(async (url, init) => {
    responses.push({ url, method: init!.method, headers: init!.headers, ...JSON.parse(init!.body as string) });
    return new Response(null, { status: 200 });
  });
});

afterEach(() => jest.restoreAllMocks());

const defaultsSet = () => ec2.commandCalls(ModifyInstanceMetadataDefaultsCommand).map((c) => c.args[0].input);
/** Modifications of instances other than the preflight's dry run. */
const realModifications = () => ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).filter((c) => !c.args[0].input.DryRun);

describe('create', () => {
  test('sets the account defaults, records the ones from before in the physical id, starts a sweep and answers', async () => {
    const response = await invoke(create());

    expect(defaultsSet()).toEqual([{ HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' }]);
    expect(sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input)).toEqual([{
      stateMachineArn: STATE_MACHINE, name: expect.stringMatching(/^cr-[0-9a-f]{8}-req-1$/), input: '{"trigger":"create"}',
    }]);
    expect(response).toMatchObject({
      url: 'https://cfn-response.example/abc',
      method: 'PUT',
      headers: { 'content-type': '' },
      Status: 'SUCCESS',
      PhysicalResourceId: 'Imdsv2Enforcement|defaults-before:HttpTokens=optional;HttpPutResponseHopLimit=1;HttpEndpoint=no-preference;'
        + 'InstanceMetadataTags=no-preference;HttpTokensEnforced=no-preference',
      StackId: BASE.StackId, RequestId: 'req-1', LogicalResourceId: 'Enforcement',
      Data: { AccountDefaults: 'set', SweepExecutionArn: expect.stringContaining(':execution:') },
    });
    // The custom resource never touches instances itself (its only call is a dry run): that is the sweep's job.
    expect(realModifications()).toHaveLength(0);
    expect(response.Data.Preflight).toBe('allowed (dry run on i-0aaa0000000000001)');
  });

  test('stops a sweep that is still running before starting the new one', async () => {
    sfn.on(ListExecutionsCommand).resolves({ executions: [{ executionArn: 'arn:aws:states:eu-west-1:111122223333:execution:ImdsSweep:old' } as any] });
    sfn.on(StopExecutionCommand).resolves({ stopDate: new Date() });
    await invoke(create());
    expect(sfn.commandCalls(StopExecutionCommand)[0].args[0].input.executionArn).toMatch(/:old$/);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
  });

  test('with account defaults off, or in AUDIT mode, leaves the account defaults alone', async () => {
    const off = await invoke(create({ ...PROPS, AccountDefaults: 'false' }));
    const audit = await invoke(create({ ...PROPS, Policy: { ...POLICY, mode: 'AUDIT' } }));
    expect(ec2.commandCalls(GetInstanceMetadataDefaultsCommand)).toHaveLength(0);
    expect(defaultsSet()).toEqual([]);
    expect([off.PhysicalResourceId, audit.PhysicalResourceId]).toEqual(['Imdsv2Enforcement', 'Imdsv2Enforcement']);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(2);
  });

  test('leaves defaults owned by a declarative policy alone and says so', async () => {
    ec2.on(GetInstanceMetadataDefaultsCommand).resolves({ AccountLevel: { HttpTokens: 'required', ManagedBy: 'declarative-policy' } });
    const response = await invoke(create());
    expect(defaultsSet()).toEqual([]);
    expect(response).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'Imdsv2Enforcement', Data: { AccountDefaults: 'managed-by-declarative-policy' } });
  });

  test('fails readably on bad input, without calling anything', async () => {
    const response = await invoke(create({ ...PROPS, StateMachineArn: 'nope', Policy: { ...POLICY, hopLimit: 0 } }));
    expect(response).toMatchObject({ Status: 'FAILED', PhysicalResourceId: 'Imdsv2Enforcement|create-failed' });
    expect(response.Reason).toMatch(/^Create failed: StateMachineArn: got "nope"; allowed: a Step Functions state machine ARN/);
    expect(ec2.calls()).toHaveLength(0);
    expect(sfn.calls()).toHaveLength(0);
  });

  test('AccessDenied on ModifyInstanceMetadataDefaults reaches CloudFormation as a readable reason', async () => {
    ec2.on(ModifyInstanceMetadataDefaultsCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    const response = await invoke(create());
    expect(response.Status).toBe('FAILED');
    expect(response.Reason).toMatch(
      /^Create failed: ec2:ModifyInstanceMetadataDefaults failed with UnauthorizedOperation: You are not authorized to perform this operation\. \(the handler's role is not allowed .*\(log stream 2025\/01\/01\/\[\$LATEST\]abc\)$/);
    // The id still records the defaults from before, so the rollback's delete restores them.
    expect(response.PhysicalResourceId).toContain('defaults-before:HttpTokens=optional');
  });

  test('a failure to start the sweep fails the create', async () => {
    sfn.on(StartExecutionCommand).rejects(awsError('AccessDeniedException', 'not authorized to perform: states:StartExecution'));
    const response = await invoke(create());
    expect(response).toMatchObject({ Status: 'FAILED' });
    expect(response.Reason).toContain('states:StartExecution failed with AccessDeniedException');
  });
});

describe('update', () => {
  const recorded = 'Imdsv2Enforcement|defaults-before:HttpTokens=optional;HttpPutResponseHopLimit=1;HttpEndpoint=enabled;InstanceMetadataTags=disabled';

  test('keeps the physical id, applies the new settings and starts a new sweep', async () => {
    const response = await invoke(update(recorded, { ...PROPS, Policy: { ...POLICY, hopLimit: 3 } }));
    expect(response).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: recorded });
    // Read again only to see whether a declarative policy took the defaults over: the id keeps what was there first.
    expect(ec2.commandCalls(GetInstanceMetadataDefaultsCommand)).toHaveLength(1);
    expect(defaultsSet()).toEqual([{ HttpTokens: 'required', HttpPutResponseHopLimit: 3, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' }]);
    expect(sfn.commandCalls(StartExecutionCommand)[0].args[0].input.input).toBe('{"trigger":"update"}');
  });

  test('turning account defaults off gives a new id, so CloudFormation deletes the old one, which restores them', async () => {
    const response = await invoke(update(recorded, { ...PROPS, AccountDefaults: 'false' }));
    expect(response.PhysicalResourceId).toBe('Imdsv2Enforcement');
    expect(defaultsSet()).toEqual([]);
  });

  test('turning account defaults on records the current ones under a new id', async () => {
    const response = await invoke(update('Imdsv2Enforcement', PROPS, { ...PROPS, AccountDefaults: 'false' }));
    expect(response.PhysicalResourceId).toContain('defaults-before:HttpTokens=optional');
    expect(defaultsSet()).toHaveLength(1);
  });
});

describe('delete', () => {
  test('restores the account defaults from before, except that HttpTokens stays required, and never touches instances', async () => {
    const recorded = 'Imdsv2Enforcement|defaults-before:HttpTokens=optional;HttpPutResponseHopLimit=1;HttpEndpoint=enabled;InstanceMetadataTags=disabled';
    const response = await invoke(remove(recorded));
    expect(defaultsSet()).toEqual([{ HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled', InstanceMetadataTags: 'disabled' }]);
    expect(response).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: recorded, Data: { AccountDefaults: 'restored' } });
    expect(realModifications()).toHaveLength(0);
  });

  test('a create that set defaults and a delete give back what was there (no-preference stays no-preference)', async () => {
    ec2.on(GetInstanceMetadataDefaultsCommand).resolves({ AccountLevel: {} });
    const created = await invoke(create());
    await invoke(remove(created.PhysicalResourceId));
    expect(defaultsSet()[1]).toEqual({ HttpTokens: 'required', HttpPutResponseHopLimit: -1, HttpEndpoint: 'no-preference', InstanceMetadataTags: 'no-preference' });
  });

  test('a state machine already gone is fine', async () => {
    sfn.on(ListExecutionsCommand).rejects(awsError('StateMachineDoesNotExist', 'State Machine Does Not Exist'));
    const response = await invoke(remove('Imdsv2Enforcement'));
    expect(response).toMatchObject({ Status: 'SUCCESS', Data: { AccountDefaults: 'untouched' } });
    expect(defaultsSet()).toEqual([]);
  });

  test('the delete after a failed create does nothing', async () => {
    const response = await invoke(remove('Imdsv2Enforcement|create-failed', { ...PROPS, StateMachineArn: 'nope' }));
    expect(response.Status).toBe('SUCCESS');
    expect(ec2.calls()).toHaveLength(0);
    expect(sfn.calls()).toHaveLength(0);
  });
});
