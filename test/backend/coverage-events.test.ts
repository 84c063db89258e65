/*
 * Coverage change events: found by comparing the previous report (latest.json) with the new
 * one, validated against the published JSON Schema, put on the default bus in batches of at
 * most 10 entries and 256 KiB, failed entries retried, and the baseline kept when they
 * cannot be sent.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DescribeInstancesCommand, EC2Client, Instance } from '@aws-sdk/client-ec2';
import { EventBridgeClient, PutEventsCommand, PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import { GetObjectCommand, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import Ajv from 'ajv';
import { mockClient } from 'aws-sdk-client-mock';
import { COVERAGE_CHANGE_DETAIL_SCHEMA, CoverageChangeDetail } from '../../lib/backend/coverage-event';
import { handler } from '../../lib/backend/handler/coverage-report';
import { batches, coverageChanges, MAX_BYTES_PER_CALL, putCoverageChanges } from '../../lib/backend/handler/shared/coverage-events';
import { ACCOUNT, capturedHandlerMetrics, NOW, REGION } from './fixtures';

const ec2 = mockClient(EC2Client);
const ssm = mockClient(SSMClient);
const s3 = mockClient(S3Client);
const ddb = mockClient(DynamoDBDocumentClient);
const eventBridge = mockClient(EventBridgeClient);
const metrics = capturedHandlerMetrics();
const nowS = NOW / 1000;

const ajv = new Ajv({ allErrors: true });
const validDetail = ajv.compile(COVERAGE_CHANGE_DETAIL_SCHEMA);
const schemaProblems = (detail: unknown) => (validDetail(detail) ? [] : validDetail.errors);

const id = (n: number) => `i-${String(n).padStart(17, '0')}`;
const instance = (n: number): Instance => ({ InstanceId: id(n), Tags: [], MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' } });
const agent = (n: number, secondsAgo: number, service?: string) => ({
  instanceId: id(n), lastHeartbeat: nowS - secondsAgo, heartbeatIntervalSeconds: 600, expiresAt: nowS + 86400, agentServiceState: service,
});
const PREVIOUS_AT = '2026-03-01T11:00:00.000Z';

/** EC2, SSM and the registry as they are now; latest.json as the previous run left it. */
function fleet(options: { instances: number[]; agents: ReturnType<typeof agent>[]; previous?: Record<string, string[]> | 'none' | string }) {
  ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: options.instances.map(instance) }] });
  ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: options.instances.map((n) => ({ InstanceId: id(n), PingStatus: 'Online' })) });
  ddb.on(ScanCommand).resolves({ Items: options.agents });
  s3.on(PutObjectCommand).resolves({});
  if (options.previous === 'none' || options.previous === undefined) {
    s3.on(GetObjectCommand).rejects(new NoSuchKey({ message: 'The specified key does not exist.', $metadata: {} }));
  } else {
    const text = typeof options.previous === 'string' ? options.previous : JSON.stringify({ generatedAt: PREVIOUS_AT, instanceIds: options.previous });
    s3.on(GetObjectCommand).resolves({ Body: { transformToString: async () => text } as never });
  }
}

const putKeys = () => s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key);
const sentEntries = (): PutEventsRequestEntry[] => eventBridge.commandCalls(PutEventsCommand).flatMap((c) => c.args[0].input.Entries ?? []);
const allOk = () => eventBridge.on(PutEventsCommand).callsFake((input) => ({ FailedEntryCount: 0, Entries: input.Entries.map((_: unknown, i: number) => ({ EventId: `e${i}` })) }));

beforeEach(() => {
  for (const m of [ec2, ssm, s3, ddb, eventBridge]) m.reset();
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});

describe('coverage change events from the coverage report', () => {
  test('one event per changed instance, valid against the published schema, on the default bus', async () => {
    // GIVEN four instances covered an hour ago; now 1 still covered, 2 silent, 3's agent service stopped, 5 new
    fleet({
      instances: [1, 2, 3, 5],
      agents: [agent(1, 60, 'RUNNING'), agent(2, 5000, 'RUNNING'), agent(3, 60, 'STOPPED')],
      previous: { covered: [id(1), id(2), id(3), id(4)] },
    });
    allOk();

    // WHEN
    const result = await handler();

    // THEN
    const entries = sentEntries();
    expect(entries.map((e) => [e.Source, e.DetailType, e.EventBusName])).toEqual(Array(3).fill(['cdk-agent-fleet', 'Agent Coverage Status Change', undefined]));
    const details = entries.map((e) => JSON.parse(e.Detail!));
    for (const detail of details) expect(schemaProblems(detail)).toEqual([]);
    expect(details).toEqual([
      {
        schemaVersion: '1', backend: 'Stack/Backend', accountId: ACCOUNT, region: REGION, instanceId: id(2),
        previousCategory: 'covered', currentCategory: 'agentInactive', healthy: false, agentServiceState: 'RUNNING',
        previousReportAt: PREVIOUS_AT, reportAt: '2026-03-01T12:00:00.000Z', reportKey: 'reports/coverage/2026-03-01T12-00-00.000Z.json',
      },
      expect.objectContaining({ instanceId: id(3), previousCategory: 'covered', currentCategory: 'agentUnhealthy', healthy: false, agentServiceState: 'STOPPED' }),
      expect.objectContaining({ instanceId: id(5), previousCategory: null, currentCategory: 'agentMissing', healthy: false, agentServiceState: null }),
    ]);
    expect(result.changeEvents).toBe(3);
    expect(result.counts).toMatchObject({ covered: 1, agentUnhealthy: 1, agentInactive: 1, agentMissing: 1 });
    expect(putKeys()).toEqual(['reports/coverage/2026-03-01T12-00-00.000Z.json', 'reports/coverage/latest.json']);
    expect(s3.commandCalls(GetObjectCommand)[0].args[0].input).toEqual({ Bucket: 'telemetry-bucket', Key: 'reports/coverage/latest.json' });
    expect(metrics[0]).toMatchObject({ CoverageChanges: 3, AgentUnhealthy: 1 });
  });

  test('an agent coming back is an event too, healthy again', async () => {
    fleet({ instances: [1], agents: [agent(1, 60, 'RUNNING')], previous: { agentUnhealthy: [id(1)] } });
    allOk();
    await handler();
    const [detail] = sentEntries().map((e) => JSON.parse(e.Detail!));
    expect(detail).toMatchObject({ previousCategory: 'agentUnhealthy', currentCategory: 'covered', healthy: true });
    expect(schemaProblems(detail)).toEqual([]);
  });

  test('no change, no event', async () => {
    fleet({ instances: [1], agents: [agent(1, 60)], previous: { covered: [id(1)] } });
    allOk();
    expect((await handler()).changeEvents).toBe(0);
    expect(eventBridge.commandCalls(PutEventsCommand)).toHaveLength(0);
  });

  test('the first report has nothing to compare with: no events, and it becomes the baseline', async () => {
    fleet({ instances: [1, 2], agents: [agent(1, 60)], previous: 'none' });
    expect((await handler()).changeEvents).toBe(0);
    expect(eventBridge.commandCalls(PutEventsCommand)).toHaveLength(0);
    expect(putKeys()).toContain('reports/coverage/latest.json');
  });

  test('a previous report that is not a report is no baseline: warned, no events, replaced', async () => {
    fleet({ instances: [1], agents: [], previous: '{"not":"a report"' });
    expect((await handler()).changeEvents).toBe(0);
    expect(console.warn).toHaveBeenCalledWith(expect.stringContaining('not a report'));
    expect(putKeys()).toContain('reports/coverage/latest.json');
  });

  test('a report from before agentUnhealthy existed still compares', async () => {
    fleet({ instances: [1], agents: [agent(1, 60, 'FAILED')], previous: { covered: [id(1)], agentInactive: [] } });
    allOk();
    await handler();
    expect(sentEntries().map((e) => JSON.parse(e.Detail!).currentCategory)).toEqual(['agentUnhealthy']);
  });

  test('reading the previous report failing otherwise (access, throttling) fails the run before anything is written', async () => {
    fleet({ instances: [1], agents: [] });
    s3.on(GetObjectCommand).rejects(Object.assign(new Error('Access Denied'), { name: 'AccessDenied' }));
    await expect(handler()).rejects.toThrow('Access Denied');
    expect(putKeys()).toEqual([]);
  });
});

describe('batching', () => {
  const detail = (n: number): CoverageChangeDetail => ({
    schemaVersion: '1', backend: 'b', accountId: ACCOUNT, region: REGION, instanceId: id(n), previousCategory: 'covered',
    currentCategory: 'agentInactive', healthy: false, agentServiceState: null, previousReportAt: PREVIOUS_AT, reportAt: PREVIOUS_AT, reportKey: 'k',
  });

  test('at most 10 entries per PutEvents call', async () => {
    allOk();
    const result = await putCoverageChanges(new EventBridgeClient({}), Array.from({ length: 23 }, (_, i) => detail(i + 1)));
    expect(eventBridge.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries!.length)).toEqual([10, 10, 3]);
    expect(result).toEqual({ sent: 23, failed: [] });
  });

  test('at most 256 KiB per call, counted as EventBridge counts entry sizes', () => {
    const entry = (kib: number): PutEventsRequestEntry => ({ Source: 's', DetailType: 'd', Detail: 'x'.repeat(kib * 1024 - 2) });
    expect(batches([entry(100), entry(100), entry(100), entry(10)]).map((b) => b.length)).toEqual([2, 2]);
    expect(() => batches([{ Source: 's', DetailType: 'd', Detail: 'x'.repeat(MAX_BYTES_PER_CALL) }])).toThrow(/exceeds the PutEvents limit/);
  });

  test('changes are found with coverageChanges, instances that left the fleet are no change', () => {
    const changes = coverageChanges(
      { generatedAt: PREVIOUS_AT, instanceIds: { covered: [id(1), id(2)] } },
      { generatedAt: 'now', instanceIds: { covered: [id(1)] } },
      { backend: 'b', accountId: ACCOUNT, region: REGION, reportKey: 'k' }, () => undefined,
    );
    expect(changes).toEqual([]);
  });
});

describe('partial failures', () => {
  const changed = () => fleet({ instances: [1, 2, 3], agents: [], previous: { covered: [id(1), id(2), id(3)] } });

  test('entries EventBridge failed (FailedEntryCount) are put again, and only those', async () => {
    changed();
    eventBridge.on(PutEventsCommand)
      .resolvesOnce({ FailedEntryCount: 1, Entries: [{ EventId: 'a' }, { ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded' }, { EventId: 'c' }] })
      .resolvesOnce({ FailedEntryCount: 0, Entries: [{ EventId: 'b' }] });
    const result = await handler();
    const calls = eventBridge.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries!.map((e) => JSON.parse(e.Detail!).instanceId));
    expect(calls).toEqual([[id(1), id(2), id(3)], [id(2)]]);
    expect(result.changeEvents).toBe(3);
    expect(putKeys()).toContain('reports/coverage/latest.json');
  });

  test('entries still failing after three attempts fail the run, and latest.json stays the baseline so the next run sends them again', async () => {
    changed();
    eventBridge.on(PutEventsCommand).callsFake((input) => ({
      FailedEntryCount: 1,
      Entries: input.Entries.map((e: PutEventsRequestEntry) => (JSON.parse(e.Detail!).instanceId === id(2) ? { ErrorCode: 'InternalFailure' } : { EventId: 'ok' })),
    }));
    await expect(handler()).rejects.toThrow('1 of 3 coverage change events could not be put on the event bus (InternalFailure)');
    expect(eventBridge.commandCalls(PutEventsCommand)).toHaveLength(3);
    expect(putKeys()).toEqual(['reports/coverage/2026-03-01T12-00-00.000Z.json']); // the timestamped report, not latest.json
    expect(metrics).toEqual([expect.objectContaining({ CoverageEventsFailed: 1 })]);
  });

  test('a failing PutEvents call fails the run the same way', async () => {
    changed();
    eventBridge.on(PutEventsCommand).rejects(Object.assign(new Error('not authorized to perform: events:PutEvents'), { name: 'AccessDeniedException' }));
    await expect(handler()).rejects.toThrow('events:PutEvents');
    expect(putKeys()).not.toContain('reports/coverage/latest.json');
  });
});

describe('the schema', () => {
  test('docs/coverage-change-event.schema.json is the schema the code publishes', () => {
    const file = path.join(__dirname, '..', '..', 'docs', 'coverage-change-event.schema.json');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(COVERAGE_CHANGE_DETAIL_SCHEMA);
  });

  test('rejects what is not a coverage change', () => {
    const good = {
      schemaVersion: '1', backend: 'b', accountId: ACCOUNT, region: REGION, instanceId: id(1), previousCategory: null, currentCategory: 'covered',
      healthy: true, agentServiceState: null, previousReportAt: PREVIOUS_AT, reportAt: PREVIOUS_AT, reportKey: 'k',
    };
    expect(schemaProblems(good)).toEqual([]);
    expect(schemaProblems({ ...good, currentCategory: 'fine' })).not.toEqual([]);
    expect(schemaProblems({ ...good, extra: 1 })).not.toEqual([]);
    expect(schemaProblems({ ...good, instanceId: 'i-xyz' })).not.toEqual([]);
    const { reportKey: _omitted, ...missing } = good;
    expect(schemaProblems(missing)).not.toEqual([]);
  });
});
