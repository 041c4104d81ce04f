import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BackfillState } from '../../functions/src/scan/backfill';
import { backfillCommand, type ScanFlags } from '../../tools/commands';
import { createTwinQuery } from '../../functions/src/runtime/build';
import { USER_AGENT, type RestTwinQuery, type TwinQuery } from '../../functions/src/adapters/twinQuery';
import { deleted, opTimestamp, toTrigger, twinUpdate } from '../../testkit/events';
import { stampedQuery, startToolEnv, type ToolEnv } from './env';

/**
 * backfill: the shipped hub client (RestTwinQuery, the documented REST calls) against the local HTTPS
 * stand-in of the twin query endpoint, writing through SyncEngine.applyTwinEvents into the local Cosmos server.
 */
let env: ToolEnv;
let dir: string;
const FAST: ScanFlags = { pageSize: 3, rate: 1200, pager: { backoffMs: 20, maxBackoffMs: 200 } };

beforeAll(async () => {
  env = await startToolEnv();
  dir = mkdtempSync(path.join(tmpdir(), 'backfill-'));
});
afterAll(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await env.clear();
});

function hubQuery(): RestTwinQuery {
  return createTwinQuery({ hostName: env.hub!.hostName, credential: env.credential, ca: env.hub!.cert.cert });
}

function seed(devices: number, modulesPer = 0): void {
  for (let i = 1; i <= devices; i++) {
    env.hub!.addDevice(`dev-${String(i).padStart(2, '0')}`, { tags: { site: `s${i % 3}` }, modules: Array.from({ length: modulesPer }, (_, m) => `mod${m}`) });
  }
}

let stateN = 0;
function run(flags: ScanFlags & { restart?: boolean } = {}, over: { twinQuery?: TwinQuery; signal?: AbortSignal; stateFile?: string } = {}) {
  const engine = env.engine();
  return {
    engine,
    result: backfillCommand({ ...FAST, ...flags }, {
      engine, twinQuery: over.twinQuery ?? hubQuery(), hub: env.hub!.hostName, stateFile: over.stateFile ?? path.join(dir, `state-${++stateN}.json`), signal: over.signal,
    }),
  };
}

describe('backfill through the hub client against the twin query stand-in', () => {
  it('reads devices and modules page by page with continuation tokens and writes full twins; a second run changes nothing', async () => {
    seed(7, 2); // 7 device twins (3 pages of 3), 14 module twins (5 pages)
    const report = await run().result;
    expect(report).toMatchObject({ resumed: false, pages: 8, twins: { devices: 7, modules: 14 }, unusable: 0, replica: { applied: 21, stale: 0, deadLettered: 0 } });
    const sqls = env.hub!.requests.map((r) => r.sql);
    expect(sqls.filter((s) => s === 'SELECT * FROM devices')).toHaveLength(3);
    expect(sqls.filter((s) => s === 'SELECT * FROM devices.modules')).toHaveLength(5);
    expect(env.hub!.requests.every((r) => r.pageSize === 3 && r.status === 200)).toBe(true);
    expect(env.hub!.requests[0].userAgent).toBe(USER_AGENT); // the shipped hub client made the calls
    expect((env.credential as unknown as { calls: string[] }).calls[0]).toBe('https://iothubs.azure.net/.default');

    const doc = await env.readDoc('dev-04');
    expect(doc).toMatchObject({ deviceId: 'dev-04', version: 1, tags: { site: 's1' }, status: 'enabled', capabilities: { iotEdge: false }, properties: { desired: { $version: 1 }, reported: { $version: 1 } } });
    expect(doc?.replica.partial).toBeUndefined();
    expect(await env.readDoc('dev-07', 'mod1')).toMatchObject({ deviceId: 'dev-07', moduleId: 'mod1', version: 1 });

    const again = await run().result;
    expect(again.replica).toEqual({ applied: 0, stale: 21, deadLettered: 0 });
  });

  it('paces page requests to the query budget', async () => {
    seed(9);
    const stamped = stampedQuery(hubQuery());
    const report = await run({ rate: 300 }, { twinQuery: stamped.query }).result; // one request per 200 ms
    expect(stamped.sentAt).toHaveLength(report.query.requests);
    expect(env.hub!.requests).toHaveLength(report.query.requests);
    // Every gap between two sends is the pager's wait (timers may fire a millisecond early; load only adds).
    const gaps = stamped.sentAt.slice(1).map((t, i) => t - stamped.sentAt[i]);
    expect(gaps.length).toBeGreaterThan(1);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(198);
  });

  it('backs off on 429 and completes; honours Retry-After', async () => {
    seed(5, 1);
    env.hub!.throttleNext(3);
    const report = await run().result;
    expect(report.query).toMatchObject({ throttled: 3, retries: 3 });
    expect(report.replica.applied).toBe(10);
    expect(env.hub!.requests.filter((r) => r.status === 429)).toHaveLength(3);

    await env.clear();
    seed(2);
    env.hub!.throttleNext(1, 1);
    const started = Date.now();
    const r2 = await run().result;
    expect(r2.query.throttled).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const [throttled, ok] = env.hub!.requests;
    expect(ok.at - throttled.at).toBeGreaterThanOrEqual(990);
  });

  it('stays within a hub that enforces its per-window budget (429 beyond it)', async () => {
    seed(12);
    env.hub!.limitRate(2, 600); // the hub allows 2 queries per 600 ms; we ask for 1 per 50 ms
    const report = await run({ pageSize: 2 }).result;
    expect(report.twins.devices).toBe(12);
    expect(report.query.throttled).toBeGreaterThan(0);
    expect(report.replica.applied).toBe(12);
  });

  it('fails (state kept) when throttling outlasts its attempts', async () => {
    seed(4);
    env.hub!.throttleNext(100);
    const stateFile = path.join(dir, 'throttled.json');
    await expect(run({ pager: { backoffMs: 5, maxBackoffMs: 10, maxAttempts: 3 } }, { stateFile }).result).rejects.toThrow(/after 3 attempt\(s\).*429/);
    expect(existsSync(stateFile)).toBe(false); // nothing was read, nothing to resume
  });

  it('resumes an interrupted run from its last continuation token', async () => {
    seed(10, 1);
    const stateFile = path.join(dir, 'resume.json');
    const controller = new AbortController();
    env.hub!.beforePage = (served) => {
      if (served === 3) controller.abort(new Error('operator pressed Ctrl-C'));
    };
    await expect(run({}, { signal: controller.signal, stateFile }).result).rejects.toThrow(/Ctrl-C/);
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as BackfillState;
    // The interrupt aborts the page request in flight (page 3): the state stands after page 2.
    expect(saved.queries.devices).toMatchObject({ done: false, pages: 2, twins: 6 });
    expect(saved.queries.devices.continuation).toBeTypeOf('string');
    expect(await env.readDoc('dev-06')).toBeDefined();
    expect(await env.readDoc('dev-07')).toBeUndefined();

    env.hub!.beforePage = undefined;
    const before = env.hub!.requests.length;
    const report = await run({}, { stateFile }).result;
    const resumedRequests = env.hub!.requests.slice(before);
    expect(resumedRequests[0]).toMatchObject({ sql: 'SELECT * FROM devices', continuation: saved.queries.devices.continuation });
    expect(report).toMatchObject({ resumed: true, twins: { devices: 10, modules: 10 } });
    expect(report.replica.applied).toBe(14); // dev-07..dev-10 and the 10 module twins; nothing read twice
    expect(existsSync(stateFile)).toBe(false);
    expect(await env.readDoc('dev-10')).toBeDefined();
  });

  it('a saved continuation the hub no longer accepts fails with how to restart; --restart starts over', async () => {
    seed(6);
    const stateFile = path.join(dir, 'expired.json');
    const controller = new AbortController();
    env.hub!.beforePage = (served) => {
      if (served === 2) controller.abort(new Error('interrupted'));
    };
    await expect(run({}, { signal: controller.signal, stateFile }).result).rejects.toThrow(/interrupted/);
    env.hub!.beforePage = undefined;
    expect(existsSync(stateFile)).toBe(true);
    env.hub!.expireContinuations();
    await expect(run({}, { stateFile }).result).rejects.toThrow(/refused the saved continuation of the devices query.*--restart/);
    const report = await run({ restart: true }, { stateFile }).result;
    expect(report).toMatchObject({ resumed: false, twins: { devices: 6 } });
  });

  it('a device deleted after its page was read stays deleted, whatever order the replica sees the read and the delete in', async () => {
    seed(6);
    const live = env.engine();
    // dev-02 (page 1) is deleted after page 1 was read; its delete event reaches the replica before the backfill writes page 1.
    // dev-05 (page 2) is deleted after page 2 was read too, but the backfill writes page 2 first.
    const sdk = hubQuery();
    const deleteOnHub = async (deviceId: string) => {
      env.hub!.deleteDevice(deviceId);
      const { messages, triggerMetadata } = toTrigger([deleted({ deviceId, ts: opTimestamp(Date.now()) })]);
      const raw = messages.map((body, i) => ({ body, properties: triggerMetadata.propertiesArray[i], systemProperties: triggerMetadata.systemPropertiesArray[i] }));
      return live.processBatch(raw, { isLastAttempt: true });
    };
    let pages = 0;
    let pendingDelete: string | undefined;
    const twinQuery: TwinQuery = {
      twin: (key, signal) => sdk.twin(key, signal),
      async page(sql, continuation, size) {
        if (pendingDelete) await deleteOnHub(pendingDelete); // the previous page has been written by now
        pendingDelete = undefined;
        const page = await sdk.page(sql, continuation, size);
        pages++;
        if (pages === 1) expect((await deleteOnHub('dev-02')).summary.applied).toBe(1);
        if (pages === 2) pendingDelete = 'dev-05';
        return page;
      },
    };
    const report = await run({}, { twinQuery }).result;
    expect(report.twins.devices).toBe(6);
    expect(report.replica).toMatchObject({ applied: 5, stale: 1 }); // dev-02's snapshot is older than its tombstone
    expect(await env.readDoc('dev-02')).toMatchObject({ deleted: true });
    expect(await env.readDoc('dev-05')).toMatchObject({ deleted: true });
    expect(await env.readDoc('dev-01')).toMatchObject({ version: 1 });
  });

  it('a twin updated by a live event mid-scan keeps the update, before or after its snapshot is written', async () => {
    // dev-01: the live update (v2) reaches an empty replica before the snapshot (v1) is written: the document
    //         stays a partial v2 (the older snapshot must not roll it back); verify --repair completes it.
    // dev-04: the snapshot (v1) is written first, then the live update (v2) lands on the full twin.
    seed(6);
    const live = env.engine();
    const sdk = hubQuery();
    const updateOnHub = async (deviceId: string) => {
      const twin = env.hub!.updateTwin(deviceId, undefined, { tags: { firmware: '2.0' } });
      const { messages, triggerMetadata } = toTrigger([twinUpdate({ deviceId, ts: opTimestamp(Date.now()), version: twin.version as number, tags: { firmware: '2.0' } })]);
      const raw = messages.map((body, i) => ({ body, properties: triggerMetadata.propertiesArray[i], systemProperties: triggerMetadata.systemPropertiesArray[i] }));
      return live.processBatch(raw, { isLastAttempt: true });
    };
    let pages = 0;
    let pending: string | undefined;
    const twinQuery: TwinQuery = {
      twin: (key, signal) => sdk.twin(key, signal),
      async page(sql, continuation, size) {
        if (pending) await updateOnHub(pending);
        pending = undefined;
        const page = await sdk.page(sql, continuation, size);
        pages++;
        if (pages === 1) await updateOnHub('dev-01'); // live update (v2) lands before the snapshot (v1) is written
        if (pages === 2) pending = 'dev-04'; // the snapshot (v1) is written first, then the live update (v2)
        return page;
      },
    };
    const report = await run({}, { twinQuery }).result;
    expect(report.replica).toMatchObject({ applied: 5, stale: 1 });
    const first = await env.readDoc('dev-01');
    expect(first).toMatchObject({ version: 2, tags: { firmware: '2.0' }, replica: { partial: true } });
    const fourth = await env.readDoc('dev-04');
    expect(fourth).toMatchObject({ version: 2, tags: { site: 's1', firmware: '2.0' }, status: 'enabled' });
    expect(fourth?.replica.partial).toBeUndefined();
  });
});
