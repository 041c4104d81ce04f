import type { Container } from '@azure/cosmos';
import { CosmosReplicaIndex, DEFAULT_QUERY_LAG_MS, QueryPager, encodeDocId, hubBudgets, runBackfill, runVerify, stripSystemFields, type BackfillReport, type DocKey, type PagerOptions, type ReplicaIndex, type SyncEngine, type TwinDoc, type TwinQuery, type VerifyReport } from '../functions/src/public';
import { loadBackfillState, removeBackfillState, saveBackfillState } from './backfillState';
import type { Progress } from './progress';
import { redrive, type DeadLetterStore, type RedriveFilter, type RedriveReport } from './redrive';

/** The part of the hub's throttle budgets (see hubBudgets) an operator's tool run takes. */
export const TOOL_BUDGET_SHARE = 0.75;


export interface ScanFlags {
  pageSize?: number;
  /** IoT Hub tier (S1, S2, S3, B1...): sets the throttle budgets with `units`. @default S1 */
  tier?: string;
  units?: number;
  rate?: number;
  /** Twin reads by id per second (overrides the tier's budget). */
  readRate?: number;
  queryLagSeconds?: number;
  /** Pager tuning (back-off) for tests and unusual hubs. */
  pager?: Omit<PagerOptions, 'queriesPerMinute' | 'signal' | 'onWait'>;
}

function pagerFor(query: TwinQuery, flags: ScanFlags, progress: Progress | undefined, signal: AbortSignal | undefined): QueryPager {
  // --rate and --read-rate, else three quarters of the tier's throttles for --units.
  const budget = hubBudgets(flags.tier ?? 'S1', flags.units ?? 1, TOOL_BUDGET_SHARE);
  return new QueryPager(query, {
    ...flags.pager,
    queriesPerMinute: flags.rate ?? budget.queriesPerMinute,
    twinReadsPerSecond: flags.readRate ?? budget.twinReadsPerSecond,
    signal,
    onWait: (ms, reason) => {
      if (reason !== 'pace') progress?.status(`${reason === 'throttled' ? 'throttled (429)' : 'transient error'}: backing off ${Math.round(ms / 1000)} s`);
    },
  });
}

export interface BackfillDeps {
  engine: SyncEngine;
  twinQuery: TwinQuery;
  hub: string;
  stateFile: string;
  progress?: Progress;
  signal?: AbortSignal;
}

export async function backfillCommand(flags: ScanFlags & { restart?: boolean }, deps: BackfillDeps): Promise<BackfillReport & { stateFile: string }> {
  const state = await loadBackfillState(deps.stateFile, deps.hub, flags.restart === true);
  const pager = pagerFor(deps.twinQuery, flags, deps.progress, deps.signal);
  deps.progress?.start(`backfill ${deps.hub}`);
  try {
    const report = await runBackfill({
      engine: deps.engine, pager, state, pageSize: flags.pageSize, signal: deps.signal,
      queryLagMs: flags.queryLagSeconds !== undefined ? flags.queryLagSeconds * 1000 : DEFAULT_QUERY_LAG_MS,
      checkpoint: (s) => saveBackfillState(deps.stateFile, s),
      onPage: (p) => deps.progress?.update(p.totalTwins, `${p.query} page ${p.page}`),
    });
    await removeBackfillState(deps.stateFile);
    return { ...report, stateFile: deps.stateFile };
  } finally {
    deps.progress?.stop();
  }
}

export interface VerifyDeps {
  engine: SyncEngine;
  twinQuery: TwinQuery;
  replica: ReplicaIndex | Container;
  hub: string;
  progress?: Progress;
  signal?: AbortSignal;
}

export async function verifyCommand(flags: ScanFlags & { repair?: boolean; samples?: number }, deps: VerifyDeps): Promise<VerifyReport> {
  const replica = 'list' in deps.replica ? deps.replica : new CosmosReplicaIndex(deps.replica);
  deps.progress?.start(`verify${flags.repair ? ' --repair' : ''} ${deps.hub}`);
  try {
    return await runVerify({
      engine: deps.engine, pager: pagerFor(deps.twinQuery, flags, deps.progress, deps.signal), replica, repair: flags.repair === true,
      pageSize: flags.pageSize, samples: flags.samples, signal: deps.signal, hub: deps.hub,
      onPage: (p) => deps.progress?.update(p.totalTwins, `${p.query} page ${p.page}`),
    });
  } finally {
    deps.progress?.stop();
  }
}

export async function redriveCommand(flags: RedriveFilter & { dryRun?: boolean; batchSize?: number }, deps: { engine: SyncEngine; store: DeadLetterStore; progress?: Progress }): Promise<RedriveReport> {
  deps.progress?.start('redrive', 0);
  try {
    return await redrive({
      engine: deps.engine, store: deps.store, filter: flags, dryRun: flags.dryRun, batchSize: flags.batchSize,
      onProgress: (done, total) => deps.progress?.update(done, `${done}/${total}`, total),
    });
  } finally {
    deps.progress?.stop();
  }
}

/** One replica document as stored (system fields removed), or undefined. Tombstones are shown too: `deleted: true`. */
export async function showCommand(key: DocKey, container: Container): Promise<TwinDoc | undefined> {
  try {
    const { resource, statusCode } = await container.item(encodeDocId(key), key.deviceId).read<TwinDoc>();
    if (statusCode === 404 || !resource) return undefined;
    return stripSystemFields(resource);
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** `name=value` → a Cosmos query parameter; the value is JSON when it parses as JSON, else the raw string. */
export function parseParam(spec: string): { name: string; value: unknown } {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`--param expects name=value, got ${JSON.stringify(spec)}`);
  const rawName = spec.slice(0, eq).trim();
  const name = rawName.startsWith('@') ? rawName : `@${rawName}`;
  if (!/^@[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a parameter name: ${JSON.stringify(rawName)}`);
  const raw = spec.slice(eq + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // a bare string
  }
  return { name, value };
}

export async function queryCommand(sql: string, params: string[], container: Container, max?: number): Promise<{ items: unknown[]; truncated: boolean }> {
  const parameters = params.map(parseParam).map((p) => ({ name: p.name, value: p.value as never }));
  const iterator = container.items.query({ query: sql, parameters }, { maxItemCount: Math.min(max ?? 1000, 1000) });
  const items: unknown[] = [];
  while (iterator.hasMoreResults()) {
    const { resources } = await iterator.fetchNext();
    for (const r of resources ?? []) {
      if (max !== undefined && items.length >= max) return { items, truncated: true };
      items.push(r !== null && typeof r === 'object' && !Array.isArray(r) ? stripSystemFields(r as object) : r);
    }
  }
  return { items, truncated: false };
}
