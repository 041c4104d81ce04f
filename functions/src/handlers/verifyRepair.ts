import type { InvocationContext, Timer } from '@azure/functions';
import { QueryPager } from '../adapters/twinQuery';
import type { VerifyRuntime } from '../runtime/build';
import { isVerifyState, newVerifyState, runVerify, type VerifyReport, type VerifyState } from '../scan/verify';
import { VERIFY_SUMMARY_PREFIX } from '../runtime/contracts';

/**
 * Timer-triggered `verify --repair` (schedule: app setting VERIFY_SCHEDULE, NCRONTAB, default daily).
 * Reads the hub with the documented REST calls (adapters/twinQuery.ts says why not the SDK): the twin query
 * for ids and versions, a read by id for every difference. Budgets follow the hub's
 * tier (IOTHUB_SKU, IOTHUB_UNITS: half of the query and twin-read throttles; VERIFY_QUERIES_PER_MINUTE and
 * VERIFY_TWIN_READS_PER_SECOND override). A run stops at VERIFY_MAX_MINUTES (default 25, under the host's
 * functionTimeout of 30): the deadline aborts every request in flight, the report is written however the
 * run ends, and the pass over the hub continues in the next run from the saved continuation
 * (`verify/state/<hub>.json` in REPORTS_CONTAINER). That is also how an attached hub gets its first fill.
 * The report goes to `verify/YYYY/MM/DD/<time>-<invocation>.json`; one "verifyRepair summary {...}" line
 * (with the fill progress) goes to the log.
 */

/** Blob name of the pass a run leaves for the next one. */
export function stateBlobName(hub: string): string {
  return `verify/state/${hub.replace(/[^A-Za-z0-9.-]/g, '_')}.json`;
}

export function reportBlobName(startedAt: string, invocationId: string): string {
  const day = `${startedAt.slice(0, 4)}/${startedAt.slice(5, 7)}/${startedAt.slice(8, 10)}`;
  return `verify/${day}/${startedAt.slice(11, 19).replace(/:/g, '')}-${invocationId.replace(/[^A-Za-z0-9-]/g, '_')}.json`;
}

export type VerifyRepairHandler = (timer: Timer, context: InvocationContext) => Promise<VerifyReport>;

/** The timer handler on a runtime (runtime/build.ts); the registered instance uses the function app's. */
export function makeVerifyRepair(runtime: () => VerifyRuntime): VerifyRepairHandler {
  return async (timer, context) => runVerifyRepair(runtime(), timer, context);
}

async function runVerifyRepair(d: VerifyRuntime, timer: Timer, context: InvocationContext): Promise<VerifyReport> {
  if (timer?.isPastDue) context.warn('verifyRepair is running late (past due)');
  const deadline = Date.now() + d.maxMinutes * 60_000;
  // The deadline reaches every request and wait: an abort, not only a check between pages.
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new Error(`verifyRepair reached its ${d.maxMinutes}-minute limit`)), d.maxMinutes * 60_000);
  const stateName = stateBlobName(d.hub);
  let state: VerifyState | undefined;
  try {
    const saved = await d.reports.get(stateName);
    const parsed = saved === undefined ? undefined : (JSON.parse(saved) as unknown);
    if (parsed !== undefined && !isVerifyState(parsed, d.hub)) context.warn(`verifyRepair: ${stateName} is not a verify state of ${d.hub}; starting a new pass`);
    else state = parsed;
  } catch (err) {
    context.warn(`verifyRepair: could not read ${stateName} (${(err as Error).message}); starting a new pass`);
  }
  let report: VerifyReport;
  try {
    report = await runVerify({
      engine: d.engine,
      pager: new QueryPager(d.twinQuery, {
        queriesPerMinute: d.queriesPerMinute,
        twinReadsPerSecond: d.twinReadsPerSecond,
        signal: controller.signal,
        onWait: (ms, reason) => reason !== 'pace' && context.warn(`verifyRepair hub ${reason}: backing off ${Math.round(ms)} ms`),
      }),
      replica: d.replica,
      repair: true,
      hub: d.hub,
      pageSize: d.pageSize,
      deadline,
      signal: controller.signal,
      state: state ?? newVerifyState(d.hub),
      checkpoint: (s) => d.reports.put(stateName, JSON.stringify(s)),
    });
  } finally {
    clearTimeout(timeout);
  }
  const name = reportBlobName(report.startedAt, context.invocationId);
  await d.reports.put(name, JSON.stringify(report, null, 2));
  const summary = {
    report: name, complete: report.complete, stoppedBy: report.stoppedBy,
    fill: { pass: report.pass.number, twinsSeen: report.pass.twinsSeen, passComplete: report.pass.complete, lastCompletedPassAt: report.lastCompletedPass?.completedAt ?? null },
    hubTwins: report.hubTwins, replicaDocuments: report.replicaDocuments,
    missing: report.missing.count, extra: report.extra.count, stale: report.stale.count, aheadOfHub: report.aheadOfHub.count,
    partial: report.partial.count, unrouted: report.unrouted.count, lagging: report.lagging, ghostRows: report.ghostRows,
    changedDuringScan: report.changedDuringScan, repaired: report.repaired, remaining: report.remaining,
    queries: report.query.requests, twinReads: report.query.twinReads, throttled: report.query.throttled, durationMs: report.durationMs,
  };
  context.info(`${VERIFY_SUMMARY_PREFIX}${JSON.stringify(summary)}`);
  if (report.error) throw new Error(`verifyRepair failed (report ${name}): ${report.error}`);
  if (!report.pass.complete) {
    context.warn(`verifyRepair stopped (${report.stoppedBy ?? 'incomplete'}) after ${report.pass.twinsSeen} twins of pass ${report.pass.number}: the next run continues it; replica documents the pass has not listed are judged at its end`);
  }
  return report;
}
