/*
 * Issue 12, defects 2, 4 and 7: what the enforcement does when CloudWatch cannot answer,
 * with hop limits above the fleet's and disabled endpoints, and with instances EC2 refuses
 * while they change state. Each test failed on the code before the fix.
 */
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeInstancesCommand, EC2Client, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import { handler } from '../../../lib/imds/handler/sweep-page';
import { ec2Api, metricsApi } from '../../../lib/imds/handler/shared/aws';
import { enforceInstances, MODIFY_BUCKET } from '../../../lib/imds/handler/shared/enforcer';
import { AdaptiveTokenBucket } from '../../../lib/imds/handler/shared/throttle';
import { awsError, compliant, instance, instantClock, metricAnswer, mockedImdsClients, page, POLICY } from './fleet';

const { ec2, cloudwatch, logs } = mockedImdsClients();
const context = { getRemainingTimeInMillis: () => 900_000 };
const modified = () => ec2.commandCalls(ModifyInstanceMetadataOptionsCommand).map((c) => c.args[0].input);
const summary = () => JSON.parse(logs.find((l) => l.includes('IMDS sweep finished'))!);
const id = (n: number) => `i-${String(n).padStart(17, '0')}`;

describe('defect 2: an IMDSv1 check without a complete answer means at risk', () => {
  test('InternalError, PartialData on the last page and a missing result are at risk and not modified; Complete without data is safe', async () => {
    // GIVEN four non-compliant instances, CloudWatch answering for each differently
    ec2.on(DescribeInstancesCommand).resolves(page([1, 2, 3, 4].map((n) => instance({ id: id(n) }))));
    cloudwatch.on(GetMetricDataCommand).callsFake((input) => ({
      MetricDataResults: metricAnswer({}, { [id(1)]: 'InternalError', [id(2)]: 'PartialData' })(input).MetricDataResults
        .filter((r: any) => input.MetricDataQueries[Number(r.Id.slice(1))].MetricStat.Metric.Dimensions[0].Value !== id(3)),
    }));

    // WHEN
    const state = await handler({ trigger: 'create' }, context);

    // THEN only the instance CloudWatch vouched for is modified
    expect(modified().map((m) => m.InstanceId)).toEqual([id(4)]);
    expect(state.tally).toMatchObject({ scanned: 4, atRisk: 3, nonCompliant: 1, modified: 1 });
    expect(summary().atRiskInstanceIds.sort()).toEqual([id(1), id(2), id(3)]);
  });

  test('PartialData followed by the rest on the next page is a complete answer', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: id(1) })]));
    cloudwatch.on(GetMetricDataCommand)
      .resolvesOnce({ MetricDataResults: [{ Id: 'q0', StatusCode: 'PartialData', Values: [0] }], NextToken: 'more' })
      .resolvesOnce({ MetricDataResults: [{ Id: 'q0', StatusCode: 'Complete', Values: [0] }] });
    await handler({}, context);
    expect(modified().map((m) => m.InstanceId)).toEqual([id(1)]);
  });

  test('a positive value on any page is IMDSv1 use, whatever the status', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: id(1) })]));
    cloudwatch.on(GetMetricDataCommand).resolves({ MetricDataResults: [{ Id: 'q0', StatusCode: 'PartialData', Values: [3] }] });
    const state = await handler({}, context);
    expect(modified()).toEqual([]);
    expect(state.tally).toMatchObject({ atRisk: 1 });
  });
});

describe('defect 4: enforcement only tightens unless asked', () => {
  const fleet = [
    instance({ id: id(1), hop: 3 }), // IMDSv1 allowed, hop limit above the fleet's
    compliant(id(2), { hop: 4 }), // compliant but for a higher hop limit
    instance({ id: id(3), endpoint: 'disabled' }), // IMDS turned off
    instance({ id: id(4), hop: 1 }), // hop limit below the fleet's
  ];

  test('by default a higher hop limit is kept, a disabled endpoint stays disabled, a lower limit is raised; each is counted', async () => {
    ec2.on(DescribeInstancesCommand).resolves(page(fleet));
    const state = await handler({}, context);
    expect(modified()).toEqual([
      { InstanceId: id(1), HttpTokens: 'required', HttpPutResponseHopLimit: 3, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' },
      { InstanceId: id(3), HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'disabled', InstanceMetadataTags: 'enabled' },
      { InstanceId: id(4), HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' },
    ]);
    expect(state.tally).toMatchObject({ scanned: 4, compliant: 1, modified: 3, hopLimitKept: 2, endpointLeftDisabled: 1 });
    const emf = JSON.parse(logs.find((l) => l.includes('"_aws"'))!);
    expect(emf).toMatchObject({ HopLimitKept: 2, EndpointLeftDisabled: 1 });
  });

  test('EXACT sets every hop limit to the fleet\'s, and enableDisabledEndpoints turns IMDS back on', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, hopLimitPolicy: 'EXACT', enableDisabledEndpoints: true });
    ec2.on(DescribeInstancesCommand).resolves(page(fleet));
    const state = await handler({}, context);
    expect(modified().map((m) => [m.InstanceId, m.HttpPutResponseHopLimit, m.HttpEndpoint])).toEqual([
      [id(1), 2, 'enabled'], [id(2), 2, 'enabled'], [id(3), 2, 'enabled'], [id(4), 2, 'enabled'],
    ]);
    expect(state.tally).toMatchObject({ modified: 4, hopLimitKept: 0, endpointLeftDisabled: 0 });
  });

  test('an unknown hopLimitPolicy is refused', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, hopLimitPolicy: 'LOWER' });
    await expect(handler({}, context)).rejects.toThrow('hopLimitPolicy: got "LOWER"; allowed: AT_LEAST or EXACT');
  });
});

describe('defect 7: instances EC2 refuses while pending or stopping', () => {
  const enforce = (clock = instantClock(), deadline?: number) => enforceInstances({
    ec2: ec2Api(new EC2Client({})), cloudwatch: metricsApi(new CloudWatchClient({})), policy: POLICY, clock, deadline,
    limiter: new AdaptiveTokenBucket({ ...MODIFY_BUCKET, clock }),
  }, [instance({ id: id(1), state: 'pending' }), instance({ id: id(2), state: 'stopping' }), instance({ id: id(3) })]);

  test('are looked at again and retried later in the same run; the ones never ready are reported not-ready, not skipped', async () => {
    // GIVEN i-1 becomes running after the first refusal, i-2 stays stopping
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(1) })
      .rejectsOnce(awsError('IncorrectInstanceState', 'The instance is not in a valid state for this operation.')).resolves({});
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(2) })
      .rejects(awsError('IncorrectInstanceState', 'The instance is not in a valid state for this operation.'));
    ec2.on(DescribeInstancesCommand).callsFake((input) => page(input.Filters.find((f: any) => f.Name === 'instance-id').Values
      .map((i: string) => instance({ id: i, state: i === id(1) ? 'running' : 'stopping' }))));

    // WHEN
    const clock = instantClock();
    const start = clock.now();
    const result = await enforce(clock, start + 600_000);

    // THEN
    expect(result.tally).toMatchObject({ nonCompliant: 3, modified: 2, notReady: 1, skipped: 0, failed: 0 });
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(1) })).toHaveLength(2);
    expect(ec2.commandCalls(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(2) })).toHaveLength(5);
    expect(clock.now() - start).toBeGreaterThanOrEqual(120_000);
    const records = Object.fromEntries(result.records.map((r) => [r.instanceId, r]));
    expect(records[id(1)]).toMatchObject({ state: 'running', outcome: 'modified', after: { HttpTokens: 'required' } });
    expect(records[id(2)]).toMatchObject({ state: 'stopping', outcome: 'not-ready', before: { HttpTokens: 'optional' }, after: { HttpTokens: 'optional' } });
    expect(records[id(2)].reason).toMatch(/IncorrectInstanceState/);
  });

  test('with no time left in the step, they are handed to the next step instead', async () => {
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(1) }).rejects(awsError('IncorrectInstanceState'));
    const clock = instantClock();
    const result = await enforce(clock, clock.now() + 10_000);
    expect(result.pending).toEqual([id(1)]);
    expect(result.tally).toMatchObject({ modified: 2, notReady: 0, skipped: 0 });
    expect(result.records.map((r) => r.instanceId)).not.toContain(id(1));
  });
});
