/**
 * The benchmark's seeded workload: IoT Hub twin traffic as the Event Hubs trigger delivers it.
 *
 * Devices hash to partitions (IoT Hub uses the device id as the partition key, so a device's events
 * stay in order in one partition). Each partition interleaves a few "bursts" at a time: a device that
 * changes usually changes several times within seconds (a reported-properties update, then another, a
 * connection flap...), so one batch of 100 events holds several events of the same device. A device's
 * first burst opens with its creation (the full twin, 1 KB to 16 KB, log-uniform), so every run starts
 * from an empty container and the document sizes are known.
 *
 * Batches are generated lazily, partition by partition, so a long run (10k devices) holds one batch at a
 * time, not the whole stream.
 *
 * A fleet also deletes and re-creates devices (`deleteRate`: the device's module deletions, then its own,
 * then its next event re-creates it), has modules (`moduleShare` of the devices have two, each a document
 * of its own, created by its first event) and sees IoT Hub re-send events (`replayRate`: a copy of one of
 * the partition's last 500 events, stale for every strategy). Named presets (WORKLOADS) give the headline
 * runs: bursty changes, periodic reporters (one change per device per batch), and a fleet larger than the
 * engine's cache.
 */
import { connection, created, deleted, fullTwin, opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../testkit/events';

export interface WorkloadOptions {
  devices: number;
  events: number;
  partitions: number;
  batchSize: number;
  /** Mean burst length (events of one device within seconds); 1 = no bursts. */
  burst: number;
  /** Bursts in flight at once per partition (how many devices' bursts interleave). */
  interleave: number;
  minDocBytes: number;
  maxDocBytes: number;
  seed: number;
  /** Share of events that are poison (a body that is not JSON), dead-lettered by the handler. */
  poisonRate: number;
  /** Device ids are `<prefix><6 digits>`; a warm-up pass uses another prefix so it never touches the measured documents. */
  devicePrefix?: string;
  /** Share of events that delete a device (with its modules); its next event re-creates it. @default 0 */
  deleteRate?: number;
  /** Share of devices with two modules. @default 0 */
  moduleShare?: number;
  /** Share of events that are re-sends of one of the partition's recent events. @default 0 */
  replayRate?: number;
}

export const DEFAULT_WORKLOAD: WorkloadOptions = {
  devices: 1_000,
  events: 50_000,
  partitions: 4,
  batchSize: 100,
  burst: 5,
  interleave: 8,
  minDocBytes: 1024,
  maxDocBytes: 16 * 1024,
  seed: 42,
  poisonRate: 0,
};

/** The workloads the headline figures are given for (docs/performance.md); flags override their values. */
export const WORKLOADS: Record<string, Partial<WorkloadOptions>> = {
  bursty: {},
  periodic: { burst: 1 },
  fleet: { devices: 100_000, events: 60_000, burst: 1, minDocBytes: 1024, maxDocBytes: 4 * 1024, deleteRate: 0.005, moduleShare: 0.2, replayRate: 0.02 },
};

export type Trigger = ReturnType<typeof toTrigger>;

export interface Batch {
  partitionId: string;
  /** Position of this batch in its partition (0-based). */
  index: number;
  /** Events in the batch. */
  size: number;
  /**
   * What the trigger hands the function. A materialized workload keeps each batch as one JSON string
   * (a flat string the GC does not trace) and parses it here, as the worker deserializes an invocation;
   * the driver keeps that time out of the figures.
   */
  trigger: () => Trigger;
  /** Distinct documents with at least one change in this batch (the floor of writes for this batch). */
  changedDocs: number;
  /** Events that are twin changes for a document (not poison). */
  changes: number;
}

/** mulberry32: small, fast, good enough to make the workload reproducible from one seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a: a stable device → partition mapping (stand-in for Event Hubs' partition-key hash). */
function partitionOf(deviceId: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < deviceId.length; i++) h = Math.imul(h ^ deviceId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % partitions;
}

export function deviceId(i: number, prefix = 'bench-'): string {
  return `${prefix}${String(i).padStart(6, '0')}`;
}

interface DeviceState {
  id: string;
  /** Target serialized size of the twin document. */
  docBytes: number;
  keys: number;
  valueLength: number;
  version: number;
  connectionSeq: number;
  reportedVersion: number;
  desiredVersion: number;
  created: boolean;
  busy: boolean;
  modules: ModuleState[];
}

interface ModuleState {
  id: string;
  version: number;
  reportedVersion: number;
  created: boolean;
}

interface Burst {
  device: DeviceState;
  left: number;
}

/** Reported properties of a size that brings the whole twin document near `docBytes`. */
function reportedSection(d: DeviceState, ts: string, valueOf: (k: number) => string): Record<string, unknown> {
  const data: Record<string, string> = {};
  const metadata: Record<string, { $lastUpdated: string }> = {};
  for (let k = 0; k < d.keys; k++) {
    data[`p${k}`] = valueOf(k);
    metadata[`p${k}`] = { $lastUpdated: ts };
  }
  return { ...data, $metadata: { $lastUpdated: ts, ...metadata }, $version: d.reportedVersion };
}

function sizeDevice(d: DeviceState, targetBytes: number): void {
  // Each reported key costs its value plus ~75 bytes of name, quotes and $metadata; ~600 bytes are the rest of the document.
  d.docBytes = targetBytes;
  d.keys = Math.max(2, Math.min(64, Math.round(targetBytes / 256)));
  d.valueLength = Math.max(8, Math.floor((targetBytes - 600) / d.keys) - 75);
}

function filler(r: () => number, length: number): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  // A short random head, then repetition: cheap to generate, still distinct per write.
  for (let i = 0; i < 12; i++) s += chars[Math.floor(r() * chars.length)];
  return s.repeat(Math.ceil(length / 12)).slice(0, length);
}

/** One partition's stream, batch by batch. */
export function* partitionBatches(opts: WorkloadOptions, partition: number): Generator<Batch> {
  const r = rng(opts.seed * 1_000_003 + partition);
  const sizeRng = rng(opts.seed);
  const devices: DeviceState[] = [];
  for (let i = 0; i < opts.devices; i++) {
    // Sizes come from a seed-only stream so that a device's size does not depend on the partition count.
    const u = sizeRng();
    const id = deviceId(i, opts.devicePrefix);
    if (partitionOf(id, opts.partitions) !== partition) continue;
    const withModules = (opts.moduleShare ?? 0) > 0 && ((i * 2654435761) >>> 0) % 1000 < (opts.moduleShare ?? 0) * 1000;
    const modules = withModules ? ['$edgeAgent', 'sensor'].map((m) => ({ id: m, version: 0, reportedVersion: 1, created: false })) : [];
    const d: DeviceState = { id, docBytes: 0, keys: 0, valueLength: 0, version: 0, connectionSeq: 0, reportedVersion: 1, desiredVersion: 1, created: false, busy: false, modules };
    sizeDevice(d, Math.round(opts.minDocBytes * Math.pow(opts.maxDocBytes / opts.minDocBytes, u)));
    devices.push(d);
  }
  const total = Math.floor(opts.events / opts.partitions) + (partition < opts.events % opts.partitions ? 1 : 0);
  if (devices.length === 0 || total === 0) return;

  const meanBurst = Math.max(1, opts.burst);
  const burstLength = () => (meanBurst <= 1 ? 1 : 1 + Math.floor(r() * (2 * meanBurst - 1))); // uniform 1..2B-1, mean B
  const active: Burst[] = [];
  const slots = Math.max(1, Math.min(opts.interleave, devices.length));
  const startBurst = () => {
    let d = devices[Math.floor(r() * devices.length)];
    for (let tries = 0; d.busy && tries < 20; tries++) d = devices[Math.floor(r() * devices.length)];
    if (d.busy) d = devices.find((x) => !x.busy) ?? d;
    d.busy = true;
    active.push({ device: d, left: burstLength() });
  };
  // Partition clock: bursts of one device land within a few seconds.
  let clock = Date.parse('2026-01-01T00:00:00Z') + partition * 7;
  let emitted = 0;
  let sequence = 1;
  const recent: WireEvent[] = [];
  const remember = (e: WireEvent) => {
    recent.push(e);
    if (recent.length > 500) recent.shift();
  };
  for (let index = 0; emitted < total; index++) {
    const size = Math.min(opts.batchSize, total - emitted);
    const events: WireEvent[] = [];
    const changed = new Set<string>();
    let changes = 0;
    while (events.length < size) {
      while (active.length < slots) startBurst();
      const slot = Math.floor(r() * active.length);
      const burst = active[slot];
      const d = burst.device;
      clock += 20 + Math.floor(r() * 200);
      const ts = opTimestamp(clock, Math.floor(r() * 10_000));
      if (opts.poisonRate > 0 && r() < opts.poisonRate) {
        const e = twinUpdate({ deviceId: d.id, ts, version: d.version + 1, reported: {} });
        events.push({ ...e, body: '{"version": not json' });
      } else if ((opts.replayRate ?? 0) > 0 && recent.length > 0 && r() < (opts.replayRate ?? 0)) {
        // IoT Hub re-sends an event it already routed (at-least-once): identical, hence stale.
        events.push(recent[Math.floor(r() * recent.length)]);
      } else if (d.created && (opts.deleteRate ?? 0) > 0 && r() < (opts.deleteRate ?? 0)) {
        for (const m of d.modules.filter((x) => x.created)) {
          const e = deleted({ deviceId: d.id, moduleId: m.id, ts });
          events.push(e);
          remember(e);
          changes++;
          changed.add(`${d.id}/${m.id}`);
          m.created = false;
        }
        const e = deleted({ deviceId: d.id, ts: opTimestamp(clock, 9_999) });
        events.push(e);
        remember(e);
        changes++;
        changed.add(d.id);
        d.created = false;
        Object.assign(d, { version: 0, reportedVersion: 1, desiredVersion: 1 });
        clock += 1;
      } else if (d.created && d.modules.length > 0 && r() < 0.3) {
        const m = d.modules[Math.floor(r() * d.modules.length)];
        let e: WireEvent;
        if (!m.created) {
          m.created = true;
          m.version = 2;
          m.reportedVersion = 1;
          e = created({ deviceId: d.id, moduleId: m.id, ts, twin: fullTwin({ deviceId: d.id, moduleId: m.id, version: 2, extra: { status: 'enabled', connectionState: 'Disconnected' } }) });
        } else {
          m.version++;
          m.reportedVersion++;
          e = twinUpdate({ deviceId: d.id, moduleId: m.id, ts, version: m.version, reported: { uptime: Math.floor(r() * 1e6), $metadata: { $lastUpdated: ts, uptime: { $lastUpdated: ts } }, $version: m.reportedVersion } });
        }
        events.push(e);
        remember(e);
        changes++;
        changed.add(`${d.id}/${m.id}`);
      } else if (!d.created) {
        d.created = true;
        d.version = 1;
        const reported = reportedSection(d, ts, () => filler(r, d.valueLength));
        events.push(created({ deviceId: d.id, ts, twin: fullTwin({ deviceId: d.id, version: 1, tags: { site: `site-${d.id.slice(-2)}`, model: 'bench' }, reported: reported as never, extra: { status: 'enabled', connectionState: 'Disconnected' } }) }));
        remember(events[events.length - 1]);
        changes++;
        changed.add(d.id);
      } else {
        const pick = r();
        if (pick < 0.1) {
          d.connectionSeq++;
          events.push(connection({ deviceId: d.id, ts, connected: d.connectionSeq % 2 === 1, sequence: d.connectionSeq }));
        } else if (pick < 0.15) {
          d.version++;
          d.desiredVersion++;
          events.push(twinUpdate({ deviceId: d.id, ts, version: d.version, desired: { interval: 10 + Math.floor(r() * 50), $metadata: { $lastUpdated: ts, interval: { $lastUpdated: ts } }, $version: d.desiredVersion } }));
        } else {
          // A reported-properties patch touching 1-3 existing keys with new values of the same length.
          d.version++;
          d.reportedVersion++;
          const n = 1 + Math.floor(r() * 3);
          const patch: Record<string, unknown> = {};
          const meta: Record<string, unknown> = { $lastUpdated: ts };
          for (let j = 0; j < n; j++) {
            const k = Math.floor(r() * d.keys);
            patch[`p${k}`] = filler(r, d.valueLength);
            meta[`p${k}`] = { $lastUpdated: ts };
          }
          events.push(twinUpdate({ deviceId: d.id, ts, version: d.version, reported: { ...patch, $metadata: meta, $version: d.reportedVersion } as never }));
        }
        remember(events[events.length - 1]);
        changes++;
        changed.add(d.id);
      }
      if (--burst.left <= 0) {
        d.busy = false;
        active.splice(slot, 1);
      }
    }
    emitted += events.length;
    const trigger = toTrigger(events, { partitionId: String(partition), firstSequence: sequence, enqueuedMs: clock });
    sequence += events.length;
    yield { partitionId: String(partition), index, size: events.length, trigger: () => trigger, changedDocs: changed.size, changes };
  }
}

/**
 * The whole workload, materialized: one array of batches per partition, each batch held as a JSON
 * string so that 50,000 events of live objects do not sit in the heap the measured code's GC walks.
 */
export function generateWorkload(opts: WorkloadOptions): Batch[][] {
  return Array.from({ length: opts.partitions }, (_, p) =>
    [...partitionBatches(opts, p)].map((b) => {
      const json = JSON.stringify(b.trigger());
      return { ...b, trigger: () => JSON.parse(json) as Trigger };
    }),
  );
}
