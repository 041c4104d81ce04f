import { InvocationContext, type Timer } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_JSON } from '../../functions/build';
import { DEFAULT_VERIFY_MAX_MINUTES, FUNCTION_TIMEOUT_MINUTES } from '../../functions/src/runtime/contracts';
import { makeVerifyRepair, reportBlobName, stateBlobName } from '../../functions/src/handlers/verifyRepair';
import { buildVerifyRuntime, type VerifyRuntime } from '../../functions/src/runtime/build';
import { readVerifySettings, type Env } from '../../functions/src/runtime/settings';
import type { VerifyReport, VerifyState } from '../../functions/src/scan/verify';
import { hubBudgets, RestTwinQuery, TwinQueryError, type TwinQuery } from '../../functions/src/adapters/twinQuery';
import { created, opTimestamp, toTrigger } from '../../testkit/events';
import { stampedQuery, startToolEnv, type ToolEnv } from './env';

/**
 * The timer function: its dependencies built from the app settings (local Cosmos server, Azurite), except the
 * hub client, which is the same REST client with the stand-in's certificate trusted and a static token (the
 * managed identity does not exist here). The twin query goes over the documented REST call, not the SDK.
 */
let env: ToolEnv;

beforeAll(async () => {
  env = await startToolEnv();
});
afterAll(async () => {
  await env?.close();
});

/** The runtime from the app settings, with the stand-in's hub client (its certificate trusted, its static token). */
function runtimeFrom(settings: Env, twinQuery: TwinQuery = restQuery()): VerifyRuntime {
  return buildVerifyRuntime(readVerifySettings(settings), { twinQuery });
}
let runtime: VerifyRuntime | undefined;
const verifyRepair = makeVerifyRepair(() => runtime!);

function restQuery(): RestTwinQuery {
  return new RestTwinQuery({ hostName: env.hub!.hostName, getToken: async () => env.hub!.token, ca: env.hub!.cert.cert });
}

describe('RestTwinQuery (the function\'s twin query client)', () => {
  it('pages with continuation tokens and reports 429 with Retry-After', async () => {
    await env.clear();
    for (let i = 0; i < 5; i++) env.hub!.addDevice(`r-${i}`, { modules: ['m'] });
    const q = restQuery();
    const first = await q.page('SELECT * FROM devices.modules', undefined, 2);
    expect(first.items.map((t) => t.moduleId)).toEqual(['m', 'm']);
    const second = await q.page('SELECT * FROM devices.modules', first.continuation, 2);
    expect(second.items.map((t) => t.deviceId)).toEqual(['r-2', 'r-3']);
    env.hub!.throttleNext(1, 7);
    const err = await q.page('SELECT * FROM devices', undefined, 2).catch((e) => e);
    expect(err).toBeInstanceOf(TwinQueryError);
    expect(err).toMatchObject({ status: 429, retryAfterMs: 7000, throttled: true, transient: true });
    // Reads by id: the twin now, or undefined on 404 (device or module).
    expect(await q.twin({ deviceId: 'r-1', moduleId: 'm' })).toMatchObject({ deviceId: 'r-1', moduleId: 'm', version: 1 });
    expect(await q.twin({ deviceId: 'r-1' })).toMatchObject({ deviceId: 'r-1', status: 'enabled' });
    expect(await q.twin({ deviceId: 'r-1', moduleId: 'nope' })).toBeUndefined();
    expect(await q.twin({ deviceId: 'no such device' })).toBeUndefined();
    expect(env.hub!.reads.map((r) => [r.path, r.status])).toEqual([['/twins/r-1/modules/m', 200], ['/twins/r-1', 200], ['/twins/r-1/modules/nope', 404], ['/twins/no%20such%20device', 404]]);
    const unauthorized = await new RestTwinQuery({ hostName: env.hub!.hostName, getToken: async () => 'wrong', ca: env.hub!.cert.cert }).page('SELECT * FROM devices', undefined, 2).catch((e) => e);
    expect(unauthorized).toMatchObject({ status: 401, transient: false });
    q.close();
  });

  it('refuses a port or a custom CA for anything but a loopback stand-in', () => {
    expect(() => new RestTwinQuery({ hostName: 'myhub.azure-devices.net:8443', getToken: async () => 't' })).toThrow(/loopback/);
    expect(() => new RestTwinQuery({ hostName: 'myhub.azure-devices.net', getToken: async () => 't', ca: 'pem' })).toThrow(/loopback/);
  });
});

describe('verifyRepair timer function', () => {
  it('repairs the replica at its paced rate, stores its report in the reports container and logs a summary', async () => {
    await env.clear();
    const hub = env.hub!;
    for (let i = 1; i <= 5; i++) hub.addDevice(`t-${i}`, { tags: { n: i } });
    hub.addDevice('t-edge', { modules: ['edgeHub'] });
    const stamped = stampedQuery(restQuery());
    const fromSettings = runtimeFrom({ ...env.settings, VERIFY_QUERIES_PER_MINUTE: '300', VERIFY_PAGE_SIZE: '2', AZURE_CLIENT_ID: '' }, stamped.query);
    expect(fromSettings).toMatchObject({ hub: hub.hostName, queriesPerMinute: 300, twinReadsPerSecond: 50, pageSize: 2, maxMinutes: 25 });
    runtime = fromSettings;
    // The replica knows one device that no longer exists (its deletion was never routed).
    const { messages, triggerMetadata } = toTrigger([created({ deviceId: 't-old', ts: opTimestamp(Date.now() - 86_400_000), twin: { deviceId: 't-old', version: 4 } })]);
    await fromSettings.engine.processBatch(messages.map((body, i) => ({ body, properties: triggerMetadata.propertiesArray[i], systemProperties: triggerMetadata.systemPropertiesArray[i] })), { isLastAttempt: true });

    const logs: string[] = [];
    const context = new InvocationContext({ functionName: 'verifyRepair', invocationId: 'inv-timer-1', logHandler: (_l, ...a) => logs.push(a.map(String).join(' ')) });
    const timer: Timer = { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: '', next: '', lastUpdated: '' } };
    const report = await verifyRepair(timer, context);
    expect(report).toMatchObject({ complete: true, repair: true, hubTwins: { devices: 6, modules: 1 }, missing: { count: 7 }, extra: { count: 1 }, remaining: 0, repaired: { applied: 8 } });
    expect(await env.readDoc('t-3')).toMatchObject({ tags: { n: 3 }, version: 1 });
    expect(await env.readDoc('t-edge', 'edgeHub')).toMatchObject({ moduleId: 'edgeHub' });
    expect(await env.readDoc('t-old')).toMatchObject({ deleted: true });

    // Paced at VERIFY_QUERIES_PER_MINUTE=300: one page request per 200 ms at most.
    expect(hub.requests).toHaveLength(report.query.requests);
    expect(stamped.sentAt).toHaveLength(report.query.requests);
    // Every gap between two sends is the pager's wait (timers may fire a millisecond early; load only adds).
    const gaps = stamped.sentAt.slice(1).map((t, i) => t - stamped.sentAt[i]);
    expect(gaps.length).toBeGreaterThan(1);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(198);

    const name = reportBlobName(report.startedAt, 'inv-timer-1');
    expect(name).toMatch(/^verify\/\d{4}\/\d{2}\/\d{2}\/\d{6}-inv-timer-1\.json$/);
    const reports = (await import('@azure/storage-blob')).BlobServiceClient.fromConnectionString(env.blob!.connectionString).getContainerClient('reports');
    const stored = JSON.parse((await reports.getBlobClient(name).downloadToBuffer()).toString()) as VerifyReport;
    expect(stored).toEqual(report);
    const line = logs.find((l) => l.startsWith('verifyRepair summary '))!;
    expect(JSON.parse(line.slice('verifyRepair summary '.length))).toMatchObject({ report: name, complete: true, missing: 7, extra: 1, remaining: 0, fill: { pass: 1, twinsSeen: 7, passComplete: true } });

    const second = await verifyRepair(timer, new InvocationContext({ functionName: 'verifyRepair', invocationId: 'inv-timer-2', logHandler: () => {} }));
    expect(second).toMatchObject({ missing: { count: 0 }, extra: { count: 0 }, stale: { count: 0 }, remaining: 0 });
  });

  it('a run past its deadline still writes its report; the next run continues the pass where it stopped', async () => {
    await env.clear();
    const hub = env.hub!;
    for (let i = 0; i < 10; i++) hub.addDevice(`f-${String(i).padStart(2, '0')}`, { modules: ['m'] });
    const settings = { ...env.settings, VERIFY_QUERIES_PER_MINUTE: '6000', VERIFY_TWIN_READS_PER_SECOND: '1000', VERIFY_PAGE_SIZE: '4', AZURE_CLIENT_ID: '' };
    const logs: string[] = [];
    const context = (id: string) => new InvocationContext({ functionName: 'verifyRepair', invocationId: id, logHandler: (_l, ...a) => logs.push(a.map(String).join(' ')) });
    const timer: Timer = { isPastDue: false, schedule: { adjustForDST: false }, scheduleStatus: { last: '', next: '', lastUpdated: '' } };
    const reports = (await import('@azure/storage-blob')).BlobServiceClient.fromConnectionString(env.blob!.connectionString).getContainerClient('reports');
    const blob = async (name: string) => JSON.parse((await reports.getBlobClient(name).downloadToBuffer()).toString()) as unknown;
    await reports.getBlobClient(stateBlobName(hub.hostName)).deleteIfExists(); // the previous test's completed pass

    // Run 1: the hub holds the second page far past the run's deadline (1.2 s): the deadline aborts that request.
    runtime = runtimeFrom({ ...settings, VERIFY_MAX_MINUTES: '0.02' });
    hub.beforePage = (served) => (served === 2 ? new Promise((r) => setTimeout(r, 30_000)) : undefined);
    const first = await verifyRepair(timer, context('inv-fill-1'));
    hub.beforePage = undefined;
    expect(first).toMatchObject({ complete: false, stoppedBy: 'deadline', hubTwins: { devices: 4 }, missing: { count: 4 }, repaired: { applied: 4 } });
    expect(first.pass).toMatchObject({ number: 1, resumed: false, twinsSeen: 4, complete: false });
    expect(first.lastCompletedPass).toBeUndefined();
    expect(await blob(reportBlobName(first.startedAt, 'inv-fill-1'))).toEqual(first); // written although the run was cut
    const saved = (await blob(stateBlobName(hub.hostName))) as VerifyState;
    expect(saved.pass.queries.devices).toMatchObject({ done: false, pages: 1, twins: 4 });
    expect(saved.pass.seen).toHaveLength(4);
    const line1 = JSON.parse(logs.find((l) => l.startsWith('verifyRepair summary ') && l.includes('inv-fill-1'))!.slice('verifyRepair summary '.length));
    expect(line1).toMatchObject({ stoppedBy: 'deadline', fill: { pass: 1, twinsSeen: 4, passComplete: false, lastCompletedPassAt: null } });

    // Run 2: continues from the saved continuation and finishes the pass.
    runtime = runtimeFrom(settings);
    const before = hub.requests.length;
    const second = await verifyRepair(timer, context('inv-fill-2'));
    expect(hub.requests[before]).toMatchObject({ continuation: saved.pass.queries.devices.continuation });
    expect(second).toMatchObject({ complete: true, hubTwins: { devices: 6, modules: 10 }, missing: { count: 16 }, remaining: 0 });
    expect(second.pass).toMatchObject({ number: 1, resumed: true, twinsSeen: 20, complete: true });
    expect(second.lastCompletedPass).toMatchObject({ number: 1, twins: 20, completedAt: second.pass.completedAt });
    for (let i = 0; i < 10; i++) expect(await env.readDoc(`f-${String(i).padStart(2, '0')}`, 'm')).toMatchObject({ version: 1 });
    expect(((await blob(stateBlobName(hub.hostName))) as VerifyState).pass).toMatchObject({ number: 2, seen: [] });

    // Run 3: a fresh pass; its first page's token expires before the next run: the pass restarts cleanly.
    runtime = runtimeFrom({ ...settings, VERIFY_MAX_MINUTES: '0.02' });
    let pages = 0;
    hub.beforePage = () => (++pages === 2 ? new Promise((r) => setTimeout(r, 30_000)) : undefined);
    const third = await verifyRepair(timer, context('inv-fill-3'));
    hub.beforePage = undefined;
    expect(third).toMatchObject({ stoppedBy: 'deadline', pass: { number: 2, twinsSeen: 4 } });
    hub.expireContinuations();
    runtime = runtimeFrom(settings);
    const fourth = await verifyRepair(timer, context('inv-fill-4'));
    expect(fourth).toMatchObject({ complete: true, remaining: 0, pass: { number: 2, restarts: 1, twinsSeen: 20, complete: true } });
  });

  it('budgets follow the hub tier; the host timeout is explicit and above the run\'s deadline', () => {
    expect(hubBudgets('S1', 1, 0.5)).toEqual({ queriesPerMinute: 10, twinReadsPerSecond: 50 });
    expect(hubBudgets('S2', 20, 1)).toEqual({ queriesPerMinute: 400, twinReadsPerSecond: 200 });
    expect(hubBudgets('S3', 2, 0.5)).toEqual({ queriesPerMinute: 1000, twinReadsPerSecond: 500 });
    const deps = runtimeFrom({ ...env.settings, IOTHUB_SKU: 'S3', IOTHUB_UNITS: '2', AZURE_CLIENT_ID: '' });
    expect(deps).toMatchObject({ queriesPerMinute: 1000, twinReadsPerSecond: 500 });
    expect(HOST_JSON.functionTimeout).toBe(`00:${FUNCTION_TIMEOUT_MINUTES}:00`);
    expect(DEFAULT_VERIFY_MAX_MINUTES).toBeLessThan(FUNCTION_TIMEOUT_MINUTES);
    expect(() => readVerifySettings({ ...env.settings, VERIFY_MAX_MINUTES: '29', AZURE_CLIENT_ID: '' })).toThrow(/functionTimeout/);
  });
});
