import { runProcess, type ProcessRun } from '../../testkit/process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvocationContext } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CosmosTwinStore } from '../../functions/src/adapters/cosmosStore';
import { makeSyncTwins } from '../../functions/src/handlers/syncTwins';
import type { SyncEngine } from '../../functions/src/sync/engine';
import { StoreError, type DeadLetter, type TwinStore } from '../../functions/src/sync/ports';
import { DEAD_LETTER_REASONS, type TwinDoc } from '../../functions/src/sync/types';
import { BlobDeadLetterStore, REDRIVEN_PREFIX } from '../../tools/redrive';
import { redriveCommand } from '../../tools/commands';
import { created, fullTwin, opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';
import { startToolEnv, type ToolEnv } from './env';

/**
 * redrive: dead letters of every reason produced by pushing real poison events through the syncTwins handler
 * (plus a store that rejects one device and fails transiently for another, on the last retry), stored in
 * Azurite by the engine's Blob sink; redriven through the engine onto the local Cosmos server.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let env: ToolEnv;

beforeAll(async () => {
  env = await startToolEnv({ hub: false });
});
afterAll(async () => {
  await env?.close();
});

/** The Cosmos store, except: writes of `rej-*` are refused (400), reads of `flaky-*` fail (503). */
class FaultyStore implements TwinStore {
  constructor(private readonly inner: TwinStore) {}
  read(id: string, deviceId: string) {
    if (deviceId.startsWith('flaky-')) return Promise.reject(new StoreError('transient', '503: ServiceUnavailable', 503));
    return this.inner.read(id, deviceId);
  }
  create(doc: TwinDoc) {
    if (doc.deviceId.startsWith('rej-')) return Promise.reject(new StoreError('rejected', '400: BadRequest (simulated)', 400));
    return this.inner.create(doc);
  }
  replace(doc: TwinDoc, etag: string) {
    if (doc.deviceId.startsWith('rej-')) return Promise.reject(new StoreError('rejected', '400: BadRequest (simulated)', 400));
    return this.inner.replace(doc, etag);
  }
  listModuleIds(deviceId: string) {
    return this.inner.listModuleIds(deviceId);
  }
}

const ts = opTimestamp(Date.now() - 60_000);

function poisonEvents(): WireEvent[] {
  const base = () => twinUpdate({ deviceId: 'poison', ts, version: 2, tags: { a: 1 } });
  const malformed = { ...base(), body: '{"version": 2, "tags": ' };
  const notObject = { ...base(), body: '[1, 2]' };
  const unknownOp = base();
  unknownOp.properties.opType = 'patchTwin';
  const noDevice = twinUpdate({ deviceId: 'x', ts, version: 2, tags: {} });
  delete noDevice.properties.deviceId;
  delete noDevice.systemProperties['iothub-connection-device-id'];
  const badId = twinUpdate({ deviceId: 'd'.repeat(300), ts, version: 2, tags: {} });
  const invalid = { ...base(), body: { tags: { a: 1 } } }; // updateTwin without a version
  const noTime = created({ deviceId: 'no-time', ts, twin: fullTwin({ deviceId: 'no-time', version: 1 }) });
  delete noTime.properties.operationTimestamp;
  delete noTime.systemProperties['iothub-enqueuedtime'];
  const huge = created({ deviceId: 'huge', ts, twin: fullTwin({ deviceId: 'huge', version: 1, tags: { blob: 'x'.repeat(2_100_000) } }) });
  const rejected = created({ deviceId: 'rej-1', ts, twin: fullTwin({ deviceId: 'rej-1', version: 1, tags: { ok: true } }) });
  const transient = created({ deviceId: 'flaky-1', ts, twin: fullTwin({ deviceId: 'flaky-1', version: 1, tags: { ok: true } }) });
  return [malformed, notObject, unknownOp, noDevice, badId, invalid, noTime, huge, rejected, transient];
}

async function invokeLastRetry(engine: SyncEngine, events: WireEvent[]) {
  const { messages, triggerMetadata } = toTrigger(events, { partitionId: '3', firstSequence: 500 });
  for (const sys of triggerMetadata.systemPropertiesArray as Record<string, unknown>[]) {
    if (sys['iothub-connection-device-id'] === 'no-time') {
      delete sys.enqueuedTimeUtc;
      delete sys['x-opt-enqueued-time'];
    }
  }
  const context = new InvocationContext({ functionName: 'syncTwins', invocationId: 'inv-poison', triggerMetadata, retryContext: { retryCount: 5, maxRetryCount: 5 }, logHandler: () => {} });
  return makeSyncTwins(() => ({ engine }))(messages, context);
}

async function blobs(prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const b of env.deadLetters!.listBlobsFlat({ prefix })) out.push(b.name);
  return out.sort();
}
const waiting = async () => (await blobs()).filter((n) => !n.startsWith(REDRIVEN_PREFIX));

function cliRedrive(args: string[]): Promise<ProcessRun> {
  return runProcess(process.execPath, [path.join(root, 'bin', 'twin-replica.mjs'), ...args], { env: { PATH: process.env.PATH, ...env.settings } });
}

describe('redrive of dead letters', () => {
  it('re-applies every reason: what can land lands (moved under redriven/), the rest fails again in place; idempotent', async () => {
    const faulty = env.engine(new FaultyStore(new CosmosTwinStore(env.cosmos.container)));
    const summary = await invokeLastRetry(faulty, poisonEvents());
    expect(summary).toMatchObject({ received: 10, applied: 0, deadLettered: 10 });
    // A backfill snapshot the store refused: the tools' own dead letter (its body is the parsed change).
    const snap = await faulty.applyTwinEvents([{ kind: 'snapshot', key: { deviceId: 'rej-snap' }, ts, version: 3, twin: fullTwin({ deviceId: 'rej-snap', version: 3 }) }], { isLastAttempt: false, source: 'replica-tools:backfill' });
    expect(snap.summary.deadLetterReasons).toEqual({ 'rejected-by-store': 1 });

    const initial = await waiting();
    expect(initial).toHaveLength(11);
    const reasons = new Set(initial.map((n) => DEAD_LETTER_REASONS.find((r) => n.endsWith(`-${r}.json`))));
    // Every reason a poison event can have, produced for real. The two batch-level reasons come from the
    // trigger, not from an event: a misaligned batch and one that killed its worker (test/functions/syncTwins.host.test.ts).
    const batchLevel = ['misaligned-batch', 'attempts-exhausted'];
    expect([...reasons].sort()).toEqual(DEAD_LETTER_REASONS.filter((r) => !batchLevel.includes(r)).sort());

    const healthy = env.engine();
    const store = new BlobDeadLetterStore(env.deadLetters!);

    // By time: nothing enqueued in the future.
    const none = await redriveCommand({ since: new Date(Date.now() + 3_600_000) }, { engine: healthy, store });
    expect(none.selected).toBe(0);

    // By reason: the transient failure lands now that the store is healthy.
    const transient = await redriveCommand({ reasons: ['transient-exhausted'] }, { engine: healthy, store });
    expect(transient).toMatchObject({ selected: 1, landed: { applied: 1 }, failedAgain: { count: 0 } });
    expect(await env.readDoc('flaky-1')).toMatchObject({ version: 1, tags: { ok: true } });

    // Everything else.
    const all = await redriveCommand({}, { engine: healthy, store });
    expect(all.selected).toBe(10);
    expect(all.landed).toEqual({ applied: 2, stale: 0, skipped: 0 }); // rej-1 (raw event) and rej-snap (tool record)
    expect(all.failedAgain).toEqual({
      count: 8, reasonChanged: 0,
      byReason: { 'malformed-body': 1, 'body-not-object': 1, 'unknown-op-type': 1, 'missing-device-id': 1, 'invalid-id': 1, 'invalid-event': 1, 'missing-timestamp': 1, 'twin-too-large': 1 },
    });
    expect(await env.readDoc('rej-1')).toMatchObject({ version: 1, tags: { ok: true } });
    expect(await env.readDoc('rej-snap')).toMatchObject({ version: 3 });
    const left = await waiting();
    expect(left).toHaveLength(8);
    // The ones that failed again kept their blob names (same partition, sequence number and reason); the event without
    // any time is named after its dead-lettering hour, so it may move.
    const stable = (names: string[]) => names.filter((n) => !n.includes('missing-timestamp'));
    expect(stable(left)).toEqual(stable(initial).filter((n) => !n.endsWith('-transient-exhausted.json') && !n.endsWith('-rejected-by-store.json')));
    expect((await blobs(REDRIVEN_PREFIX)).sort()).toHaveLength(3);
    const moved = JSON.parse((await env.deadLetters!.getBlobClient((await blobs(REDRIVEN_PREFIX))[0]).downloadToBuffer()).toString()) as DeadLetter;
    expect(moved.kind === 'twin-event' ? moved.change : moved.event).toBeDefined();

    // Again, through the command line: the same eight fail again in place (exit 2), nothing else changes.
    const cli = await cliRedrive(['--json', 'redrive']);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(2);
    expect(JSON.parse(cli.stdout)).toMatchObject({ selected: 8, landed: { applied: 0, stale: 0, skipped: 0 }, failedAgain: { count: 8, reasonChanged: 0 } });
    expect(stable(await waiting())).toEqual(stable(left));

    // A landed dead letter redriven twice (restored by hand) changes nothing: stale.
    const restoredName = initial.find((n) => n.endsWith('-transient-exhausted.json'))!;
    const record = (await env.deadLetters!.getBlobClient(REDRIVEN_PREFIX + restoredName).downloadToBuffer()).toString();
    await env.deadLetters!.getBlockBlobClient(restoredName).upload(record, Buffer.byteLength(record));
    const twice = await redriveCommand({ reasons: ['transient-exhausted'] }, { engine: healthy, store });
    expect(twice).toMatchObject({ selected: 1, landed: { applied: 0, stale: 1 } });
  });

  it('a dead letter says what it holds (kind); letters stored before kinds existed are still redriven by their shape', async () => {
    await env.clear();
    const faulty = env.engine(new FaultyStore(new CosmosTwinStore(env.cosmos.container)));
    const raw = await invokeLastRetry(faulty, [created({ deviceId: 'rej-old-raw', ts, twin: fullTwin({ deviceId: 'rej-old-raw', version: 1, tags: { old: 'raw' } }) })]);
    expect(raw).toMatchObject({ deadLettered: 1 });
    const change = { kind: 'snapshot' as const, key: { deviceId: 'rej-old-snap' }, ts, version: 2, twin: fullTwin({ deviceId: 'rej-old-snap', version: 2, tags: { old: 'snap' } }) };
    const snap = await faulty.applyTwinEvents([change], { isLastAttempt: true, source: 'replica-tools:backfill' });
    // The tools' change is stored as itself, not dressed up as a raw event.
    expect(snap.deadLetters).toEqual([expect.objectContaining({ kind: 'twin-event', change, source: 'replica-tools:backfill' })]);
    expect(snap.deadLetters[0]).not.toHaveProperty('event');

    // Rewrite both letters as they were stored before `kind`: the tool's change as the body of a made-up event.
    const names = await waiting();
    expect(names).toHaveLength(2);
    for (const name of names) {
      const letter = JSON.parse((await env.deadLetters!.getBlobClient(name).downloadToBuffer()).toString()) as DeadLetter;
      expect(letter.kind).toBe(letter.deviceId === 'rej-old-snap' ? 'twin-event' : 'trigger-event');
      const { kind: _kind, ...fields } = letter;
      const old = letter.kind === 'twin-event'
        ? { ...fields, change: undefined, event: { body: letter.change, properties: { deviceId: letter.change.key.deviceId, opType: letter.change.kind } } }
        : fields;
      const text = JSON.stringify(old);
      await env.deadLetters!.getBlockBlobClient(name).upload(text, Buffer.byteLength(text));
    }

    const report = await redriveCommand({}, { engine: env.engine(), store: new BlobDeadLetterStore(env.deadLetters!) });
    expect(report).toMatchObject({ selected: 2, landed: { applied: 2, stale: 0, skipped: 0 }, failedAgain: { count: 0 } });
    expect(await env.readDoc('rej-old-raw')).toMatchObject({ version: 1, tags: { old: 'raw' } });
    expect(await env.readDoc('rej-old-snap')).toMatchObject({ version: 2, tags: { old: 'snap' } });
    expect(await waiting()).toEqual([]);
  });
});
