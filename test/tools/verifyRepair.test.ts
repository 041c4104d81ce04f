import { InvocationContext, type Timer } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reportBlobName, useVerifyRepairDeps, verifyRepair, verifyRepairDeps } from '../../functions/src/functions/verifyRepair';
import type { VerifyReport } from '../../functions/src/replicaTools/scan';
import { RestTwinQuery, TwinQueryError } from '../../functions/src/replicaTools/twinQuery';
import { created, opTimestamp, toTrigger } from '../../testkit/events';
import { startToolEnv, type ToolEnv } from './env';

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
  useVerifyRepairDeps(undefined);
  await env?.close();
});

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
    const fromSettings = verifyRepairDeps({ ...env.settings, VERIFY_QUERIES_PER_MINUTE: '300', VERIFY_PAGE_SIZE: '2', AZURE_CLIENT_ID: '' });
    expect(fromSettings).toMatchObject({ hub: hub.hostName, queriesPerMinute: 300, pageSize: 2, maxMinutes: 25 });
    useVerifyRepairDeps({ ...fromSettings, twinQuery: restQuery() });
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
    const at = hub.requests.map((r) => r.at);
    expect(at.length).toBe(report.query.requests);
    for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(190);

    const name = reportBlobName(report.startedAt, 'inv-timer-1');
    expect(name).toMatch(/^verify\/\d{4}\/\d{2}\/\d{2}\/\d{6}-inv-timer-1\.json$/);
    const reports = (await import('@azure/storage-blob')).BlobServiceClient.fromConnectionString(env.blob!.connectionString).getContainerClient('reports');
    const stored = JSON.parse((await reports.getBlobClient(name).downloadToBuffer()).toString()) as VerifyReport;
    expect(stored).toEqual(report);
    const line = logs.find((l) => l.startsWith('verifyRepair summary '))!;
    expect(JSON.parse(line.slice('verifyRepair summary '.length))).toMatchObject({ report: name, complete: true, missing: 7, extra: 1, remaining: 0 });

    const second = await verifyRepair(timer, new InvocationContext({ functionName: 'verifyRepair', invocationId: 'inv-timer-2', logHandler: () => {} }));
    expect(second).toMatchObject({ missing: { count: 0 }, extra: { count: 0 }, stale: { count: 0 }, remaining: 0 });
  });
});
