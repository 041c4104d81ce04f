import type { Container, OperationInput, OperationResponse } from '@azure/cosmos';
import { backoffDelay, sleep } from '../sync/backoff';
import { bulkRetryAfterMs, forgetFailedRoutingMap } from './cosmosInternals';
import { StoreError, type StoredDoc, type TwinStore, type WriteOp, type WriteResult } from '../sync/ports';
import type { TwinDoc } from '../sync/types';

/** Rounds of re-sending operations that a bulk response throttled (429) before giving up on them. */
const BULK_THROTTLE_RETRIES = 5;

const SYSTEM_FIELDS = ['_rid', '_self', '_etag', '_attachments', '_ts', '_lsn'];

/** The engine's store on a Cosmos DB container partitioned by /deviceId (the @azure/cosmos SDK). */
export class CosmosTwinStore implements TwinStore {
  constructor(readonly container: Container) {}

  async read(id: string, deviceId: string): Promise<StoredDoc | undefined> {
    try {
      const r = await this.container.item(id, deviceId).read<TwinDoc>();
      if (r.statusCode === 404 || !r.resource) return undefined;
      return { doc: stripSystemFields(r.resource), etag: r.etag };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw toStoreError(err);
    }
  }

  async create(doc: TwinDoc): Promise<StoredDoc> {
    try {
      const r = await this.container.items.create(doc, { disableAutomaticIdGeneration: true });
      return { doc, etag: r.etag };
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async replace(doc: TwinDoc, etag: string): Promise<StoredDoc> {
    try {
      const r = await this.container.item(doc.id, doc.deviceId).replace(doc, { accessCondition: { type: 'IfMatch', condition: etag } });
      return { doc, etag: r.etag };
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /**
   * All of a batch's guarded writes as one bulk call: one request per partition key range (at most 100
   * operations each), each operation with its own ETag condition and status. `items.bulk` rather than
   * `executeBulkOperations`: in SDK 4.9 the latter waits on a 1-second timer before sending a partial
   * batch (measured: ≥ 1,000 ms per call against 3 ms), which would cap a partition at ~100 events/s.
   * A 429 on the whole request is not retried by the SDK's bulk call (measured with 4.9): it throws, and the
   * operations are then written one by one (see below); a 429 on single operations comes back
   * as their status, so those operations are sent again here, a bounded number of times, after the
   * retry-after the service asked for. What is still throttled is left to the engine (transient).
   */
  async writeMany(ops: readonly WriteOp[]): Promise<WriteResult[]> {
    const results = new Array<WriteResult>(ops.length);
    let pending = ops.map((op, index) => ({ op, index }));
    for (let attempt = 0; pending.length > 0; attempt++) {
      const input: OperationInput[] = pending.map(({ op }) =>
        op.etag === undefined
          ? { operationType: 'Create', partitionKey: op.doc.deviceId, resourceBody: op.doc as never }
          : { operationType: 'Replace', partitionKey: op.doc.deviceId, id: op.doc.id, resourceBody: op.doc as never, ifMatch: op.etag },
      );
      let responses: OperationResponse[];
      try {
        responses = await this.container.items.bulk(input, { continueOnError: true });
      } catch {
        // SDK 4.9's bulk call throws where single writes recover: it does not retry a 429 on the whole
        // request, and it caches a failed partition-key-range lookup per client and container (after a
        // network error on the first bulk call every later one fails the same way). Send what is pending one
        // by one, with the SDK's own retries (ETag-guarded, so a partly applied bulk is safe to resend).
        forgetFailedRoutingMap(this.container);
        await Promise.all(pending.map(async ({ op, index }) => {
          try {
            results[index] = { stored: op.etag === undefined ? await this.create(op.doc) : await this.replace(op.doc, op.etag) };
          } catch (e) {
            results[index] = { error: e instanceof StoreError ? e : toStoreError(e) };
          }
        }));
        return results;
      }
      const throttled: typeof pending = [];
      let waitMs = 0;
      pending.forEach(({ op, index }, i) => {
        const r = responses[i];
        const status = r?.statusCode;
        if (typeof status === 'number' && status >= 200 && status < 300) {
          results[index] = { stored: { doc: op.doc, etag: r.eTag ?? '' } };
        } else if (status === 429 && attempt < BULK_THROTTLE_RETRIES) {
          throttled.push({ op, index });
          waitMs = Math.max(waitMs, bulkRetryAfterMs(r) ?? backoffDelay(attempt, { baseMs: 100, maxMs: 5_000 }));
        } else {
          results[index] = { error: toStoreError({ code: status, message: `bulk ${input[i].operationType} of ${op.doc.id} answered ${status ?? 'nothing'}` }) };
        }
      });
      if (throttled.length > 0) await sleep(Math.min(waitMs, 5_000));
      pending = throttled;
    }
    return results;
  }

  async listModuleIds(deviceId: string): Promise<string[]> {
    try {
      const { resources } = await this.container.items
        .query<{ id: string }>(
          { query: 'SELECT c.id FROM c WHERE c.deviceId = @deviceId AND IS_DEFINED(c.moduleId)', parameters: [{ name: '@deviceId', value: deviceId }] },
          { partitionKey: deviceId },
        )
        .fetchAll();
      return resources.map((r) => r.id);
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

export function stripSystemFields<T extends object>(resource: T): T {
  const copy = { ...resource } as Record<string, unknown>;
  for (const f of SYSTEM_FIELDS) delete copy[f];
  return copy as T;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** 409/412/404 → conflict; 400/413 → rejected; everything else (429 after SDK retries, 5xx, 401/403, network) → transient. */
export function toStoreError(err: unknown): StoreError {
  const status = statusOf(err);
  const message = `${status ?? 'network'}: ${(err as Error)?.message ?? String(err)}`.slice(0, 500);
  if (status === 409 || status === 412 || status === 404) return new StoreError('conflict', message, status);
  if (status === 400 || status === 413) return new StoreError('rejected', message, status);
  return new StoreError('transient', message, status);
}
