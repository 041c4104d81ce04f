import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { SyncEngine, type BatchContext } from '../../functions/src/sync/engine';
import { encodeDocId } from '../../functions/src/sync/ids';
import { StoreError, type TwinStore } from '../../functions/src/sync/ports';
import type { RawEvent, TwinDoc } from '../../functions/src/sync/types';
import { connection, created, deleted, fullTwin, opTimestamp, telemetry, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';

const T0 = Date.parse('2026-03-01T12:00:00Z');
const at = (s: number) => opTimestamp(T0 + s * 1000);
const first: BatchContext = { isLastAttempt: false, attempt: 0, partitionId: '3' };

/** Raw events with the trigger's system properties (sequence numbers, enqueued times) filled in. */
function raw(events: WireEvent[], firstSequence = 1): RawEvent[] {
  const t = toTrigger(events, { partitionId: '3', firstSequence });
  return t.messages.map((body, i) => ({ body, properties: t.triggerMetadata.propertiesArray[i], systemProperties: t.triggerMetadata.systemPropertiesArray[i] }));
}

function setup(store: TwinStore = new MemoryTwinStore()) {
  const sink = new MemoryDeadLetterSink();
  const engine = new SyncEngine({ store, deadLetters: sink, tombstoneTtlSeconds: 8 * 86400 });
  return { engine, sink, store };
}

const create = (deviceId: string, s: number, moduleId?: string) =>
  created({ deviceId, moduleId, ts: at(s), twin: fullTwin({ deviceId, moduleId, version: 1, tags: { site: 'a' } }) });

describe('SyncEngine', () => {
  it('folds a document\'s events in order and writes it once; replays change nothing', async () => {
    const store = new MemoryTwinStore();
    const { engine } = setup(store);
    const batch = raw([
      create('d1', 0),
      twinUpdate({ deviceId: 'd1', ts: at(1), version: 2, desired: { fan: { speed: 1, mode: 'eco' }, $version: 2 } }),
      create('d2', 1),
      twinUpdate({ deviceId: 'd1', ts: at(2), version: 3, desired: { fan: { mode: null }, $version: 3 } }),
      twinUpdate({ deviceId: 'd1', ts: at(3), version: 4, tags: { site: 'b', floor: 2 } }),
      connection({ deviceId: 'd1', ts: at(4), connected: true, sequence: 7 }),
    ]);
    const r = await engine.processBatch(batch, first);
    expect(r.summary).toMatchObject({ received: 6, applied: 6, stale: 0, writes: 2, reads: 2, documents: 2, queries: 0 });
    const d1 = (await store.read('d1', 'd1'))!.doc;
    expect(d1).toMatchObject({ id: 'd1', deviceId: 'd1', version: 4, tags: { site: 'b', floor: 2 }, properties: { desired: { fan: { speed: 1 }, $version: 3 } }, connectionState: 'Connected' });
    expect(d1.etag).toBeUndefined(); // a patch does not carry the new etag

    const again = await engine.processBatch(batch, first);
    expect(again.summary).toMatchObject({ received: 6, applied: 0, stale: 6, writes: 0, reads: 0 });
    expect((await store.read('d1', 'd1'))!.doc).toBe(d1);
  });

  it('costs one write per changed document and no read in steady state', async () => {
    const store = new MemoryTwinStore();
    const { engine } = setup(store);
    const devices = Array.from({ length: 20 }, (_, i) => `dev-${i}`);
    await engine.processBatch(raw(devices.map((d) => create(d, 0))), first);
    const before = { ...store.counts };
    for (let b = 1; b <= 5; b++) {
      const r = await engine.processBatch(raw(devices.flatMap((d) => [
        twinUpdate({ deviceId: d, ts: at(b * 10), version: b * 2, reported: { temp: b } }),
        twinUpdate({ deviceId: d, ts: at(b * 10 + 1), version: b * 2 + 1, reported: { hum: b } }),
      ])), first);
      expect(r.summary).toMatchObject({ applied: 40, writes: 20, reads: 0, conflicts: 0 });
    }
    expect(store.counts.reads - before.reads).toBe(0);
    expect(store.counts.replaces - before.replaces).toBe(100);
  });

  it('resolves a race with another writer by ETag: re-reads, re-applies, loses nothing', async () => {
    const store = new MemoryTwinStore();
    const { engine } = setup(store);
    await engine.processBatch(raw([create('d', 0)]), first);
    // another writer (a second instance holding the partition after a rebalance) moves the document on
    const other = new SyncEngine({ store, deadLetters: new MemoryDeadLetterSink() });
    await other.processBatch(raw([twinUpdate({ deviceId: 'd', ts: at(5), version: 5, tags: { site: 'other-writer' } })]), first);

    const r = await engine.processBatch(raw([
      twinUpdate({ deviceId: 'd', ts: at(3), version: 4, tags: { site: 'late' } }),
      twinUpdate({ deviceId: 'd', ts: at(6), version: 6, tags: { extra: 1 } }),
    ]), first);
    expect(r.summary).toMatchObject({ conflicts: 1, writes: 1, applied: 1, stale: 1 });
    expect((await store.read('d', 'd'))!.doc).toMatchObject({ version: 6, tags: { site: 'other-writer', extra: 1 } });
  });

  it('dead-letters poison with its reason, raw body, partition and sequence number, and applies the rest', async () => {
    const { engine, sink, store } = setup();
    const events = raw([
      create('d', 0),
      { ...twinUpdate({ deviceId: 'd', ts: at(1), version: 2 }), body: '{"version": 2,' },
      telemetry('d'),
      twinUpdate({ deviceId: 'd', ts: at(2), version: 3, tags: { ok: true } }),
    ], 100);
    events[1].body = '{"version": 2,';
    const r = await engine.processBatch(events, first);
    expect(r.summary).toMatchObject({ received: 4, applied: 2, skipped: 1, deadLettered: 1, deadLetterReasons: { 'malformed-body': 1 }, skippedBySource: { Telemetry: 1 } });
    expect(r.outcomes).toEqual(['applied', 'dead-lettered', 'skipped', 'applied']);
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({ reason: 'malformed-body', deviceId: 'd', partitionId: '3', sequenceNumber: 101, opType: 'updateTwin', event: { body: '{"version": 2,' } });
    expect((await store.read('d', 'd'))!.doc.tags).toEqual({ site: 'a', ok: true });
  });

  it('keeps a change for a device it has never seen, marked partial for the backfill', async () => {
    const { engine, store } = setup();
    await engine.processBatch(raw([twinUpdate({ deviceId: 'old', ts: at(1), version: 41, reported: { fw: '1.2' } })]), first);
    expect((await store.read('old', 'old'))!.doc).toMatchObject({ version: 41, properties: { reported: { fw: '1.2' } }, replica: { partial: true } });
  });

  it('retries transient failures (the batch throws) and dead-letters them on the last try', async () => {
    const inner = new MemoryTwinStore();
    let failing = true;
    const flaky: TwinStore = {
      read: (id, pk) => (failing && pk === 'sick' ? Promise.reject(new StoreError('transient', '503 ServiceUnavailable', 503)) : inner.read(id, pk)),
      create: (d) => inner.create(d),
      replace: (d, e) => inner.replace(d, e),
      listModuleIds: (d) => inner.listModuleIds(d),
    };
    const { engine, sink } = setup(flaky);
    const batch = raw([create('sick', 0), create('well', 0), twinUpdate({ deviceId: 'sick', ts: at(1), version: 2, tags: { a: 1 } })]);
    const r1 = await engine.processBatch(batch, first);
    expect(r1.failure?.message).toMatch(/2 event\(s\) failed transiently/);
    expect(r1.summary).toMatchObject({ received: 3, applied: 1, retrying: 2, deadLettered: 0 });
    expect(r1.outcomes).toEqual(['retrying', 'applied', 'retrying']);

    const last = await engine.processBatch(batch, { ...first, attempt: 5, isLastAttempt: true });
    expect(last.failure).toBeUndefined();
    expect(last.summary).toMatchObject({ received: 3, stale: 1, deadLettered: 2, retrying: 0, deadLetterReasons: { 'transient-exhausted': 2 } });
    expect(sink.records.map((d) => [d.deviceId, d.reason, d.attempt])).toEqual([['sick', 'transient-exhausted', 5], ['sick', 'transient-exhausted', 5]]);

    failing = false;
    const healed = await engine.processBatch(batch, first);
    expect(healed.summary).toMatchObject({ applied: 2, stale: 1, retrying: 0 });
  });

  it('holds the checkpoint when the dead-letter store itself fails', async () => {
    const engine = new SyncEngine({ store: new MemoryTwinStore(), deadLetters: { write: () => Promise.reject(new Error('blob 503')) } });
    const r = await engine.processBatch(raw([{ ...create('d', 0), body: 'not json' }, create('e', 0)]), first);
    expect(r.failure?.message).toMatch(/dead-letter store failed: blob 503/);
    expect(r.summary).toMatchObject({ received: 2, applied: 1, deadLettered: 0, retrying: 1 });
  });

  it('dead-letters only the change that would push a twin over the item size limit', async () => {
    const store = new MemoryTwinStore();
    const engine = new SyncEngine({ store, deadLetters: new MemoryDeadLetterSink(), maxDocumentBytes: 4000 });
    const r = await engine.processBatch(raw([
      create('d', 0),
      twinUpdate({ deviceId: 'd', ts: at(1), version: 2, reported: { blob: 'x'.repeat(5000) } }),
      twinUpdate({ deviceId: 'd', ts: at(2), version: 3, reported: { small: 1 } }),
    ]), first);
    expect(r.outcomes).toEqual(['applied', 'dead-lettered', 'applied']);
    expect(r.deadLetters[0]).toMatchObject({ reason: 'twin-too-large' });
    expect((await store.read('d', 'd'))!.doc).toMatchObject({ version: 3, properties: { reported: { small: 1 } } });
  });

  it('dead-letters what the store rejects (400/413) instead of retrying it forever', async () => {
    const inner = new MemoryTwinStore();
    const rejecting: TwinStore = { ...inner, read: (i, p) => inner.read(i, p), listModuleIds: (d) => inner.listModuleIds(d), replace: (d, e) => inner.replace(d, e), create: () => Promise.reject(new StoreError('rejected', '413 RequestEntityTooLarge', 413)) };
    const { engine } = setup(rejecting);
    const r = await engine.processBatch(raw([create('d', 0)]), first);
    expect(r.failure).toBeUndefined();
    expect(r.deadLetters.map((d) => d.reason)).toEqual(['rejected-by-store']);
  });

  it('touches only the module\'s document for module events; deleting a module leaves its device alone', async () => {
    const { engine, store } = setup();
    await engine.processBatch(raw([create('d', 0), create('d', 1, 'm1'), twinUpdate({ deviceId: 'd', moduleId: 'm1', ts: at(2), version: 2, reported: { up: true } })]), first);
    await engine.processBatch(raw([deleted({ deviceId: 'd', moduleId: 'm1', ts: at(3), moduleSpelling: 'module' })]), first);
    expect((await store.read('d', 'd'))!.doc).toMatchObject({ version: 1, tags: { site: 'a' } });
    expect((await store.read('d', 'd'))!.doc.deleted).toBeUndefined();
    expect((await store.read(encodeDocId({ deviceId: 'd', moduleId: 'm1' }), 'd'))!.doc).toMatchObject({ deleted: true, moduleId: 'm1', ttl: 8 * 86400 });
  });

  it('deleting a device tombstones its modules; late module events stay dead; re-created ones come back', async () => {
    const { engine, store } = setup();
    await engine.processBatch(raw([create('d', 0), create('d', 1, 'm1'), create('d', 1, 'm2')]), first);
    const del = await engine.processBatch(raw([deleted({ deviceId: 'd', ts: at(5) })]), first);
    expect(del.summary).toMatchObject({ received: 1, applied: 1, queries: 1, writes: 3 });
    const mod = async (m: string) => (await store.read(encodeDocId({ deviceId: 'd', moduleId: m }), 'd'))!.doc;
    expect([(await mod('m1')).deleted, (await mod('m2')).deleted]).toEqual([true, true]);

    const late = await engine.processBatch(raw([twinUpdate({ deviceId: 'd', moduleId: 'm1', ts: at(4), version: 9, reported: { ghost: 1 } })]), first);
    expect(late.summary).toMatchObject({ stale: 1, writes: 0 });
    await engine.processBatch(raw([create('d', 10), create('d', 11, 'm1')]), first);
    expect(await mod('m1')).toMatchObject({ version: 1, tags: { site: 'a' } });
    expect((await mod('m1')).deleted).toBeUndefined();
    expect((await mod('m2')).deleted).toBe(true);
  });

  it('accounts for every event: received = applied + stale + skipped + deadLettered + retrying', async () => {
    const eventArb = fc.oneof(
      fc.record({ d: fc.constantFrom('a', 'b', 'c'), v: fc.integer({ min: 1, max: 6 }), s: fc.integer({ min: 0, max: 20 }) }).map(({ d, v, s }) => twinUpdate({ deviceId: d, ts: at(s), version: v, tags: { v } })),
      fc.record({ d: fc.constantFrom('a', 'b'), s: fc.integer({ min: 0, max: 20 }) }).map(({ d, s }) => create(d, s)),
      fc.record({ d: fc.constantFrom('a', 'b'), s: fc.integer({ min: 0, max: 20 }) }).map(({ d, s }) => deleted({ deviceId: d, ts: at(s) })),
      fc.record({ d: fc.constantFrom('a', 'c'), n: fc.integer({ min: 1, max: 9 }) }).map(({ d, n }) => connection({ deviceId: d, ts: at(n), connected: n % 2 === 0, sequence: n })),
      fc.constant(telemetry('a')),
      fc.constant({ ...twinUpdate({ deviceId: 'b', ts: at(1), version: 1 }), body: '{oops' }),
      fc.constant({ ...twinUpdate({ deviceId: 'b', ts: at(1), version: 1 }), properties: { deviceId: 'b', opType: 'mystery' } }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(eventArb, { maxLength: 12 }), { maxLength: 4 }), fc.boolean(), async (batches, last) => {
        const { engine } = setup();
        for (const b of batches) {
          const { summary: s } = await engine.processBatch(raw(b), { ...first, isLastAttempt: last });
          expect(s.applied + s.stale + s.skipped + s.deadLettered + s.retrying).toBe(s.received);
          expect(s.received).toBe(b.length);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('never mutates the documents it read or cached', async () => {
    const store = new MemoryTwinStore();
    const { engine } = setup(store);
    await engine.processBatch(raw([create('d', 0)]), first);
    const before: TwinDoc = (await store.read('d', 'd'))!.doc;
    const snapshot = JSON.stringify(before);
    await engine.processBatch(raw([twinUpdate({ deviceId: 'd', ts: at(1), version: 2, tags: { site: null, x: { y: 1 } } })]), first);
    expect(JSON.stringify(before)).toBe(snapshot);
  });
});
