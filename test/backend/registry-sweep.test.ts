import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { handler } from '../../lib/backend/handler/registry-sweep';
import { agentStatus, inactiveAfterSeconds, isExpired } from '../../lib/backend/handler/shared/registry';
import { capturedHandlerMetrics, NOW } from './fixtures';

const ddb = mockClient(DynamoDBDocumentClient);
const nowS = NOW / 1000;
const INTERVAL = 600;
const metrics = capturedHandlerMetrics();

function record(id: string, secondsAgo: number, extra: Record<string, unknown> = {}) {
  return {
    pk: `111122223333#eu-west-1#${id}`,
    lastHeartbeat: nowS - secondsAgo,
    heartbeatIntervalSeconds: INTERVAL,
    expiresAt: nowS - secondsAgo + 30 * 86400,
    status: 'ACTIVE',
    instanceType: 'm7g.large',
    agentVersion: '1.4.2',
    imdsVersion: 'v2',
    ...extra,
  };
}

beforeEach(() => {
  ddb.reset();
});

describe('cleanup timing', () => {
  test('an agent is INACTIVE after two missed heartbeats (each counted missed half an interval late)', () => {
    expect(inactiveAfterSeconds(600)).toBe(1500);
    const at = (secondsAgo: number) => agentStatus({ lastHeartbeat: nowS - secondsAgo, heartbeatIntervalSeconds: 600 }, nowS);
    expect(at(0)).toBe('ACTIVE');
    expect(at(600)).toBe('ACTIVE'); // one heartbeat due now
    expect(at(1200)).toBe('ACTIVE'); // one missed, the second just due
    expect(at(1500)).toBe('ACTIVE'); // the second is half an interval late: the boundary itself
    expect(at(1501)).toBe('INACTIVE');
  });

  test('the interval the agent was told at its last heartbeat is what counts', () => {
    expect(agentStatus({ lastHeartbeat: nowS - 3000, heartbeatIntervalSeconds: 1800 }, nowS)).toBe('ACTIVE');
    expect(agentStatus({ lastHeartbeat: nowS - 3000, heartbeatIntervalSeconds: 600 }, nowS)).toBe('INACTIVE');
  });

  test('a record expires cleanupAfter after its last heartbeat', () => {
    expect(isExpired({ expiresAt: nowS + 1 }, nowS)).toBe(false);
    expect(isExpired({ expiresAt: nowS }, nowS)).toBe(true);
  });
});

describe('the registry sweep', () => {
  test('marks newly inactive agents, removes expired records and counts the active ones', async () => {
    // GIVEN two pages of records
    ddb.on(ScanCommand)
      .resolvesOnce({
        Items: [
          record('i-00000000000000001', 60),
          record('i-00000000000000002', 1501), // newly inactive
          record('i-00000000000000003', 7200, { status: 'INACTIVE' }), // already marked
        ],
        LastEvaluatedKey: { pk: 'x' },
      })
      .resolvesOnce({
        Items: [
          record('i-00000000000000004', 30, { instanceType: 'c7i.xlarge', agentVersion: '1.5.0', imdsVersion: 'v1' }),
          record('i-00000000000000005', 31 * 86400, { status: 'INACTIVE' }), // past cleanupAfter
        ],
      });
    ddb.on(UpdateCommand).resolves({});
    ddb.on(DeleteCommand).resolves({});

    // WHEN
    const result = await handler();

    // THEN
    expect(result).toEqual({
      active: 2, inactive: 2, markedInactive: 1, removed: 1, imdsV1: 1,
      byInstanceType: { 'm7g.large': 1, 'c7i.xlarge': 1 },
      byAgentVersion: { '1.4.2': 1, '1.5.0': 1 },
    });
    expect(ddb.commandCalls(ScanCommand)[1].args[0].input.ExclusiveStartKey).toEqual({ pk: 'x' });
    const [mark] = ddb.commandCalls(UpdateCommand);
    expect(ddb.commandCalls(UpdateCommand)).toHaveLength(1);
    expect(mark.args[0].input).toMatchObject({
      Key: { pk: '111122223333#eu-west-1#i-00000000000000002' },
      UpdateExpression: 'SET #status = :inactive',
      // A heartbeat arriving meanwhile changes lastHeartbeat, and the mark is not applied.
      ConditionExpression: 'lastHeartbeat = :seen',
      ExpressionAttributeValues: { ':inactive': 'INACTIVE', ':seen': nowS - 1501 },
    });
    const [remove] = ddb.commandCalls(DeleteCommand);
    expect(remove.args[0].input).toMatchObject({
      Key: { pk: '111122223333#eu-west-1#i-00000000000000005' },
      ConditionExpression: 'expiresAt <= :now',
      ExpressionAttributeValues: { ':now': nowS },
    });
  });

  test('publishes fleet metrics, and active agents by instance type and agent version', async () => {
    ddb.on(ScanCommand).resolves({
      Items: [record('i-00000000000000001', 60), record('i-00000000000000002', 60, { imdsVersion: 'v1' }), record('i-00000000000000003', 9000)],
    });
    ddb.on(UpdateCommand).resolves({});
    await handler();
    expect(metrics).toEqual([
      expect.objectContaining({ Backend: 'Stack/Backend', ActiveAgents: 2, InactiveAgents: 1, RemovedAgents: 0, AgentsUsingImdsV1: 1 }),
      expect.objectContaining({ Backend: 'Stack/Backend', InstanceType: 'm7g.large', ActiveAgents: 2 }),
      expect.objectContaining({ Backend: 'Stack/Backend', AgentVersion: '1.4.2', ActiveAgents: 2 }),
    ]);
    expect(metrics[1]._aws.CloudWatchMetrics[0]).toEqual({
      Namespace: 'CdkAgentFleet', Dimensions: [['Backend', 'InstanceType']], Metrics: [{ Name: 'ActiveAgents', Unit: 'Count' }],
    });
  });

  test('a heartbeat that races the sweep wins: the conditional write fails and nothing is lost', async () => {
    ddb.on(ScanCommand).resolves({ Items: [record('i-00000000000000002', 1600), record('i-00000000000000005', 31 * 86400)] });
    const conflict = new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    ddb.on(UpdateCommand).rejects(conflict);
    ddb.on(DeleteCommand).rejects(conflict);
    // Both records were refreshed by a heartbeat just now.
    ddb.on(GetCommand).callsFake((input) => ({ Item: { ...record(input.Key.pk.split('#')[2], 0), pk: input.Key.pk } }));
    const result = await handler();
    expect(result).toMatchObject({ markedInactive: 0, removed: 0, active: 2, inactive: 0 });
  });

  test('after a lost race the record is read again and counted as it is now: by type and version too', async () => {
    // GIVEN one agent seen active, one about to be marked inactive, one about to be removed
    ddb.on(ScanCommand).resolves({
      Items: [
        record('i-00000000000000001', 60),
        record('i-00000000000000002', 1600, { instanceType: 't3.micro', agentVersion: '1.3.0' }),
        record('i-00000000000000005', 31 * 86400, { instanceType: 't3.micro', agentVersion: '1.3.0' }),
      ],
    });
    // WHEN heartbeats (from upgraded agents) win both conditional writes
    const conflict = new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} });
    ddb.on(UpdateCommand).rejects(conflict);
    ddb.on(DeleteCommand).rejects(conflict);
    ddb.on(GetCommand).callsFake((input) => ({
      Item: { ...record(input.Key.pk.split('#')[2], 5, { instanceType: 'c7i.xlarge', agentVersion: '1.5.0', imdsVersion: 'v1' }), pk: input.Key.pk },
    }));
    const result = await handler();

    // THEN what was written is counted, and the breakdowns add up to ActiveAgents
    expect(result).toEqual({
      active: 3, inactive: 0, markedInactive: 0, removed: 0, imdsV1: 2,
      byInstanceType: { 'm7g.large': 1, 'c7i.xlarge': 2 },
      byAgentVersion: { '1.4.2': 1, '1.5.0': 2 },
    });
    const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
    expect(sum(result.byInstanceType)).toBe(result.active);
    expect(sum(result.byAgentVersion)).toBe(result.active);
    expect(ddb.commandCalls(GetCommand).map((c) => c.args[0].input)).toEqual([
      expect.objectContaining({ Key: { pk: '111122223333#eu-west-1#i-00000000000000002' }, ConsistentRead: true }),
      expect.objectContaining({ Key: { pk: '111122223333#eu-west-1#i-00000000000000005' }, ConsistentRead: true }),
    ]);
  });

  test('a record gone after a lost race (removed by TTL meanwhile) is not counted', async () => {
    ddb.on(ScanCommand).resolves({ Items: [record('i-00000000000000002', 1600)] });
    ddb.on(UpdateCommand).rejects(new ConditionalCheckFailedException({ message: 'The conditional request failed', $metadata: {} }));
    ddb.on(GetCommand).resolves({});
    expect(await handler()).toMatchObject({ active: 0, inactive: 0, markedInactive: 0, removed: 0 });
  });

  test('other DynamoDB errors fail the run (the schedule retries, then the dead-letter queue)', async () => {
    ddb.on(ScanCommand).rejects(new Error('AccessDeniedException'));
    await expect(handler()).rejects.toThrow('AccessDeniedException');
  });
});
