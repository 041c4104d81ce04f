/** The backfill: reads every twin from the hub page by page and writes it through the engine; resumable. */
import type { SyncEngine } from '../sync/engine';
import { normalizeTimestamp } from '../sync/timestamps';
import type { TwinEvent } from '../sync/types';
import { ContinuationRejected, type QueryPager } from '../adapters/twinQuery';
import { applyWithRetry, count, DEFAULT_QUERY_LAG_MS, QUERY_ORDER, queryStats, snapshotOf, TWIN_QUERIES, type ApplyStats, type QueryProgress, type QueryStats, type TwinQueryName } from './common';

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
      let page;
      try {
        page = await opts.pager.page(TWIN_QUERIES[name], progress.continuation, pageSize, () => (requestedAt = now()));
      } catch (err) {
        if (err instanceof ContinuationRejected) throw new ContinuationRejected(`the hub refused the saved continuation of the ${name} query (${err.message}): start the backfill again from its first page (CLI: --restart)`, err.status);
        throw err;
      }
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
