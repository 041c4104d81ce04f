import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobDeadLetterSink, deadLetterBlobName } from '../../functions/src/adapters/blobDeadLetters';
import type { DeadLetter } from '../../functions/src/sync/ports';

/**
 * The Shared Key path is proven against Azurite in the syncTwins integration test. The Entra ID path
 * cannot run here (no Azure): this loopback server stands in for Blob Storage's Put Blob as documented
 * (learn.microsoft.com/rest/api/storageservices/put-blob: PUT with x-ms-blob-type BlockBlob, x-ms-version,
 * `Authorization: Bearer <token>` for Entra ID, 201 Created) and records what the sink sends.
 */
const seen: { method?: string; url?: string; headers: IncomingHttpHeaders; body: string }[] = [];
let status = 201;
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    res.statusCode = status;
    res.end(status === 201 ? '' : '<Error><Code>AuthorizationPermissionMismatch</Code></Error>');
  });
});
let base = '';
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/deadletters`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const record: DeadLetter = {
  kind: 'trigger-event', reason: 'malformed-body', detail: 'body is not JSON', deviceId: 'd', partitionId: '7', sequenceNumber: 4242,
  enqueuedTimeUtc: '2026-05-04T03:02:01.0000000Z', deadLetteredAt: '2026-05-04T03:02:09.000Z', event: { body: '{oops' },
};

describe('dead letters in Blob Storage', () => {
  it('names blobs by enqueued hour, partition, sequence number and reason, so a retried batch overwrites instead of duplicating', () => {
    expect(deadLetterBlobName(record)).toBe('2026/05/04/03/p7/4242-malformed-body.json');
    const { sequenceNumber: _s, ...noSeq } = record;
    expect(deadLetterBlobName(noSeq)).toMatch(/^2026\/05\/04\/03\/p7\/h[0-9a-f]{24}-malformed-body\.json$/);
    expect(deadLetterBlobName(noSeq)).toBe(deadLetterBlobName({ ...noSeq, deadLetteredAt: 'later' }));
  });

  it('puts each record as a block blob with a bearer token from the managed identity', async () => {
    seen.length = 0;
    status = 201;
    const sink = new BlobDeadLetterSink(base, { kind: 'token', getToken: async () => 'tok-123' });
    await sink.write([record, { ...record, sequenceNumber: 4243 }]);
    expect(seen.map((s) => s.url).sort()).toEqual(['/deadletters/2026/05/04/03/p7/4242-malformed-body.json', '/deadletters/2026/05/04/03/p7/4243-malformed-body.json']);
    expect(seen[0]).toMatchObject({ method: 'PUT', headers: { authorization: 'Bearer tok-123', 'x-ms-blob-type': 'BlockBlob', 'x-ms-meta-reason': 'malformed-body', 'content-type': 'application/json' } });
    expect(seen[0].headers['x-ms-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(JSON.parse(seen.find((s) => s.url?.includes('4242'))!.body)).toEqual(record);
  });

  it('fails loudly when the store refuses, so the batch is retried rather than the letter lost', async () => {
    status = 403;
    const sink = new BlobDeadLetterSink(base, { kind: 'token', getToken: async () => 'tok' });
    await expect(sink.write([record])).rejects.toThrow(/answered 403: .*AuthorizationPermissionMismatch/);
  });
});
