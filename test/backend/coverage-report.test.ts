import { DescribeInstancesCommand, EC2Client, Instance } from '@aws-sdk/client-ec2';
import { GetObjectCommand, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { buildReport, categorise, handler } from '../../lib/backend/handler/coverage-report';
import { ACCOUNT, capturedHandlerMetrics, NOW, REGION } from './fixtures';

const ec2 = mockClient(EC2Client);
const ssm = mockClient(SSMClient);
const s3 = mockClient(S3Client);
const ddb = mockClient(DynamoDBDocumentClient);
const nowS = NOW / 1000;
const metrics = capturedHandlerMetrics();

const id = (n: number) => `i-${String(n).padStart(17, '0')}`;
function instance(n: number, options: { tag?: string; httpTokens?: 'optional' | 'required' } = {}): Instance {
  return {
    InstanceId: id(n),
    Tags: options.tag === undefined ? [{ Key: 'Name', Value: `web-${n}` }] : [{ Key: 'SecurityAgentManaged', Value: options.tag }],
    MetadataOptions: { HttpTokens: options.httpTokens ?? 'required', HttpEndpoint: 'enabled' as const },
  };
}
const agent = (n: number, secondsAgo: number) => ({ instanceId: id(n), lastHeartbeat: nowS - secondsAgo, heartbeatIntervalSeconds: 600, expiresAt: nowS - secondsAgo + 30 * 86400 });

beforeEach(() => {
  for (const m of [ec2, ssm, s3, ddb]) m.reset();
});

describe('categorisation', () => {
  const base = { instanceId: 'i-1', imdsV1Allowed: false, ssmOnline: true };
  test.each([
    ['excluded by the tag, whatever else is true', { ...base, exclusionTag: 'false', agent: 'ACTIVE' as const }, 'excluded'],
    ['an active agent', { ...base, agent: 'ACTIVE' as const }, 'covered'],
    ['an active agent on an instance SSM lost', { ...base, ssmOnline: false, agent: 'ACTIVE' as const }, 'covered'],
    ['an active agent whose service runs', { ...base, agent: 'ACTIVE' as const, agentService: 'RUNNING' }, 'covered'],
    ['an active agent that cannot see its service', { ...base, agent: 'ACTIVE' as const, agentService: 'UNREPORTED' }, 'covered'],
    ['a heartbeat saying the agent\'s service stopped', { ...base, agent: 'ACTIVE' as const, agentService: 'STOPPED' }, 'agentUnhealthy'],
    ['a heartbeat saying the agent\'s service failed', { ...base, agent: 'ACTIVE' as const, agentService: 'FAILED' }, 'agentUnhealthy'],
    ['a heartbeat saying the agent is not installed', { ...base, agent: 'ACTIVE' as const, agentService: 'NOT_INSTALLED' }, 'agentUnhealthy'],
    ['excluded, even with a stopped service', { ...base, exclusionTag: 'false', agent: 'ACTIVE' as const, agentService: 'STOPPED' }, 'excluded'],
    ['an inactive agent', { ...base, agent: 'INACTIVE' as const }, 'agentInactive'],
    ['no agent and not managed by SSM', { ...base, ssmOnline: false }, 'notSsmManaged'],
    ['no agent though SSM manages it', { ...base }, 'agentMissing'],
    ['tag true is no exclusion', { ...base, exclusionTag: 'true' }, 'agentMissing'],
    ['tag FALSE is no exclusion (values compare exactly)', { ...base, exclusionTag: 'FALSE' }, 'agentMissing'],
  ])('%s', (_case, facts, category) => {
    expect(categorise(facts)).toBe(category);
  });

  test('the ratio leaves excluded instances out, and is 100% when nothing needs covering', () => {
    const meta = { generatedAt: 't', accountId: ACCOUNT, region: REGION, backend: 'b', exclusionTagKey: 'SecurityAgentManaged' };
    const facts = [
      { instanceId: 'i-1', imdsV1Allowed: false, ssmOnline: true, agent: 'ACTIVE' as const },
      { instanceId: 'i-2', imdsV1Allowed: false, ssmOnline: true },
      { instanceId: 'i-3', imdsV1Allowed: false, ssmOnline: true, exclusionTag: 'false' },
    ];
    expect(buildReport(facts, meta).coverageRatio).toBe(50);
    expect(buildReport([facts[2]], meta).coverageRatio).toBe(100);
    expect(buildReport([], meta).coverageRatio).toBe(100);
  });
});

describe('the coverage report', () => {
  test('compares EC2, SSM, the registry and the exclusion tag, and writes the report under reports/coverage/', async () => {
    // GIVEN eight running instances over two pages
    ec2.on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [{ Instances: [instance(1), instance(2), instance(3, { httpTokens: 'optional' })] }], NextToken: 'more' })
      .resolvesOnce({ Reservations: [
        { Instances: [instance(4, { tag: 'false' }), instance(5), instance(6)] },
        { Instances: [instance(7, { tag: 'yes' }), instance(8, { tag: 'true', httpTokens: 'optional' })] },
      ] });
    ssm.on(DescribeInstanceInformationCommand)
      .resolvesOnce({ InstanceInformationList: [{ InstanceId: id(1), PingStatus: 'Online' }, { InstanceId: id(2), PingStatus: 'Online' }], NextToken: 'p2' })
      .resolvesOnce({ InstanceInformationList: [
        { InstanceId: id(3), PingStatus: 'Online' }, { InstanceId: id(5), PingStatus: 'ConnectionLost' }, { InstanceId: id(7), PingStatus: 'Online' },
        { InstanceId: id(8), PingStatus: 'Online' },
      ] });
    // 1 active, 2 inactive, 8 expired (so: no agent), 3 and 7 without a record
    ddb.on(ScanCommand).resolves({ Items: [agent(1, 60), agent(2, 5000), agent(4, 60), { ...agent(8, 60), expiresAt: nowS - 1 }] });
    s3.on(PutObjectCommand).resolves({});
    s3.on(GetObjectCommand).rejects(new NoSuchKey({ message: 'The specified key does not exist.', $metadata: {} }));

    // WHEN
    const result = await handler();

    // THEN
    expect(result.counts).toEqual({
      covered: 1, excluded: 1, agentUnhealthy: 0, agentInactive: 1, notSsmManaged: 2, agentMissing: 3, imdsV1Allowed: 2, misconfiguredTag: 1,
    });
    expect(result.coverageRatio).toBe(14.29); // 1 of 7
    const puts = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
    expect(puts.map((p) => p.Key)).toEqual(['reports/coverage/2026-03-01T12-00-00.000Z.json', 'reports/coverage/latest.json']);
    expect(puts[0]).toMatchObject({ Bucket: 'telemetry-bucket', ContentType: 'application/json' });
    expect(puts[0].ServerSideEncryption).toBeUndefined(); // the store's default key encrypts it
    const report = JSON.parse(String(puts[0].Body));
    expect(report).toMatchObject({
      generatedAt: '2026-03-01T12:00:00.000Z', accountId: ACCOUNT, region: REGION, backend: 'Stack/Backend', instances: 8,
      instanceIds: {
        covered: [id(1)], excluded: [id(4)], agentUnhealthy: [], agentInactive: [id(2)], notSsmManaged: [id(5), id(6)], agentMissing: [id(3), id(7), id(8)],
        imdsV1Allowed: [id(3), id(8)], misconfiguredTag: [id(7)],
      },
    });
    expect(puts[1].Body).toBe(puts[0].Body);
    // Only this account's and Region's agents are considered.
    expect(ddb.commandCalls(ScanCommand)[0].args[0].input).toMatchObject({
      FilterExpression: 'accountId = :account AND #region = :region',
      ExpressionAttributeValues: { ':account': ACCOUNT, ':region': REGION },
    });
    expect(ec2.commandCalls(DescribeInstancesCommand)[0].args[0].input.Filters).toEqual([{ Name: 'instance-state-name', Values: ['pending', 'running'] }]);
    expect(ec2.commandCalls(DescribeInstancesCommand)[1].args[0].input.NextToken).toBe('more');
    expect(ssm.commandCalls(DescribeInstanceInformationCommand)[1].args[0].input.NextToken).toBe('p2');
    expect(metrics).toEqual([expect.objectContaining({
      Backend: 'Stack/Backend', Instances: 8, Covered: 1, Excluded: 1, AgentUnhealthy: 0, AgentInactive: 1, NotSsmManaged: 2, AgentMissing: 3,
      ImdsV1Allowed: 2, MisconfiguredTag: 1, CoverageRatio: 14.29,
    })]);
  });

  test('a failing AWS call fails the run rather than writing a wrong report', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    ssm.on(DescribeInstanceInformationCommand).rejects(new Error('ThrottlingException'));
    ddb.on(ScanCommand).resolves({ Items: [] });
    await expect(handler()).rejects.toThrow('ThrottlingException');
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);
  });
});
