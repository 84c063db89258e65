/*
 * The EventBridge pattern semantics the IMDS rules rely on, to test the patterns against
 * CloudTrail records offline: fields ANDed, `$or`, leaf arrays matched against a value or any
 * element of an array, arrays of objects looked into element by element, `exists`, `prefix`,
 * `wildcard`, and `anything-but` (a value, a list, or prefix / suffix / wildcard) — which, like
 * every matcher but `exists: false`, needs the field to be there.
 * (Amazon EventBridge user guide, "Content filtering in event patterns".)
 */
type Json = unknown;

const wildcard = (pattern: string, value: string) =>
  new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(value);

function leafMatches(matcher: Json, value: Json): boolean {
  if (matcher === null || typeof matcher !== 'object') return matcher === value;
  const m = matcher as Record<string, Json>;
  if ('prefix' in m) return typeof value === 'string' && value.startsWith(m.prefix as string);
  if ('wildcard' in m) return typeof value === 'string' && wildcard(m.wildcard as string, value);
  if ('anything-but' in m) {
    const but = m['anything-but'];
    if (Array.isArray(but)) return !but.includes(value);
    if (but !== null && typeof but === 'object') {
      const b = but as Record<string, string>;
      if (typeof value !== 'string') return true;
      if ('prefix' in b) return !value.startsWith(b.prefix);
      if ('suffix' in b) return !value.endsWith(b.suffix);
      if ('wildcard' in b) return !wildcard(b.wildcard, value);
      throw new Error(`unsupported anything-but ${JSON.stringify(but)}`);
    }
    return value !== but;
  }
  throw new Error(`unsupported matcher ${JSON.stringify(matcher)}`);
}

/** The values under `key` of each node, arrays flattened. */
function children(nodes: Json[], key: string): Json[] {
  return nodes.flatMap((n) => (n !== null && typeof n === 'object' && !Array.isArray(n) && key in (n as object) ? [(n as Record<string, Json>)[key]] : []))
    .flatMap((v) => (Array.isArray(v) ? v : [v]));
}

function matchesAt(nodes: Json[], pattern: Record<string, Json>): boolean {
  return Object.entries(pattern).every(([key, sub]) => {
    if (key === '$or') return (sub as Array<Record<string, Json>>).some((alternative) => matchesAt(nodes, alternative));
    const values = children(nodes, key);
    if (Array.isArray(sub)) {
      return sub.some((matcher) => {
        if (matcher !== null && typeof matcher === 'object' && 'exists' in (matcher as object)) {
          return (matcher as { exists: boolean }).exists === (values.length > 0);
        }
        return values.some((v) => leafMatches(matcher, v));
      });
    }
    return values.length > 0 && matchesAt(values, sub as Record<string, Json>);
  });
}

/** Whether the event matches the pattern, as EventBridge decides it for the features above. */
export function eventMatches(pattern: Record<string, Json>, event: Record<string, Json>): boolean {
  return matchesAt([event], pattern);
}
