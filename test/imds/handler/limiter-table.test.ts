import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { handle } from '../../../lib/imds/handler/limiter-table';
import { awsError, instantClock } from './fleet';

const dynamodb = mockClient(DynamoDBClient);
const TABLE = 'cdk-agent-fleet-imds-modify-throttle';
const BASE = {
  ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:f', ResponseURL: 'https://cfn-response.example/abc',
  StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/S/1', RequestId: 'req-1', LogicalResourceId: 'Throttle',
  ResourceType: 'Custom::ImdsModifyThrottleTable',
};
const create = (tableName: unknown = TABLE): CloudFormationCustomResourceEvent =>
  ({ ...BASE, RequestType: 'Create', ResourceProperties: { ServiceToken: BASE.ServiceToken, TableName: tableName as string } });
const context = { logStreamName: 'log-stream' };
const active = { Table: { TableName: TABLE, TableStatus: 'ACTIVE' as const, TableArn: `arn:aws:dynamodb:eu-west-1:111122223333:table/${TABLE}`,
  KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' as const }] } };

let responses: any[];
const deps = () => ({
  dynamodb: dynamodb as unknown as DynamoDBClient,
  clock: instantClock(),
  fetch: async (_url: string, init: { body: string }) => { responses.push(JSON.parse(init.body)); return { ok: true, status: 200 }; },
});

beforeEach(() => {
  dynamodb.reset();
  responses = [];
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

describe('the shared limiter table custom resource', () => {
  test('creates the table when it is missing, on demand, deletion-protected, and waits until it is ACTIVE', async () => {
    dynamodb.on(DescribeTableCommand)
      .rejectsOnce(awsError('ResourceNotFoundException'))
      .resolvesOnce({ Table: { ...active.Table, TableStatus: 'CREATING' } })
      .resolves(active);
    dynamodb.on(CreateTableCommand).resolves({});

    const outcome = await handle(create(), context, deps());

    expect(dynamodb.commandCalls(CreateTableCommand)[0].args[0].input).toMatchObject({
      TableName: TABLE, BillingMode: 'PAY_PER_REQUEST', DeletionProtectionEnabled: true,
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    });
    expect(outcome).toMatchObject({ status: 'SUCCESS', physicalResourceId: TABLE, data: { TableName: TABLE, Table: 'created' } });
    expect(responses[0]).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: TABLE });
  });

  test('finds the table another enforcement created and changes nothing', async () => {
    dynamodb.on(DescribeTableCommand).resolves(active);
    const outcome = await handle(create(), context, deps());
    expect(dynamodb.commandCalls(CreateTableCommand)).toHaveLength(0);
    expect(outcome).toMatchObject({ status: 'SUCCESS', data: { Table: 'found' } });
  });

  test('two enforcements deploying at once: the one that loses the race waits for the winner\'s table', async () => {
    dynamodb.on(DescribeTableCommand).rejectsOnce(awsError('ResourceNotFoundException')).resolves(active);
    dynamodb.on(CreateTableCommand).rejects(awsError('ResourceInUseException', `Table already exists: ${TABLE}`));
    expect(await handle(create(), context, deps())).toMatchObject({ status: 'SUCCESS' });
  });

  test('fails with a reason when the name is taken by a table of another shape, or CreateTable is denied', async () => {
    dynamodb.on(DescribeTableCommand).resolves({ Table: { ...active.Table, KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }] } });
    expect(await handle(create(), context, deps())).toMatchObject({ status: 'FAILED', reason: expect.stringContaining('exists with another key schema') });

    dynamodb.reset();
    dynamodb.on(DescribeTableCommand).rejects(awsError('ResourceNotFoundException'));
    dynamodb.on(CreateTableCommand).rejects(awsError('AccessDeniedException', 'not authorized to perform: dynamodb:CreateTable'));
    expect(await handle(create(), context, deps())).toMatchObject({
      status: 'FAILED', physicalResourceId: 'limiter-table|create-failed', reason: expect.stringMatching(/^Create failed: dynamodb:CreateTable failed with AccessDeniedException/),
    });
  });

  test('fails on a malformed table name without calling DynamoDB', async () => {
    expect(await handle(create('no'), context, deps())).toMatchObject({ status: 'FAILED', reason: expect.stringContaining('TableName: got "no"') });
    expect(dynamodb.calls()).toHaveLength(0);
  });

  test('Delete leaves the table: other enforcements of the account and Region may still use it', async () => {
    const outcome = await handle({ ...BASE, RequestType: 'Delete', PhysicalResourceId: TABLE, ResourceProperties: { ServiceToken: BASE.ServiceToken, TableName: TABLE } },
      context, deps());
    expect(outcome).toMatchObject({ status: 'SUCCESS', physicalResourceId: TABLE });
    expect(dynamodb.calls()).toHaveLength(0);
  });
});
