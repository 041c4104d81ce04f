import type { Container } from '@azure/cosmos';
import { describe, expect, it } from 'vitest';
import { CosmosTwinStore } from '../../functions/src/adapters/cosmosStore';
import type { TwinDoc } from '../../functions/src/sync/types';

/**
 * Per-operation throttling inside a bulk response cannot be produced by the local server (it never
 * throttles). This stand-in for `container.items.bulk` models the documented behaviour instead
 * (learn.microsoft.com "Bulk operations in Azure Cosmos DB": each operation of a bulk request has its
 * own status code; a throttled one answers 429 with a retry-after, and is the caller's to resend).
 */
function bulkStandIn(script: ((ops: { id?: string; resourceBody: { id: string } }[]) => { statusCode: number; eTag?: string; retryAfterMilliseconds?: number }[])[]) {
  const calls: string[][] = [];
  const container = {
    items: {
      bulk: async (ops: { id?: string; resourceBody: { id: string } }[], options: { continueOnError?: boolean }) => {
        expect(options.continueOnError).toBe(true);
        calls.push(ops.map((o) => o.resourceBody.id));
        const step = script[Math.min(calls.length - 1, script.length - 1)];
        return step(ops);
      },
    },
  } as unknown as Container;
  return { store: new CosmosTwinStore(container), calls };
}

const doc = (id: string): TwinDoc => ({ id, deviceId: id, version: 1, replica: {} });

describe('CosmosTwinStore.writeMany', () => {
  it('re-sends only the operations the bulk response throttled, after their retry-after', async () => {
    const { store, calls } = bulkStandIn([
      (ops) => ops.map((o) => (o.resourceBody.id === 'b' ? { statusCode: 429, retryAfterMilliseconds: 20 } : { statusCode: 201, eTag: `"${o.resourceBody.id}1"` })),
      (ops) => ops.map((o) => ({ statusCode: 200, eTag: `"${o.resourceBody.id}2"` })),
    ]);
    const started = Date.now();
    const results = await store.writeMany([{ doc: doc('a') }, { doc: doc('b'), etag: '"b0"' }, { doc: doc('c') }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    expect(calls).toEqual([['a', 'b', 'c'], ['b']]);
    expect(results.map((r) => ('stored' in r ? r.stored.etag : r.error.kind))).toEqual(['"a1"', '"b2"', '"c1"']);
  });

  it('maps each operation\'s status: 412/409/404 conflict, 413 rejected, throttled past the retries transient', async () => {
    const statuses: Record<string, number> = { p: 412, c: 409, n: 404, big: 413, hot: 429, ok: 200 };
    const { store, calls } = bulkStandIn([(ops) => ops.map((o) => ({ statusCode: statuses[o.resourceBody.id], eTag: '"e"', retryAfterMilliseconds: 1 }))]);
    const results = await store.writeMany(Object.keys(statuses).map((id) => ({ doc: doc(id), etag: '"x"' })));
    expect(results.map((r) => ('stored' in r ? 'stored' : `${r.error.kind}:${r.error.status}`))).toEqual([
      'conflict:412', 'conflict:409', 'conflict:404', 'rejected:413', 'transient:429', 'stored',
    ]);
    expect(calls.length).toBe(6); // the first request and 5 re-sends of the throttled operation
    expect(calls.slice(1).every((c) => c.length === 1 && c[0] === 'hot')).toBe(true);
  });

  it('reports every operation as transient when the bulk request itself fails', async () => {
    const container = { items: { bulk: async () => { throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }); } } } as unknown as Container;
    const results = await new CosmosTwinStore(container).writeMany([{ doc: doc('a') }, { doc: doc('b'), etag: '"1"' }]);
    expect(results.map((r) => ('error' in r ? r.error.kind : 'stored'))).toEqual(['transient', 'transient']);
  });
});
