import type { Container, OperationResponse } from '@azure/cosmos';

/**
 * The two places this project leans on what @azure/cosmos does not promise, each behind one function.
 * Both were read in the installed SDK (4.9.3); test/functions/cosmosInternals.test.ts pins that version and
 * checks both shapes against the local server, so an SDK upgrade fails there, loudly, before it silently
 * turns one of these into a no-op.
 */
export const COSMOS_SDK_READ = '4.9.3';

/**
 * The wait the service asks for on one throttled operation of a bulk answer. The service puts
 * `retryAfterMilliseconds` on each operation result (the .NET SDK's TransactionalBatchOperationResult.RetryAfter
 * reads the same field); @azure/cosmos 4.9 passes the results through (Items.bulk → response.result) but its
 * OperationResponse type does not declare the field.
 */
export function bulkRetryAfterMs(response: OperationResponse | undefined): number | undefined {
  const ms = Number((response as { retryAfterMilliseconds?: unknown } | undefined)?.retryAfterMilliseconds);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

type RoutingMaps = Record<string, Promise<unknown>>;

/** The SDK's per-client cache of partition-key-range lookups by container (`items.partitionKeyRangeCache`, private). */
export function routingMapCache(container: Container): RoutingMaps | undefined {
  const cache = (container.items as unknown as { partitionKeyRangeCache?: { collectionRoutingMapByCollectionId?: unknown } }).partitionKeyRangeCache;
  const byId = cache?.collectionRoutingMapByCollectionId;
  return byId !== null && typeof byId === 'object' ? (byId as RoutingMaps) : undefined;
}

/**
 * SDK 4.9 keeps a failed partition-key-range lookup as a rejected promise per client and container and
 * never looks again, so every later bulk call fails at once (routing/partitionKeyRangeCache.js
 * onCollectionRoutingMap). Fixed upstream by making the cache failure-safe: Azure/azure-sdk-for-js#39144
 * ("a transient failure no longer poisons later lookups"). Until the installed SDK has it, forget such a
 * promise, so that the next batch looks the ranges up again and goes back to bulk writes. Answers whether
 * the cache was found (when its shape changes, nothing is forgotten and writes keep going one by one).
 */
export function forgetFailedRoutingMap(container: Container): boolean {
  const byId = routingMapCache(container);
  if (!byId) return false;
  for (const [id, lookup] of Object.entries(byId)) {
    if (!(lookup instanceof Promise)) continue;
    lookup.then(
      () => undefined,
      () => {
        if (byId[id] === lookup) delete byId[id];
      },
    );
  }
  return true;
}
