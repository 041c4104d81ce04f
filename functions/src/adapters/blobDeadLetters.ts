import { createHash, createHmac } from 'node:crypto';
import { parseStorageConnectionString } from '../runtime/settings';
import type { DeadLetter, DeadLetterSink } from '../sync/ports';

/**
 * Dead letters as JSON blobs. Blob Storage, not a Cosmos container, because a dead letter must survive
 * Cosmos DB being the failing part. One blob per event, named from its enqueued hour, partition and
 * sequence number: a replayed or retried batch overwrites the same blob instead of duplicating it, and
 * redrive can list by time prefix. A few lines of Blob REST (Put Blob) instead of @azure/storage-blob
 * keep the function bundle under 1 MB; the tools use the SDK.
 */
export type BlobAuth =
  /** Entra ID (managed identity): the Azure path. */
  | { kind: 'token'; getToken: () => Promise<string> }
  /** Shared Key: Azurite only (loopback), since the Azure accounts have shared keys disabled. */
  | { kind: 'sharedKey'; accountName: string; accountKey: string };

export const BLOB_API_VERSION = '2021-12-02';

export function deadLetterBlobName(record: DeadLetter): string {
  const when = record.enqueuedTimeUtc ?? record.deadLetteredAt;
  const hour = `${when.slice(0, 4)}/${when.slice(5, 7)}/${when.slice(8, 10)}/${when.slice(11, 13)}`;
  const partition = safe(record.partitionId ?? 'unknown');
  const seq = record.sequenceNumber !== undefined ? safe(String(record.sequenceNumber)) : 'h' + createHash('sha256').update(JSON.stringify(record.kind === 'twin-event' ? record.change : record.event)).digest('hex').slice(0, 24);
  return `${hour}/p${partition}/${seq}-${record.reason}.json`;
}

function safe(value: string): string {
  return value.replace(/[^A-Za-z0-9._-]/g, '_');
}

export interface BlobResponse {
  status: number;
  etag?: string;
  text: string;
}

/**
 * One container over Blob REST: what the dead letters, the verify reports and the attempt counter need
 * (Put Blob, Get Blob, conditional headers, Create Container), signed with a token or a Shared Key.
 */
export class BlobContainerRest {
  readonly puts = { count: 0 };

  constructor(readonly containerUrl: string, private readonly auth: BlobAuth) {}

  /**
   * One request on a blob of the container (or on the container itself when `name` is undefined).
   * `headers` take lower-case names (If-Match, If-None-Match, x-ms-meta-*), as the Shared Key string to sign reads them.
   */
  async send(method: 'GET' | 'PUT' | 'DELETE', name: string | undefined, opts: { body?: string; headers?: Record<string, string>; query?: Record<string, string> } = {}): Promise<BlobResponse> {
    const url = new URL(name === undefined ? this.containerUrl.replace(/\/$/, '') : `${this.containerUrl.replace(/\/$/, '')}/${name}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const body = opts.body === undefined ? undefined : Buffer.from(opts.body, 'utf8');
    const headers: Record<string, string> = { 'x-ms-date': new Date().toUTCString(), 'x-ms-version': BLOB_API_VERSION, ...opts.headers };
    headers.authorization = this.auth.kind === 'token'
      ? `Bearer ${await this.auth.getToken()}`
      : sharedKeyAuthorization(method, url, headers, body?.length ?? 0, this.auth.accountName, this.auth.accountKey);
    if (method === 'PUT') this.puts.count++;
    const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(30_000) });
    const text = await res.text().catch(() => '');
    return { status: res.status, etag: res.headers.get('etag') ?? undefined, text };
  }

  async put(name: string, content: string, metadata: Record<string, string> = {}): Promise<void> {
    const headers: Record<string, string> = { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/json' };
    for (const [k, v] of Object.entries(metadata)) headers[`x-ms-meta-${k}`] = v;
    const res = await this.send('PUT', name, { body: content, headers });
    if (res.status !== 201) throw new Error(`Put Blob ${name} answered ${res.status}: ${res.text.slice(0, 300)}`);
  }
}

export class BlobDeadLetterSink extends BlobContainerRest implements DeadLetterSink {
  constructor(containerUrl: string, auth: BlobAuth, private readonly concurrency = 8) {
    super(containerUrl, auth);
  }

  async write(records: readonly DeadLetter[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < records.length) {
        const record = records[next++];
        await this.put(deadLetterBlobName(record), JSON.stringify(record), { reason: record.reason });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, records.length) }, worker));
  }
}

/** Shared Key authorization for the Blob service (learn.microsoft.com: "Authorize with Shared Key"). */
export function sharedKeyAuthorization(method: string, url: URL, headers: Record<string, string>, contentLength: number, account: string, key: string): string {
  const h = (name: string) => headers[name] ?? '';
  const canonicalHeaders = Object.keys(headers)
    .filter((k) => k.startsWith('x-ms-'))
    .sort()
    .map((k) => `${k}:${headers[k].trim()}\n`)
    .join('');
  let canonicalResource = `/${account}${url.pathname}`;
  const params = [...url.searchParams.keys()].sort();
  for (const p of params) canonicalResource += `\n${p.toLowerCase()}:${url.searchParams.getAll(p).sort().join(',')}`;
  const stringToSign = [
    method, h('content-encoding'), h('content-language'), contentLength === 0 ? '' : String(contentLength), h('content-md5'),
    h('content-type'), '', h('if-modified-since'), h('if-match'), h('if-none-match'), h('if-unmodified-since'), h('range'),
  ].join('\n') + '\n' + canonicalHeaders + canonicalResource;
  const signature = createHmac('sha256', Buffer.from(key, 'base64')).update(stringToSign, 'utf8').digest('base64');
  return `SharedKey ${account}:${signature}`;
}

/** Parses a storage connection string (Azurite's form) into the container URL and Shared Key auth. */
export function fromConnectionString(connectionString: string, container: string): { containerUrl: string; auth: BlobAuth } {
  const { accountName, accountKey, blobEndpoint } = parseStorageConnectionString(connectionString);
  return { containerUrl: `${blobEndpoint}/${container}`, auth: { kind: 'sharedKey', accountName, accountKey } };
}

/** Where verifyRepair's reports and saved pass go: a blob container. `get` answers undefined for a missing blob. */
export interface ReportStore {
  put(name: string, content: string): Promise<void>;
  get(name: string): Promise<string | undefined>;
}

/** Reports through the same Blob REST client as the dead letters (Put Blob, Get Blob). */
export class BlobReportStore extends BlobContainerRest implements ReportStore {
  async get(name: string): Promise<string | undefined> {
    const res = await this.send('GET', name);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`Get Blob ${name} answered ${res.status}: ${res.text.slice(0, 300)}`);
    return res.text;
  }
}
