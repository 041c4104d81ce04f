import { describe, expect, it } from 'vitest';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { SyncEngine } from '../../functions/src/sync/engine';
import { classify } from '../../functions/src/sync/events';
import { encodeDocId } from '../../functions/src/sync/ids';
import { applyEvent } from '../../functions/src/sync/rules';
import { foldEvents } from './fold';
import type { RawEvent, TwinEvent } from '../../functions/src/sync/types';
import { connection, created, deleted, fullTwin, opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';

/**
 * What IoT Hub can produce and the first simulated hub never did (issue "Prove the replica against the IoT
 * Hub that exists"); each case failed on the rules before this file was written:
 * - connection state comes from a 60-second poll (Microsoft Learn, "Monitor device connection state"), so a
 *   device connected when deleted may be reported disconnected after the delete;
 * - a notification re-sent or merged carries a version that does not rise, and without `operationTimestamp`
 *   the enqueued time stands in and is newer on every re-send (IoT Hub non-telemetry event schema);
 * - module lifecycle events are not promised for every module (Microsoft Learn, "Understand the identity
 *   registry": IoT Edge module identities are created by the Edge runtime while it runs) and no module
 *   delete is documented when the device is deleted, so a module's first event may arrive after its
 *   device's deletion.
 */
const key = { deviceId: 'd' };
const t = (s: number) => `2026-04-01T00:00:${String(s).padStart(2, '0')}.0000000Z`;
const seq = (n: number) => n.toString(16).toUpperCase().padStart(64, '0');
const twin = (version: number, tags: object) => ({ deviceId: 'd', version, tags, properties: { desired: { $version: 1 }, reported: { $version: 1 } } }) as never;

describe('a connection event never brings an identity to life', () => {
  it('a disconnect stamped after the deletion leaves the tombstone a tombstone', () => {
    const { doc } = foldEvents(undefined, [
      { kind: 'create', key, ts: t(1), version: 2, twin: twin(2, { site: 'a' }) },
      { kind: 'connection', key, ts: t(2), state: 'Connected', sequenceNumber: seq(1) },
      { kind: 'delete', key, ts: t(3) },
      { kind: 'connection', key, ts: t(4), state: 'Disconnected', sequenceNumber: seq(2) }, // the 60 s poll, after the delete
    ]);
    expect(doc?.deleted).toBe(true);
    expect(doc?.tags).toBeUndefined();
  });

  it('a connection event for an identity the replica has never seen makes no live document', () => {
    const r = applyEvent(undefined, { kind: 'connection', key, ts: t(4), state: 'Disconnected', sequenceNumber: seq(2) });
    expect(r.doc?.deleted).toBe(true);
    expect(r.doc?.connectionState).toBe('Disconnected');
  });

  it('the connection state it recorded is kept for the identity\'s creation that follows (routes are not ordered)', () => {
    const { doc } = foldEvents(undefined, [
      { kind: 'connection', key, ts: t(4), state: 'Connected', sequenceNumber: seq(2) },
      { kind: 'create', key, ts: t(1), version: 2, twin: twin(2, { site: 'a' }) },
      { kind: 'update', key, ts: t(5), version: 3, patch: { tags: { floor: 1 } } },
    ]);
    expect(doc).toMatchObject({ version: 3, tags: { site: 'a', floor: 1 }, connectionState: 'Connected' });
    expect(doc?.deleted).toBeUndefined();
  });
});

describe('a re-creation needs positive evidence', () => {
  it('two notifications of the same version (re-sent or merged, the second stamped later) are one change, not a re-created twin', () => {
    const { doc } = foldEvents(undefined, [
      { kind: 'create', key, ts: t(1), version: 2, twin: { deviceId: 'd', version: 2, tags: { site: 'a', floor: 1 }, properties: { desired: { mode: 'eco', $version: 1 }, reported: { $version: 1 } } } },
      { kind: 'update', key, ts: t(2), version: 3, patch: { tags: { room: 7 } } },
      { kind: 'update', key, ts: t(5), version: 3, patch: { tags: { room: 7 } } },
    ]);
    expect(doc?.tags).toEqual({ site: 'a', floor: 1, room: 7 });
    expect(doc?.properties?.desired).toEqual({ mode: 'eco', $version: 1 });
    expect(doc?.replica.partial).toBeUndefined();
  });

  it('an older change re-sent without operationTimestamp (enqueued time standing in, newer) stays stale', () => {
    const { doc } = foldEvents(undefined, [
      { kind: 'create', key, ts: t(1), version: 2, twin: twin(2, { site: 'a' }) },
      { kind: 'update', key, ts: t(2), version: 3, patch: { tags: { floor: 1 } } },
      { kind: 'update', key, ts: t(3), version: 4, patch: { tags: { room: 7 } } },
    ]);
    const replay = applyEvent(doc, { kind: 'update', key, ts: t(9), enqueuedTs: true, version: 3, patch: { tags: { floor: 1 } } });
    expect(replay.outcome).toBe('stale');
    const createAgain = applyEvent(doc, { kind: 'create', key, ts: t(9), enqueuedTs: true, version: 2, twin: twin(2, { site: 'a' }) });
    expect(createAgain.outcome).toBe('stale');
  });

  it('a lower version with a newer operation time still starts the re-created incarnation', () => {
    const { doc } = foldEvents(undefined, [
      { kind: 'create', key, ts: t(1), version: 2, twin: twin(2, { gen: 1 }) },
      { kind: 'update', key, ts: t(2), version: 5, patch: { tags: { old: true } } },
      { kind: 'update', key, ts: t(6), version: 3, patch: { tags: { fresh: 1 } } }, // new incarnation, overtook its delete and create
      { kind: 'delete', key, ts: t(3) },
      { kind: 'create', key, ts: t(5), version: 2, twin: twin(2, { gen: 2 }) },
    ]);
    expect(doc).toMatchObject({ version: 3, tags: { gen: 2, fresh: 1 } });
    expect(doc?.tags).not.toHaveProperty('old');
  });

  it('classify marks a timestamp that is the enqueued time standing in for operationTimestamp', () => {
    const e = twinUpdate({ deviceId: 'd', ts: opTimestamp(Date.parse('2026-04-01T00:00:00Z')), version: 3, tags: { a: 1 } });
    delete e.properties.operationTimestamp;
    const tr = toTrigger([e], { partitionId: '0' });
    const c = classify({ body: tr.messages[0], properties: tr.triggerMetadata.propertiesArray[0], systemProperties: tr.triggerMetadata.systemPropertiesArray[0] });
    expect(c.type === 'event' && c.event.enqueuedTs).toBe(true);
    const withOp = toTrigger([twinUpdate({ deviceId: 'd', ts: opTimestamp(Date.parse('2026-04-01T00:00:00Z')), version: 3, tags: { a: 1 } })], { partitionId: '0' });
    const c2 = classify({ body: withOp.messages[0], properties: withOp.triggerMetadata.propertiesArray[0], systemProperties: withOp.triggerMetadata.systemPropertiesArray[0] });
    expect(c2.type === 'event' && c2.event.enqueuedTs).toBeUndefined();
  });
});

describe('a module event after its device\'s deletion', () => {
  const mkey = { deviceId: 'd', moduleId: 'edgeAgent' };
  const device = foldEvents(undefined, [
    { kind: 'create', key, ts: t(1), version: 2, twin: twin(2, {}) },
    { kind: 'delete', key, ts: t(4) },
  ] as TwinEvent[]).doc;

  it('with no module document makes a module tombstone, not a live ghost', () => {
    const r = applyEvent(undefined, { kind: 'update', key: mkey, ts: t(3), version: 4, patch: { reported: { up: true } } }, {}, { device });
    expect(r.outcome).toBe('stale');
    expect(r.doc?.deleted).toBe(true);
  });

  it('newer than the deletion (the device was re-created) starts the module as before', () => {
    const r = applyEvent(undefined, { kind: 'update', key: mkey, ts: t(7), version: 4, patch: { reported: { up: true } } }, {}, { device });
    expect(r.doc?.deleted).toBeUndefined();
    expect(r.doc?.properties?.reported).toEqual({ up: true });
  });

  it('the engine looks up the device\'s tombstone written by an earlier batch', async () => {
    const store = new MemoryTwinStore();
    const engine = new SyncEngine({ store, deadLetters: new MemoryDeadLetterSink() });
    const T0 = Date.parse('2026-04-01T00:00:00Z');
    const at = (s: number) => opTimestamp(T0 + s * 1000);
    const raw = (events: WireEvent[]): RawEvent[] => {
      const tr = toTrigger(events, { partitionId: '0' });
      return tr.messages.map((body, i) => ({ body, properties: tr.triggerMetadata.propertiesArray[i], systemProperties: tr.triggerMetadata.systemPropertiesArray[i] }));
    };
    await engine.processBatch(raw([
      created({ deviceId: 'd', ts: at(1), twin: fullTwin({ deviceId: 'd', version: 2 }) }),
      deleted({ deviceId: 'd', ts: at(4) }),
    ]), { isLastAttempt: false });
    const r = await engine.processBatch(raw([
      twinUpdate({ deviceId: 'd', moduleId: 'edgeAgent', ts: at(3), version: 4, reported: { up: true, $version: 2 } }),
      connection({ deviceId: 'd', ts: at(5), connected: false, sequence: 9 }),
    ]), { isLastAttempt: false });
    expect(r.summary).toMatchObject({ received: 2, stale: 1, applied: 1 });
    const mod = await store.read(encodeDocId({ deviceId: 'd', moduleId: 'edgeAgent' }), 'd');
    expect(mod?.doc.deleted).toBe(true);
    expect((await store.read('d', 'd'))?.doc.deleted).toBe(true);
  });
});
