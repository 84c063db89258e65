/*
 * Custom resource that makes sure the account and Region have the table of the shared
 * ModifyInstanceMetadataOptions limiter: whichever Imdsv2Enforcement deploys first creates
 * it, every later one (in this stack or another) finds it. It belongs to no stack, so Delete
 * leaves it: another enforcement may still pace itself by it. Invoked by CloudFormation
 * directly; it always answers.
 */
import {
  CreateTableCommand, DescribeTableCommand, DynamoDBClient, type TableDescription,
} from '@aws-sdk/client-dynamodb';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { CfnOutcome, Fetch, sendResponse } from './shared/cfn-response';
import { LIMITER_KEY_ATTRIBUTE } from './shared/dynamodb-throttle-store';
import { Clock, describeFailure, errorCode, systemClock, withRetries } from './shared/throttle';

const dynamodb = new DynamoDBClient({ maxAttempts: 1 });

export interface Dependencies {
  readonly dynamodb: Pick<DynamoDBClient, 'send'>;
  readonly fetch: Fetch;
  readonly clock: Clock;
}

/** DynamoDB table names: 3 to 255 of these characters. */
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/;
/** How long to wait for a new table to become ACTIVE (CloudFormation waits 5 minutes for the answer). */
const ACTIVE_WITHIN_MS = 3 * 60_000;

async function describeTable(deps: Dependencies, tableName: string): Promise<TableDescription | undefined> {
  try {
    const out = await withRetries(() => deps.dynamodb.send(new DescribeTableCommand({ TableName: tableName })), { clock: deps.clock, attempts: 5 });
    return out.Table;
  } catch (err) {
    if (errorCode(err) === 'ResourceNotFoundException') return undefined;
    throw new Error(describeFailure('dynamodb:DescribeTable', err), { cause: err });
  }
}

async function createTable(deps: Dependencies, tableName: string, stackId: string): Promise<void> {
  try {
    await withRetries(() => deps.dynamodb.send(new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: LIMITER_KEY_ATTRIBUTE, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: LIMITER_KEY_ATTRIBUTE, KeyType: 'HASH' }],
      // Shared by every enforcement of the account and Region, owned by none of their stacks.
      DeletionProtectionEnabled: true,
      Tags: [
        { Key: 'cdk-agent-fleet:purpose', Value: 'Shared limiter of ec2:ModifyInstanceMetadataOptions for every Imdsv2Enforcement in this account and Region' },
        { Key: 'cdk-agent-fleet:created-by-stack', Value: stackId.slice(0, 256) },
      ],
    })), { clock: deps.clock, attempts: 5 });
  } catch (err) {
    // Another enforcement deploying at the same moment created it first.
    if (errorCode(err) === 'ResourceInUseException') return;
    throw new Error(describeFailure('dynamodb:CreateTable', err), { cause: err });
  }
}

export async function apply(event: CloudFormationCustomResourceEvent, deps: Dependencies): Promise<CfnOutcome> {
  const tableName = String(event.ResourceProperties.TableName ?? '');
  if (event.RequestType === 'Delete') {
    return { status: 'SUCCESS', physicalResourceId: event.PhysicalResourceId, data: { TableName: tableName } };
  }
  if (!TABLE_NAME.test(tableName)) {
    throw new Error(`TableName: got ${JSON.stringify(event.ResourceProperties.TableName)}; allowed: 3 to 255 letters, digits and _.-`);
  }
  let table = await describeTable(deps, tableName);
  let created = 'found';
  if (!table) {
    await createTable(deps, tableName, event.StackId);
    created = 'created';
  }
  const until = deps.clock.now() + ACTIVE_WITHIN_MS;
  for (table = await describeTable(deps, tableName); table?.TableStatus !== 'ACTIVE'; table = await describeTable(deps, tableName)) {
    if (deps.clock.now() >= until) {
      throw new Error(`table ${tableName} is ${table?.TableStatus ?? 'still missing'} after ${ACTIVE_WITHIN_MS / 60_000} minutes; retry the deployment`);
    }
    await deps.clock.sleep(2_000);
  }
  const key = table.KeySchema ?? [];
  if (key.length !== 1 || key[0].AttributeName !== LIMITER_KEY_ATTRIBUTE || key[0].KeyType !== 'HASH') {
    throw new Error(`table ${tableName} exists with another key schema (${JSON.stringify(key)}); it must have only the partition key `
      + `${LIMITER_KEY_ATTRIBUTE} (string). Rename or delete that table: the name is reserved for the shared IMDS limiter`);
  }
  return { status: 'SUCCESS', physicalResourceId: tableName, data: { TableName: tableName, TableArn: table.TableArn ?? '', Table: created } };
}

/** Always answers CloudFormation, also when the request is malformed or a call fails. */
export async function handle(event: CloudFormationCustomResourceEvent, context: Pick<Context, 'logStreamName'>, deps: Dependencies): Promise<CfnOutcome> {
  let outcome: CfnOutcome;
  try {
    outcome = await apply(event, deps);
  } catch (err) {
    outcome = {
      status: 'FAILED',
      reason: `${event.RequestType} failed: ${err instanceof Error ? err.message : String(err)} (log stream ${context.logStreamName})`,
      physicalResourceId: 'PhysicalResourceId' in event ? event.PhysicalResourceId : 'limiter-table|create-failed',
    };
  }
  console.log(JSON.stringify({
    level: outcome.status === 'SUCCESS' ? 'INFO' : 'ERROR',
    message: `IMDS limiter table ${event.RequestType} ${outcome.status}`,
    physicalResourceId: outcome.physicalResourceId, reason: outcome.reason, data: outcome.data,
  }));
  await sendResponse(event, outcome, deps.fetch);
  return outcome;
}

export async function handler(event: CloudFormationCustomResourceEvent, context: Context): Promise<void> {
  await handle(event, context, { dynamodb, fetch: (url, init) => fetch(url, init), clock: systemClock });
}
