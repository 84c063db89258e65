/*
 * Issue 12, defect 3: every sweep leaves a complete per-instance report, in one object,
 * written step by step (never through the state machine's payload) and combined at the end.
 */
import { GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { DescribeInstancesCommand, ModifyInstanceMetadataOptionsCommand } from '@aws-sdk/client-ec2';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, SweepInput } from '../../../lib/imds/handler/sweep-page';
import { combine, newSweepId, PART_BYTES, ReportStore } from '../../../lib/imds/handler/shared/sweep-report';
import { awsError, compliant, instance, metricAnswer, mockedImdsClients, page, POLICY } from './fleet';

const { ec2, cloudwatch, logs } = mockedImdsClients();
const s3 = mockClient(S3Client);
const context = { getRemainingTimeInMillis: () => 900_000 };
const id = (n: number) => `i-${String(n).padStart(17, '0')}`;
let objects: Map<string, string>;

beforeEach(() => {
  s3.reset();
  objects = new Map();
  process.env.IMDS_REPORT = JSON.stringify({ bucket: 'telemetry-bucket', prefix: 'imds-enforcement/Stack-Enforcement/' });
  s3.on(PutObjectCommand).callsFake((input) => { objects.set(input.Key, input.Body); return {}; });
  s3.on(GetObjectCommand).callsFake((input) => {
    const body = objects.get(input.Key);
    if (body === undefined) throw awsError('NoSuchKey');
    return { Body: { transformToString: async () => body } };
  });
  s3.on(DeleteObjectCommand).callsFake((input) => { objects.delete(input.Key); return {}; });
});
afterAll(() => { delete process.env.IMDS_REPORT; });

async function runSweep(): Promise<SweepInput> {
  let state: SweepInput = { trigger: 'update' };
  for (let step = 0; step < 20 && !state.done; step++) state = await handler(state, context);
  return state;
}
const lines = (body: string) => body.trim().split('\n').map((l) => JSON.parse(l));

describe('the per-instance report of a sweep', () => {
  test('one object per sweep with every instance of every page, beyond 200 at-risk included; the step objects are removed', async () => {
    // GIVEN two pages: 250 instances still calling IMDSv1, then a mixed page with one the SCP denies
    const users = Array.from({ length: 250 }, (_, i) => instance({ id: id(1000 + i) }));
    const mixed = [
      compliant(id(1)), compliant(id(2), { hop: 4 }), instance({ id: id(3), tags: { ImdsEnforcementExempt: 'true' } }), instance({ id: id(4) }),
      instance({ id: id(5) }),
    ];
    ec2.on(DescribeInstancesCommand).callsFake((input) => (input.NextToken ? page(mixed) : page(users, 'page-2')));
    cloudwatch.on(GetMetricDataCommand).callsFake(metricAnswer(Object.fromEntries(users.map((u) => [u.InstanceId, [7]]))));
    ec2.on(ModifyInstanceMetadataOptionsCommand, { InstanceId: id(5) })
      .rejects(awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.'));

    // WHEN
    const state = await runSweep();

    // THEN one object remains: the report, 255 lines, one per instance
    expect([...objects.keys()]).toEqual([`imds-enforcement/Stack-Enforcement/reports/${state.sweepId}.jsonl`]);
    expect(state.reportKey).toBe(`imds-enforcement/Stack-Enforcement/reports/${state.sweepId}.jsonl`);
    const report = lines(objects.get(state.reportKey!)!);
    expect(report).toHaveLength(255);
    expect(report.filter((r) => r.outcome === 'at-risk')).toHaveLength(250);
    expect(report.filter((r) => r.outcome === 'failed').map((r) => r.instanceId)).toEqual([id(5)]);
    const byId = Object.fromEntries(report.map((r) => [r.instanceId, r]));
    expect(byId[id(4)]).toEqual({
      sweepId: state.sweepId, instanceId: id(4), state: 'running', outcome: 'modified',
      before: { HttpTokens: 'optional', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled', InstanceMetadataTags: 'disabled' },
      after: { HttpTokens: 'required', HttpPutResponseHopLimit: 2, HttpEndpoint: 'enabled', InstanceMetadataTags: 'enabled' },
      reason: expect.stringContaining('set HttpTokens=required, HttpPutResponseHopLimit=2, HttpEndpoint=enabled, InstanceMetadataTags=enabled'),
    });
    expect(byId[id(1249)]).toMatchObject({ outcome: 'at-risk', reason: expect.stringMatching(/^not modified: made IMDSv1 calls/) });
    expect(byId[id(5)]).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('UnauthorizedOperation') });
    expect(byId[id(2)]).toMatchObject({ outcome: 'compliant', reason: expect.stringContaining('HttpPutResponseHopLimit=4 kept') });
    expect(byId[id(3)]).toMatchObject({ outcome: 'exempt' });
    // The state the state machine carries stays small: counts and a step number, no records.
    expect(JSON.stringify(state).length).toBeLessThan(20_000);
    expect(JSON.parse(logs.find((l) => l.includes('IMDS sweep finished'))!).report)
      .toBe(`s3://telemetry-bucket/imds-enforcement/Stack-Enforcement/reports/${state.sweepId}.jsonl`);
  });

  test('AUDIT reports which instances are non-compliant and what would change', async () => {
    process.env.IMDS_POLICY = JSON.stringify({ ...POLICY, mode: 'AUDIT' });
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: id(1) }), compliant(id(2))]));
    const state = await runSweep();
    const report = lines(objects.get(state.reportKey!)!);
    expect(report.map((r) => [r.instanceId, r.outcome])).toEqual([[id(2), 'compliant'], [id(1), 'non-compliant']]);
    expect(report[1].reason).toMatch(/^AUDIT: would set HttpTokens=required, HttpPutResponseHopLimit=2/);
    expect(report[1].after).toEqual(report[1].before);
  });

  test('without a bucket, every instance is a log line of the sweep', async () => {
    delete process.env.IMDS_REPORT;
    ec2.on(DescribeInstancesCommand).resolves(page([instance({ id: id(1) }), compliant(id(2))]));
    const state = await runSweep();
    const perInstance = logs.map((l) => JSON.parse(l)).filter((l) => l.message === 'IMDS sweep instance');
    expect(perInstance.map((l) => [l.sweepId, l.instanceId, l.outcome])).toEqual([[state.sweepId, id(2), 'compliant'], [state.sweepId, id(1), 'modified']]);
    expect(s3.calls()).toHaveLength(0);
  });
});

describe('combining the step objects', () => {
  test('beyond one part, uploads whole lines in parts of at least 5 MiB and keeps every line in order', async () => {
    const stored = new Map<string, string>();
    const uploaded: string[] = [];
    const store: ReportStore = {
      put: async (k, b) => { stored.set(k, b); },
      get: async (k) => stored.get(k)!,
      delete: async (k) => { stored.delete(k); },
      startMultipart: async () => 'upload-1',
      uploadPart: async (_k, _u, n, b) => { uploaded[n - 1] = b; return `etag-${n}`; },
      completeMultipart: async (k) => { stored.set(k, uploaded.join('')); },
      abortMultipart: async () => undefined,
    };
    const location = { bucket: 'b', prefix: 'p/' };
    const line = (step: number, i: number) => `${JSON.stringify({ step, i, pad: 'x'.repeat(300) })}\n`;
    const perStep = Math.ceil((3 * 1024 * 1024) / line(0, 0).length);
    for (let step = 0; step < 4; step++) {
      stored.set(`p/steps/s/${String(step).padStart(6, '0')}.jsonl`, Array.from({ length: perStep }, (_, i) => line(step, i)).join(''));
    }

    const key = await combine(store, location, { sweepId: 's', steps: 4 });

    expect(key).toBe('p/reports/s.jsonl');
    expect(uploaded.length).toBeGreaterThan(1);
    for (const part of uploaded.slice(0, -1)) {
      expect(Buffer.byteLength(part)).toBeGreaterThanOrEqual(5 * 1024 * 1024);
      expect(Buffer.byteLength(part)).toBeLessThanOrEqual(PART_BYTES);
      expect(part.endsWith('\n')).toBe(true);
    }
    const all = stored.get(key)!.trim().split('\n').map((l) => JSON.parse(l));
    expect(all).toHaveLength(4 * perStep);
    expect(all.map((r) => `${r.step}/${r.i}`)).toEqual(Array.from({ length: 4 * perStep }, (_, n) => `${Math.floor(n / perStep)}/${n % perStep}`));
    expect([...stored.keys()]).toEqual(['p/reports/s.jsonl']);
  });

  test('sweep ids sort by start time and differ between sweeps', () => {
    expect(newSweepId('2025-01-31T12:00:00.123Z', () => 0.5)).toBe('2025-01-31T12-00-00Z-80000000');
    expect(newSweepId('2025-01-31T12:00:00.123Z')).not.toBe(newSweepId('2025-01-31T12:00:00.123Z'));
  });
});

// The SDK commands used for multipart uploads exist under these names (the adapter in shared/aws.ts).
test('the S3 adapter speaks multipart with the SDK commands', async () => {
  const { reportStore } = await import('../../../lib/imds/handler/shared/aws');
  s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u' });
  s3.on(UploadPartCommand).resolves({ ETag: '"e"' });
  s3.on(CompleteMultipartUploadCommand).resolves({});
  const store = reportStore('bucket', new S3Client({}));
  expect(await store.startMultipart('k')).toBe('u');
  expect(await store.uploadPart('k', 'u', 1, 'body')).toBe('"e"');
  await store.completeMultipart('k', 'u', [{ PartNumber: 1, ETag: '"e"' }]);
  expect(s3.commandCalls(CompleteMultipartUploadCommand)[0].args[0].input).toEqual({
    Bucket: 'bucket', Key: 'k', UploadId: 'u', MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"e"' }] },
  });
});
