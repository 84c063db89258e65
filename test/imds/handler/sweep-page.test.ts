import { GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeInstancesCommand, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { handler, SweepInput } from '../../../lib/imds/handler/sweep-page';
import { awsError, compliant, instance, mockedImdsClients, page, POLICY } from './fleet';

const { ec2, cloudwatch, logs } = mockedImdsClients();
const context = { getRemainingTimeInMillis: () => 900_000 };


/** Loops the handler the way the state machine does, until it says done. */
async function runSweep(input: SweepInput = { trigger: 'create' }): Promise<SweepInput> {
  let state = input;
  for (let step = 0; step < 20 && !state.done; step++) {
    state = await handler(state, context);
  }
  return state;
}

const modifiedIds = () => ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).map((c) => c.args[0].input.InstanceId).sort();
const summary = () => JSON.parse(logs.find((l) => l.includes('IMDS sweep finished'))!);
const emf = () => logs.map((l) => JSON.parse(l)).filter((l) => l._aws);

describe('sweep over a mixed fleet', () => {
  beforeEach(() => {
    ec2.on(DescribeInstancesCommand).resolves(page([
      compliant('i-00000000000000001'),
      instance({ id: 'i-00000000000000002' }),                                              // IMDSv1 allowed
      compliant('i-00000000000000003', { hop: 1 }),                                         // wrong hop limit
      compliant('i-00000000000000004', { metadataTags: 'disabled', endpoint: 'disabled' }), // tags and endpoint off
      instance({ id: 'i-00000000000000005', tags: { ImdsEnforcementExempt: 'True' } }),     // exempt
      instance({ id: 'i-00000000000000006', state: 'stopped' }),                            // stopped: still enforced
      instance({ id: 'i-00000000000000007' }),                                              // terminated mid-sweep
      instance({ id: 'i-00000000000000008' }),                                              // still calls IMDSv1
      instance({ id: 'i-00000000000000009' }),                                              // denied by an SCP
    ]));
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: 'i-00000000000000007' })
      .rejects(awsError('InvalidInstanceID.NotFound'));
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: 'i-00000000000000009' })
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    cloudwatch.on(GetMetricDataCommand).callsFake((input) => ({
      MetricDataResults: input.MetricDataQueries.map((q: any) => ({
        Id: q.Id,
        Values: q.MetricStat.Metric.Dimensions[0].Value === 'i-00000000000000008' ? [12] : [],
      })),
    }));
  });

  test('modifies only the non-compliant, never the exempt, compliant or at-risk ones', async () => {
    // WHEN
    const state = await runSweep();

    // THEN
    expect(modifiedIds()).toEqual([
      'i-00000000000000002', 'i-00000000000000003', 'i-00000000000000004', 'i-00000000000000006',
      'i-00000000000000007', 'i-00000000000000009',
    ]);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)[0].args[0].input).toEqual({
      InstanceId: 'i-00000000000000002',
      HttpTokens: 'required',
      HttpPutResponseHopLimit: 2,
      HttpEndpoint: 'enabled',
      InstanceMetadataTags: 'enabled',
    });
    expect(state.tally).toEqual({
      scanned: 9, compliant: 1, exempt: 1, atRisk: 1, nonCompliant: 6, modified: 4, skipped: 1, failed: 1,
      notReady: 0, hopLimitKept: 0, endpointLeftDisabled: 1,
    });
  });

  test('lists live instances only, 1000 per page, and asks CloudWatch about the non-compliant only', async () => {
    await runSweep();
    expect(ec2.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input)).toEqual([{
      Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }],
      MaxResults: 1000,
    }]);
    const [metrics] = cloudwatch.commandCalls(GetMetricDataCommand);
    const queried = metrics.args[0].input.MetricDataQueries!.map((q) => q.MetricStat!.Metric!.Dimensions![0].Value);
    expect(queried).toEqual(expect.arrayContaining(['i-00000000000000002', 'i-00000000000000008']));
    expect(queried).not.toContain('i-00000000000000001');
    expect(queried).not.toContain('i-00000000000000005');
    const { input } = metrics.args[0];
    expect(input.MetricDataQueries![0].MetricStat).toMatchObject({
      Metric: { Namespace: 'AWS/EC2', MetricName: 'MetadataNoToken' }, Period: 14 * 86_400, Stat: 'Sum',
    });
    expect(input.EndTime!.getTime() - input.StartTime!.getTime()).toBe(14 * 86_400_000);
  });

  test('writes one structured summary with the failed and at-risk instance ids, and EMF metrics', async () => {
    await runSweep();
    expect(summary()).toMatchObject({
      level: 'ERROR',
      message: 'IMDS sweep finished',
      mode: 'ENFORCE',
      trigger: 'create',
      scanned: 9, compliant: 1, modified: 4, exempt: 1, atRisk: 1, failed: 1, skipped: 1,
      failedInstanceIds: ['i-00000000000000009'],
      atRiskInstanceIds: ['i-00000000000000008'],
    });
    expect(summary().failures[0].reason).toMatch(
      /ec2:ModifyInstanceMetadataOptions failed with UnauthorizedOperation: You are not authorized.*service control policy/);
    const [metrics] = emf();
    expect(metrics._aws.CloudWatchMetrics[0]).toMatchObject({ Namespace: 'AgentFleet/ImdsEnforcement', Dimensions: [['Source']] });
    expect(metrics).toMatchObject({ Source: 'Sweep', Scanned: 9, Modified: 4, Failed: 1, AtRisk: 1 });
  });

  test('AUDIT finds and reports the same, and changes nothing', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, mode: 'AUDIT' });
    const state = await runSweep();
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
    expect(state.tally).toEqual({
      scanned: 9, compliant: 1, exempt: 1, atRisk: 1, nonCompliant: 6, modified: 0, skipped: 0, failed: 0,
      notReady: 0, hopLimitKept: 0, endpointLeftDisabled: 1,
    });
    expect(summary()).toMatchObject({ level: 'INFO', mode: 'AUDIT', nonCompliant: 6, modified: 0 });
  });

  test('with the IMDSv1 check off, instances still calling IMDSv1 are flipped and CloudWatch is not asked', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, imdsv1LookbackDays: 0 });
    await runSweep();
    expect(cloudwatch.commandCalls(GetMetricDataCommand)).toHaveLength(0);
    expect(modifiedIds()).toContain('i-00000000000000008');
  });
});

describe('sweep over several pages', () => {
  test('follows NextToken page by page, one page per step, and re-running on a compliant fleet modifies nothing', async () => {
    // GIVEN three pages
    const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => `i-${String(from + i).padStart(17, '0')}`);
    const pages = [ids(0, 3), ids(100, 3), ids(200, 2)];
    const fixed = new Set<string>();
    const listing = (i: number, token?: string) => page(
      pages[i].map((id) => (fixed.has(id) ? compliant(id) : instance({ id }))), token);
    ec2.on(DescribeInstancesCommand).callsFake((input) => {
      if (!input.NextToken) return listing(0, 'token-2');
      if (input.NextToken === 'token-2') return listing(1, 'token-3');
      return listing(2);
    });
    ec2.on(ModifyInstanceMetadataOptionsCommand).callsFake((input) => { fixed.add(input.InstanceId); return {}; });

    // WHEN
    let state: SweepInput = { trigger: 'create' };
    const steps: SweepInput[] = [];
    while (!state.done) {
      state = await handler(state, context);
      steps.push(state);
    }

    // THEN
    expect(steps.map((s) => s.nextToken)).toEqual(['token-2', 'token-3', undefined]);
    expect(ec2.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input.NextToken)).toEqual([undefined, 'token-2', 'token-3']);
    expect(state).toMatchObject({ done: true, pages: 3, tally: { scanned: 8, modified: 8, failed: 0 } });
    expect(emf()).toHaveLength(3);

    // WHEN the sweep runs again over the now compliant fleet
    ec2.resetHistory();
    logs.length = 0;
    const again = await runSweep({ trigger: 'update' });

    // THEN
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
    expect(again.tally).toMatchObject({ scanned: 8, compliant: 8, modified: 0 });
  });

  test('narrows the listing to instanceTags server-side', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, instanceTags: { Team: 'blue', Env: 'prod' } });
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-00000000000000001', tags: { Team: 'blue', Env: 'prod' } })]));
    await runSweep();
    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters).toEqual([
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
      { Name: 'tag:Team', Values: ['blue'] },
      { Name: 'tag:Env', Values: ['prod'] },
    ]);
    expect(modifiedIds()).toEqual(['i-00000000000000001']);
  });
});

describe('throttling and failures', () => {
  test('throttled DescribeInstances and ModifyInstanceMetadataOptions calls are retried to success', async () => {
    ec2.on(DescribeInstancesCommand)
      .rejectsOnce(awsError('RequestLimitExceeded'))
      .resolves(page([instance({ id: 'i-00000000000000001' }), instance({ id: 'i-00000000000000002' })]));
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: 'i-00000000000000001' })
      .rejectsOnce(awsError('RequestLimitExceeded'))
      .rejectsOnce(awsError('RequestLimitExceeded'))
      .resolves({});

    const state = await runSweep();

    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(2);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand, { InstanceId: 'i-00000000000000001' })).toHaveLength(3);
    expect(state.tally).toMatchObject({ modified: 2, failed: 0 });
    // The limiter slowed down after the throttling and says so in the checkpoint.
    expect(state.limiter!.ratePerSecond).toBeLessThan(5);
  });

  test('AccessDenied on DescribeInstances fails the step with a reason naming the action and the likely cause', async () => {
    ec2.on(DescribeInstancesCommand).rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    await expect(handler({}, context)).rejects.toThrow(
      /^ec2:DescribeInstances failed with UnauthorizedOperation: You are not authorized to perform this operation\. \(the handler's role is not allowed/);
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(1);
  });

  test('AccessDenied on GetMetricData stops the step rather than flipping instances blindly', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: 'i-00000000000000001' })]));
    cloudwatch.on(GetMetricDataCommand).rejects(awsError('AccessDenied', 'User is not authorized to perform: cloudwatch:GetMetricData'));
    await expect(handler({}, context)).rejects.toThrow(/cloudwatch:GetMetricData failed with AccessDenied/);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand)).toHaveLength(0);
  });

  test('an invalid policy fails with what is wrong', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, hopLimit: 65 });
    await expect(handler({}, context)).rejects.toThrow('hopLimit: got 65; allowed: an integer from 1 to 64');
  });
});
