import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { SyncEngine } from '../../functions/src/sync/engine';
import { verifyCommand, type ScanFlags } from '../../tools/commands';
import { createTwinQuery } from '../../functions/src/runtime/build';
import type { RestTwinQuery } from '../../functions/src/adapters/twinQuery';
import { created, deleted, opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';
import { startToolEnv, type ToolEnv } from './env';

/**
 * verify --repair acts only on what the hub says now. The twin query stand-in shows the service's habits
 * (a lagging query view, ghost module rows, short pages, its own page size, queuing then 429); the twin reads
 * by id answer the latest state (Microsoft Learn, "Queries for IoT Hub device and module twins": query
 * results are eventually consistent, up to 30 minutes; Azure/azure-iot-sdk-csharp#525: deleted modules
 * returned by devices.modules queries). The shipped hub client (RestTwinQuery), replica on the local Cosmos server.
 * Cases A, D, E and the ahead-of-hub document each damaged (or left wrong) the replica before reads by id.
 */
let env: ToolEnv;
let engine: SyncEngine;
let sdk: RestTwinQuery;
const FAST: ScanFlags = { pageSize: 100, rate: 6000, readRate: 1000, pager: { backoffMs: 20 } };

beforeAll(async () => {
  env = await startToolEnv();
});
afterAll(async () => {
  await env?.close();
});
beforeEach(async () => {
  await env.clear();
  engine = env.engine();
  sdk = createTwinQuery({ hostName: env.hub!.hostName, credential: env.credential, ca: env.hub!.cert.cert });
});

function live(events: WireEvent[]) {
  const { messages, triggerMetadata } = toTrigger(events);
  return engine.processBatch(messages.map((body, i) => ({ body, properties: triggerMetadata.propertiesArray[i], systemProperties: triggerMetadata.systemPropertiesArray[i] })), { isLastAttempt: true });
}
const ago = (ms: number) => opTimestamp(Date.now() - ms);
const repair = () => verifyCommand({ ...FAST, repair: true }, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: env.hub!.hostName });

describe('verify --repair confirms every difference with a read by id', () => {
  it('A: a stale row of a deleted-and-re-created device does not overwrite the new twin, whose later events still land', async () => {
    const hub = env.hub!;
    hub.addDevice('a-dev', { version: 57, tags: { gen: 'old' } });
    await live([created({ deviceId: 'a-dev', ts: ago(86_400_000), twin: hub.devices.get('a-dev')! })]);
    hub.freezeQueryView(); // the query index still shows version 57
    hub.deleteDevice('a-dev');
    hub.addDevice('a-dev', { version: 1, tags: { gen: 'new' } });
    // Re-created 10 minutes ago: within the query's 30-minute lag, beyond the 5 minutes the old code allowed.
    await live([deleted({ deviceId: 'a-dev', ts: ago(600_000) }), created({ deviceId: 'a-dev', ts: ago(599_000), twin: hub.devices.get('a-dev')! })]);

    const report = await repair();
    expect(await env.readDoc('a-dev')).toMatchObject({ version: 1, tags: { gen: 'new' } });
    expect(report).toMatchObject({ stale: { count: 0 }, lagging: 1, remaining: 0 });
    const v2 = hub.updateTwin('a-dev', undefined, { tags: { gen: 'newer' } });
    expect((await live([twinUpdate({ deviceId: 'a-dev', ts: ago(0), version: v2.version as number, tags: { gen: 'newer' } })])).summary.applied).toBe(1);
    expect(await env.readDoc('a-dev')).toMatchObject({ version: 2, tags: { gen: 'newer' } });
  });

  it('D: a device created minutes before the scan (not yet in the query results) is not tombstoned', async () => {
    const hub = env.hub!;
    hub.addDevice('d-old');
    await live([created({ deviceId: 'd-old', ts: ago(86_400_000), twin: hub.devices.get('d-old')! })]);
    hub.freezeQueryView();
    hub.addDevice('d-new');
    await live([created({ deviceId: 'd-new', ts: ago(10 * 60_000), twin: hub.devices.get('d-new')! })]);

    const report = await repair();
    expect((await env.readDoc('d-new'))?.deleted).toBeUndefined();
    expect(report).toMatchObject({ complete: true, extra: { count: 0 }, lagging: 1, remaining: 0 });
    expect(hub.reads.map((r) => r.path)).toEqual(['/twins/d-new']); // the unlisted document, read by id
  });

  it('E: a twin deleted minutes before its page was read is not brought back', async () => {
    const hub = env.hub!;
    hub.addDevice('e-dev', { tags: { x: 1 } });
    await live([created({ deviceId: 'e-dev', ts: ago(86_400_000), twin: hub.devices.get('e-dev')! })]);
    hub.freezeQueryView(); // the row outlives the deletion
    hub.deleteDevice('e-dev');
    await live([deleted({ deviceId: 'e-dev', ts: ago(10 * 60_000) })]);

    const report = await repair();
    expect(await env.readDoc('e-dev')).toMatchObject({ deleted: true });
    expect(report).toMatchObject({ missing: { count: 0 }, ghostRows: 1, remaining: 0 });
  });

  it('a document ahead of the hub (an earlier incarnation, its delete and create lost) is replaced by the hub\'s twin', async () => {
    const hub = env.hub!;
    hub.addDevice('h-dev', { version: 57, tags: { gen: 'old' } });
    await live([created({ deviceId: 'h-dev', ts: ago(2 * 86_400_000), twin: hub.devices.get('h-dev')! })]);
    hub.deleteDevice('h-dev');
    hub.addDevice('h-dev', { version: 3, tags: { gen: 'new' } }); // both events lost

    const report = await repair();
    const doc = await env.readDoc('h-dev');
    expect(doc).toMatchObject({ version: 3, tags: { gen: 'new' } });
    expect(report).toMatchObject({ aheadOfHub: { count: 1, samples: [{ deviceId: 'h-dev', hubVersion: 3, replicaVersion: 57 }] }, repaired: { applied: 1 }, remaining: 0 });
    expect(doc?.replica.snapshotAt).toBeDefined();
    // The new incarnation's next change lands (it would be stale against version 57).
    const v4 = hub.updateTwin('h-dev', undefined, { tags: { gen: 'next' } });
    expect((await live([twinUpdate({ deviceId: 'h-dev', ts: ago(0), version: v4.version as number, tags: { gen: 'next' } })])).summary.applied).toBe(1);
    const again = await verifyCommand(FAST, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    expect(again.remaining).toBe(0);
  });

  it('a re-created identity at the same version as the one the replica holds is told apart by its deviceEtag', async () => {
    const hub = env.hub!;
    hub.addDevice('r-dev', { version: 2, tags: { gen: 'old' } });
    await live([created({ deviceId: 'r-dev', ts: ago(2 * 86_400_000), twin: hub.devices.get('r-dev')! })]);
    hub.deleteDevice('r-dev');
    hub.addDevice('r-dev', { version: 2, tags: { gen: 'new' } }); // delete and create lost; same version, new identity ETag

    const report = await repair();
    expect(await env.readDoc('r-dev')).toMatchObject({ version: 2, tags: { gen: 'new' }, deviceEtag: hub.devices.get('r-dev')!.deviceEtag });
    expect(report).toMatchObject({ unrouted: { count: 1 }, remaining: 0 });
  });

  it('ghost module rows never create or resurrect a module; a live module the query misses is kept', async () => {
    const hub = env.hub!;
    hub.addDevice('g-dev', { modules: ['live'] });
    await live([
      created({ deviceId: 'g-dev', ts: ago(86_400_000), twin: hub.devices.get('g-dev')! }),
      created({ deviceId: 'g-dev', moduleId: 'live', ts: ago(86_400_000), twin: hub.modules.get('g-dev/live')! }),
      created({ deviceId: 'g-dev', moduleId: 'gone', ts: ago(86_400_000), twin: { deviceId: 'g-dev', moduleId: 'gone', version: 1 } }),
      deleted({ deviceId: 'g-dev', moduleId: 'gone', ts: ago(3_600_000) }),
    ]);
    hub.ghostModule('g-dev', 'gone', 4); // deleted weeks ago, still returned by SELECT ... FROM devices.modules
    hub.ghostModule('g-dev', 'never', 1); // never in the replica

    const report = await repair();
    expect(report).toMatchObject({ ghostRows: 2, missing: { count: 0 }, remaining: 0 });
    expect(await env.readDoc('g-dev', 'gone')).toMatchObject({ deleted: true });
    expect(await env.readDoc('g-dev', 'never')).toBeUndefined();
    expect((await env.readDoc('g-dev', 'live'))?.deleted).toBeUndefined();
  });

  it('fields no event carries (status, statusReason, capabilities) are compared and refreshed from the twin', async () => {
    const hub = env.hub!;
    hub.addDevice('s-dev');
    await live([created({ deviceId: 's-dev', ts: ago(86_400_000), twin: hub.devices.get('s-dev')! })]);
    const twin = hub.devices.get('s-dev')!;
    twin.status = 'disabled'; // an identity update: no twin event, no version change
    twin.statusReason = 'stolen';
    twin.capabilities = { iotEdge: true };
    twin.lastActivityTime = '2026-01-01T00:00:00Z'; // volatile: never compared

    const report = await repair();
    expect(report).toMatchObject({ unrouted: { count: 1, samples: [{ deviceId: 's-dev', hubVersion: 1, replicaVersion: 1 }] }, repaired: { applied: 1 }, remaining: 0 });
    expect(await env.readDoc('s-dev')).toMatchObject({ version: 1, status: 'disabled', statusReason: 'stolen', capabilities: { iotEdge: true } });
    const after = await verifyCommand(FAST, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    expect(after).toMatchObject({ unrouted: { count: 0 }, lagging: 0, remaining: 0 });
    expect(hub.reads).toHaveLength(1); // the second verify read nothing by id
  });

  it('reads only ids, versions and unrouted fields in the scan; whole twins only for differences', async () => {
    const hub = env.hub!;
    for (let i = 0; i < 5; i++) hub.addDevice(`p-${i}`, { tags: { big: 'x'.repeat(2000) }, modules: ['m'] });
    for (let i = 0; i < 5; i++) {
      await live([
        created({ deviceId: `p-${i}`, ts: ago(86_400_000), twin: hub.devices.get(`p-${i}`)! }),
        created({ deviceId: `p-${i}`, moduleId: 'm', ts: ago(86_400_000), twin: hub.modules.get(`p-${i}/m`)! }),
      ]);
    }
    hub.updateTwin('p-3', undefined, { tags: { big: 'y' } }); // the one difference (its event lost)
    const report = await repair();
    expect(report).toMatchObject({ stale: { count: 1 }, remaining: 0, hubTwins: { devices: 5, modules: 5 } });
    expect(hub.requests.map((r) => r.sql)).toEqual([
      'SELECT deviceId, version, status, statusReason, statusUpdateTime, capabilities, deviceScope, deviceEtag FROM devices',
      'SELECT deviceId, moduleId, version, status, statusReason, statusUpdateTime, capabilities, deviceScope, deviceEtag FROM devices.modules',
    ]);
    expect(hub.reads.map((r) => r.path)).toEqual(['/twins/p-3']);
    expect(await env.readDoc('p-3')).toMatchObject({ version: 2, tags: { big: 'y' } });
  });

  it('copes with short pages, the service\'s own page size and queuing then 429', async () => {
    const hub = env.hub!;
    for (let i = 0; i < 12; i++) hub.addDevice(`q-${String(i).padStart(2, '0')}`, { modules: ['m'] });
    hub.shortPages(3); // fewer items than asked, continuation still set
    hub.maxPageSize = 5;
    hub.limitRate(3, 400, 100); // over 3 queries per 400 ms: held 100 ms, then 429
    const report = await verifyCommand({ ...FAST, pageSize: 50, repair: true }, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    hub.maxPageSize = undefined;
    expect(report).toMatchObject({ complete: true, hubTwins: { devices: 12, modules: 12 }, missing: { count: 24 }, remaining: 0 });
    expect(report.query.throttled).toBeGreaterThan(0);
    expect(hub.requests.filter((r) => r.status === 200).every((r) => r.items <= 3 && r.pageSize === 50)).toBe(true);
  });
});
