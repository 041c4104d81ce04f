import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attemptBlobName, BlobAttemptCounter, type BatchKey } from '../../functions/src/adapters/attemptCounter';
import { createBlobContainer } from '../../functions/src/runtime/build';
import { startAzurite, type LocalBlob } from '../../testkit/servers';

/**
 * The durable count of batch starts against Azurite through @azure/storage-blob (conditional Put Blob with If-Match /
 * If-None-Match, Create Container). Each `BlobAttemptCounter` stands for one Functions instance: a new one
 * is a new process that knows nothing but what the blob holds.
 */
let blob: LocalBlob;
let n = 0;
beforeAll(async () => {
  blob = await startAzurite();
});
afterAll(async () => {
  await blob?.close();
});

/** A fresh container per test (created by the counter itself on first use). */
function instance(container: string): BlobAttemptCounter {
  return new BlobAttemptCounter(createBlobContainer({ connectionString: blob.connectionString }, container));
}

const key = (firstSequence: string, partitionId = '0'): BatchKey => ({ eventHubName: 'iothub-events', consumerGroup: 'sync-twins', partitionId, firstSequence });

describe('BlobAttemptCounter on Azurite', () => {
  it('creates its container on first use, counts the starts of one batch and restarts at 1 for the next batch', async () => {
    const container = `attempts-${++n}`;
    const a = instance(container);
    expect(await a.start(key('100'))).toBe(1);
    expect(await a.start(key('100'))).toBe(2);
    expect(await a.start(key('100', '1'))).toBe(1);
    expect(await a.start(key('164'))).toBe(1);
    const c = BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient(container);
    const names: string[] = [];
    for await (const b of c.listBlobsFlat()) names.push(b.name);
    // One blob per partition, overwritten: nothing piles up.
    expect(names.sort()).toEqual([attemptBlobName(key('x', '0')), attemptBlobName(key('x', '1'))].sort());
    const stored = JSON.parse((await c.getBlobClient(attemptBlobName(key('164'))).downloadToBuffer()).toString('utf8'));
    expect(Object.keys(stored).sort()).toEqual(['firstSequence', 'starts', 'updatedAt']);
  });

  it('a new process continues the count where the dead one left it', async () => {
    const container = `attempts-${++n}`;
    for (let i = 1; i <= 3; i++) expect(await instance(container).start(key('500'))).toBe(i);
  });

  it('two processes holding one partition in turn lose no start: a stale ETag makes the writer read again', async () => {
    const container = `attempts-${++n}`;
    const a = instance(container);
    const b = instance(container);
    expect(await a.start(key('7'))).toBe(1);
    expect(await b.start(key('7'))).toBe(2);
    // a still holds the ETag of its own write: its If-Match fails, it reads b's count and adds to it.
    expect(await a.start(key('7'))).toBe(3);
    expect(await Promise.all([a.start(key('7')), b.start(key('7'))]).then((r) => r.sort())).toEqual([4, 5]);
  });

  it('names the blob by hub, consumer group and partition, safely', () => {
    expect(attemptBlobName({ eventHubName: 'hub/x', consumerGroup: '$Default', partitionId: '3', firstSequence: '9' })).toBe('hub_x/_Default/p3.json');
  });
});
