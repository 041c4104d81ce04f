import type { Container } from '@azure/cosmos';
import { StoreError, type StoredDoc, type TwinStore } from '../sync/ports';
import type { TwinDoc } from '../sync/types';

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
