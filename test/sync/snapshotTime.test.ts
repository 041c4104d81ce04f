import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyEvent } from '../../functions/src/sync/rules';
import type { TwinDoc, TwinEvent } from '../../functions/src/sync/types';
import { opTimestamp } from '../../testkit/events';

/**
 * Snapshots carry the time they describe (replica.snapshotAt): the document then holds the hub's state at
 * that time, so no twin change from then or before (a redrive, a late delivery, an earlier incarnation's
 * event) may change it. Connection state keeps its own ordering.
 */
const key = { deviceId: 'snap-dev' };
const T = Date.parse('2026-06-01T12:00:00Z');
const at = (offsetMs: number) => opTimestamp(T + offsetMs);
const twin = (version: number, tags: Record<string, number> = {}) => ({ deviceId: key.deviceId, version, tags, properties: { desired: {}, reported: {} } });
const snapshotBuilt = (version: number): TwinDoc => applyEvent(undefined, { kind: 'snapshot', key, ts: at(0), version, twin: twin(version, { snap: 1 }) }).doc!;

describe('snapshot time', () => {
  it('a redriven old create cannot restart a snapshot-built document', () => {
    const doc = snapshotBuilt(7);
    expect(doc.replica.snapshotAt).toBe(at(0));
    expect(applyEvent(doc, { kind: 'create', key, ts: at(-3_600_000), version: 1, twin: twin(1, { old: 1 }) }).outcome).toBe('stale');
  });

  it('no twin change at or before the snapshot time changes the document; later ones do', () => {
    const eventArb: fc.Arbitrary<TwinEvent> = fc.record({
      kind: fc.constantFrom('create', 'update', 'replace', 'delete', 'snapshot'),
      offset: fc.integer({ min: -86_400_000, max: 0 }),
      version: fc.integer({ min: 1, max: 100 }),
      confirmed: fc.boolean(),
    }).map(({ kind, offset, version, confirmed }) => {
      const ts = at(offset);
      switch (kind) {
        case 'create': return { kind, key, ts, version, twin: twin(version) };
        case 'update': return { kind, key, ts, version, patch: { tags: { late: 1 } } };
        case 'replace': return { kind, key, ts, version, twin: twin(version) };
        case 'delete': return { kind, key, ts };
        default: return { kind: 'snapshot' as const, key, ts, version, twin: twin(version), ...(confirmed ? { confirmed: true as const } : {}) };
      }
    });
    fc.assert(fc.property(fc.integer({ min: 1, max: 50 }), eventArb, (v, event) => {
      const doc = snapshotBuilt(v);
      expect(applyEvent(doc, event)).toEqual({ doc, outcome: 'stale' });
    }));
    const doc = snapshotBuilt(7);
    expect(applyEvent(doc, { kind: 'update', key, ts: at(1), version: 8, patch: { tags: { later: 1 } } }).outcome).toBe('applied');
    expect(applyEvent(doc, { kind: 'delete', key, ts: at(1) }).doc).toMatchObject({ deleted: true });
  });

  it('a confirmed snapshot replaces an earlier incarnation (higher version) unless the document reflects a newer change', () => {
    const old: TwinDoc = applyEvent(undefined, { kind: 'create', key, ts: at(-86_400_000), version: 57, twin: twin(57, { gen: 0 }) }).doc!;
    const confirmed: TwinEvent = { kind: 'snapshot', key, ts: at(0), version: 3, twin: twin(3, { gen: 1 }), confirmed: true };
    const replaced = applyEvent(old, confirmed);
    expect(replaced.outcome).toBe('applied');
    expect(replaced.doc).toMatchObject({ version: 3, tags: { gen: 1 }, replica: { snapshotAt: at(0) } });
    expect(replaced.doc!.replica.createdAt).toBeUndefined(); // the old incarnation's create no longer applies
    // A query row (not confirmed) never lowers a version.
    expect(applyEvent(old, { ...confirmed, confirmed: undefined }).outcome).toBe('stale');
    // A document that reflects a change newer than the read keeps it.
    const newer = applyEvent(undefined, { kind: 'create', key, ts: at(1_000), version: 1, twin: twin(1, { gen: 2 }) }).doc!;
    expect(applyEvent(newer, confirmed).outcome).toBe('stale');
  });
});
