/**
 * What the backfill (scan/backfill.ts) and verify (scan/verify.ts) share: the twin queries, snapshot
 * dating, applying parsed changes through the engine with retries, and the query counters.
 */
import { backoffDelay, sleep as wait } from '../sync/backoff';
import type { BatchResult, SyncEngine } from '../sync/engine';
import type { DocKey, JsonObject, TwinEvent } from '../sync/types';
import type { QueryPager } from '../adapters/twinQuery';

/** The two twin queries that together read every twin of a hub (the backfill needs whole twins). */
export const TWIN_QUERIES = {
  devices: 'SELECT * FROM devices',
  modules: 'SELECT * FROM devices.modules',
} as const;
export type TwinQueryName = keyof typeof TWIN_QUERIES;
export const QUERY_ORDER: readonly TwinQueryName[] = ['devices', 'modules'];

/**
 * Twin query results lag the hub: "delays of up to 30 minutes should be tolerated" (Microsoft Learn,
 * "Queries for IoT Hub device and module twins"). A backfill snapshot is dated the page request time minus
 * this allowance: the row then holds every change up to that time, so nothing older can roll it back
 * (replica.snapshotAt) and a deletion made after that time still wins over it. @default 30 min
 */
export const DEFAULT_QUERY_LAG_MS = 30 * 60_000;

/**
 * A twin read by id is dated its request time minus this allowance for the difference between this
 * machine's clock and the hub's operation timestamps (both NTP-synchronised Azure clocks). @default 5 s
 */
export const DEFAULT_CLOCK_SKEW_MS = 5_000;

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

/** What reading the hub cost: twin query requests, twin reads by id, 429s, retries and time spent waiting. */
export type QueryStats = { requests: number; twinReads: number; throttled: number; retries: number; waitedMs: number };

export function queryStats(pager: QueryPager): QueryStats {
  const s = pager.stats;
  return { requests: s.requests, twinReads: s.twinReads, throttled: s.throttled, retries: s.retries, waitedMs: Math.round(s.waitedMs) };
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
  const sleep = opts.sleep ?? wait;
  for (let attempt = 0; ; attempt++) {
    const result = await engine.applyTwinEvents(events, { isLastAttempt: false, attempt, source });
    if (!result.failure) return result;
    if (attempt + 1 >= attempts) throw new Error(`writing to the replica failed ${attempts} times: ${result.failure.message}`, { cause: result.failure });
    await sleep(backoffDelay(attempt, { baseMs: opts.backoffMs ?? 1000, maxMs: Number.POSITIVE_INFINITY }));
  }
}

export function count(stats: ApplyStats, result: BatchResult): void {
  stats.applied += result.summary.applied;
  stats.stale += result.summary.stale;
  stats.deadLettered += result.summary.deadLettered;
}

export interface QueryProgress {
  /** Continuation of the next page to read; undefined before the first page. */
  continuation?: string;
  done: boolean;
  pages: number;
  twins: number;
}
