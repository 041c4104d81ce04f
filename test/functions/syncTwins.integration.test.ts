import { BlobServiceClient } from '@azure/storage-blob';
import { InvocationContext, type RetryContext } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncTwins } from '../../functions/src/functions/syncTwins';
import { encodeDocId } from '../../functions/src/sync/ids';
import type { DeadLetter } from '../../functions/src/sync/ports';
import type { TwinDoc } from '../../functions/src/sync/types';
import { connection, created, deleted, fullTwin, opTimestamp, toTrigger, twinReplace, twinUpdate, type WireEvent } from '../../testkit/events';
import { CONTAINER, DATABASE, LOCAL_COSMOS_KEY, startAzurite, startLocalCosmos, type LocalBlob, type LocalCosmos } from '../../testkit/servers';
import { fixtureNames, loadFixture } from '../fixtures';

/**
 * The exported handler, end to end: a real InvocationContext from @azure/functions, the real @azure/cosmos
 * SDK against the local Cosmos-compatible server, dead letters through @azure/storage-blob into Azurite. The
 * handler builds its engine from the same app settings it reads in Azure.
 */
let cosmos: LocalCosmos;
let blob: LocalBlob;
let seq = 1;
const logs: string[] = [];

beforeAll(async () => {
  [cosmos, blob] = await Promise.all([startLocalCosmos(), startAzurite()]);
  await BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters').createIfNotExists();
  Object.assign(process.env, {
    COSMOS_ENDPOINT: cosmos.endpoint,
    COSMOS_DATABASE: DATABASE,
    COSMOS_CONTAINER: CONTAINER,
    COSMOS_KEY: LOCAL_COSMOS_KEY,
    DEADLETTER_CONNECTION_STRING: blob.connectionString,
    DEADLETTER_CONTAINER: 'deadletters',
    TOMBSTONE_TTL_SECONDS: String(8 * 86400),
  });
});

afterAll(async () => {
  await Promise.all([cosmos?.close(), blob?.close()]);
});

function invoke(events: WireEvent[], retryContext: RetryContext = { retryCount: 0, maxRetryCount: 5 }) {
  const { messages, triggerMetadata } = toTrigger(events, { partitionId: '1', firstSequence: seq });
  seq += events.length;
  const context = new InvocationContext({
    functionName: 'syncTwins',
    invocationId: `inv-${seq}`,
    triggerMetadata,
    retryContext,
    logHandler: (_level, ...args) => logs.push(args.map(String).join(' ')),
  });
  return syncTwins(messages, context);
}

async function readDoc(deviceId: string, moduleId?: string): Promise<TwinDoc | undefined> {
  const { resource } = await cosmos.container.item(encodeDocId({ deviceId, moduleId }), deviceId).read<TwinDoc>();
  return resource;
}

async function deadLetters(): Promise<(DeadLetter & { blobName: string })[]> {
  const c = BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters');
  const out: (DeadLetter & { blobName: string })[] = [];
  for await (const b of c.listBlobsFlat()) {
    out.push({ ...JSON.parse((await c.getBlobClient(b.name).downloadToBuffer()).toString('utf8')), blobName: b.name });
  }
  return out;
}

const at = (s: number) => opTimestamp(Date.parse('2026-02-01T08:00:00Z') + s * 1000);

describe('syncTwins against the local Cosmos server', () => {
  it('applies every shared sample event and logs one summary that adds up', async () => {
    const events = fixtureNames().map(loadFixture);
    const summary = await invoke(events);
    // thermostat-042's create and its update fold into one write
    expect(summary).toMatchObject({ received: 5, applied: 5, stale: 0, skipped: 0, deadLettered: 0, retrying: 0, documents: 4, writes: 4, queries: 0, partitionId: '1' });
    const line = logs.filter((l) => l.startsWith('syncTwins summary ')).at(-1)!;
    expect(JSON.parse(line.slice('syncTwins summary '.length))).toMatchObject({ received: 5, applied: 5 });

    expect(await readDoc('thermostat-042')).toMatchObject({
      id: 'thermostat-042', deviceId: 'thermostat-042', version: 3,
      properties: { desired: { telemetryConfig: { sendFrequency: '5m' }, $version: 2, $metadata: { telemetryConfig: { sendFrequency: { $lastUpdatedVersion: 2 } } } }, reported: { $version: 1 } },
    });
    expect((await readDoc('thermostat-042'))?.replica.partial).toBeUndefined();
    expect(await readDoc('contoso-device-2', 'module-1')).toMatchObject({ id: 'contoso-device-2|module-1', moduleId: 'module-1', version: 2, etag: 'AAAAAAAAAAE=' });
    expect(await readDoc('contoso-device-1')).toMatchObject({
      connectionState: 'Disconnected', connectionStateSequenceNumber: '000000000000000001D8713FF7E0851400000002000000000000000000000007',
    });
    const module = loadFixture('twin-updateTwin-module');
    const m = await readDoc(module.properties.deviceId as string, module.properties.moduleId as string);
    expect(m).toMatchObject({ moduleId: module.properties.moduleId, version: 7, tags: { tag1: 'new value' }, replica: { partial: true } });
    // the module's change did not create or touch a device document
    expect(await readDoc(module.properties.deviceId as string)).toBeUndefined();

    const replay = await invoke(events);
    expect(replay).toMatchObject({ received: 5, applied: 0, stale: 5, writes: 0 });
  });

  it('replicates the lifecycle: create, merge patches, replace, delete, late events, re-create', async () => {
    const d = "odd/id?#%'(1)";
    const twin = (version: number, tags: object) => fullTwin({ deviceId: d, version, tags: tags as never, extra: { status: 'enabled' } });
    await invoke([
      created({ deviceId: d, ts: at(0), twin: twin(1, { site: 'x' }) }),
      twinUpdate({ deviceId: d, ts: at(1), version: 2, desired: { cfg: { a: 1, b: { c: 2 } }, $version: 2 } }),
      twinUpdate({ deviceId: d, ts: at(2), version: 3, desired: { cfg: { b: { c: null, d: 4 } }, $version: 3 }, tags: { floor: 1 } }),
    ]);
    expect(await readDoc(d)).toMatchObject({ deviceId: d, version: 3, status: 'enabled', tags: { site: 'x', floor: 1 }, properties: { desired: { cfg: { a: 1, b: { d: 4 } }, $version: 3 } } });

    await invoke([twinReplace({ deviceId: d, ts: at(3), twin: twin(4, { only: 'this' }) })]);
    expect((await readDoc(d))?.tags).toEqual({ only: 'this' });
    expect((await readDoc(d))?.properties?.desired).not.toHaveProperty('cfg');

    await invoke([deleted({ deviceId: d, ts: at(4) })]);
    expect(await readDoc(d)).toMatchObject({ deleted: true, ttl: 8 * 86400, replica: { deletedAt: at(4) } });
    const late = await invoke([twinUpdate({ deviceId: d, ts: at(3.5), version: 9, tags: { ghost: true } })]);
    expect(late).toMatchObject({ stale: 1, writes: 0 });
    const { resources: live } = await cosmos.container.items
      .query({ query: 'SELECT * FROM c WHERE c.deviceId = @d AND NOT IS_DEFINED(c.deleted)', parameters: [{ name: '@d', value: d }] })
      .fetchAll();
    expect(live).toHaveLength(0);

    await invoke([created({ deviceId: d, ts: at(10), twin: twin(1, { reborn: true }) }), twinUpdate({ deviceId: d, ts: at(11), version: 2, tags: { n: 2 } })]);
    const reborn = await readDoc(d);
    expect(reborn).toMatchObject({ version: 2, tags: { reborn: true, n: 2 }, replica: { createdAt: at(10) } });
    expect(reborn?.deleted).toBeUndefined();
  });

  it('keeps the newest connection state whatever the arrival order', async () => {
    await invoke([
      connection({ deviceId: 'flappy', ts: at(3), connected: false, sequence: 30 }),
      connection({ deviceId: 'flappy', ts: at(1), connected: true, sequence: 10 }),
    ]);
    await invoke([connection({ deviceId: 'flappy', ts: at(2), connected: true, sequence: 20 })]);
    expect(await readDoc('flappy')).toMatchObject({ connectionState: 'Disconnected', connectionStateSequenceNumber: (30).toString(16).toUpperCase().padStart(64, '0') });
  });

  it('tombstones a deleted device\'s modules through a real single-partition query; a module deletion spares its device', async () => {
    const twin = (moduleId?: string) => fullTwin({ deviceId: 'gw', moduleId, version: 1 });
    await invoke([
      created({ deviceId: 'gw', ts: at(0), twin: twin() }),
      created({ deviceId: 'gw', moduleId: 'edgeAgent', ts: at(1), twin: twin('edgeAgent') }),
      created({ deviceId: 'gw', moduleId: 'sensor', ts: at(1), twin: twin('sensor'), moduleSpelling: 'module' }),
      created({ deviceId: 'gw-other', moduleId: 'sensor', ts: at(1), twin: fullTwin({ deviceId: 'gw-other', moduleId: 'sensor', version: 1 }) }),
    ]);
    await invoke([deleted({ deviceId: 'gw', moduleId: 'sensor', ts: at(2) })]);
    expect((await readDoc('gw'))?.deleted).toBeUndefined();
    expect((await readDoc('gw', 'sensor'))?.deleted).toBe(true);

    const summary = await invoke([deleted({ deviceId: 'gw', ts: at(3) })]);
    expect(summary).toMatchObject({ received: 1, applied: 1, queries: 1 });
    expect((await readDoc('gw'))?.deleted).toBe(true);
    expect(await readDoc('gw', 'edgeAgent')).toMatchObject({ deleted: true, replica: { deletedAt: at(3) } });
    // already a tombstone: the device's later deletion moves its time on (a module re-created in between is gone too)
    expect(await readDoc('gw', 'sensor')).toMatchObject({ deleted: true, replica: { deletedAt: at(3) } });
    expect((await readDoc('gw-other', 'sensor'))?.deleted).toBeUndefined();
  });

  it('loses nothing when another writer changes a document behind its cache (412 from Cosmos)', async () => {
    await invoke([created({ deviceId: 'raced', ts: at(0), twin: fullTwin({ deviceId: 'raced', version: 1, tags: { a: 1 } }) })]);
    const { resource, etag } = await cosmos.container.item('raced', 'raced').read<TwinDoc>();
    await cosmos.container.item('raced', 'raced').replace({ ...resource!, version: 2, tags: { a: 1, other: 'writer' } }, { accessCondition: { type: 'IfMatch', condition: etag } });
    const summary = await invoke([twinUpdate({ deviceId: 'raced', ts: at(3), version: 3, tags: { mine: true } })]);
    expect(summary).toMatchObject({ applied: 1, conflicts: 1, writes: 1, reads: 1 });
    expect((await readDoc('raced'))?.tags).toEqual({ a: 1, other: 'writer', mine: true });
  });

  it('dead-letters poison durably in Blob Storage and applies the rest of the batch', async () => {
    const ok = twinUpdate({ deviceId: 'mixed', ts: at(1), version: 5, tags: { fine: true } });
    const summary = await invoke([
      { ...ok, body: 'this is not json' },
      { ...ok, properties: { ...ok.properties, opType: 'frobnicate' } },
      { ...ok, body: { version: 6, tags: 'x'.repeat(2_100_000) } },
      ok,
    ]);
    expect(summary).toMatchObject({ received: 4, applied: 1, deadLettered: 3, deadLetterReasons: { 'malformed-body': 1, 'unknown-op-type': 1, 'invalid-event': 1 } });
    expect((await readDoc('mixed'))?.tags).toEqual({ fine: true });
    const letters = (await deadLetters()).filter((l) => l.deviceId === 'mixed');
    expect(letters.map((l) => l.reason).sort()).toEqual(['invalid-event', 'malformed-body', 'unknown-op-type']);
    const malformed = letters.find((l) => l.reason === 'malformed-body')!;
    expect(malformed).toMatchObject({ partitionId: '1', event: { body: 'this is not json', properties: { opType: 'updateTwin' } }, opType: 'updateTwin' });
    expect(typeof malformed.sequenceNumber).toBe('number');
    expect(malformed.blobName).toMatch(new RegExp(`^2026/01/01/00/p1/${malformed.sequenceNumber}-malformed-body\\.json$`));
  });

  it('dead-letters a twin over the 2 MB item limit', async () => {
    await invoke([created({ deviceId: 'big', ts: at(0), twin: fullTwin({ deviceId: 'big', version: 1 }) })]);
    const summary = await invoke([twinUpdate({ deviceId: 'big', ts: at(1), version: 2, reported: { dump: 'y'.repeat(2_200_000) } })]);
    expect(summary).toMatchObject({ deadLettered: 1, deadLetterReasons: { 'twin-too-large': 1 } });
    expect((await readDoc('big'))?.version).toBe(1);
  });

  it('throws while retries remain when Cosmos is unreachable, and dead-letters on the last retry', async () => {
    const event = twinUpdate({ deviceId: 'unlucky', ts: at(1), version: 2, tags: { t: 1 } });
    await cosmos.close();
    try {
      await expect(invoke([event], { retryCount: 1, maxRetryCount: 5 })).rejects.toThrow(/failed transiently/);
      const last = await invoke([event], { retryCount: 5, maxRetryCount: 5 });
      expect(last).toMatchObject({ received: 1, deadLettered: 1, retrying: 0, deadLetterReasons: { 'transient-exhausted': 1 } });
      expect((await deadLetters()).some((l) => l.deviceId === 'unlucky' && l.reason === 'transient-exhausted' && l.attempt === 5)).toBe(true);
    } finally {
      cosmos = await startLocalCosmos({ port: cosmos.port });
    }
  });
});
