import fc from 'fast-check';
import type { TwinEvent } from '../../functions/src/sync/types';

/**
 * An independent model of one IoT Hub identity's twin, for property tests of the rules: its own mutable
 * merge (not the engine's), versions that grow by one per change and restart on re-creation, strictly
 * increasing operation timestamps, and connection-state sequence numbers.
 */
type Obj = { [k: string]: unknown };
export type HubOp =
  | { op: 'create'; tags: Obj }
  | { op: 'update'; section: 'tags' | 'desired' | 'reported'; patch: Obj }
  | { op: 'replace'; tags: Obj; desired: Obj }
  | { op: 'delete' }
  | { op: 'connect' }
  | { op: 'disconnect' };

export interface HubState {
  exists: boolean;
  version: number;
  tags: Obj;
  desired: Obj;
  reported: Obj;
  connectionState?: string;
}

const keys = fc.constantFrom('a', 'b', 'c');
const leaf = fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom('x', 'y'), fc.constant(null));
const patchValue: fc.Arbitrary<unknown> = fc.oneof(leaf, fc.dictionary(keys, leaf, { maxKeys: 2 }));
export const patchArb = fc.dictionary(keys, patchValue, { minKeys: 1, maxKeys: 3 }) as fc.Arbitrary<Obj>;
const plain = fc.dictionary(keys, fc.oneof(fc.integer({ min: 0, max: 9 }), fc.dictionary(keys, fc.integer({ min: 0, max: 9 }), { maxKeys: 2 })), { maxKeys: 3 }) as fc.Arbitrary<Obj>;

export const hubOpArb: fc.Arbitrary<HubOp> = fc.oneof(
  { weight: 1, arbitrary: plain.map((tags) => ({ op: 'create' as const, tags })) },
  { weight: 5, arbitrary: fc.record({ section: fc.constantFrom('tags' as const, 'desired' as const, 'reported' as const), patch: patchArb }).map((r) => ({ op: 'update' as const, ...r })) },
  { weight: 1, arbitrary: fc.record({ tags: plain, desired: plain }).map((r) => ({ op: 'replace' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ op: 'delete' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'connect' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'disconnect' as const }) },
);

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Mutating RFC 7396 merge, written independently of the engine's. */
function applyPatch(target: Obj, patch: Obj): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else if (typeof v === 'object' && !Array.isArray(v)) {
      if (typeof target[k] !== 'object' || target[k] === null) target[k] = {};
      applyPatch(target[k] as Obj, v as Obj);
    } else target[k] = v;
  }
}

/** Runs the ops on the model; returns the events IoT Hub would route and the final state. */
export function runHub(ops: readonly HubOp[], key: { deviceId: string; moduleId?: string } = { deviceId: 'dev' }, startMs = Date.parse('2026-01-01T00:00:00Z')) {
  const s: HubState = { exists: false, version: 0, tags: {}, desired: {}, reported: {} };
  let desiredVersion = 0;
  let reportedVersion = 0;
  let seq = 0;
  const events: TwinEvent[] = [];
  ops.forEach((o, i) => {
    const ts = new Date(startMs + i * 1000).toISOString().slice(0, 23) + '0000Z';
    const section = (name: 'desired' | 'reported') => ({ ...clone(s[name]), $version: name === 'desired' ? desiredVersion : reportedVersion });
    if (o.op === 'create') {
      if (s.exists) return;
      Object.assign(s, { exists: true, version: 1, tags: clone(o.tags), desired: {}, reported: {}, connectionState: undefined });
      desiredVersion = 1;
      reportedVersion = 1;
      events.push({ kind: 'create', key, ts, version: 1, twin: { deviceId: key.deviceId, version: 1, tags: clone(o.tags), properties: { desired: section('desired'), reported: section('reported') } } as never });
      return;
    }
    if (!s.exists) return;
    switch (o.op) {
      case 'update': {
        s.version++;
        if (o.section === 'tags') {
          applyPatch(s.tags, o.patch);
          events.push({ kind: 'update', key, ts, version: s.version, patch: { tags: clone(o.patch) as never } });
        } else {
          applyPatch(s[o.section], o.patch);
          const v = o.section === 'desired' ? ++desiredVersion : ++reportedVersion;
          events.push({ kind: 'update', key, ts, version: s.version, patch: { [o.section]: { ...clone(o.patch), $version: v } } });
        }
        return;
      }
      case 'replace':
        s.version++;
        desiredVersion++;
        s.tags = clone(o.tags);
        s.desired = clone(o.desired);
        events.push({ kind: 'replace', key, ts, version: s.version, twin: { deviceId: key.deviceId, version: s.version, tags: clone(s.tags), properties: { desired: section('desired'), reported: section('reported') } } as never });
        return;
      case 'delete':
        s.exists = false;
        events.push({ kind: 'delete', key, ts });
        return;
      case 'connect':
      case 'disconnect':
        seq++;
        s.connectionState = o.op === 'connect' ? 'Connected' : 'Disconnected';
        events.push({ kind: 'connection', key, ts, state: s.connectionState as 'Connected', sequenceNumber: seq.toString(16).toUpperCase().padStart(64, '0') });
        return;
    }
  });
  return { events, state: s, desiredVersion, reportedVersion };
}

/** At-least-once delivery: the in-order stream with rewinds ("1,2,1,2,3,1,2,3,4"). */
export const rewindsArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 6 })), { maxLength: 6 });

export function deliverWithReplays<T>(events: readonly T[], rewinds: readonly [number, number][]): T[] {
  const out: T[] = [];
  let p = 0;
  for (const [advance, back] of rewinds) {
    const q = Math.min(events.length, p + advance);
    out.push(...events.slice(p, q));
    p = Math.max(0, q - back);
  }
  out.push(...events.slice(p));
  return out;
}

/** The route IoT Hub sends an event on: a device's events are ordered per route, not across routes. */
export function routeOf(e: TwinEvent): 'twin' | 'lifecycle' | 'connection' {
  return e.kind === 'update' || e.kind === 'replace' ? 'twin' : e.kind === 'connection' ? 'connection' : 'lifecycle';
}

/** One arrival order: each route's events keep their order, the routes interleave as `picks` says. */
export function interleaveRoutes(events: readonly TwinEvent[], picks: readonly number[]): TwinEvent[] {
  const queues = { twin: [] as TwinEvent[], lifecycle: [] as TwinEvent[], connection: [] as TwinEvent[] };
  for (const e of events) queues[routeOf(e)].push(e);
  const out: TwinEvent[] = [];
  let i = 0;
  while (out.length < events.length) {
    const open = (Object.keys(queues) as (keyof typeof queues)[]).filter((k) => queues[k].length > 0);
    out.push(queues[open[(picks[i++] ?? 0) % open.length]].shift()!);
  }
  return out;
}
