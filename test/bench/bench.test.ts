/**
 * The bench's accounting on a tiny workload (in-process servers): what it counts must add up. No timing
 * assertions: figures are printed by `npm run bench`, never asserted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { runBench, type BenchResults } from '../../bench/run';
import { readRu, writeRu } from '../../bench/ru';
import { DEFAULT_WORKLOAD, generateWorkload, type WorkloadOptions } from '../../bench/workload';

const tiny: WorkloadOptions = { ...DEFAULT_WORKLOAD, devices: 12, events: 600, partitions: 2, batchSize: 50, burst: 4, interleave: 4, poisonRate: 0.01, seed: 7 };

describe('bench accounting (tiny workload, in-process servers)', () => {
  let r: BenchResults;
  beforeAll(async () => {
    r = await runBench({ workload: tiny, servers: 'in-process', artifacts: false, synth: false });
  });

  it('every strategy saw every event, and its outcomes add up to what it received', () => {
    for (const p of [r.phases.shipped!, r.phases.perEvent!, r.phases.perEventCached!, r.phases.inMemory!]) {
      expect(p.events).toBe(tiny.events);
      expect(p.batches).toBe(r.workload.batches);
      const t = p.tally;
      expect(t.failedInvocations).toBe(0);
      expect(t.received).toBe(tiny.events);
      expect(t.applied + t.stale + t.skipped + t.deadLettered + t.retrying).toBe(t.received);
      // The workload has no replays, so every change applies and only poison is dead-lettered.
      expect(t.applied).toBe(p.changes);
      expect(t.deadLettered).toBe(tiny.events - p.changes);
    }
    expect(r.phases.shipped!.tally.deadLettered).toBeGreaterThan(0);
  });

  it('the shipped handler logged a summary matching what it returned, on every invocation', () => {
    const t = r.phases.shipped!.tally;
    expect(t.loggedSummaries).toBe(t.invocations);
    expect(r.phases.inMemory!.tally.loggedSummaries).toBe(r.phases.inMemory!.tally.invocations);
  });

  it('the server counted exactly the reads and writes the engine reports: one write per changed document per batch, inside bulk requests', () => {
    const s = r.phases.shipped!;
    const k = s.server!.byKind;
    expect(k.read ?? 0).toBe(s.tally.reads);
    expect(k.write ?? 0).toBe(0); // no point writes: the batch's writes travel in bulk requests
    expect(s.server!.writeOps).toBe(s.tally.writes);
    expect(s.tally.writes).toBe(s.changedDocs);
    expect(k.bulk).toBeGreaterThan(0);
    expect(k.bulk).toBeLessThanOrEqual(s.tally.invocations); // at most one bulk request per invocation on one partition range
    expect(s.tally.documents).toBe(s.changedDocs);
  });

  it('the per-event strategy costs exactly one read and one write per change', () => {
    const p = r.phases.perEvent!;
    const k = p.server!.byKind;
    expect(k.read).toBe(p.changes);
    expect(k.write).toBe(p.changes);
    expect(p.server!.dataRequests).toBe(2 * p.changes);
    // Every document is new at its first event: those reads are 404s, then creates.
    expect(p.server!.byStatus['read:404']).toBe(tiny.devices);
    expect(p.server!.byStatus['write:201']).toBe(tiny.devices);
  });

  it('the per-event strategy with a cached ETag reads each document once (all fit in its cache) and writes once per change', () => {
    const c = r.phases.perEventCached!;
    const k = c.server!.byKind;
    expect(k.read).toBe(tiny.devices);
    expect(k.write).toBe(c.changes);
    expect(c.tally.conflicts).toBe(0);
    expect(r.ratiosVsCached!.requestsPerEvent).toBeCloseTo(r.phases.shipped!.server!.requestsPerEvent / c.server!.requestsPerEvent, 10);
  });

  it('requests and RU are priced from the bytes at the server, and the ratios come from them', () => {
    const s = r.phases.shipped!.server!;
    const p = r.phases.perEvent!.server!;
    expect(s.ru).toBeGreaterThan(0);
    expect(s.ru).toBeLessThan(p.ru);
    expect(s.avgWriteBytes).toBeGreaterThan(tiny.minDocBytes * 0.8);
    expect(s.avgWriteBytes).toBeLessThan(tiny.maxDocBytes * 1.2);
    expect(r.ratios!.requestsPerEvent).toBeCloseTo(s.requestsPerEvent / p.requestsPerEvent, 10);
    expect(r.phases.inMemory!.invocationCpuUsPerEvent).toBeGreaterThan(0);
    expect(r.targets.find((t) => t.name === 'bundle size')!.pass).toBeNull();
  });
});

describe('bench accounting with deletes, modules and replays (tiny fleet, in-process servers)', () => {
  const fleet: WorkloadOptions = { ...tiny, devices: 30, events: 900, burst: 1, poisonRate: 0, deleteRate: 0.03, moduleShare: 0.5, replayRate: 0.05 };

  it('every strategy applies the same changes and finds the same replays stale', async () => {
    const f = await runBench({ workload: fleet, servers: 'in-process', artifacts: false, synth: false, warmup: 0 });
    const [s, p, c, m] = [f.phases.shipped!, f.phases.perEvent!, f.phases.perEventCached!, f.phases.inMemory!];
    for (const x of [s, p, c, m]) {
      expect(x.tally.failedInvocations).toBe(0);
      expect(x.tally.applied + x.tally.stale + x.tally.deadLettered).toBe(fleet.events);
      expect(x.tally.applied).toBe(p.tally.applied);
    }
    expect(s.tally.stale).toBeGreaterThan(0);
    expect(s.tally.queries).toBeGreaterThan(0); // the engine asks for a deleted device's modules
  }, 60_000);

  it('the workload deletes devices with their modules, re-creates them, has module documents and re-sends events', () => {
    const ops = new Map<string, number>();
    let replays = 0;
    const seen = new Set<string>();
    for (const batch of generateWorkload(fleet).flat()) {
      const tr = batch.trigger();
      tr.messages.forEach((m, i) => {
        const props = tr.triggerMetadata.propertiesArray[i];
        const kind = `${String(props.opType)}${props.moduleId ? ' (module)' : ''}`;
        ops.set(kind, (ops.get(kind) ?? 0) + 1);
        const sig = JSON.stringify([props, m]);
        if (seen.has(sig)) replays++;
        seen.add(sig);
      });
    }
    expect(ops.get('deleteDeviceIdentity')).toBeGreaterThan(0);
    expect(ops.get('deleteDeviceIdentity (module)')).toBeGreaterThan(0);
    expect(ops.get('createDeviceIdentity')).toBeGreaterThan(fleet.devices); // re-created after deletion
    expect(ops.get('createDeviceIdentity (module)')).toBeGreaterThan(0);
    expect(ops.get('updateTwin (module)')).toBeGreaterThan(0);
    expect(replays).toBeGreaterThan(0);
  });
});

describe('RU formula', () => {
  it('goes through the charges Microsoft publishes per document size, reads and writes, beyond 16 KB too', () => {
    // Microsoft Learn, "Understand request unit consumption in Azure Cosmos DB", table "Document size".
    for (const [kb, read, write] of [[1, 1.0, 4.95], [4, 1.14, 6.67], [16, 1.67, 9.52], [64, 4.76, 22.67], [128, 9.95, 48.19], [2048, 291.8, 1250]]) {
      expect(readRu(kb * 1024)).toBeCloseTo(read, 6);
      expect(writeRu(kb * 1024)).toBeCloseTo(write, 6);
    }
    expect(writeRu(300)).toBeCloseTo(4.95, 6);
    expect(readRu(10)).toBeCloseTo(1, 6);
    expect(writeRu(24 * 1024)).toBeGreaterThan(9.52);
    expect(writeRu(24 * 1024)).toBeLessThan(11.23);
  });
});

describe('workload', () => {
  it('is reproducible from its seed', () => {
    const a = generateWorkload(tiny).flat().map((b) => b.trigger().messages);
    const b = generateWorkload(tiny).flat().map((b) => b.trigger().messages);
    expect(a).toEqual(b);
  });

  it('bursts put several events of one device in a batch; --burst 1 does not', () => {
    const stats = (burst: number) => {
      const batches = generateWorkload({ ...tiny, devices: 200, events: 2_000, poisonRate: 0, burst }).flat();
      return batches.reduce((a, b) => a + b.changes, 0) / batches.reduce((a, b) => a + b.changedDocs, 0);
    };
    expect(stats(5)).toBeGreaterThan(2.5);
    // Without bursts, repeats are only chance: two random picks of the same device (100 per partition here).
    expect(stats(1)).toBeLessThan(1.5);
  });

  it('keeps a device in one partition and its versions increasing', () => {
    const seen = new Map<string, { partition: string; version: number }>();
    for (const batch of generateWorkload({ ...tiny, poisonRate: 0 }).flat()) {
      const trigger = batch.trigger();
      trigger.messages.forEach((m, i) => {
        const props = trigger.triggerMetadata.propertiesArray[i];
        const id = String(props.deviceId);
        const body = m as { version?: number }; // parsed, as the library hands bodies over (testkit toTrigger)
        const prev = seen.get(id);
        if (prev) expect(prev.partition).toBe(batch.partitionId);
        const version = body.version ?? prev?.version ?? 0;
        if (prev && props.opType === 'updateTwin') expect(version).toBeGreaterThan(prev.version);
        seen.set(id, { partition: batch.partitionId, version });
      });
    }
    expect(seen.size).toBe(tiny.devices);
  });
});
