import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CosmosTwinStore } from '../../functions/src/adapters/cosmosStore';
import type { TwinDoc } from '../../functions/src/sync/types';
import { DATABASE, startLocalCosmos, type LocalCosmos } from '../../testkit/servers';
import { sleep } from '../../local/eventHub';
import { FaultProxy } from '../../local/faultProxy';
import { proxiedClient } from './harness';

// Found by the convergence test: @azure/cosmos 4.9 caches the promise of a container's partition key
// ranges per client; when the first items.bulk on a container fails on the network while fetching them,
// the rejection stays cached and every later bulk call on that client fails the same way, long after
// the endpoint is back. The Function keeps one client per process: its writes would fail until it recycles.
describe('CosmosTwinStore.writeMany after the endpoint was away during the first bulk call', () => {
  let cosmos: LocalCosmos;
  let proxy: FaultProxy;

  beforeAll(async () => {
    cosmos = await startLocalCosmos();
    await cosmos.client.database(DATABASE).containers.create({ id: 'bulk-recovery', partitionKey: { paths: ['/deviceId'] } });
    proxy = await new FaultProxy({ upstream: cosmos.endpoint }).start();
  });

  afterAll(async () => {
    await proxy?.close();
    await cosmos?.close();
  });

  const doc = (id: string): TwinDoc => ({ id, deviceId: id, version: 2, tags: {}, replica: {} });

  it('writes again once the endpoint is back', async () => {
    const client = proxiedClient(proxy);
    const store = new CosmosTwinStore(client.database(DATABASE).container('bulk-recovery'));
    await proxy.goDown();
    await sleep(20);
    const during = await store.writeMany([{ doc: doc('a') }]);
    expect('error' in during[0]).toBe(true);
    await proxy.comeBack();
    const after = await store.writeMany([{ doc: doc('b') }, { doc: doc('c') }]);
    expect(after.map((r) => ('stored' in r ? 'stored' : r.error.message))).toEqual(['stored', 'stored']);
    const { resource } = await cosmos.client.database(DATABASE).container('bulk-recovery').item('b', 'b').read();
    expect(resource?.id).toBe('b');
    // the failed range lookup is forgotten: the next batch travels in one bulk request again
    await sleep(5);
    const bulkBefore = cosmos.requests.byKind.bulk ?? 0;
    const writesBefore = cosmos.requests.byKind.write ?? 0;
    const again = await store.writeMany([{ doc: doc('d') }, { doc: doc('e') }]);
    expect(again.map((r) => ('stored' in r ? 'stored' : r.error.message))).toEqual(['stored', 'stored']);
    expect((cosmos.requests.byKind.bulk ?? 0) - bulkBefore).toBe(1);
    expect((cosmos.requests.byKind.write ?? 0) - writesBefore).toBe(0);
    client.dispose();
  });

  // SDK 4.9's items.bulk does not retry a 429 on the whole request (it throws "Bulk request errored with:
  // Request rate is large"), unlike single operations: the batch would fail and wait for the retry policy.
  it('gets the writes through when the whole bulk request is throttled', async () => {
    const client = proxiedClient(proxy);
    const store = new CosmosTwinStore(client.database(DATABASE).container('bulk-recovery'));
    await store.writeMany([{ doc: doc('warm') }]);
    const before = proxy.stats.throttled;
    proxy.throttleNext(1, 3);
    const results = await store.writeMany([{ doc: doc('t1') }, { doc: doc('t2') }]);
    expect(proxy.stats.throttled - before).toBe(1);
    expect(results.map((r) => ('stored' in r ? 'stored' : r.error.message))).toEqual(['stored', 'stored']);
    client.dispose();
  });

  it('re-sends the operations a bulk answer throttled (per-operation 429 through the fault proxy)', async () => {
    const client = proxiedClient(proxy);
    const store = new CosmosTwinStore(client.database(DATABASE).container('bulk-recovery'));
    const before = proxy.stats.throttledOps;
    proxy.throttleBulkOps(2, 3);
    const results = await store.writeMany([{ doc: doc('p') }, { doc: doc('q') }, { doc: doc('r') }]);
    expect(proxy.stats.throttledOps - before).toBe(2);
    expect(results.map((r) => ('stored' in r ? 'stored' : r.error.message))).toEqual(['stored', 'stored', 'stored']);
    const direct = cosmos.client.database(DATABASE).container('bulk-recovery');
    for (const id of ['p', 'q', 'r']) expect((await direct.item(id, id).read()).resource?.id).toBe(id);
    client.dispose();
  });
});
