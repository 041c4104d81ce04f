/** Verify: compares the hub with the replica (the query nominates, a read by id confirms) and repairs. */
import { isDeepStrictEqual } from 'node:util';
import type { SyncEngine } from '../sync/engine';
import { encodeDocId } from '../sync/ids';
import { normalizeTimestamp } from '../sync/timestamps';
import type { DocKey, TwinEvent } from '../sync/types';
import { applyEvent } from '../sync/rules';
import { ContinuationRejected, type QueryPager } from '../adapters/twinQuery';
import { applyWithRetry, DEFAULT_CLOCK_SKEW_MS, keyOfTwin, QUERY_ORDER, queryStats, snapshotOf, type QueryProgress, type QueryStats, type TwinQueryName } from './common';


/**
 * Twin fields that change without any routed event (status changes of a device identity, capabilities,
 * scope): verify compares them and repair refreshes them from a read by id, so the replica is at most one
 * verify schedule behind for them. `deviceEtag` (the identity's ETag) also tells a re-created identity
 * from the one the replica holds when both twins are at the same version. Volatile fields
 * (lastActivityTime, cloudToDeviceMessageCount, connectionState in the twin body) are not compared.
 */
export const UNROUTED_FIELDS = ['status', 'statusReason', 'statusUpdateTime', 'capabilities', 'deviceScope', 'deviceEtag'] as const;

/**
 * What verify reads of every twin: ids, version and the unrouted fields, never the whole twin (query
 * results are billed per 4 KB against the hub's daily quota; a whole twin can be tens of KB). Whole twins
 * are read by id, for differences only.
 */
export const VERIFY_QUERIES: Record<TwinQueryName, string> = {
  devices: `SELECT deviceId, version, ${UNROUTED_FIELDS.join(', ')} FROM devices`,
  modules: `SELECT deviceId, moduleId, version, ${UNROUTED_FIELDS.join(', ')} FROM devices.modules`,
};


/** What verify needs to know about each replica document (one cross-partition query lists them all). */
export interface ReplicaEntry {
  id: string;
  deviceId: string;
  moduleId?: string;
  version?: number;
  deleted?: boolean;
  partial?: boolean;
  /** The replica's copy of the {@link UNROUTED_FIELDS}. */
  unrouted?: Record<string, unknown>;
}

export interface ReplicaIndex {
  list(): AsyncIterable<ReplicaEntry>;
}

/** A replica document (or the projection of it that CosmosReplicaIndex reads) as verify compares it. */
export function replicaEntry(r: Record<string, unknown>): ReplicaEntry {
  const replica = r.replica as { partial?: boolean } | undefined;
  return {
    id: r.id as string, deviceId: r.deviceId as string, moduleId: r.moduleId as string | undefined, version: r.version as number | undefined,
    deleted: r.deleted === true, partial: replica?.partial === true, unrouted: pickUnrouted(r),
  };
}

function pickUnrouted(source: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of UNROUTED_FIELDS) if (source[f] !== undefined && source[f] !== null) out[f] = source[f];
  return out;
}

export type Discrepancy = 'missing' | 'extra' | 'stale' | 'aheadOfHub' | 'partial' | 'unrouted';
const DISCREPANCIES: readonly Discrepancy[] = ['missing', 'extra', 'stale', 'aheadOfHub', 'partial', 'unrouted'];

export interface DiscrepancySample {
  deviceId: string;
  moduleId?: string;
  hubVersion?: number;
  replicaVersion?: number;
  replicaDeleted?: boolean;
}

/** One pass over the hub: both queries from their first page to their last, possibly over several runs. */
export interface VerifyPass {
  number: number;
  startedAt: string;
  queries: Record<TwinQueryName, QueryProgress>;
  /** Document ids of the twins this pass has listed (to judge, at its end, which replica documents it never saw). */
  seen: string[];
}

/** What a resumable verify (the timer) persists after every page. */
export interface VerifyState {
  kind: 'twin-replica-verify';
  hub: string;
  updatedAt: string;
  pass: VerifyPass;
  lastCompletedPass?: { number: number; startedAt: string; completedAt: string; twins: number };
}

function newPass(number: number, now: number): VerifyPass {
  const fresh = (): QueryProgress => ({ done: false, pages: 0, twins: 0 });
  return { number, startedAt: new Date(now).toISOString(), queries: { devices: fresh(), modules: fresh() }, seen: [] };
}

export function newVerifyState(hub: string, now = Date.now()): VerifyState {
  return { kind: 'twin-replica-verify', hub, updatedAt: new Date(now).toISOString(), pass: newPass(1, now) };
}

export function isVerifyState(value: unknown, hub: string): value is VerifyState {
  const v = value as VerifyState | undefined;
  return v?.kind === 'twin-replica-verify' && v.hub === hub && Array.isArray(v.pass?.seen) && !!v.pass?.queries?.devices && !!v.pass?.queries?.modules;
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
  /** Allowance for clock difference with the hub when dating reads by id. @default {@link DEFAULT_CLOCK_SKEW_MS} */
  clockSkewMs?: number;
  /** Stop at this time (epoch ms): the run ends with `stoppedBy: 'deadline'`, its pass resumable from `state`. */
  deadline?: number;
  /** Aborts requests and waits (the caller's deadline or an interrupt). */
  signal?: AbortSignal;
  /** Resumable runs (the timer): the pass to continue; updated in place. Without it each run is one whole pass. */
  state?: VerifyState;
  /** Persists `state` after every page and at the end of a pass. */
  checkpoint?: (state: VerifyState) => Promise<void>;
  onPage?: (info: { query: TwinQueryName; page: number; twins: number; totalTwins: number }) => void;
  now?: () => number;
  hub: string;
}

type Bucket = { count: number; samples: DiscrepancySample[] };

export interface VerifyReport {
  hub: string;
  startedAt: string;
  finishedAt: string;
  /** True when this run finished a pass over the hub (and so judged the replica documents the pass never listed). */
  complete: boolean;
  /** Why the run ended before finishing its pass. */
  stoppedBy?: 'deadline' | 'interrupted' | 'error';
  /** The error that ended the run (the report is still written). */
  error?: string;
  repair: boolean;
  /** Fill progress: the pass this run worked on. */
  pass: { number: number; startedAt: string; resumed: boolean; twinsSeen: number; complete: boolean; completedAt?: string; restarts: number };
  /** The last pass that reached the end of the hub (this run's, or an earlier one). */
  lastCompletedPass?: { number: number; startedAt: string; completedAt: string; twins: number };
  /** Twins listed by the twin query in this run. */
  hubTwins: { devices: number; modules: number };
  replicaDocuments: { live: number; tombstones: number };
  /** Confirmed by a read by id: the hub has the twin; the replica lacks it or holds a tombstone. */
  missing: Bucket;
  /** Confirmed by a 404 on the read by id: live in the replica, no such twin on the hub. */
  extra: Bucket;
  /** Confirmed: the replica holds an older version than the hub. */
  stale: Bucket;
  /** Confirmed: the replica holds a higher version than the hub, i.e. an earlier incarnation of a re-created identity. */
  aheadOfHub: Bucket;
  /** Confirmed: the document was built from changes alone and is at the hub's version. */
  partial: Bucket;
  /** Confirmed: same version, but a field no event carries (status, capabilities, ...) differs. */
  unrouted: Bucket;
  /** Query rows that differed from the replica but the read by id agreed with it (the query lagged). */
  lagging: number;
  /** Query rows of twins the read by id did not find (rows of deleted twins, e.g. ghost modules); the replica agreed. */
  ghostRows: number;
  /** Confirmed differences the replica fixed itself before the repair (a live event landed in between). */
  changedDuringScan: number;
  /** Items without a usable deviceId/version. */
  unusable: number;
  /** What the repair wrote: `skipped` = the guard kept a document that changed between the check and the write. */
  repaired?: { applied: number; skipped: number; deadLettered: number };
  /** Discrepancies still there after the repair (or all of them without --repair). */
  remaining: number;
  query: QueryStats;
  durationMs: number;
}

/**
 * Compares the hub with the replica and, with `repair`, fixes what differs. The twin query (ids, versions,
 * unrouted fields) only nominates candidates; each is decided by a read of that twin by id, which IoT Hub
 * answers with its latest state, taken after the replica document was read (so the hub's answer is at
 * least as new as everything the document reflects). A 404 there is the only evidence of a deletion.
 * Repairs go through the engine's guarded path as confirmed snapshots / deletions dated at the read, so
 * a live event newer than the read always wins over them.
 */
export async function runVerify(opts: VerifyOptions): Promise<VerifyReport> {
  const startedMs = Date.now();
  const now = opts.now ?? Date.now;
  const runStart = now();
  const skew = opts.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  const pageSize = opts.pageSize ?? 100;
  const maxSamples = opts.samples ?? 10;
  const state = opts.state ?? newVerifyState(opts.hub, runStart);
  const resumed = QUERY_ORDER.some((q) => state.pass.queries[q].pages > 0);
  const bucket = (): Bucket => ({ count: 0, samples: [] });
  const report: VerifyReport = {
    hub: opts.hub, startedAt: new Date(runStart).toISOString(), finishedAt: '', complete: false, repair: opts.repair,
    pass: { number: state.pass.number, startedAt: state.pass.startedAt, resumed, twinsSeen: 0, complete: false, restarts: 0 },
    ...(state.lastCompletedPass ? { lastCompletedPass: { ...state.lastCompletedPass } } : {}),
    hubTwins: { devices: 0, modules: 0 }, replicaDocuments: { live: 0, tombstones: 0 },
    missing: bucket(), extra: bucket(), stale: bucket(), aheadOfHub: bucket(), partial: bucket(), unrouted: bucket(),
    lagging: 0, ghostRows: 0, changedDuringScan: 0, unusable: 0,
    remaining: 0, query: queryStats(opts.pager), durationMs: 0,
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
  const outOfTime = () => opts.deadline !== undefined && now() >= opts.deadline;

  /**
   * Decides one candidate: reads the replica document, then the hub's twin by id, and returns the event
   * that brings the document to the hub's state (undefined when they agree or the document moved on).
   */
  const confirm = async (key: DocKey, id: string, listedByQuery: boolean): Promise<TwinEvent | undefined> => {
    const current = (await opts.engine.store.read(id, key.deviceId))?.doc;
    let readAt = now();
    const twin = await opts.pager.twin(key, () => (readAt = now()));
    const ts = normalizeTimestamp(readAt - skew)!;
    const live = current !== undefined && !current.deleted;
    if (!twin) {
      if (!live) {
        if (listedByQuery) report.ghostRows++;
        return undefined;
      }
      const deletion: TwinEvent = { kind: 'delete', key, ts };
      if (applyEvent(current, deletion).outcome === 'stale') {
        report.changedDuringScan++;
        return undefined;
      }
      note('extra', { ...key, replicaVersion: current.version });
      return deletion;
    }
    const event = snapshotOf(twin, ts);
    if (!event || event.kind !== 'snapshot' || encodeDocId(event.key) !== id) {
      report.unusable++;
      return undefined;
    }
    const confirmed: TwinEvent = { ...event, confirmed: true };
    let kind: Discrepancy | undefined;
    if (!live || current.version === undefined) kind = 'missing';
    else if (current.version < event.version) kind = 'stale';
    else if (current.version > event.version) kind = 'aheadOfHub';
    else if (current.replica.partial) kind = 'partial';
    else if (!isDeepStrictEqual(pickUnrouted(current), pickUnrouted(twin))) kind = 'unrouted';
    if (kind === undefined) {
      report.lagging++;
      return undefined;
    }
    if (applyEvent(current, confirmed).outcome === 'stale') {
      report.changedDuringScan++;
      return undefined;
    }
    note(kind, { ...key, hubVersion: event.version, replicaVersion: current?.version, ...(current?.deleted ? { replicaDeleted: true } : {}) });
    return confirmed;
  };

  const save = async () => {
    state.updatedAt = new Date(now()).toISOString();
    await opts.checkpoint?.(state);
  };

  try {
    // 1. The replica's documents (ids, versions, tombstone flags, unrouted fields).
    const index = new Map<string, ReplicaEntry>();
    for await (const entry of opts.replica.list()) {
      index.set(entry.id, entry);
      if (entry.deleted) report.replicaDocuments.tombstones++;
      else report.replicaDocuments.live++;
    }

    // 2. The hub, page by page, from where the pass stands.
    const seen = new Set(state.pass.seen);
    let stopped = false;
    scan: for (let i = 0; i < QUERY_ORDER.length; i++) {
      const name = QUERY_ORDER[i];
      const progress = state.pass.queries[name];
      while (!progress.done) {
        opts.signal?.throwIfAborted();
        if (outOfTime()) {
          stopped = true;
          break scan;
        }
        let page;
        try {
          page = await opts.pager.page(VERIFY_QUERIES[name], progress.continuation, pageSize);
        } catch (err) {
          // The hub refused the saved continuation (expired, or the query changed): start the pass again cleanly.
          if (!(err instanceof ContinuationRejected) || report.pass.restarts > 0) throw err;
          report.pass.restarts++;
          state.pass = newPass(state.pass.number, now());
          report.pass.startedAt = state.pass.startedAt;
          seen.clear();
          await save();
          i = -1;
          continue scan;
        }
        const events: TwinEvent[] = [];
        for (const row of page.items) {
          const key = keyOfTwin(row);
          const version = row.version;
          if (!key || typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
            report.unusable++;
            continue;
          }
          report.hubTwins[name]++;
          const id = encodeDocId(key);
          if (!seen.has(id)) {
            seen.add(id);
            state.pass.seen.push(id);
          }
          const listed = index.get(id);
          const agrees = listed !== undefined && !listed.deleted && listed.version === version && !listed.partial
            && isDeepStrictEqual(listed.unrouted ?? {}, pickUnrouted(row));
          if (agrees) continue;
          const event = await confirm(key, id, true);
          if (event) events.push(event);
        }
        await repairEvents(events);
        progress.pages++;
        progress.twins += page.items.length;
        progress.continuation = page.continuation;
        progress.done = page.continuation === undefined;
        await save();
        opts.onPage?.({ query: name, page: progress.pages, twins: page.items.length, totalTwins: report.hubTwins.devices + report.hubTwins.modules });
      }
    }

    // 3. End of the pass: replica documents it never listed. Each is read by id; only a 404 deletes it
    //    (a twin created after its rows were read, or missing from a lagging result, is found there).
    if (!stopped) {
      let events: TwinEvent[] = [];
      for (const [id, entry] of index) {
        if (entry.deleted || seen.has(id)) continue;
        opts.signal?.throwIfAborted();
        if (outOfTime()) {
          stopped = true;
          break;
        }
        const key: DocKey = entry.moduleId !== undefined ? { deviceId: entry.deviceId, moduleId: entry.moduleId } : { deviceId: entry.deviceId };
        const event = await confirm(key, id, false);
        if (event) events.push(event);
        if (events.length >= 100) {
          await repairEvents(events);
          events = [];
        }
      }
      await repairEvents(events);
    }
    if (!stopped) {
      const completedAt = new Date(now()).toISOString();
      state.lastCompletedPass = { number: state.pass.number, startedAt: state.pass.startedAt, completedAt, twins: state.pass.seen.length };
      report.pass.complete = true;
      report.pass.completedAt = completedAt;
      report.pass.twinsSeen = state.pass.seen.length;
      report.lastCompletedPass = { ...state.lastCompletedPass };
      report.complete = true;
      state.pass = newPass(state.pass.number + 1, now());
      await save();
    } else {
      report.stoppedBy = 'deadline';
    }
  } catch (err) {
    report.stoppedBy = opts.signal?.aborted ? (outOfTime() ? 'deadline' : 'interrupted') : 'error';
    if (report.stoppedBy === 'error') report.error = (err as Error)?.message ?? String(err);
  }

  if (!report.pass.complete) report.pass.twinsSeen = state.pass.seen.length;
  const found = DISCREPANCIES.reduce((n, k) => n + report[k].count, 0);
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
