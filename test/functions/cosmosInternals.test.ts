import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Container, CosmosClient } from '@azure/cosmos';
import { bulkRetryAfterMs, COSMOS_SDK_READ, forgetFailedRoutingMap, routingMapCache } from '../../functions/src/adapters/cosmosInternals';
import { createCosmosClient } from '../../functions/src/runtime/build';
import { FaultProxy } from '../../local/faultProxy';
import { DATABASE, LOCAL_COSMOS_KEY, startLocalCosmos, type LocalCosmos } from '../../testkit/servers';

/**
 * The private parts of @azure/cosmos that adapters/cosmosInternals.ts leans on, checked against the installed
 * SDK and the local Cosmos-compatible server. The per-operation 429 comes from the fault proxy (local/faultProxy.ts),
 * which answers a bulk request as the service does when it throttles single operations (207, statusCode 429 and
 * retryAfterMilliseconds per operation): what is checked here is that the SDK hands that field through.
 */
let cosmos: LocalCosmos;
let proxy: FaultProxy;
let client: CosmosClient;
let container: Container;

beforeAll(async () => {
  cosmos = await startLocalCosmos();
  await cosmos.client.database(DATABASE).containers.create({ id: 'internals', partitionKey: { paths: ['/deviceId'] } });
  proxy = await new FaultProxy({ upstream: cosmos.endpoint }).start();
  client = createCosmosClient({ cosmosEndpoint: proxy.endpoint, cosmosKey: LOCAL_COSMOS_KEY });
  container = client.database(DATABASE).container('internals');
});
afterAll(async () => {
  client?.dispose();
  await proxy?.close();
  await cosmos?.close();
});

const create = (id: string) => ({ operationType: 'Create' as const, partitionKey: id, resourceBody: { id, deviceId: id } });

describe('@azure/cosmos internals (read at the installed version)', () => {
  it('the installed SDK is the version the internals were read in: on an upgrade, re-read them and move this pin', () => {
    const installed = (JSON.parse(readFileSync(new URL('../../node_modules/@azure/cosmos/package.json', import.meta.url), 'utf8')) as { version: string }).version;
    expect(installed, 'functions/src/adapters/cosmosInternals.ts was read against another @azure/cosmos').toBe(COSMOS_SDK_READ);
  });

  it('a throttled bulk operation carries the wait the service asked for', async () => {
    proxy.throttleBulkOps(1, 123);
    const [throttled] = await container.items.bulk([create('slow')], { continueOnError: true });
    expect(throttled.statusCode).toBe(429);
    expect(bulkRetryAfterMs(throttled)).toBe(123);
    const [ok] = await container.items.bulk([create('fast')], { continueOnError: true });
    expect(ok.statusCode).toBe(201);
    expect(bulkRetryAfterMs(ok)).toBeUndefined();
  });

  it('the partition-key-range cache is where it was read, and a failed lookup is forgotten', async () => {
    await container.items.bulk([create('warm')], { continueOnError: true });
    const byId = routingMapCache(container);
    expect(byId, 'items.partitionKeyRangeCache.collectionRoutingMapByCollectionId moved').toBeDefined();
    const ids = Object.keys(byId!);
    expect(ids.length).toBeGreaterThan(0);
    expect(byId![ids[0]]).toBeInstanceOf(Promise);

    // Poison the entry as a failed lookup does; the SDK would keep it (every bulk call fails at once).
    const failed = Promise.reject(new Error('lookup failed'));
    failed.catch(() => undefined);
    byId![ids[0]] = failed;
    await expect(container.items.bulk([create('poisoned')], { continueOnError: true })).rejects.toThrow(/lookup failed/);
    expect(forgetFailedRoutingMap(container)).toBe(true);
    await new Promise((r) => setTimeout(r, 0));
    expect(byId![ids[0]]).toBeUndefined();
    const [again] = await container.items.bulk([create('again')], { continueOnError: true });
    expect(again.statusCode).toBe(201);
  });
});
