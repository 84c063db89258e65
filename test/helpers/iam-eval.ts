/*
 * A small model of IAM's identity-policy evaluation, for tests that must prove what a role
 * can and cannot do: Allow statements only (the library writes no Deny into identity
 * policies), actions and resources with `*` / `?` wildcards, and the condition operators
 * the library uses. An operator it does not model throws, so a test never passes by
 * ignoring a condition.
 */

/** One request: the action, the resource and the request context's keys. */
export interface IamRequest {
  readonly action: string;
  readonly resource: string;
  readonly context: Record<string, string | undefined>;
}

/** A statement whose intrinsics are already resolved to strings. */
export interface ResolvedStatement {
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: string | string[];
  readonly Resource: string | string[];
  readonly Condition?: Record<string, Record<string, string | string[]>>;
}

const glob = (pattern: string, value: string, caseInsensitive = false): boolean =>
  new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, caseInsensitive ? 'i' : '').test(value);

function conditionHolds(operator: string, key: string, expected: string[], context: IamRequest['context']): boolean {
  const value = context[key];
  switch (operator) {
    case 'StringEquals':
    case 'ArnEquals':
      return value !== undefined && expected.includes(value);
    case 'StringLike':
    case 'ArnLike':
      return value !== undefined && expected.some((p) => glob(p, value));
    case 'StringNotEquals':
      return value === undefined || !expected.includes(value);
    case 'Null':
      return String(value === undefined) === expected[0];
    default:
      throw new Error(`condition operator ${operator} is not modelled`);
  }
}

/** True when the statement applies to the request (action, resource and every condition). */
export function statementMatches(statement: ResolvedStatement, request: IamRequest): boolean {
  const actions = [statement.Action].flat();
  const resources = [statement.Resource].flat();
  if (!actions.some((a) => glob(a, request.action, true))) return false;
  if (!resources.some((r) => glob(r, request.resource))) return false;
  return Object.entries(statement.Condition ?? {}).every(([operator, keys]) =>
    Object.entries(keys).every(([key, expected]) => conditionHolds(operator, key, [expected].flat(), request.context)));
}

/** IAM's answer for identity policies: allowed when an Allow matches and no Deny does. */
export function allowed(statements: ResolvedStatement[], request: IamRequest): boolean {
  const matching = statements.filter((s) => statementMatches(s, request));
  return matching.some((s) => s.Effect === 'Allow') && !matching.some((s) => s.Effect === 'Deny');
}

/**
 * Resolves a synthesized template's intrinsics to plain strings: `Ref` of a pseudo
 * parameter to its value, of a resource to its logical id; `Fn::GetAtt [id, Arn]` to a
 * stable ARN built from the logical id (`arnOf`); `Fn::Join` by joining.
 */
export function resolver(env: { account: string; region: string }) {
  const pseudo: Record<string, string> = {
    'AWS::Partition': 'aws', 'AWS::Region': env.region, 'AWS::AccountId': env.account, 'AWS::URLSuffix': 'amazonaws.com',
  };
  const arnOf = (logicalId: string, type?: string): string => {
    switch (type) {
      case 'AWS::KMS::Key': return `arn:aws:kms:${env.region}:${env.account}:key/${logicalId}`;
      case 'AWS::S3::Bucket': return `arn:aws:s3:::${logicalId.toLowerCase()}`;
      default: return `arn:aws:test:${env.region}:${env.account}:${logicalId}`;
    }
  };
  return (template: { Resources: Record<string, { Type: string }> }) => {
    const resolve = (value: unknown): any => {
      if (Array.isArray(value)) return value.map(resolve);
      if (value === null || typeof value !== 'object') return value;
      const obj = value as Record<string, unknown>;
      if ('Ref' in obj) return pseudo[obj.Ref as string] ?? obj.Ref;
      if ('Fn::GetAtt' in obj) {
        const [id, attribute] = obj['Fn::GetAtt'] as [string, string];
        if (attribute !== 'Arn') throw new Error(`Fn::GetAtt ${id}.${attribute} is not modelled`);
        return arnOf(id, template.Resources[id]?.Type);
      }
      if ('Fn::Join' in obj) {
        const [sep, parts] = obj['Fn::Join'] as [string, unknown[]];
        return resolve(parts).join(sep);
      }
      return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, resolve(v)]));
    };
    return { resolve, arnOf: (logicalId: string) => arnOf(logicalId, template.Resources[logicalId]?.Type) };
  };
}
