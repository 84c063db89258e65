import { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { handler, resetForTests } from '../../lib/backend/handler/heartbeat';
import { clock } from '../../lib/backend/handler/shared/clock';
import { metricSink } from '../../lib/backend/handler/shared/emf';
import { ACCOUNT, applyEnv, backendEnv, heartbeatEvent, INSTANCE, NOW, REGION, ROLE_ID, validBody } from './fixtures';

const ddb = mockClient(DynamoDBDocumentClient);
const ec2 = mockClient(EC2Client);
let metrics: any[];

/** A registry that applies each UpdateItem's SET values to the item its key names. */
function fakeRegistry(): Map<string, Record<string, unknown>> {
  const items = new Map<string, Record<string, unknown>>();
  ddb.on(UpdateCommand).callsFake((input) => {
    const pk = input.Key.pk as string;
    const values = input.ExpressionAttributeValues as Record<string, unknown>;
    const previous = items.get(pk);
    items.set(pk, {
      ...previous,
      pk,
      instanceId: values[':instance'],
      agentVersion: values[':version'],
      lastHeartbeat: values[':now'],
      expiresAt: values[':expires'],
      firstSeen: previous?.firstSeen ?? values[':now'],
    });
    return {};
  });
  return items;
}

function tagsAre(tags: Record<string, Record<string, string>>) {
  ec2.on(DescribeTagsCommand).resolves({
    Tags: Object.entries(tags).flatMap(([id, t]) => Object.entries(t).map(([Key, Value]) => ({ ResourceId: id, ResourceType: 'instance', Key, Value }))),
  });
}

async function call(body: unknown, caller?: Parameters<typeof heartbeatEvent>[1], options?: Parameters<typeof heartbeatEvent>[2]) {
  const res = await handler(heartbeatEvent(body, caller, options));
  return { status: res.statusCode, body: JSON.parse(res.body) };
}

beforeEach(() => {
  ddb.reset();
  ec2.reset();
  applyEnv(backendEnv());
  resetForTests();
  clock.now = () => NOW;
  metrics = [];
  metricSink.write = (line) => { metrics.push(JSON.parse(line)); };
  jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  jest.spyOn(console, 'error').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

describe('a valid heartbeat', () => {
  test('registers the instance under account#region#instance and refreshes its TTL', async () => {
    // GIVEN
    fakeRegistry();
    tagsAre({});

    // WHEN
    const res = await call(validBody());

    // THEN
    expect(res.status).toBe(200);
    const [update] = ddb.commandCalls(UpdateCommand);
    expect(update.args[0].input).toMatchObject({
      TableName: 'registry',
      Key: { pk: `${ACCOUNT}#${REGION}#${INSTANCE}` },
      ExpressionAttributeValues: expect.objectContaining({
        ':type': 'm7g.large', ':version': '1.4.2', ':imds': 'v2', ':active': 'ACTIVE',
        ':now': NOW / 1000, ':interval': 600, ':expires': NOW / 1000 + 30 * 86400,
      }),
    });
    expect(update.args[0].input.UpdateExpression).toContain('firstSeen = if_not_exists(firstSeen, :now)');
    expect(res.body.nextHeartbeatSeconds).toBe(600);
    expect(res.body.telemetryBucket).toBe('telemetry-bucket');
    // The instance's own folder, which grantAgentWrite opens to it (agents/${aws:userid}/)
    expect(res.body.telemetryPrefix).toBe(`agents/${ROLE_ID}:${INSTANCE}/`);
    expect(metrics).toEqual([expect.objectContaining({ Backend: 'Stack/Backend', Heartbeats: 1 })]);
  });

  test('duplicate registrations collapse into one record', async () => {
    // GIVEN an instance that re-registers (agent restarted, reinstalled, upgraded)
    const registry = fakeRegistry();
    tagsAre({});

    // WHEN
    await call(validBody());
    clock.now = () => NOW + 60_000;
    await call(validBody({ agentVersion: '1.5.0' }));
    clock.now = () => NOW + 120_000;
    await call(validBody({ agentVersion: '1.5.0', imdsVersion: 'v1' }));

    // THEN one record, updated in place, first seen at the first heartbeat
    const keys = ddb.commandCalls(UpdateCommand).map((c) => c.args[0].input.Key);
    expect(keys).toEqual([{ pk: `${ACCOUNT}#${REGION}#${INSTANCE}` }, { pk: `${ACCOUNT}#${REGION}#${INSTANCE}` }, { pk: `${ACCOUNT}#${REGION}#${INSTANCE}` }]);
    expect(registry.size).toBe(1);
    expect(registry.get(`${ACCOUNT}#${REGION}#${INSTANCE}`)).toMatchObject({
      agentVersion: '1.5.0', firstSeen: NOW / 1000, lastHeartbeat: NOW / 1000 + 120,
    });
  });

  test('the agent\'s service state is recorded for the coverage report; UNREPORTED when the client does not say', async () => {
    fakeRegistry();
    tagsAre({});
    await call(validBody({ agentService: { state: 'STOPPED', message: 'inactive (dead) since 11:58' } }));
    await call(validBody());
    const values = ddb.commandCalls(UpdateCommand).map((c) => c.args[0].input.ExpressionAttributeValues![':service']);
    expect(values).toEqual(['STOPPED', 'UNREPORTED']);
    expect(ddb.commandCalls(UpdateCommand)[0].args[0].input.UpdateExpression).toContain('agentServiceState = :service');
  });

  test('an agent service state outside the closed set is a 400', async () => {
    fakeRegistry();
    tagsAre({});
    const res = await call(validBody({ agentService: { state: 'DEGRADED' } }));
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('body.agentService.state must be one of RUNNING, STOPPED, FAILED, NOT_INSTALLED');
  });

  test('a base64-encoded body is decoded first', async () => {
    fakeRegistry();
    tagsAre({});
    expect((await call(validBody(), {}, { base64: true })).status).toBe(200);
  });
});

describe('instructions', () => {
  test('an instance gets the templates whose tags it carries, read from EC2', async () => {
    // GIVEN
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod' }, 'i-0fffffffffffffff0': { Environment: 'prod', Scope: 'pci' } });

    // WHEN
    const res = await call(validBody());

    // THEN baseline (no target tags) and prod-runtime, not pci (Scope missing)
    expect(res.body.instructions.map((i: any) => i.assessment)).toEqual(['baseline', 'prod-runtime']);
    expect(res.body.sensors).toEqual({
      PACKAGE_INVENTORY: 'ENABLED', SOFTWARE_CONFIGURATION: 'DISABLED', PROCESS_EVENTS: 'ENABLED', NETWORK_EVENTS: 'ENABLED', FILE_INTEGRITY: 'DISABLED',
    });
    const [describe] = ec2.commandCalls(DescribeTagsCommand);
    expect(describe.args[0].input.Filters).toEqual([
      { Name: 'resource-type', Values: ['instance'] },
      { Name: 'key', Values: ['SecurityAgentManaged', 'Environment', 'Scope'] },
    ]);
  });

  test('tags in the body are not a field, let alone trusted', async () => {
    fakeRegistry();
    tagsAre({});
    const res = await call(validBody({ tags: { Environment: 'prod' } }));
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('body has an unknown field "tags"');
  });

  test('tag values compare exactly', async () => {
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'Prod' } });
    expect((await call(validBody())).body.instructions.map((i: any) => i.assessment)).toEqual(['baseline']);
  });

  test('an instance excluded by SecurityAgentManaged=false gets no runs and every sensor disabled', async () => {
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod', SecurityAgentManaged: 'false' } });
    const res = await call(validBody());
    expect(res.status).toBe(200);
    expect(res.body.instructions).toEqual([]);
    expect(Object.values(res.body.sensors)).toEqual(['DISABLED', 'DISABLED', 'DISABLED', 'DISABLED', 'DISABLED']);
  });

  test('each run names the telemetry folder <agentPrefix><aws:userid>/<runId>/ and spans its duration', async () => {
    fakeRegistry();
    tagsAre({});
    const [run] = (await call(validBody())).body.instructions;
    expect(run.runId).toMatch(/^baseline-\d{8}T\d{4}Z-[0-9a-f]{12}$/);
    expect(run.telemetryPrefix).toBe(`agents/${ROLE_ID}:${INSTANCE}/${run.runId}/`);
    expect(Date.parse(run.endsAt) - Date.parse(run.startsAt)).toBe(3600_000);
    expect(Date.parse(run.startsAt)).toBeLessThanOrEqual(NOW);
    expect(Date.parse(run.endsAt)).toBeGreaterThan(NOW);
    expect(run.sensors).toEqual(['PACKAGE_INVENTORY']);
  });

  test('every heartbeat within a run gets the same run id; the next run a new one', async () => {
    fakeRegistry();
    tagsAre({});
    const first = (await call(validBody())).body.instructions[0];
    const end = Date.parse(first.endsAt);

    clock.now = () => end - 1000;
    const sameRun = (await call(validBody())).body.instructions[0];
    clock.now = () => end;
    const nextRun = (await call(validBody())).body.instructions[0];

    expect(sameRun.runId).toBe(first.runId);
    expect(nextRun.runId).not.toBe(first.runId);
    expect(nextRun.startsAt).toBe(first.endsAt);
  });

  test('other instances get other run ids and other run phases', async () => {
    fakeRegistry();
    tagsAre({});
    const other = 'i-0aaaaaaaaaaaaaaa1';
    const mine = (await call(validBody())).body.instructions[0];
    const body = validBody();
    body.identityDocument.instanceId = other;
    const theirs = (await call(body, { instanceId: other })).body.instructions[0];
    expect(theirs.runId).not.toBe(mine.runId);
    expect(theirs.startsAt).not.toBe(mine.startsAt);
  });

  test('instances of other accounts of the organization get only the untargeted templates, without a tag lookup', async () => {
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod' } });
    const body = validBody();
    body.identityDocument.accountId = '444455556666';
    const res = await call(body, { account: '444455556666' });
    expect(res.body.instructions.map((i: any) => i.assessment)).toEqual(['baseline']);
    expect(ec2.commandCalls(DescribeTagsCommand)).toHaveLength(0);
    expect(ddb.commandCalls(UpdateCommand)[0].args[0].input.Key).toEqual({ pk: `444455556666#${REGION}#${INSTANCE}` });
  });

  test('without templates no tag is read and every sensor is disabled', async () => {
    applyEnv(backendEnv({ ASSESSMENT_TEMPLATES: '[]' }));
    resetForTests();
    fakeRegistry();
    const res = await call(validBody());
    expect(res.body.instructions).toEqual([]);
    expect(ec2.commandCalls(DescribeTagsCommand)).toHaveLength(0);
  });
});

describe('the tag cache', () => {
  test('one DescribeTags per TTL serves every heartbeat; after the TTL tags are read again', async () => {
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod' } });
    await call(validBody());
    clock.now = () => NOW + 299_000;
    await call(validBody());
    expect(ec2.commandCalls(DescribeTagsCommand)).toHaveLength(1);

    tagsAre({ [INSTANCE]: { Environment: 'test' } });
    clock.now = () => NOW + 300_000;
    const res = await call(validBody());
    expect(ec2.commandCalls(DescribeTagsCommand)).toHaveLength(2);
    expect(res.body.instructions.map((i: any) => i.assessment)).toEqual(['baseline']);
  });

  test('follows NextToken through every page', async () => {
    fakeRegistry();
    ec2.on(DescribeTagsCommand)
      .resolvesOnce({ Tags: [{ ResourceId: 'i-0aaaaaaaaaaaaaaa1', Key: 'Environment', Value: 'prod' }], NextToken: 'page2' })
      .resolvesOnce({ Tags: [{ ResourceId: INSTANCE, Key: 'Environment', Value: 'prod' }] });
    const res = await call(validBody());
    expect(res.body.instructions.map((i: any) => i.assessment)).toEqual(['baseline', 'prod-runtime']);
    expect(ec2.commandCalls(DescribeTagsCommand)[1].args[0].input.NextToken).toBe('page2');
  });

  test('when a refresh fails, the previous snapshot is served', async () => {
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod' } });
    await call(validBody());
    ec2.on(DescribeTagsCommand).rejects(new Error('RequestLimitExceeded'));
    clock.now = () => NOW + 600_000;
    const res = await call(validBody());
    expect(res.status).toBe(200);
    expect(res.body.instructions.map((i: any) => i.assessment)).toEqual(['baseline', 'prod-runtime']);
  });
});

describe('AWS failures are 503s, not crashes', () => {
  test('the registry failing', async () => {
    ddb.on(UpdateCommand).rejects(new Error('ProvisionedThroughputExceededException'));
    tagsAre({});
    const res = await call(validBody());
    expect(res.status).toBe(503);
    expect(res.body.message).toMatch(/agent registry could not be reached/);
    expect(metrics).toEqual([expect.objectContaining({ HeartbeatErrors: 1 })]);
  });

  test('tags never read successfully', async () => {
    fakeRegistry();
    ec2.on(DescribeTagsCommand).rejects(new Error('UnauthorizedOperation'));
    const res = await call(validBody());
    expect(res.status).toBe(503);
    expect(res.body.message).toMatch(/instance tags could not be reached/);
  });
});

describe('identity', () => {
  beforeEach(() => {
    fakeRegistry();
    tagsAre({});
  });

  test.each([
    ['the body names another instance', validBody({ identityDocument: { ...validBody().identityDocument, instanceId: 'i-0fffffffffffffff0' } }), {},
      /instanceId i-0fffffffffffffff0 is not the calling instance i-0123456789abcdef0/],
    ['the body names another account', validBody({ identityDocument: { ...validBody().identityDocument, accountId: '999988887777' } }), {},
      /accountId 999988887777 is not the calling account 111122223333/],
    ['the caller is a user, not an instance session', validBody(), { userArn: `arn:aws:iam::${ACCOUNT}:user/alice`, user: 'AIDAEXAMPLE' },
      /not an EC2 instance role session/],
    ['the caller is a role session not named after an instance', validBody(), { userArn: `arn:aws:sts::${ACCOUNT}:assumed-role/Admin/alice`, user: `${ROLE_ID}:alice` },
      /not an EC2 instance role session/],
    ['the user id names another instance than the session', validBody(), { user: `${ROLE_ID}:i-0fffffffffffffff0` },
      /does not name the same instance/],
    ['the identity is missing', validBody(), { userArn: null, user: null },
      /not an EC2 instance role session/],
  ])('403 when %s', async (_case, body, caller, reason) => {
    const res = await call(body, caller);
    expect(res.status).toBe(403);
    expect(res.body.message).toMatch(reason);
    expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
    expect(metrics[0]).toMatchObject({ HeartbeatsRejected: 1 });
  });
});

describe('the origin comes from the caller and the backend, never from the body', () => {
  const withRegion = (region: string, availabilityZone = `${region}a`) =>
    validBody({ identityDocument: { ...validBody().identityDocument, region, availabilityZone } });

  test.each([
    ['another real Region', 'eu-west-1'],
    ['a made-up Region', 'zz-fake-9'],
    ['a typo of the backend\'s Region', 'us-eat-1'],
  ])('a body naming %s (%s) is refused and writes no registry item', async (_case, region) => {
    // GIVEN a backend in us-east-1
    applyEnv(backendEnv({ AWS_REGION: 'us-east-1' }));
    resetForTests();
    fakeRegistry();
    tagsAre({});

    // WHEN
    const res = await call(withRegion(region));

    // THEN
    expect(res.status).toBe(403);
    expect(res.body.message).toBe(
      `identityDocument.region ${region} is not this backend's Region us-east-1: an instance sends heartbeats to the backend of its own Region`);
    expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
    expect(metrics[0]).toMatchObject({ HeartbeatsRejected: 1, Reason: 'IdentityMismatch' });
  });

  test('an Availability Zone of another Region is refused', async () => {
    fakeRegistry();
    tagsAre({});
    const res = await call(withRegion(REGION, 'eu-west-10a'));
    expect(res.status).toBe(403);
    expect(res.body.message).toBe(`identityDocument.availabilityZone eu-west-10a is not in the Region ${REGION}`);
    expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
  });

  test('Local Zones of the backend\'s Region are accepted', async () => {
    fakeRegistry();
    tagsAre({});
    expect((await call(withRegion(REGION, `${REGION}-lax-1a`))).status).toBe(200);
  });

  test('the registry key and the identifying attributes are the caller\'s account and instance and the backend\'s Region', async () => {
    fakeRegistry();
    tagsAre({});
    await call(validBody());
    const input = ddb.commandCalls(UpdateCommand)[0].args[0].input;
    expect(input.Key).toEqual({ pk: `${ACCOUNT}#${REGION}#${INSTANCE}` });
    expect(input.ExpressionAttributeValues).toMatchObject({ ':account': ACCOUNT, ':region': REGION, ':instance': INSTANCE });
  });

  test('an excluded instance gets no runs by naming another Region', async () => {
    // GIVEN an instance of the backend's account and Region tagged out of the fleet
    fakeRegistry();
    tagsAre({ [INSTANCE]: { Environment: 'prod', SecurityAgentManaged: 'false' } });

    // WHEN it claims to be elsewhere, then tells the truth
    const elsewhere = await call(withRegion('ap-south-1'));
    const here = await call(validBody());

    // THEN no runs either way
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.instructions).toBeUndefined();
    expect(here.status).toBe(200);
    expect(here.body.instructions).toEqual([]);
  });
});

describe('schema violations are 400s with the reason', () => {
  beforeEach(() => {
    fakeRegistry();
    tagsAre({});
  });

  const doc = validBody().identityDocument;
  test.each([
    ['a missing field', (() => { const b = validBody(); delete b.agentVersion; return b; })(), 'body.agentVersion is required'],
    ['an unknown field', validBody({ debug: true }), 'body has an unknown field "debug"'],
    ['an unknown field in the identity document', validBody({ identityDocument: { ...doc, kernelId: 'aki-1' } }), 'body.identityDocument has an unknown field "kernelId"'],
    ['an unknown sensor', validBody({ sensors: { KEYLOGGER: { state: 'RUNNING' } } }), 'body.sensors has an unknown field "KEYLOGGER"'],
    ['an unknown sensor state', validBody({ sensors: { FILE_INTEGRITY: { state: 'ON' } } }), 'body.sensors.FILE_INTEGRITY.state must be one of RUNNING, IDLE, FAILED'],
    ['a wrong IMDS version', validBody({ imdsVersion: 'v3' }), 'body.imdsVersion must be one of v1, v2'],
    ['a number for a string', validBody({ agentVersion: 1.4 }), 'body.agentVersion must be a string'],
    ['an array for the body', [validBody()], 'body must be an object'],
    ['null for an object', validBody({ identityDocument: null }), 'body.identityDocument must be an object'],
    ['a malformed instance id', validBody({ identityDocument: { ...doc, instanceId: 'i-xyz' } }), 'body.identityDocument.instanceId must match ^i-([0-9a-f]{8}|[0-9a-f]{17})$'],
    ['a too long agent version', validBody({ agentVersion: '1'.repeat(65) }), 'body.agentVersion must have at most 64 characters'],
    ['a __proto__ key', JSON.parse(`{"__proto__": {"polluted": true}, ${JSON.stringify(validBody()).slice(1)}`), 'body has an unknown field "__proto__"'],
    ['a constructor key', validBody({ constructor: 'x' }), 'body has an unknown field "constructor"'],
  ])('%s', async (_case, body, reason) => {
    const res = await call(body);
    expect(res).toEqual({ status: 400, body: { message: reason } });
    expect(ddb.commandCalls(UpdateCommand)).toHaveLength(0);
    expect(({} as any).polluted).toBeUndefined();
  });

  test('invalid JSON', async () => {
    const res = await call('{"agentVersion": "1.0",', {}, { raw: true });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^the body is not valid JSON/);
    expect(metrics[0]).toMatchObject({ Reason: 'InvalidJson', HeartbeatsRejected: 1 });
  });

  test('no body', async () => {
    const res = await handler({ ...heartbeatEvent(validBody()), body: null });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).message).toBe('the request has no body');
  });

  test('a body over 16 KiB, even when valid JSON, is refused before parsing', async () => {
    const big = JSON.stringify(validBody()) + ' '.repeat(16 * 1024);
    const res = await call(big, {}, { raw: true });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^the body has \d+ bytes; at most 16384 are accepted$/);
    expect(metrics[0]).toMatchObject({ Reason: 'BodyTooLarge' });
  });

  test('16 KiB counts bytes, not characters', async () => {
    const body = validBody({ sensors: { FILE_INTEGRITY: { state: 'FAILED', message: 'é'.repeat(200) } } });
    const padded = JSON.stringify(body).padEnd(16 * 1024 - 200, ' '); // 16184 characters, 16384 bytes
    expect(Buffer.byteLength(padded)).toBe(16 * 1024);
    expect((await call(padded, {}, { raw: true })).status).toBe(200);
    expect((await call(`${padded} `, {}, { raw: true })).status).toBe(400);
  });
});
