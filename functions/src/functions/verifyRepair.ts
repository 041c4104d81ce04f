import { app, type InvocationContext, type Timer } from '@azure/functions';
import { BLOB_API_VERSION, BlobDeadLetterSink, fromConnectionString, sharedKeyAuthorization, type BlobAuth } from '../adapters/blobDeadLetters';
import { azureCredential, ConfigError, createEngine, positiveSetting, readSettings, sharedCosmosClient } from '../config';
import { CosmosReplicaIndex, isVerifyState, newVerifyState, runVerify, type ReplicaIndex, type VerifyReport, type VerifyState } from '../replicaTools/scan';
import { hubBudgets, IOTHUB_SCOPE, QueryPager, RestTwinQuery, type TwinQuery } from '../replicaTools/twinQuery';
import type { SyncEngine } from '../sync/engine';
import { DEFAULT_VERIFY_MAX_MINUTES, FUNCTION_TIMEOUT_MINUTES, VERIFY_MARGIN_MINUTES } from '../replicaTools/timeouts';

/**
 * Timer-triggered `verify --repair` (schedule: app setting VERIFY_SCHEDULE, NCRONTAB, default daily).
 * Reads the hub with the documented REST calls (the azure-iothub SDK alone would push the bundle past
 * 1 MB): the twin query for ids and versions, a read by id for every difference. Budgets follow the hub's
 * tier (IOTHUB_SKU, IOTHUB_UNITS: half of the query and twin-read throttles; VERIFY_QUERIES_PER_MINUTE and
 * VERIFY_TWIN_READS_PER_SECOND override). A run stops at VERIFY_MAX_MINUTES (default 25, under the host's
 * functionTimeout of 30): the deadline aborts every request in flight, the report is written however the
 * run ends, and the pass over the hub continues in the next run from the saved continuation
 * (`verify/state/<hub>.json` in REPORTS_CONTAINER). That is also how an attached hub gets its first fill.
 * The report goes to `verify/YYYY/MM/DD/<time>-<invocation>.json`; one "verifyRepair summary {...}" line
 * (with the fill progress) goes to the log.
 */
export interface VerifyRepairDeps {
  engine: SyncEngine;
  twinQuery: TwinQuery;
  replica: ReplicaIndex;
  reports: ReportStore;
  hub: string;
  queriesPerMinute: number;
  twinReadsPerSecond: number;
  maxMinutes: number;
  pageSize: number;
}

/** Where reports and the saved pass go: a blob container. `get` answers undefined for a missing blob. */
export interface ReportStore {
  put(name: string, content: string): Promise<void>;
  get(name: string): Promise<string | undefined>;
}

/** Put Blob through the dead-letter adapter's client; Get Blob with the same authorization. */
export class BlobReportStore implements ReportStore {
  private readonly sink: BlobDeadLetterSink;
  constructor(private readonly containerUrl: string, private readonly auth: BlobAuth) {
    this.sink = new BlobDeadLetterSink(containerUrl, auth);
  }
  put(name: string, content: string): Promise<void> {
    return this.sink.put(name, content);
  }
  async get(name: string): Promise<string | undefined> {
    const url = new URL(`${this.containerUrl.replace(/\/$/, '')}/${name}`);
    const headers: Record<string, string> = { 'x-ms-date': new Date().toUTCString(), 'x-ms-version': BLOB_API_VERSION };
    headers.authorization = this.auth.kind === 'token'
      ? `Bearer ${await this.auth.getToken()}`
      : sharedKeyAuthorization('GET', url, headers, 0, this.auth.accountName, this.auth.accountKey);
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`Get Blob ${name} answered ${res.status}: ${(await res.text().catch(() => '')).slice(0, 300)}`);
    return res.text();
  }
}

let deps: VerifyRepairDeps | undefined;

/** Lets tests and local tools run the real handler on dependencies of their own. */
export function useVerifyRepairDeps(custom: VerifyRepairDeps | undefined): void {
  deps = custom;
}

export function verifyRepairDeps(env: Record<string, string | undefined> = process.env): VerifyRepairDeps {
  const settings = readSettings(env);
  const hub = env.IOTHUB_HOSTNAME;
  if (!hub) throw new ConfigError('missing app setting: IOTHUB_HOSTNAME');
  const maxMinutes = positiveSetting(env, 'VERIFY_MAX_MINUTES', { fractional: true }) ?? DEFAULT_VERIFY_MAX_MINUTES;
  if (maxMinutes > FUNCTION_TIMEOUT_MINUTES - VERIFY_MARGIN_MINUTES) {
    throw new ConfigError(`VERIFY_MAX_MINUTES must leave ${VERIFY_MARGIN_MINUTES} minutes before the host's ${FUNCTION_TIMEOUT_MINUTES}-minute functionTimeout, got ${maxMinutes}`);
  }
  const budget = hubBudgets(env.IOTHUB_SKU || 'S1', positiveSetting(env, 'IOTHUB_UNITS') ?? 1, 0.5);
  const reportsContainer = env.REPORTS_CONTAINER || 'reports';
  const credential = azureCredential(settings.clientId);
  const cached = new Map<string, { token: string; expiresOnTimestamp: number }>();
  const tokenFor = async (scope: string) => {
    const t = cached.get(scope);
    if (t && t.expiresOnTimestamp - Date.now() > 5 * 60_000) return t.token;
    const fresh = await credential.getToken(scope);
    if (!fresh) throw new Error(`no token for ${scope}`);
    cached.set(scope, fresh);
    return fresh.token;
  };
  let reports: BlobReportStore;
  if (settings.deadLetterEndpoint) {
    reports = new BlobReportStore(`${settings.deadLetterEndpoint.replace(/\/$/, '')}/${reportsContainer}`, { kind: 'token', getToken: () => tokenFor('https://storage.azure.com/.default') });
  } else {
    // readSettings has already refused a connection string that is not Azurite on loopback.
    const { containerUrl, auth } = fromConnectionString(settings.deadLetterConnectionString!, reportsContainer);
    reports = new BlobReportStore(containerUrl, auth);
  }
  const client = sharedCosmosClient(settings);
  const container = client.database(settings.cosmosDatabase).container(settings.cosmosContainer);
  return {
    engine: createEngine(settings, client),
    twinQuery: new RestTwinQuery({ hostName: hub, getToken: () => tokenFor(IOTHUB_SCOPE) }),
    replica: new CosmosReplicaIndex(container),
    reports,
    hub,
    queriesPerMinute: positiveSetting(env, 'VERIFY_QUERIES_PER_MINUTE', { fractional: true }) ?? budget.queriesPerMinute,
    twinReadsPerSecond: positiveSetting(env, 'VERIFY_TWIN_READS_PER_SECOND', { fractional: true }) ?? budget.twinReadsPerSecond,
    maxMinutes,
    pageSize: positiveSetting(env, 'VERIFY_PAGE_SIZE') ?? 100,
  };
}

/** Blob name of the pass a run leaves for the next one. */
export function stateBlobName(hub: string): string {
  return `verify/state/${hub.replace(/[^A-Za-z0-9.-]/g, '_')}.json`;
}

export function reportBlobName(startedAt: string, invocationId: string): string {
  const day = `${startedAt.slice(0, 4)}/${startedAt.slice(5, 7)}/${startedAt.slice(8, 10)}`;
  return `verify/${day}/${startedAt.slice(11, 19).replace(/:/g, '')}-${invocationId.replace(/[^A-Za-z0-9-]/g, '_')}.json`;
}

export async function verifyRepair(timer: Timer, context: InvocationContext): Promise<VerifyReport> {
  deps ??= verifyRepairDeps();
  const d = deps;
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
  context.info(`verifyRepair summary ${JSON.stringify(summary)}`);
  if (report.error) throw new Error(`verifyRepair failed (report ${name}): ${report.error}`);
  if (!report.pass.complete) {
    context.warn(`verifyRepair stopped (${report.stoppedBy ?? 'incomplete'}) after ${report.pass.twinsSeen} twins of pass ${report.pass.number}: the next run continues it; replica documents the pass has not listed are judged at its end`);
  }
  return report;
}

app.timer('verifyRepair', {
  schedule: '%VERIFY_SCHEDULE%',
  handler: verifyRepair,
});
