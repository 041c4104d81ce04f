import { app, type InvocationContext, type Timer } from '@azure/functions';
import { BlobDeadLetterSink, fromConnectionString } from '../adapters/blobDeadLetters';
import { azureCredential, ConfigError, createEngine, positiveSetting, readSettings, sharedCosmosClient } from '../config';
import { CosmosReplicaIndex, runVerify, type ReplicaIndex, type VerifyReport } from '../replicaTools/scan';
import { IOTHUB_SCOPE, QueryPager, RestTwinQuery, type TwinQuery } from '../replicaTools/twinQuery';
import type { SyncEngine } from '../sync/engine';

/**
 * Timer-triggered `verify --repair` (schedule: app setting VERIFY_SCHEDULE, NCRONTAB, default daily).
 * Reads the hub with the documented twin query REST call (the azure-iothub SDK alone would push the bundle
 * past 1 MB), paced to VERIFY_QUERIES_PER_MINUTE (default 10: half of one S1/S2 unit's 20 per minute, leaving
 * the rest to other callers), and stops at VERIFY_MAX_MINUTES (default 25, under Flex Consumption's 30-minute
 * default timeout) with an incomplete report. The report goes to REPORTS_CONTAINER as
 * `verify/YYYY/MM/DD/<time>-<invocation>.json`; one "verifyRepair summary {...}" line goes to the log.
 */
export interface VerifyRepairDeps {
  engine: SyncEngine;
  twinQuery: TwinQuery;
  replica: ReplicaIndex;
  reports: { put(name: string, content: string): Promise<void> };
  hub: string;
  queriesPerMinute: number;
  maxMinutes: number;
  pageSize: number;
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
  let reports: BlobDeadLetterSink;
  if (settings.deadLetterEndpoint) {
    reports = new BlobDeadLetterSink(`${settings.deadLetterEndpoint.replace(/\/$/, '')}/${reportsContainer}`, { kind: 'token', getToken: () => tokenFor('https://storage.azure.com/.default') });
  } else {
    // readSettings has already refused a connection string that is not Azurite on loopback.
    const { containerUrl, auth } = fromConnectionString(settings.deadLetterConnectionString!, reportsContainer);
    reports = new BlobDeadLetterSink(containerUrl, auth);
  }
  const client = sharedCosmosClient(settings);
  const container = client.database(settings.cosmosDatabase).container(settings.cosmosContainer);
  return {
    engine: createEngine(settings, client),
    twinQuery: new RestTwinQuery({ hostName: hub, getToken: () => tokenFor(IOTHUB_SCOPE) }),
    replica: new CosmosReplicaIndex(container),
    reports,
    hub,
    queriesPerMinute: positiveSetting(env, 'VERIFY_QUERIES_PER_MINUTE', { fractional: true }) ?? 10,
    maxMinutes: positiveSetting(env, 'VERIFY_MAX_MINUTES', { fractional: true }) ?? 25,
    pageSize: positiveSetting(env, 'VERIFY_PAGE_SIZE') ?? 100,
  };
}

export function reportBlobName(startedAt: string, invocationId: string): string {
  const day = `${startedAt.slice(0, 4)}/${startedAt.slice(5, 7)}/${startedAt.slice(8, 10)}`;
  return `verify/${day}/${startedAt.slice(11, 19).replace(/:/g, '')}-${invocationId.replace(/[^A-Za-z0-9-]/g, '_')}.json`;
}

export async function verifyRepair(timer: Timer, context: InvocationContext): Promise<VerifyReport> {
  deps ??= verifyRepairDeps();
  const d = deps;
  if (timer?.isPastDue) context.warn('verifyRepair is running late (past due)');
  const started = Date.now();
  const report = await runVerify({
    engine: d.engine,
    pager: new QueryPager(d.twinQuery, {
      queriesPerMinute: d.queriesPerMinute,
      onWait: (ms, reason) => reason !== 'pace' && context.warn(`verifyRepair twin query ${reason}: backing off ${Math.round(ms)} ms`),
    }),
    replica: d.replica,
    repair: true,
    hub: d.hub,
    pageSize: d.pageSize,
    deadline: started + d.maxMinutes * 60_000,
  });
  const name = reportBlobName(report.startedAt, context.invocationId);
  await d.reports.put(name, JSON.stringify(report, null, 2));
  const summary = {
    report: name, complete: report.complete, hubTwins: report.hubTwins, replicaDocuments: report.replicaDocuments,
    missing: report.missing.count, extra: report.extra.count, stale: report.stale.count, partial: report.partial.count,
    changedDuringScan: report.changedDuringScan, repaired: report.repaired, remaining: report.remaining,
    queries: report.query.requests, throttled: report.query.throttled, durationMs: report.durationMs,
  };
  context.info(`verifyRepair summary ${JSON.stringify(summary)}`);
  if (!report.complete) context.warn(`verifyRepair stopped at its ${d.maxMinutes}-minute limit: hub only partly read, extras not judged`);
  return report;
}

app.timer('verifyRepair', {
  schedule: '%VERIFY_SCHEDULE%',
  handler: verifyRepair,
});
