/**
 * The first fill of an attached hub, run locally (`npm run local -- --attach`): the simulated hub's twins read
 * through the twin query the timer uses (TwinQuery, paged with continuation tokens) and written by the real
 * runBackfill / runVerify of functions/src/scan/, while the hub's events flow.
 *
 * Modelled, since no hub is reachable here:
 * - the twin query returns the hub's state at the moment the page is read, in a stable key order with a
 *   key-based continuation (a twin present during the whole fill is returned exactly once, whatever is
 *   created or deleted meanwhile). The real service documents pages and `x-ms-continuation` (IoT Hub query
 *   language, "Query IoT Hub for device twins"), not its order under concurrent changes: a twin created or
 *   deleted during the fill is carried to the replica by its lifecycle event anyway.
 * - a page is read a moment after it is requested and returned a moment after it is read, so hub operations
 *   (and their events) land on both sides of every read: the races the version guard must settle.
 * - the query has no lag here and the machine's clock is the hub's, so the snapshot time is the hub's own
 *   clock at the request (backfill queryLagMs 0, verify clockSkewMs 0).
 */
import { newBackfillState, QueryPager, runBackfill, runVerify, type BackfillReport, type ReplicaIndex, type SyncEngine, type TwinQuery, type TwinQueryPage, type VerifyReport } from '../functions/src/public';
import { sleep } from './eventHub';
import { keyId, type SimulatedHub } from './hub';
import type { DocKey, JsonObject } from '../functions/src/public';

export class SimulatedTwinQuery implements TwinQuery {
  constructor(private readonly hub: SimulatedHub, private readonly delayMs = 10) {}

  async page(sql: string, continuation: string | undefined, pageSize: number): Promise<TwinQueryPage> {
    const modules = /devices\.modules/i.test(sql);
    await sleep(this.delayMs);
    const after = continuation === undefined ? undefined : Buffer.from(continuation, 'base64url').toString('utf8');
    const twins = this.hub
      .twins()
      .filter((t) => (t.key.moduleId !== undefined) === modules)
      .map((t) => ({ id: keyId(t.key), t }))
      .filter(({ id }) => after === undefined || id > after)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, pageSize + 1);
    const items = twins.slice(0, pageSize).map(({ t }) => this.hub.renderTwin(t));
    const next = twins.length > pageSize ? Buffer.from(twins[pageSize - 1].id, 'utf8').toString('base64url') : undefined;
    await sleep(this.delayMs);
    return { items, continuation: next };
  }

  /** A read by id (verify confirms each candidate with one): the twin as the hub holds it when read. */
  async twin(key: DocKey): Promise<JsonObject | undefined> {
    await sleep(this.delayMs);
    const t = this.hub.twin(key);
    const twin = t ? this.hub.renderTwin(t) : undefined;
    await sleep(this.delayMs);
    return twin;
  }
}

export interface FillOptions {
  hub: SimulatedHub;
  engine: SyncEngine;
  /** The hub's clock in ms: the snapshot time of a page requested now. */
  hubNow: () => number;
  pageSize: number;
}

function pager(hub: SimulatedHub): QueryPager {
  // No pacing locally: the hub's 20 queries/minute/unit budget is the timer's business (VERIFY_QUERIES_PER_MINUTE).
  return new QueryPager(new SimulatedTwinQuery(hub), { queriesPerMinute: 1e9, backoffMs: 10, maxBackoffMs: 100 });
}

/** The backfill that reads every twin once (the first fill), with the state it would persist between runs. */
export function runFirstFill(o: FillOptions): Promise<BackfillReport> {
  return runBackfill({
    engine: o.engine,
    pager: pager(o.hub),
    state: newBackfillState('local-hub', new Date(o.hubNow())),
    checkpoint: async () => {},
    pageSize: o.pageSize,
    queryLagMs: 0,
    now: o.hubNow,
  });
}

/** The verify/repair timer's next run: finds and repairs what the fill could not settle (see docs/attach.md). */
export function runTimerPass(o: FillOptions & { replica: ReplicaIndex }): Promise<VerifyReport> {
  return runVerify({
    engine: o.engine,
    pager: pager(o.hub),
    replica: o.replica,
    repair: true,
    hub: 'local-hub',
    pageSize: o.pageSize,
    clockSkewMs: 0,
    now: o.hubNow,
  });
}
