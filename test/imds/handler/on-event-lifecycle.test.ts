/*
 * Issue 12: the custom resource across the request sequences CloudFormation really sends
 * (defect 1), account defaults under a declarative policy (defect 6), the preflight dry run
 * and account-level IMDSv2 enforcement. Step Functions is simulated: executions are kept,
 * started, listed and stopped as the service does.
 */
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
const PROPS = { ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:f', StateMachineArn: STATE_MACHINE, AccountDefaults: 'true', Policy: POLICY };
const AUDIT = { ...PROPS, Policy: { ...POLICY, mode: 'AUDIT' } };
const BASE = {
  ServiceToken: PROPS.ServiceToken, ResponseURL: 'https://cfn-response.example/abc', StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/S/1',
  LogicalResourceId: 'Enforcement', ResourceType: 'Custom::Imdsv2Enforcement',
};
const context = { logStreamName: 'stream' } as any;
let responses: any[];
let requests = 0;
/** The simulated executions of the state machine, by name. */
let executions: Map<string, { status: 'RUNNING' | 'ABORTED'; input: string }>;

const create = (props: object = PROPS): CloudFormationCustomResourceEvent =>
  ({ ...BASE, RequestId: `req-${++requests}`, RequestType: 'Create', ResourceProperties: props as any });
const update = (id: string, props: object, old: object): CloudFormationCustomResourceEvent =>
  ({ ...BASE, RequestId: `req-${++requests}`, RequestType: 'Update', PhysicalResourceId: id, ResourceProperties: props as any, OldResourceProperties: old as any });
const remove = (id: string, props: object): CloudFormationCustomResourceEvent =>
  ({ ...BASE, RequestId: `req-${++requests}`, RequestType: 'Delete', PhysicalResourceId: id, ResourceProperties: props as any });

async function invoke(event: CloudFormationCustomResourceEvent) {
  await handler(event, context);
  return responses[responses.length - 1];
}
const running = () => [...executions].filter(([, e]) => e.status === 'RUNNING').map(([name]) => name);
const nameOf = (arn: string) => arn.split(':').pop()!;
const defaultsSet = () => ec2.commandCalls(ModifyInstanceMetadataDefaultsCommand).map((c) => c.args[0].input);

beforeEach(() => {
  ec2.reset();
  sfn.reset();
  executions = new Map();
  ec2.on(GetInstanceMetadataDefaultsCommand).resolves({ AccountLevel: { HttpTokens: 'optional', HttpPutResponseHopLimit: 1, HttpTokensEnforced: 'disabled' } });
  ec2.on(ModifyInstanceMetadataDefaultsCommand).resolves({ Return: true });
  ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0aaa0000000000001' })]));
  ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.'));
  sfn.on(StartExecutionCommand).callsFake((input) => {
    // Without a name, Step Functions makes one up.
    const name = input.name ?? `generated-${executions.size + 1}`;
    if (executions.has(name)) throw awsError('ExecutionAlreadyExists');
    executions.set(name, { status: 'RUNNING', input: input.input });
    return { executionArn: `${STATE_MACHINE.replace('stateMachine', 'execution')}:${name}`, startDate: new Date() };
  });
  sfn.on(ListExecutionsCommand).callsFake((input) => ({
    executions: [...executions].filter(([, e]) => e.status === input.statusFilter)
      .map(([name]) => ({ name, executionArn: `${STATE_MACHINE.replace('stateMachine', 'execution')}:${name}` })),
  }));
  sfn.on(StopExecutionCommand).callsFake((input) => {
    executions.get(nameOf(input.executionArn))!.status = 'ABORTED';
    return { stopDate: new Date() };
  });
  responses = [];
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
  jest.spyOn(global, 'fetch').mockImplementation(async (_url, init) => {
    responses.push(JSON.parse(init!.body as string));
    return new Response(null, { status: 200 });
  });
});
afterEach(() => jest.restoreAllMocks());

describe('defect 1: an update never stops the sweep it started', () => {
  test('audit first: Create (AUDIT), Update to ENFORCE with a new physical id, Delete of the old id -> the enforcing sweep keeps running', async () => {
    // Create in AUDIT: no defaults recorded
    const created = await invoke(create(AUDIT));
    expect(created).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: 'Imdsv2Enforcement' });
    const auditSweep = nameOf(created.Data.SweepExecutionArn);

    // Update to ENFORCE: the defaults are set and recorded, so the physical id changes
    const updated = await invoke(update(created.PhysicalResourceId, PROPS, AUDIT));
    expect(updated.PhysicalResourceId).toContain('defaults-before:');
    const enforceSweep = nameOf(updated.Data.SweepExecutionArn);
    expect(running()).toEqual([enforceSweep]);
    expect(executions.get(auditSweep)!.status).toBe('ABORTED');

    // CloudFormation's cleanup deletes the old physical id, with the old properties
    const deleted = await invoke(remove(created.PhysicalResourceId, AUDIT));

    // THEN the enforcing sweep is still running, and the defaults set by the update stay
    expect(deleted).toMatchObject({ Status: 'SUCCESS', Data: { AccountDefaults: 'untouched' } });
    expect(running()).toEqual([enforceSweep]);
    expect(defaultsSet()).toHaveLength(1);
  });

  test('accountDefaults turned off: Update gives a new id, the Delete of the old one restores the defaults and leaves the new sweep running', async () => {
    const created = await invoke(create(PROPS));
    const off = { ...PROPS, AccountDefaults: 'false' };
    const updated = await invoke(update(created.PhysicalResourceId, off, PROPS));
    expect(updated.PhysicalResourceId).toBe('Imdsv2Enforcement');
    const deleted = await invoke(remove(created.PhysicalResourceId, PROPS));
    expect(deleted.Data.AccountDefaults).toBe('restored');
    expect(running()).toEqual([nameOf(updated.Data.SweepExecutionArn)]);
  });

  test('an update that keeps the physical id replaces the sweep, and the stack\'s delete stops the newest', async () => {
    const created = await invoke(create(PROPS));
    const hop3 = { ...PROPS, Policy: { ...POLICY, hopLimit: 3 } };
    const updated = await invoke(update(created.PhysicalResourceId, hop3, PROPS));
    expect(updated.PhysicalResourceId).toBe(created.PhysicalResourceId);
    expect(running()).toEqual([nameOf(updated.Data.SweepExecutionArn)]);

    await invoke(remove(updated.PhysicalResourceId, hop3));
    expect(running()).toEqual([]);
  });

  test('a request delivered twice starts one sweep', async () => {
    const event = create(PROPS);
    const first = await invoke(event);
    const second = await invoke(event);
    expect(second.Data.SweepExecutionArn).toBe(first.Data.SweepExecutionArn);
    expect(running()).toHaveLength(1);
  });
});

describe('defect 6: account defaults owned by a declarative policy', () => {
  const recorded = 'Imdsv2Enforcement|defaults-before:HttpTokens=optional;HttpPutResponseHopLimit=1;HttpEndpoint=enabled;InstanceMetadataTags=disabled';
  const policyOwned = { AccountLevel: { HttpTokens: 'required' as const, ManagedBy: 'declarative-policy' as const, ManagedExceptionMessage: 'Ask the cloud team' } };

  test('an update after a policy took the defaults over changes nothing there, says so, and still sweeps', async () => {
    ec2.on(GetInstanceMetadataDefaultsCommand).resolves(policyOwned);
    const response = await invoke(update(recorded, { ...PROPS, Policy: { ...POLICY, hopLimit: 3 } }, PROPS));
    expect(defaultsSet()).toEqual([]);
    expect(response).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: recorded, Data: { AccountDefaults: 'managed-by-declarative-policy' } });
    expect(running()).toHaveLength(1);
    expect((console.log as jest.Mock).mock.calls.flat().join('\n')).toMatch(/managed by a declarative policy.*Ask the cloud team/);
  });

  test('a delete leaves policy-owned defaults alone and succeeds', async () => {
    ec2.on(GetInstanceMetadataDefaultsCommand).resolves(policyOwned);
    const response = await invoke(remove(recorded, PROPS));
    expect(defaultsSet()).toEqual([]);
    expect(response).toMatchObject({ Status: 'SUCCESS', Data: { AccountDefaults: 'managed-by-declarative-policy' } });
  });

  test('a delete whose restore is refused because a policy took over in between still succeeds', async () => {
    ec2.on(GetInstanceMetadataDefaultsCommand).resolvesOnce({ AccountLevel: { ManagedBy: 'account' } }).resolves(policyOwned);
    ec2.on(ModifyInstanceMetadataDefaultsCommand).rejects(awsError('UnsupportedOperation', 'The account is managed by a declarative policy.'));
    const response = await invoke(remove(recorded, PROPS));
    expect(response).toMatchObject({ Status: 'SUCCESS', Data: { AccountDefaults: 'managed-by-declarative-policy' } });
  });

  test('a delete whose restore fails for another reason still fails', async () => {
    ec2.on(ModifyInstanceMetadataDefaultsCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    const response = await invoke(remove(recorded, PROPS));
    expect(response.Status).toBe('FAILED');
  });
});

describe('preflight', () => {
  test('a denied dry run fails the create at once, naming the permission, before anything changes', async () => {
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('UnauthorizedOperation',
      'You are not authorized to perform this operation. User: arn:aws:sts::111122223333:assumed-role/R/f is not authorized to perform: '
      + 'ec2:ModifyInstanceMetadataOptions with an explicit deny in a service control policy. Encoded authorization failure message: abc'));
    const response = await invoke(create(PROPS));
    expect(response.Status).toBe('FAILED');
    expect(response.Reason).toMatch(/^Create failed: preflight: ec2:ModifyInstanceMetadataOptions is denied on i-0aaa0000000000001 \(UnauthorizedOperation: .*explicit deny in a service control policy.*\)\. The sweep would fail on every instance\. Allow ec2:ModifyInstanceMetadataOptions/);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)[0].args[0].input).toEqual({
      InstanceId: 'i-0aaa0000000000001', HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled', DryRun: true,
    });
    expect(defaultsSet()).toEqual([]);
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    // Nothing was recorded, so the delete of the rollback restores nothing.
    expect(response.PhysicalResourceId).toBe('Imdsv2Enforcement');
  });

  test('an update is checked too; AUDIT needs no modify permission and is not checked', async () => {
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('UnauthorizedOperation', 'denied'));
    expect((await invoke(update('Imdsv2Enforcement', PROPS, AUDIT))).Status).toBe('FAILED');
    ec2.resetHistory();
    const audit = await invoke(update('Imdsv2Enforcement', AUDIT, AUDIT));
    expect(audit.Status).toBe('SUCCESS');
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
  });

  test('no instance in scope, or an answer other than a denial, does not hold the deployment', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const empty = await invoke(create(PROPS));
    expect(empty).toMatchObject({ Status: 'SUCCESS' });
    expect(empty.Data.Preflight).toMatch(/^no-instance/);

    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-0aaa0000000000002', state: 'stopping' })]));
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('IncorrectInstanceState'));
    const odd = await invoke(create(PROPS));
    expect(odd).toMatchObject({ Status: 'SUCCESS' });
    expect(odd.Data.Preflight).toMatch(/^inconclusive: .*IncorrectInstanceState/);

    // However long EC2's message, the response stays far below CloudFormation's 4 KiB.
    ec2.on(ModifyInstanceMetadataOptionsCommand).rejects(awsError('InternalError', 'x'.repeat(5000)));
    const long = await invoke(create(PROPS));
    expect(long.Status).toBe('SUCCESS');
    expect(long.Data.Preflight.length).toBeLessThanOrEqual(400);
  });
});

describe('account-level IMDSv2 enforcement (HttpTokensEnforced)', () => {
  const ENFORCED = { ...PROPS, HttpTokensEnforced: 'true' };

  test('opt-in: set with the other defaults, recorded, and restored on delete', async () => {
    const created = await invoke(create(ENFORCED));
    expect(defaultsSet()[0]).toMatchObject({ HttpTokens: 'required', HttpTokensEnforced: 'enabled' });
    expect(created.PhysicalResourceId).toContain('HttpTokensEnforced=disabled');
    await invoke(remove(created.PhysicalResourceId, ENFORCED));
    expect(defaultsSet()[1]).toEqual({
      HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'no-preference', InstanceMetadataTags: 'no-preference', HttpTokensEnforced: 'disabled',
    });
  });

  test('off by default: never sent, neither on create nor on delete', async () => {
    const created = await invoke(create(PROPS));
    await invoke(remove(created.PhysicalResourceId, PROPS));
    for (const call of defaultsSet()) expect(call.HttpTokensEnforced).toBeUndefined();
  });

  test('turned off by an update: the value from before is given back', async () => {
    const created = await invoke(create(ENFORCED));
    await invoke(update(created.PhysicalResourceId, PROPS, ENFORCED));
    expect(defaultsSet()[1]).toMatchObject({ HttpTokens: 'required', HttpTokensEnforced: 'disabled' });
  });
});
