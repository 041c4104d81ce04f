import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TwinQuery } from '../../functions/src/adapters/twinQuery';
import type { SyncEngine } from '../../functions/src/sync/engine';
import { backfillCommand, verifyCommand, type ScanFlags } from '../../tools/commands';
import { createTwinQuery } from '../../functions/src/runtime/build';
import { created, deleted, opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';
import { startToolEnv, type ToolEnv } from './env';

/**
 * verify / verify --repair: the real SDK against the stand-in hub, the replica on the local Cosmos server
 * (listed with a real cross-partition query), repairs through applyTwinEvents.
 */
let env: ToolEnv;
let dir: string;
const FAST: ScanFlags = { pageSize: 100, rate: 1200, pager: { backoffMs: 20 } };

beforeAll(async () => {
  env = await startToolEnv();
  dir = mkdtempSync(path.join(tmpdir(), 'verify-'));
});
afterAll(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

function live(engine: SyncEngine, events: WireEvent[]) {
  const { messages, triggerMetadata } = toTrigger(events);
  return engine.processBatch(messages.map((body, i) => ({ body, properties: triggerMetadata.propertiesArray[i], systemProperties: triggerMetadata.systemPropertiesArray[i] })), { isLastAttempt: true });
}

const ago = (ms: number) => opTimestamp(Date.now() - ms);
const names = (samples: { deviceId: string; moduleId?: string }[]) => samples.map((s) => (s.moduleId ? `${s.deviceId}/${s.moduleId}` : s.deviceId)).sort();

describe('verify and verify --repair', () => {
  it('finds missing, extra, stale and partial documents; the repair fixes them without damaging twins changed during the scan', async () => {
    const hub = env.hub!;
    const engine = env.engine();
    const sdk = createTwinQuery({ hostName: hub.hostName, credential: env.credential, ca: hub.cert.cert });
    for (const id of ['v-ok1', 'v-ok2', 'v-stale', 'v-tomb', 'v-del']) hub.addDevice(id, { tags: { role: 'sensor' } });
    hub.addDevice('v-extra', { modules: ['m1'] });
    await backfillCommand(FAST, { engine, twinQuery: sdk, hub: hub.hostName, stateFile: path.join(dir, 'state.json') });

    // What the replica missed (events lost or expired):
    hub.addDevice('v-miss'); // created, create event lost
    hub.updateTwin('v-stale', undefined, { tags: { a: 1 } });
    hub.updateTwin('v-stale', undefined, { tags: { b: 2 } }); // v3 on the hub, v1 in the replica
    hub.updateTwin('v-del', undefined, { tags: { c: 3 } }); // v2 on the hub, v1 in the replica
    await live(engine, [deleted({ deviceId: 'v-tomb', ts: ago(60_000) })]); // deleted a minute ago (after the backfill's snapshot), re-created since: create lost
    hub.deleteDevice('v-extra'); // deleted, delete event lost
    await live(engine, [created({ deviceId: 'v-gone', ts: ago(3_600_000), twin: { deviceId: 'v-gone', version: 1, tags: {}, properties: { desired: {}, reported: {} } } })]); // deleted since, event lost
    hub.addDevice('v-part', { version: 2, tags: { x: 1, y: 2 } });
    await live(engine, [twinUpdate({ deviceId: 'v-part', ts: ago(60_000), version: 2, tags: { y: 2 } })]); // only the change was seen

    const check = await verifyCommand(FAST, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    expect(check).toMatchObject({ complete: true, repair: false, hubTwins: { devices: 7, modules: 0 } });
    expect(names(check.missing.samples)).toEqual(['v-miss', 'v-tomb']);
    expect(check.missing.samples.find((s) => s.deviceId === 'v-tomb')).toMatchObject({ replicaDeleted: true, hubVersion: 1 });
    expect(names(check.extra.samples)).toEqual(['v-extra', 'v-extra/m1', 'v-gone']);
    expect(check.stale.samples).toEqual([{ deviceId: 'v-del', hubVersion: 2, replicaVersion: 1 }, { deviceId: 'v-stale', hubVersion: 3, replicaVersion: 1 }]);
    expect(names(check.partial.samples)).toEqual(['v-part']);
    expect(check.remaining).toBe(8);
    expect((await env.readDoc('v-extra'))?.deleted).toBeUndefined(); // report only: nothing written

    // Repair, while the hub and the live events keep moving:
    //  - v-stale changes again (v4) after its page was read, and that event lands before the repair's v3 snapshot;
    //  - v-del is deleted after its page was read, its delete lands first;
    //  - v-gone is re-created on the hub (after the device pages were read) and its create event lands.
    let devicePagesRead = false;
    const moving: TwinQuery = {
      twin: (key, signal) => sdk.twin(key, signal),
      async page(sql, continuation, size) {
        const page = await sdk.page(sql, continuation, size);
        if (/FROM devices$/.test(sql) && !devicePagesRead) {
          devicePagesRead = true;
          const v4 = hub.updateTwin('v-stale', undefined, { tags: { d: 4 } });
          hub.deleteDevice('v-del');
          hub.addDevice('v-gone');
          const r = await live(engine, [
            twinUpdate({ deviceId: 'v-stale', ts: ago(0), version: v4.version as number, tags: { d: 4 } }),
            deleted({ deviceId: 'v-del', ts: ago(0) }),
            created({ deviceId: 'v-gone', ts: ago(0), twin: hub.devices.get('v-gone')! }),
          ]);
          expect(r.summary.applied).toBe(3);
        }
        return page;
      },
    };
    const repair = await verifyCommand({ ...FAST, repair: true }, { engine, twinQuery: moving, replica: env.cosmos.container, hub: hub.hostName });
    expect(names(repair.missing.samples)).toEqual(['v-miss', 'v-tomb']);
    expect(names(repair.extra.samples)).toEqual(['v-extra', 'v-extra/m1']); // v-gone changed during the scan: not judged extra
    // v-stale (now v4), v-del (now deleted) and v-gone (re-created) changed after the listing: the read by id
    // agrees with the replica (v-stale, v-gone: lagging rows; v-del: a row of a deleted twin), nothing written
    expect(names(repair.stale.samples)).toEqual([]);
    expect(repair).toMatchObject({ lagging: 2, ghostRows: 1, changedDuringScan: 0 });
    // v-miss, v-tomb, v-part, v-extra and v-extra/m1 written (the module by its own confirmed deletion, dated at
    // its read, after the device's cascade in the same batch)
    expect(repair.repaired).toEqual({ applied: 5, skipped: 0, deadLettered: 0 });
    expect(repair.remaining).toBe(0);

    expect(await env.readDoc('v-miss')).toMatchObject({ version: 1, status: 'enabled' });
    expect(await env.readDoc('v-tomb')).toMatchObject({ version: 1, tags: { role: 'sensor' } });
    expect((await env.readDoc('v-tomb'))?.deleted).toBeUndefined();
    expect(await env.readDoc('v-extra')).toMatchObject({ deleted: true });
    expect(await env.readDoc('v-extra', 'm1')).toMatchObject({ deleted: true });
    expect(await env.readDoc('v-stale')).toMatchObject({ version: 4, tags: { d: 4 } });
    expect(await env.readDoc('v-del')).toMatchObject({ deleted: true });
    const gone = await env.readDoc('v-gone');
    expect(gone?.deleted).toBeUndefined();
    const goneCreatedAt = gone?.replica.createdAt;
    expect(goneCreatedAt !== undefined && goneCreatedAt > ago(60_000)).toBe(true);
    const part = await env.readDoc('v-part');
    expect(part).toMatchObject({ version: 2, tags: { x: 1, y: 2 }, status: 'enabled' });
    expect(part?.replica.partial).toBeUndefined();

    const after = await verifyCommand(FAST, { engine, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    expect(after).toMatchObject({ remaining: 0, missing: { count: 0 }, extra: { count: 0 }, stale: { count: 0 }, partial: { count: 0 } });
  });

  it('the repair\'s own writes are guarded: a change landing between the check and the write is kept', async () => {
    await env.clear();
    const hub = env.hub!;
    const engine = env.engine();
    const sdk = createTwinQuery({ hostName: hub.hostName, credential: env.credential, ca: hub.cert.cert });
    hub.addDevice('r-stale');
    hub.addDevice('r-extra');
    await backfillCommand(FAST, { engine, twinQuery: sdk, hub: hub.hostName, stateFile: path.join(dir, 'race.json') });
    hub.updateTwin('r-stale', undefined, { tags: { v: 2 } }); // lost
    hub.deleteDevice('r-extra'); // lost
    // The live events land right before each repair write (after verify confirmed the discrepancy).
    const racing = Object.create(engine) as SyncEngine;
    racing.applyTwinEvents = async (events, ctx) => {
      for (const e of events) {
        if (e.key.deviceId === 'r-stale') await live(engine, [twinUpdate({ deviceId: 'r-stale', ts: ago(0), version: hub.updateTwin('r-stale', undefined, { tags: { v: 3 } }).version as number, tags: { v: 3 } })]);
        if (e.key.deviceId === 'r-extra') {
          hub.addDevice('r-extra', { version: 1 });
          await live(engine, [created({ deviceId: 'r-extra', ts: ago(0), twin: hub.devices.get('r-extra')! })]);
        }
      }
      return engine.applyTwinEvents(events, ctx);
    };
    const report = await verifyCommand({ ...FAST, repair: true }, { engine: racing, twinQuery: sdk, replica: env.cosmos.container, hub: hub.hostName });
    expect(report.stale.count + report.extra.count).toBe(2);
    expect(report.repaired).toEqual({ applied: 0, skipped: 2, deadLettered: 0 });
    expect(await env.readDoc('r-stale')).toMatchObject({ version: 3, tags: { v: 3 } });
    const recreated = await env.readDoc('r-extra');
    expect(recreated?.deleted).toBeUndefined();
    expect(recreated?.replica.createdAt).toBeDefined();
  });

  it('stops at its deadline with an incomplete report and judges no extras', async () => {
    await env.clear();
    const engine = env.engine();
    await live(engine, [created({ deviceId: 'only-in-replica', ts: ago(3_600_000), twin: { deviceId: 'only-in-replica', version: 1 } })]);
    env.hub!.addDevice('on-hub');
    const { runVerify } = await import('../../functions/src/scan/verify');
    const { CosmosReplicaIndex } = await import('../../functions/src/adapters/replicaIndex');
    const { QueryPager } = await import('../../functions/src/adapters/twinQuery');
    const sdk = createTwinQuery({ hostName: env.hub!.hostName, credential: env.credential, ca: env.hub!.cert.cert });
    const report = await runVerify({ engine, pager: new QueryPager(sdk, { queriesPerMinute: 1200 }), replica: new CosmosReplicaIndex(env.cosmos.container), repair: true, hub: 'h', deadline: Date.now() });
    expect(report).toMatchObject({ complete: false, extra: { count: 0 }, repaired: { applied: 0 } });
    expect(env.hub!.requests).toHaveLength(0);
    expect((await env.readDoc('only-in-replica'))?.deleted).toBeUndefined();
  });
});
