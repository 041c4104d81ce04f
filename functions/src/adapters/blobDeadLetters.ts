import { createHash } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { forEachConcurrently } from '../sync/concurrency';
import type { DeadLetter, DeadLetterSink } from '../sync/ports';

/**
 * Dead letters (and verifyRepair's reports) as JSON blobs, through @azure/storage-blob: the one Blob client
 * of the function app and the CLI. Blob Storage, not a Cosmos container, because a dead letter must survive
 * Cosmos DB being the failing part. One blob per event, named from its enqueued hour, partition and
 * sequence number: a replayed or retried batch overwrites the same blob instead of duplicating it, and
 * redrive can list by time prefix. The ContainerClient comes from runtime/build.ts (Entra ID in Azure,
 * Azurite's connection string on loopback).
 */

/** Time allowed for one Blob request, answer included (the SDK's retries each get their own). */
export const BLOB_REQUEST_TIMEOUT_MS = 30_000;

export function deadLetterBlobName(record: DeadLetter): string {
  const when = record.enqueuedTimeUtc ?? record.deadLetteredAt;
  const hour = `${when.slice(0, 4)}/${when.slice(5, 7)}/${when.slice(8, 10)}/${when.slice(11, 13)}`;
  const partition = blobNameSafe(record.partitionId ?? 'unknown');
  const seq = record.sequenceNumber !== undefined ? blobNameSafe(String(record.sequenceNumber)) : 'h' + createHash('sha256').update(JSON.stringify(record.kind === 'twin-event' ? record.change : record.event)).digest('hex').slice(0, 24);
  return `${hour}/p${partition}/${seq}-${record.reason}.json`;
}

/** A string as a blob-name segment: anything but letters, digits, `.`, `_` and `-` becomes `_`. */
export function blobNameSafe(value: string): string {
  return value.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** An error of the Blob service as a message naming the call, its status and the service's error code. */
export function blobError(call: string, name: string | undefined, err: unknown): Error {
  const e = err as { statusCode?: number; code?: string; message?: string };
  return new Error(`${call}${name === undefined ? '' : ` ${name}`} answered ${e?.statusCode ?? 'nothing'}: ${e?.code ?? ''} ${(e?.message ?? String(err)).slice(0, 300)}`, { cause: err });
}

/** The status of a failed Blob call (undefined for a network error). */
export function blobStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown })?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** Put Blob of a JSON text, with metadata. */
export async function putJson(container: ContainerClient, name: string, content: string, metadata: Record<string, string> = {}): Promise<void> {
  try {
    await container.getBlockBlobClient(name).upload(content, Buffer.byteLength(content), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
      metadata,
      abortSignal: AbortSignal.timeout(BLOB_REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw blobError('Put Blob', name, err);
  }
}

export class BlobDeadLetterSink implements DeadLetterSink {
  constructor(readonly container: ContainerClient, private readonly concurrency = 8) {}

  async write(records: readonly DeadLetter[]): Promise<void> {
    await forEachConcurrently(records, this.concurrency, (record) => putJson(this.container, deadLetterBlobName(record), JSON.stringify(record), { reason: record.reason }));
  }
}

/** Where verifyRepair's reports and saved pass go: a blob container. `get` answers undefined for a missing blob. */
export interface ReportStore {
  put(name: string, content: string): Promise<void>;
  get(name: string): Promise<string | undefined>;
}

export class BlobReportStore implements ReportStore {
  constructor(readonly container: ContainerClient) {}

  put(name: string, content: string): Promise<void> {
    return putJson(this.container, name, content);
  }

  async get(name: string): Promise<string | undefined> {
    try {
      return (await this.container.getBlobClient(name).downloadToBuffer(0, undefined, { abortSignal: AbortSignal.timeout(BLOB_REQUEST_TIMEOUT_MS) })).toString('utf8');
    } catch (err) {
      if (blobStatus(err) === 404) return undefined;
      throw blobError('Get Blob', name, err);
    }
  }
}
