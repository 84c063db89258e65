import { SchemaNode } from './heartbeat-schema';

/**
 * Checks a parsed JSON value against the schema subset. Returns the first problem as a
 * sentence naming the field, or undefined when the value is valid.
 *
 * Property lookups use own properties only, so keys like `__proto__` or `constructor`
 * are unknown fields like any other, never a path into Object.prototype.
 */
export function validate(schema: SchemaNode, value: unknown, path = 'body'): string | undefined {
  if (schema.type === 'string') return validateString(schema, value, path);

  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `${path} must be an object`;
  }
  const properties = schema.properties ?? {};
  for (const key of Object.keys(value)) {
    if (!Object.prototype.hasOwnProperty.call(properties, key)) {
      return `${path} has an unknown field ${JSON.stringify(key.slice(0, 64))}`;
    }
  }
  for (const key of schema.required ?? []) {
    if (!Object.prototype.hasOwnProperty.call(value, key)) {
      return `${path}.${key} is required`;
    }
  }
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const problem = validate(properties[key], child, `${path}.${key}`);
    if (problem) return problem;
  }
  return undefined;
}

function validateString(schema: SchemaNode, value: unknown, path: string): string | undefined {
  if (typeof value !== 'string') return `${path} must be a string`;
  if (schema.enum && !schema.enum.includes(value)) {
    return `${path} must be one of ${schema.enum.join(', ')}`;
  }
  if (schema.minLength !== undefined && value.length < schema.minLength) {
    return `${path} must have at least ${schema.minLength} character(s)`;
  }
  if (schema.maxLength !== undefined && value.length > schema.maxLength) {
    return `${path} must have at most ${schema.maxLength} characters`;
  }
  if (schema.pattern && !compiled(schema.pattern).test(value)) {
    return `${path} must match ${schema.pattern}`;
  }
  return undefined;
}

const patterns = new Map<string, RegExp>();
function compiled(pattern: string): RegExp {
  let re = patterns.get(pattern);
  if (!re) {
    re = new RegExp(pattern);
    patterns.set(pattern, re);
  }
  return re;
}
