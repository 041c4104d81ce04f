import { StoreError, type StoredDoc, type TwinStore } from '../sync/ports';
import type { TwinDoc } from '../sync/types';

/**
 * An in-memory TwinStore with Cosmos DB's write semantics (create → 409 on an existing id, replace with
 * IfMatch → 412 on another ETag, 404 when absent). Used to measure the handler's own CPU cost and by
 * tests of pure engine behaviour; documents are kept by reference and never mutated by the engine.
 */
export class MemoryTwinStore implements TwinStore {
  readonly docs = new Map<string, StoredDoc>();
  readonly counts = { reads: 0, creates: 0, replaces: 0, queries: 0 };
  private next = 0;

  private key(id: string, deviceId: string): string {
    return `${deviceId}\u0000${id}`;
  }

  async read(id: string, deviceId: string): Promise<StoredDoc | undefined> {
    this.counts.reads++;
    return this.docs.get(this.key(id, deviceId));
  }

  async create(doc: TwinDoc): Promise<StoredDoc> {
    this.counts.creates++;
    const k = this.key(doc.id, doc.deviceId);
    if (this.docs.has(k)) throw new StoreError('conflict', 'Conflict: id exists', 409);
    const stored = { doc, etag: `"${++this.next}"` };
    this.docs.set(k, stored);
    return stored;
  }

  async replace(doc: TwinDoc, etag: string): Promise<StoredDoc> {
    this.counts.replaces++;
    const k = this.key(doc.id, doc.deviceId);
    const current = this.docs.get(k);
    if (!current) throw new StoreError('conflict', 'NotFound', 404);
    if (current.etag !== etag) throw new StoreError('conflict', 'PreconditionFailed', 412);
    const stored = { doc, etag: `"${++this.next}"` };
    this.docs.set(k, stored);
    return stored;
  }

  async listModuleIds(deviceId: string): Promise<string[]> {
    this.counts.queries++;
    const ids: string[] = [];
    for (const { doc } of this.docs.values()) if (doc.deviceId === deviceId && doc.moduleId !== undefined) ids.push(doc.id);
    return ids;
  }

  /** Every stored document (for tests and tools). */
  all(): TwinDoc[] {
    return [...this.docs.values()].map((s) => s.doc);
  }
}
