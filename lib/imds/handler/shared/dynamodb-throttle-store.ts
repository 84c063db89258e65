/*
 * The ThrottleStore on DynamoDB: one item per throttled API in a table shared by the account
 * and Region. Every operation is a single conditional UpdateItem; none reads first.
 */
import { DynamoDBClient, UpdateItemCommand, type AttributeValue, type UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { MODIFY_BUCKET } from './enforcer';
import { RateLimiter, SharedTokenBucket, type ThrottleRecord, type ThrottleStore } from './shared-limiter';
import { AdaptiveTokenBucket, Clock, errorCode } from './throttle';

/** The partition key attribute of the limiter table. */
export const LIMITER_KEY_ATTRIBUTE = 'pk';
/** The item of EC2's ModifyInstanceMetadataOptions bucket (IAM narrows access to it with dynamodb:LeadingKeys). */
export const MODIFY_METADATA_OPTIONS_ITEM = 'ec2:ModifyInstanceMetadataOptions';

type Update = Pick<UpdateItemCommandInput, 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>;

export interface DynamoDbThrottleStoreOptions {
  readonly tableName: string;
  /** @default MODIFY_METADATA_OPTIONS_ITEM */
  readonly item?: string;
  /** @default - a client that does not retry on its own (the limiter does) */
  readonly client?: Pick<DynamoDBClient, 'send'>;
}

const NAMES = { '#tat': 'tat', '#rate': 'rate', '#throttledAt': 'throttledAt' };
const num = (n: number): AttributeValue => ({ N: String(n) });

export class DynamoDbThrottleStore implements ThrottleStore {
  private readonly client: Pick<DynamoDBClient, 'send'>;
  private readonly key: Record<string, AttributeValue>;

  constructor(private readonly options: DynamoDbThrottleStoreOptions) {
    this.client = options.client ?? new DynamoDBClient({ maxAttempts: 1 });
    this.key = { [LIMITER_KEY_ATTRIBUTE]: { S: options.item ?? MODIFY_METADATA_OPTIONS_ITEM } };
  }

  public advance(interval: number, now: number, horizon: number): Promise<ThrottleRecord | undefined> {
    return this.update({
      UpdateExpression: 'SET #tat = #tat + :interval',
      ConditionExpression: '#tat BETWEEN :now AND :horizon',
      ExpressionAttributeNames: { '#tat': NAMES['#tat'] },
      ExpressionAttributeValues: { ':interval': num(interval), ':now': num(now), ':horizon': num(horizon) },
    });
  }

  public restart(interval: number, now: number, horizon: number): Promise<ThrottleRecord | undefined> {
    return this.update({
      UpdateExpression: 'SET #tat = :tat',
      ConditionExpression: 'attribute_not_exists(#tat) OR #tat < :now OR #tat > :horizon',
      ExpressionAttributeNames: { '#tat': NAMES['#tat'] },
      ExpressionAttributeValues: { ':tat': num(now + interval), ':now': num(now), ':horizon': num(horizon) },
    });
  }

  public async pushBack(at: number): Promise<void> {
    await this.update({
      UpdateExpression: 'SET #tat = :at',
      ConditionExpression: 'attribute_not_exists(#tat) OR #tat < :at',
      ExpressionAttributeNames: { '#tat': NAMES['#tat'] },
      ExpressionAttributeValues: { ':at': num(at) },
    });
  }

  public async slowDown(rate: number, now: number, since: number): Promise<boolean> {
    const written = await this.update({
      UpdateExpression: 'SET #rate = :rate, #throttledAt = :now',
      ConditionExpression: 'attribute_not_exists(#throttledAt) OR #throttledAt < :since',
      ExpressionAttributeNames: { '#rate': NAMES['#rate'], '#throttledAt': NAMES['#throttledAt'] },
      ExpressionAttributeValues: { ':rate': num(rate), ':now': num(now), ':since': num(since) },
    });
    return written !== undefined;
  }

  /** The item after the write, or undefined when the condition did not hold. */
  private async update(update: Update): Promise<ThrottleRecord | undefined> {
    try {
      const output = await this.client.send(new UpdateItemCommand({
        TableName: this.options.tableName, Key: this.key, ReturnValues: 'ALL_NEW', ...update,
      }));
      const a = output.Attributes ?? {};
      const read = (name: string) => (a[name]?.N !== undefined ? Number(a[name].N) : undefined);
      return { tat: read('tat') ?? 0, rate: read('rate'), throttledAt: read('throttledAt') };
    } catch (err) {
      if (errorCode(err) === 'ConditionalCheckFailedException') return undefined;
      throw err;
    }
  }
}

/**
 * The limiter of ModifyInstanceMetadataOptions the account and Region share, when the
 * construct named its table (`IMDS_LIMITER_TABLE`); undefined otherwise.
 */
export function sharedModifyLimiter(clock: Clock, env: NodeJS.ProcessEnv = process.env): SharedTokenBucket | undefined {
  const tableName = env.IMDS_LIMITER_TABLE;
  if (!tableName) return undefined;
  return new SharedTokenBucket({ ...MODIFY_BUCKET, clock, store: new DynamoDbThrottleStore({ tableName, client: sharedClient() }) });
}

/** The shared limiter, or else a bucket of this invocation's own. */
export function modifyLimiter(clock: Clock, env: NodeJS.ProcessEnv = process.env): RateLimiter {
  return sharedModifyLimiter(clock, env) ?? new AdaptiveTokenBucket({ ...MODIFY_BUCKET, clock });
}

let client: DynamoDBClient | undefined;
function sharedClient(): DynamoDBClient {
  client ??= new DynamoDBClient({ maxAttempts: 1 });
  return client;
}
