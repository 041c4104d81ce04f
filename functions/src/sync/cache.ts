import type { StoredDoc } from './ports';

/**
 * What this instance last wrote or read, with its ETag, so that a steady stream of changes costs one
 * guarded write per document and no read. Bounded by entries and by approximate bytes (serialised
 * size), least recently used first out. A 412 on a write says an entry is out of date; the engine then
 * drops it and reads again.
 */
export class DocCache {
  private readonly map = new Map<string, { stored: StoredDoc; bytes: number }>();
  private bytes = 0;

  constructor(readonly maxEntries = 20_000, readonly maxBytes = 64 * 1024 * 1024) {}

  get(id: string): StoredDoc | undefined {
    const hit = this.map.get(id);
    if (!hit) return undefined;
    this.map.delete(id);
    this.map.set(id, hit);
    return hit.stored;
  }

  set(id: string, stored: StoredDoc, bytes: number): void {
    this.delete(id);
    if (bytes > this.maxBytes) return;
    this.map.set(id, { stored, bytes });
    this.bytes += bytes;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next().value as string;
      this.delete(oldest);
    }
  }

  delete(id: string): void {
    const hit = this.map.get(id);
    if (hit) {
      this.bytes -= hit.bytes;
      this.map.delete(id);
    }
  }

  get size(): number {
    return this.map.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }
}
