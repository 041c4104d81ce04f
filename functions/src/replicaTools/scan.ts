import type { Container } from '@azure/cosmos';
import type { BatchResult, SyncEngine } from '../sync/engine';
import { encodeDocId } from '../sync/ids';
import { normalizeTimestamp } from '../sync/timestamps';
import type { DocKey, JsonObject, TwinEvent } from '../sync/types';
import { applyEvent } from '../sync/rules';
import type { QueryPager } from './twinQuery';

/** The two twin queries that together read every twin of a hub. */
export const TWIN_QUERIES = {
  devices: 'SELECT * FROM devices',
  modules: 'SELECT * FROM devices.modules',
} as const;
export type TwinQueryName = keyof typeof TWIN_QUERIES;
export const QUERY_ORDER: readonly TwinQueryName[] = ['devices', 'modules'];

/**
 * Twin query results can lag the hub by a while. A snapshot's time is the page request time minus this
 * allowance, so that a twin read from a lagging result cannot resurrect a tombstone of a deletion made just
 * before the read; and a repair's deletion is dated scan start minus it, so that a twin created just before
 * the scan (not yet in the query results) is not tombstoned. @default 300 s
 */
export const DEFAULT_QUERY_LAG_MS = 300_000;

export function keyOfTwin(twin: JsonObject): DocKey | undefined {
  const deviceId = twin.deviceId;
  const moduleId = twin.moduleId;
  if (typeof deviceId !== 'string' || deviceId === '') return undefined;
  if (moduleId !== undefined && moduleId !== null && (typeof moduleId !== 'string' || moduleId === '')) return undefined;
  return typeof moduleId === 'string' ? { deviceId, moduleId } : { deviceId };
}

/** A twin query item as a snapshot event, or undefined when it has no usable id or version. */
export function snapshotOf(twin: JsonObject, ts: string): TwinEvent | undefined {
  const key = keyOfTwin(twin);
  const version = twin.version;
  if (!key || typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) return undefined;
  return { kind: 'snapshot', key, ts, version, twin };
}

/** What reading the hub cost: twin query requests, 429s, retries and time spent waiting. */
export type QueryStats = { requests: number; throttled: number; retries: number; waitedMs: number };

function queryStats(pager: QueryPager): QueryStats {
  const s = pager.stats;
  return { requests: s.requests, throttled: s.throttled, retries: s.retries, waitedMs: Math.round(s.waitedMs) };
}

export interface ApplyStats {
  applied: number;
  stale: number;
  deadLettered: number;
}

/**
 * Writes events through the engine's guarded path. A transient failure (throttling past the SDK's retries,
 * 5xx) is retried here; when it persists the run fails without moving its checkpoint, so nothing is lost.
 */
export async function applyWithRetry(engine: SyncEngine, events: TwinEvent[], source: string, opts: { attempts?: number; backoffMs?: number; sleep?: (ms: number) => Promise<void> } = {}): Promise<BatchResult> {
  const attempts = opts.attempts ?? 4;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 0; ; attempt++) {
    const result = await engine.applyTwinEvents(events, { isLastAttempt: false, attempt, source });
    if (!result.failure) return result;
    if (attempt + 1 >= attempts) throw new Error(`writing to the replica failed ${attempts} times: ${result.failure.message}`, { cause: result.failure });
    await sleep((opts.backoffMs ?? 1000) * 2 ** attempt);
  }
}

function count(stats: ApplyStats, result: BatchResult): void {
  stats.applied += result.summary.applied;
  stats.stale += result.summary.stale;
  stats.deadLettered += result.summary.deadLettered;
}

// ---------------------------------------------------------------- backfill

export interface QueryProgress {
  /** Continuation of the next page to read; undefined before the first page. */
  continuation?: string;
  done: boolean;
  pages: number;
  twins: number;
}

/** What a backfill persists after every page: enough to resume from the last continuation token. */
export interface BackfillState {
  kind: 'twin-replica-backfill';
  hub: string;
  startedAt: string;
  updatedAt: string;
  queries: Record<TwinQueryName, QueryProgress>;
}

export function newBackfillState(hub: string, now = new Date()): BackfillState {
  const fresh = (): QueryProgress => ({ done: false, pages: 0, twins: 0 });
  return { kind: 'twin-replica-backfill', hub, startedAt: now.toISOString(), updatedAt: now.toISOString(), queries: { devices: fresh(), modules: fresh() } };
}

export interface BackfillOptions {
  engine: SyncEngine;
  pager: QueryPager;
  state: BackfillState;
  /** Persists the state after each page has been written to the replica. */
  checkpoint: (state: BackfillState) => Promise<void>;
  /** @default 100 */
  pageSize?: number;
  queryLagMs?: number;
  signal?: AbortSignal;
  onPage?: (info: { query: TwinQueryName; page: number; twins: number; totalTwins: number }) => void;
  now?: () => number;
}

export interface BackfillReport {
  hub: string;
  resumed: boolean;
  pages: number;
  twins: { devices: number; modules: number };
  /** Items of this run without a usable deviceId/version (not written). */
  unusable: number;
  replica: ApplyStats;
  query: QueryStats;
  durationMs: number;
}

export async function runBackfill(opts: BackfillOptions): Promise<BackfillReport> {
  const started = Date.now();
  const now = opts.now ?? Date.now;
  const lag = opts.queryLagMs ?? DEFAULT_QUERY_LAG_MS;
  const pageSize = opts.pageSize ?? 100;
  const state = opts.state;
  const resumed = QUERY_ORDER.some((q) => state.queries[q].pages > 0);
  const replica: ApplyStats = { applied: 0, stale: 0, deadLettered: 0 };
  let pages = 0;
  let unusable = 0;
  for (const name of QUERY_ORDER) {
    const progress = state.queries[name];
    while (!progress.done) {
      opts.signal?.throwIfAborted();
      let requestedAt = now();
      const page = await opts.pager.page(TWIN_QUERIES[name], progress.continuation, pageSize, () => (requestedAt = now()));
      const ts = normalizeTimestamp(requestedAt - lag)!;
      const events: TwinEvent[] = [];
      for (const item of page.items) {
        const event = snapshotOf(item, ts);
        if (event) events.push(event);
        else unusable++;
      }
      if (events.length > 0) count(replica, await applyWithRetry(opts.engine, events, 'replica-tools:backfill'));
      pages++;
      progress.pages++;
      progress.twins += page.items.length;
      progress.continuation = page.continuation;
      progress.done = page.continuation === undefined;
      state.updatedAt = new Date(now()).toISOString();
      await opts.checkpoint(state);
      opts.onPage?.({ query: name, page: progress.pages, twins: page.items.length, totalTwins: state.queries.devices.twins + state.queries.modules.twins });
    }
  }
  return {
    hub: state.hub, resumed, pages,
    twins: { devices: state.queries.devices.twins, modules: state.queries.modules.twins },
    unusable, replica,
    query: queryStats(opts.pager),
    durationMs: Date.now() - started,
  };
}

// ---------------------------------------------------------------- verify

/** What verify needs to know about each replica document (one cross-partition query lists them all). */
export interface ReplicaEntry {
  id: string;
  deviceId: string;
  moduleId?: string;
  version?: number;
  deleted?: boolean;
  partial?: boolean;
}

export interface ReplicaIndex {
  list(): AsyncIterable<ReplicaEntry>;
}

/** Lists the replica container's documents, projecting only what verify compares. */
export class CosmosReplicaIndex implements ReplicaIndex {
  constructor(private readonly container: Container, private readonly pageSize = 1000) {}
  async *list(): AsyncIterable<ReplicaEntry> {
    const iterator = this.container.items.query<ReplicaEntry & { replica?: { partial?: boolean } }>(
      'SELECT c.id, c.deviceId, c.moduleId, c.version, c.deleted, c.replica FROM c',
      { maxItemCount: this.pageSize },
    );
    while (iterator.hasMoreResults()) {
      const { resources } = await iterator.fetchNext();
      for (const r of resources ?? []) {
        yield { id: r.id, deviceId: r.deviceId, moduleId: r.moduleId, version: r.version, deleted: r.deleted === true, partial: r.replica?.partial === true };
      }
    }
  }
}

export type Discrepancy = 'missing' | 'extra' | 'stale' | 'partial';

export interface DiscrepancySample {
  deviceId: string;
  moduleId?: string;
  hubVersion?: number;
  replicaVersion?: number;
  replicaDeleted?: boolean;
}

export interface VerifyOptions {
  engine: SyncEngine;
  pager: QueryPager;
  replica: ReplicaIndex;
  repair: boolean;
  /** @default 100 */
  pageSize?: number;
  /** @default 10 */
  samples?: number;
  queryLagMs?: number;
  /** Stop reading the hub at this time (epoch ms): the report is then incomplete and extras are not judged. */
  deadline?: number;
  signal?: AbortSignal;
  onPage?: (info: { query: TwinQueryName; page: number; twins: number; totalTwins: number }) => void;
  now?: () => number;
  hub: string;
}

export interface VerifyReport {
  hub: string;
  startedAt: string;
  finishedAt: string;
  /** False when a deadline stopped the hub scan: extras are then not judged. */
  complete: boolean;
  repair: boolean;
  hubTwins: { devices: number; modules: number };
  replicaDocuments: { live: number; tombstones: number };
  /** On the hub, absent from the replica or tombstoned there. */
  missing: { count: number; samples: DiscrepancySample[] };
  /** Live in the replica, absent from the hub (deleted there). */
  extra: { count: number; samples: DiscrepancySample[] };
  /** The replica holds an older version than the hub. */
  stale: { count: number; samples: DiscrepancySample[] };
  /** The replica document was built from changes alone (never saw a full twin) and is at the hub's version. */
  partial: { count: number; samples: DiscrepancySample[] };
  /** The replica is newer than the query result (query results lag the hub): not a discrepancy. */
  ahead: number;
  /** Differed in the replica listing, but the document changed since (a live event) and is as new as the hub's read. */
  changedDuringScan: number;
  /** Items without a usable deviceId/version. */
  unusable: number;
  /** What the repair wrote: `skipped` = the guard kept a document that changed during the scan. */
  repaired?: { applied: number; skipped: number; deadLettered: number };
  /** Discrepancies still there after the repair (or all of them without --repair). */
  remaining: number;
  query: QueryStats;
  durationMs: number;
}

export async function runVerify(opts: VerifyOptions): Promise<VerifyReport> {
  const startedMs = Date.now();
  const now = opts.now ?? Date.now;
  const scanStart = now();
  const lag = opts.queryLagMs ?? DEFAULT_QUERY_LAG_MS;
  const pageSize = opts.pageSize ?? 100;
  const maxSamples = opts.samples ?? 10;
  const bucket = () => ({ count: 0, samples: [] as DiscrepancySample[] });
  const report: VerifyReport = {
    hub: opts.hub, startedAt: new Date(scanStart).toISOString(), finishedAt: '', complete: true, repair: opts.repair,
    hubTwins: { devices: 0, modules: 0 }, replicaDocuments: { live: 0, tombstones: 0 },
    missing: bucket(), extra: bucket(), stale: bucket(), partial: bucket(), ahead: 0, changedDuringScan: 0, unusable: 0,
    remaining: 0, query: { requests: 0, throttled: 0, retries: 0, waitedMs: 0 }, durationMs: 0,
  };
  const repaired = { applied: 0, skipped: 0, deadLettered: 0 };
  const note = (kind: Discrepancy, sample: DiscrepancySample) => {
    const b = report[kind];
    b.count++;
    if (b.samples.length < maxSamples) b.samples.push(sample);
  };
  const repairEvents = async (events: TwinEvent[]) => {
    if (!opts.repair || events.length === 0) return;
    const result = await applyWithRetry(opts.engine, events, 'replica-tools:verify');
    repaired.applied += result.summary.applied;
    repaired.skipped += result.summary.stale;
    repaired.deadLettered += result.summary.deadLettered;
  };

  // 1. The replica's documents (ids, versions, tombstone flags).
  const index = new Map<string, ReplicaEntry>();
  for await (const entry of opts.replica.list()) {
    index.set(entry.id, entry);
    if (entry.deleted) report.replicaDocuments.tombstones++;
    else report.replicaDocuments.live++;
  }

  // 2. The hub, page by page; each discrepancy is confirmed with a point read before it counts.
  const seen = new Set<string>();
  scan: for (const name of QUERY_ORDER) {
    let continuation: string | undefined;
    let pages = 0;
    do {
      opts.signal?.throwIfAborted();
      if (opts.deadline !== undefined && now() >= opts.deadline) {
        report.complete = false;
        break scan;
      }
      let requestedAt = now();
      const page = await opts.pager.page(TWIN_QUERIES[name], continuation, pageSize, () => (requestedAt = now()));
      const ts = normalizeTimestamp(requestedAt - lag)!;
      continuation = page.continuation;
      pages++;
      const events: TwinEvent[] = [];
      for (const twin of page.items) {
        const event = snapshotOf(twin, ts);
        if (!event || event.kind !== 'snapshot') {
          report.unusable++;
          continue;
        }
        report.hubTwins[name]++;
        const id = encodeDocId(event.key);
        seen.add(id);
        const listed = index.get(id);
        if (listed && !listed.deleted && listed.version !== undefined && listed.version >= event.version && !(listed.partial && listed.version === event.version)) {
          if (listed.version > event.version) report.ahead++;
          continue;
        }
        // Confirm with a point read and the engine's own rules: only what the snapshot would change counts.
        const current = (await opts.engine.store.read(id, event.key.deviceId))?.doc;
        if (current && applyEvent(current, event).outcome === 'stale') {
          report.changedDuringScan++;
          continue;
        }
        const sample: DiscrepancySample = { ...event.key, hubVersion: event.version, replicaVersion: current?.version, ...(current?.deleted ? { replicaDeleted: true } : {}) };
        if (!current || current.deleted) note('missing', sample);
        else if (current.replica?.partial && current.version === event.version) note('partial', sample);
        else note('stale', sample);
        events.push(event);
      }
      await repairEvents(events);
      opts.onPage?.({ query: name, page: pages, twins: page.items.length, totalTwins: report.hubTwins.devices + report.hubTwins.modules });
    } while (continuation !== undefined);
  }

  // 3. Extras: live in the replica, not on the hub. Judged only after a complete scan, and dated at scan
  //    start minus the lag allowance so that the guard keeps any document that changed after that.
  if (report.complete) {
    const deleteTs = normalizeTimestamp(scanStart - lag)!;
    const events: TwinEvent[] = [];
    for (const [id, entry] of index) {
      if (entry.deleted || seen.has(id)) continue;
      const current = (await opts.engine.store.read(id, entry.deviceId))?.doc;
      if (!current || current.deleted) continue;
      const key: DocKey = entry.moduleId !== undefined ? { deviceId: entry.deviceId, moduleId: entry.moduleId } : { deviceId: entry.deviceId };
      const deletion: TwinEvent = { kind: 'delete', key, ts: deleteTs };
      if (applyEvent(current, deletion).outcome === 'stale') {
        report.changedDuringScan++; // created or changed after (scan start − lag): not ours to judge
        continue;
      }
      note('extra', { ...key, replicaVersion: current.version });
      events.push(deletion);
      if (events.length >= 100) await repairEvents(events.splice(0));
    }
    await repairEvents(events);
  }

  const found = report.missing.count + report.extra.count + report.stale.count + report.partial.count;
  if (opts.repair) {
    report.repaired = repaired;
    report.remaining = found - repaired.applied - repaired.skipped;
  } else {
    report.remaining = found;
  }
  report.query = queryStats(opts.pager);
  report.finishedAt = new Date(now()).toISOString();
  report.durationMs = Date.now() - startedMs;
  return report;
}
