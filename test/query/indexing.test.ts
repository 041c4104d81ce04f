import { describe, expect, it } from 'vitest';
import { REPLICA_INDEXING_POLICY } from '../../infra/constructs/cosmos';
import { parseQuery, resolvePath, type Expr, type PathNode } from '../../functions/src/query';
import { MICROSOFT_EXAMPLES } from '../fixtures/query/microsoftExamples';

/**
 * Cosmos DB index paths: `/a/b/?` indexes the scalar at a/b, `/a/*` everything below a; the most specific
 * matching path decides (Microsoft Learn, "Indexing policies in Azure Cosmos DB": precedence of included
 * and excluded paths).
 */
function indexed(segments: string[]): boolean {
  const matches = (pattern: string) => {
    const parts = pattern.split('/').slice(1).map((p) => p.replace(/^"(.*)"$/, '$1'));
    const last = parts.pop()!;
    if (last === '?') return parts.length === segments.length && parts.every((p, i) => p === segments[i]);
    return parts.length <= segments.length && parts.every((p, i) => p === segments[i]);
  };
  const specificity = (p: string) => p.split('/').length + (p.endsWith('?') ? 0.5 : 0);
  const inc = REPLICA_INDEXING_POLICY.includedPath.filter(matches).map(specificity);
  const exc = REPLICA_INDEXING_POLICY.excludedPath.filter(matches).map(specificity);
  return inc.length > 0 && Math.max(...inc) > Math.max(0, ...exc);
}

function paths(e: Expr | undefined, out: PathNode[] = []): PathNode[] {
  if (!e) return out;
  if (e.kind === 'path') out.push(e);
  for (const child of Object.values(e)) {
    if (Array.isArray(child)) child.forEach((c) => c && typeof c === 'object' && 'kind' in c && paths(c as Expr, out));
    else if (child && typeof child === 'object' && 'kind' in child) paths(child as Expr, out);
  }
  return out;
}

describe('the container\'s indexing policy serves the documented queries', () => {
  it('indexes the live-twin and collection predicates every query carries', () => {
    expect(indexed(['deleted'])).toBe(true);
    expect(indexed(['moduleId'])).toBe(true);
  });

  it('indexes every path Microsoft\'s examples filter or group on', () => {
    let checked = 0;
    for (const ex of MICROSOFT_EXAMPLES.filter((e) => !e.expect)) {
      const ast = parseQuery(ex.query);
      const collection = ast.from.name.toLowerCase() === 'devices.modules' ? 'devices.modules' : 'devices';
      for (const p of [...paths(ast.where), ...(ast.groupBy ?? [])]) {
        expect(indexed(resolvePath(p, collection)), `${ex.query}: ${p.segments.join('.')}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('leaves $metadata and the replica bookkeeping out', () => {
    expect(indexed(['properties', 'reported', '$metadata', 'fw', '$lastUpdated'])).toBe(false);
    expect(indexed(['replica', 'syncedAt'])).toBe(false);
    expect(indexed(['properties', 'reported', '$version'])).toBe(true);
  });
});
