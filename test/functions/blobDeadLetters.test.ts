import type { AccessToken } from '@azure/identity';
import { ContainerClient, type HttpOperationResponse, type IHttpClient, type WebResource } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { BlobDeadLetterSink, deadLetterBlobName } from '../../functions/src/adapters/blobDeadLetters';
import type { DeadLetter } from '../../functions/src/sync/ports';

/**
 * The Shared Key path is proven against Azurite in the syncTwins integration test. The Entra ID path
 * cannot run here (no Azure, and the SDK sends a bearer token over HTTPS only): the real @azure/storage-blob
 * client with a token credential, whose transport is replaced by a recorder standing in for Blob Storage's
 * Put Blob as documented (learn.microsoft.com/rest/api/storageservices/put-blob: PUT with x-ms-blob-type
 * BlockBlob, x-ms-version, `Authorization: Bearer <token>` for Entra ID, 201 Created; errors carry
 * x-ms-error-code).
 */
const seen: { method: string; url: string; headers: Record<string, string>; body: string }[] = [];
let status = 201;
const headersOf = (h: Record<string, string>) => ({ toJson: () => h, get: (n: string) => h[n.toLowerCase()], contains: (n: string) => n.toLowerCase() in h });
const recorder: IHttpClient = {
  async sendRequest(request: WebResource): Promise<HttpOperationResponse> {
    const headers = Object.fromEntries(Object.entries(request.headers.toJson()).map(([k, v]) => [k.toLowerCase(), String(v)]));
    seen.push({ method: request.method, url: request.url, headers, body: String(request.body) });
    const failed = status !== 201;
    return {
      request, status, bodyAsText: failed ? '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>not allowed</Message></Error>' : '',
      headers: headersOf(failed ? { 'x-ms-error-code': 'AuthorizationPermissionMismatch', 'content-type': 'application/xml' } : { etag: '"0x1"' }),
    } as unknown as HttpOperationResponse;
  },
};
const credential = { getToken: async (): Promise<AccessToken> => ({ token: 'tok-123', expiresOnTimestamp: Date.now() + 3_600_000 }) };
const container = () => new ContainerClient('https://acct.blob.core.windows.net/deadletters', credential, { httpClient: recorder, retryOptions: { maxTries: 1 } });

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
    const sink = new BlobDeadLetterSink(container());
    await sink.write([record, { ...record, sequenceNumber: 4243 }]);
    expect(seen.map((s) => new URL(s.url).pathname).sort()).toEqual(['/deadletters/2026/05/04/03/p7/4242-malformed-body.json', '/deadletters/2026/05/04/03/p7/4243-malformed-body.json']);
    expect(seen[0]).toMatchObject({ method: 'PUT', headers: { authorization: 'Bearer tok-123', 'x-ms-blob-type': 'BlockBlob', 'x-ms-meta-reason': 'malformed-body', 'x-ms-blob-content-type': 'application/json' } });
    expect(seen[0].headers['x-ms-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(JSON.parse(seen.find((s) => s.url?.includes('4242'))!.body)).toEqual(record);
  });

  it('fails loudly when the store refuses, so the batch is retried rather than the letter lost', async () => {
    status = 403;
    const sink = new BlobDeadLetterSink(container());
    await expect(sink.write([record])).rejects.toThrow(/answered 403: .*AuthorizationPermissionMismatch/);
  });
});
