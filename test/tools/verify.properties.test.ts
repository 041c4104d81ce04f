import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { replicaEntry, runVerify, type ReplicaIndex } from '../../functions/src/scan/verify';
import { QueryPager, type TwinQuery } from '../../functions/src/adapters/twinQuery';
import { SyncEngine } from '../../functions/src/sync/engine';
import { encodeDocId } from '../../functions/src/sync/ids';
import type { DocKey, JsonObject, TwinDoc, TwinEvent } from '../../functions/src/sync/types';
import { opTimestamp } from '../../testkit/events';

/**
 * verify --repair over random hub histories (creates, updates, deletes, re-creations, status changes that
 * no event carries), a replica built from any subset of the hub's events in any order, and a twin query
 * view that may lag (rows of older states, of earlier incarnations), miss twins or keep ghost rows of
 * deleted ones (Microsoft Learn, "Queries for IoT Hub device and module twins": results eventually
 * consistent; Azure/azure-iot-sdk-csharp#525: ghost modules). Reads by id answer the hub's current state,
 * as the REST "Get Twin" / "Get Module Twin" calls do. In-process: an in-memory hub behind the TwinQuery
 * port, the engine on the in-memory store.
 *
 * Each twin carries tags {inc, v} (its incarnation and version) so a document's content can be ordered.
 */
const KEYS: DocKey[] = [{ deviceId: 'd0' }, { deviceId: 'd1' }, { deviceId: 'd2' }, { deviceId: 'host', moduleId: 'm0' }, { deviceId: 'host', moduleId: 'm1' }];
const HOST: DocKey = { deviceId: 'host' };
const T0 = Date.parse('2026-06-01T00:00:00Z');

interface State { exists: boolean; inc: number; version: number; status: string }
interface Identity { key: DocKey; now: State; history: State[] }

type Op = { target: number; op: 'create' | 'update' | 'delete' | 'status' };
const opArb: fc.Arbitrary<Op> = fc.record({ target: fc.integer({ min: 0, max: KEYS.length - 1 }), op: fc.constantFrom('create', 'update', 'update', 'delete', 'status') });
type View = 'current' | 'older' | 'absent' | 'ghost';
const viewArb: fc.Arbitrary<View> = fc.constantFrom('current', 'older', 'absent', 'ghost');

function twinOf(key: DocKey, s: State): JsonObject {
  // deviceEtag: the identity's ETag, new for each incarnation (a new registry entity)
  return { ...key, version: s.version, status: s.status, deviceEtag: `d${s.inc}`, etag: `e${s.inc}-${s.version}`, tags: { inc: s.inc, v: s.version }, properties: { desired: {}, reported: {} } };
}

/** Plays the ops on the hub model; returns the identities and the events IoT Hub would have routed. */
function play(ops: Op[]): { ids: Identity[]; host: Identity; events: TwinEvent[]; end: number } {
  const fresh = (key: DocKey): Identity => ({ key, now: { exists: false, inc: 0, version: 0, status: 'enabled' }, history: [] });
  const ids = KEYS.map(fresh);
  const host = fresh(HOST);
  const events: TwinEvent[] = [];
  let t = T0;
  const step = (id: Identity, op: Op['op']) => {
    t += 1000;
    const ts = opTimestamp(t);
    const s = id.now;
    if (op === 'create') {
      if (s.exists) return;
      id.now = { exists: true, inc: s.inc + 1, version: 1, status: 'enabled' };
      events.push({ kind: 'create', key: id.key, ts, version: 1, twin: twinOf(id.key, id.now) });
    } else if (!s.exists) {
      return;
    } else if (op === 'update') {
      id.now = { ...s, version: s.version + 1 };
      events.push({ kind: 'update', key: id.key, ts, version: id.now.version, patch: { tags: { inc: s.inc, v: id.now.version } } });
    } else if (op === 'delete') {
      id.now = { ...s, exists: false };
      events.push({ kind: 'delete', key: id.key, ts });
    } else {
      id.now = { ...s, status: s.status === 'enabled' ? 'disabled' : 'enabled' }; // an identity update: no routed event
    }
    id.history.push(id.now);
  };
  step(host, 'create');
  for (const o of ops) step(ids[o.target], o.op);
  return { ids, host, events, end: t };
}

/** The hub behind the TwinQuery port: rows from `views`, reads by id from the current state. */
function hubQuery(all: Identity[], views: Map<string, View>, pageSize: number): TwinQuery {
  const rowState = (id: Identity): State | undefined => {
    const view = views.get(encodeDocId(id.key)) ?? 'current';
    const past = id.history.filter((h) => h.exists);
    if (view === 'absent') return undefined;
    if (view === 'older') return past[Math.max(0, past.length - 2)];
    if (view === 'ghost') return id.now.exists ? id.now : past.at(-1);
    return id.now.exists ? id.now : undefined;
  };
  return {
    async page(sql, continuation, size) {
      const modules = sql.includes('devices.modules');
      const rows = all.filter((id) => (id.key.moduleId !== undefined) === modules).map((id) => ({ id, s: rowState(id) })).filter((r) => r.s !== undefined);
      const from = continuation ? Number(continuation) : 0;
      const slice = rows.slice(from, from + Math.min(size, pageSize));
      const projected = slice.map(({ id, s }) => ({ ...id.key, version: s!.version, status: s!.status, deviceEtag: `d${s!.inc}` }));
      return { items: projected, continuation: from + slice.length < rows.length ? String(from + slice.length) : undefined };
    },
    async twin(key) {
      const id = all.find((i) => encodeDocId(i.key) === encodeDocId(key));
      return id?.now.exists ? twinOf(key, id.now) : undefined;
    },
  };
}

async function setUp(ops: Op[], pick: (events: TwinEvent[]) => TwinEvent[]) {
  const hub = play(ops);
  const store = new MemoryTwinStore();
  const engine = new SyncEngine({ store, deadLetters: new MemoryDeadLetterSink() });
  for (const event of [{ kind: 'create', key: HOST, ts: opTimestamp(T0), version: 1, twin: twinOf(HOST, hub.host.now) } as TwinEvent, ...pick(hub.events)]) {
    await engine.applyTwinEvents([event], { isLastAttempt: true });
  }
  return { hub, store, engine };
}

async function verifyRepair(hub: ReturnType<typeof play>, store: MemoryTwinStore, engine: SyncEngine, views: Map<string, View>, pageSize: number) {
  let clock = hub.end + 60_000;
  const now = () => clock;
  const replica: ReplicaIndex = { async *list() { for (const doc of store.all()) yield replicaEntry(doc); } };
  const pager = new QueryPager(hubQuery([hub.host, ...hub.ids], views, pageSize), { queriesPerMinute: 1e9, twinReadsPerSecond: 1e9, now, sleep: async (ms) => void (clock += ms) });
  const report = await runVerify({ engine, pager, replica, repair: true, hub: 'model', now, pageSize: 2 });
  expect(report.error).toBeUndefined();
  return report;
}

const docOf = (store: MemoryTwinStore, key: DocKey): TwinDoc | undefined => store.all().find((d) => d.id === encodeDocId(key));
const live = (d: TwinDoc | undefined): d is TwinDoc => d !== undefined && !d.deleted;
const order = (d: TwinDoc): [number, number] => [Number((d.tags as JsonObject).inc), Number((d.tags as JsonObject).v)];
const notOlder = (a: [number, number], b: [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);

describe('verify --repair (property)', () => {
  it('never rolls a document back to an older version or incarnation, never resurrects a deleted twin, never deletes a live one', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(opArb, { maxLength: 30 }),
      fc.array(viewArb, { minLength: KEYS.length, maxLength: KEYS.length }),
      fc.integer({ min: 1, max: 3 }),
      fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
      fc.integer(),
      async (ops, viewList, pageSize, keepStream, seed) => {
        const views = new Map(KEYS.map((k, i) => [encodeDocId(k), viewList[i]]));
        const { hub, store, engine } = await setUp(ops, (events) => {
          // any subset of the events, in any order (lost, reordered, late)
          const kept = events.filter((_, i) => keepStream[i]);
          let x = seed;
          return kept.map((e) => ({ e, r: (x = (x * 1103515245 + 12345) | 0) })).sort((a, b) => a.r - b.r).map((p) => p.e);
        });
        const before = new Map(KEYS.map((k) => [encodeDocId(k), structuredClone(docOf(store, k))]));
        await verifyRepair(hub, store, engine, views, pageSize);
        for (const id of hub.ids) {
          const was = before.get(encodeDocId(id.key));
          const now = docOf(store, id.key);
          const view = views.get(encodeDocId(id.key));
          if (!id.now.exists && !live(was)) expect(live(now), `${encodeDocId(id.key)} resurrected`).toBe(false);
          // A deleted twin the replica still holds is found unless a row of the deleted twin (ghost, or a lagging
          // row of a past state) agrees with the replica: nothing then nominates it for a read by id.
          if (!id.now.exists && (view === 'current' || view === 'absent')) expect(live(now), `${encodeDocId(id.key)} kept after its deletion`).toBe(false);
          if (id.now.exists && live(was)) expect(live(now), `${encodeDocId(id.key)} deleted while live on the hub`).toBe(true);
          if (live(was) && live(now)) expect(notOlder(order(now), order(was)), `${encodeDocId(id.key)} rolled back from ${order(was).join(',')} to ${order(now).join(',')}`).toBe(true);
          if (live(now)) expect(notOlder([id.now.inc, id.now.version], order(now))).toBe(true); // never ahead of the hub
        }
      },
    ), { numRuns: 300 });
  });

  it('with a consistent query view, converges to the hub (content, version, incarnation, status)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(opArb, { maxLength: 30 }),
      fc.integer({ min: 1, max: 3 }),
      fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
      async (ops, pageSize, keepStream) => {
        const { hub, store, engine } = await setUp(ops, (events) => events.filter((_, i) => keepStream[i]));
        const report = await verifyRepair(hub, store, engine, new Map(), pageSize);
        expect(report.complete).toBe(true);
        for (const id of [hub.host, ...hub.ids]) {
          const doc = docOf(store, id.key);
          expect(live(doc)).toBe(id.now.exists);
          if (live(doc)) expect({ order: order(doc), status: doc.status, partial: doc.replica.partial }).toEqual({ order: [id.now.inc, id.now.version], status: id.now.status, partial: undefined });
        }
        const again = await verifyRepair(hub, store, engine, new Map(), pageSize);
        expect(again.remaining + again.repaired!.applied).toBe(0);
      },
    ), { numRuns: 300 });
  });
});
