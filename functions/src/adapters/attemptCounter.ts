import type { ContainerClient } from '@azure/storage-blob';
import { BLOB_REQUEST_TIMEOUT_MS, blobError, blobNameSafe, blobStatus } from './blobDeadLetters';

/**
 * How many times a trigger batch has been started, counted somewhere that outlives the process.
 *
 * Why: the Functions retry policy keeps its retry count in the instance's memory; when the instance
 * fails, the Event Hubs trigger runs the batch again on a new instance with the count reset to zero
 * (Microsoft Learn, "Azure Functions error handling and retries", Max retry counts). A batch that
 * kills its worker (out of memory, a hang past the function timeout) would otherwise never reach its
 * last try and would hold its partition forever. The Event Hubs extension checkpoints only after the
 * retry loop (azure-sdk-for-net, EventHubListener.PartitionProcessor.ProcessEventsAsync), so after a
 * crash the new instance reads the same batch again from the same first sequence number: that is the key.
 */
export interface BatchKey {
  eventHubName?: string;
  consumerGroup?: string;
  partitionId: string;
  /** Sequence number of the batch's first event. */
  firstSequence: string;
}

export interface AttemptCounter {
  /** Records one more start of the batch; returns its starts so far, this one included (1 on the first). */
  start(key: BatchKey): Promise<number>;
}

interface PartitionState {
  firstSequence: string;
  starts: number;
  updatedAt: string;
}

function safe(value: string | undefined, fallback: string): string {
  return blobNameSafe(value ?? fallback) || fallback;
}

/** The blob holding one partition's counter: one blob per partition (overwritten), so nothing accumulates. */
export function attemptBlobName(key: BatchKey): string {
  return `${safe(key.eventHubName, 'hub')}/${safe(key.consumerGroup, 'group')}/p${safe(key.partitionId, 'unknown')}.json`;
}

/**
 * One small blob per partition, `{ firstSequence, starts }`, written before each start with a
 * conditional Put Blob (If-Match on the ETag this process last saw, If-None-Match: * for a new blob),
 * so two instances that briefly both hold a partition cannot lose each other's count. A process that
 * wrote the blob last needs no read: one Put Blob per invocation in the steady state.
 *
 * It lives in the Functions host's storage account, next to the Event Hubs checkpoints it complements:
 * that account has no blob versioning (the data account does, and one overwrite per batch would pile up
 * versions), the function identity already owns its blobs, and a counter holds no device data.
 */
export class BlobAttemptCounter implements AttemptCounter {
  private readonly known = new Map<string, { etag: string; state: PartitionState }>();

  constructor(readonly container: ContainerClient, private readonly now: () => Date = () => new Date()) {}

  async start(key: BatchKey): Promise<number> {
    const name = attemptBlobName(key);
    const blob = this.container.getBlockBlobClient(name);
    for (let round = 0; round < 5; round++) {
      let current = this.known.get(name);
      if (!current) current = await this.read(name);
      const starts = current?.state.firstSequence === key.firstSequence ? current.state.starts + 1 : 1;
      const state: PartitionState = { firstSequence: key.firstSequence, starts, updatedAt: this.now().toISOString() };
      const body = JSON.stringify(state);
      try {
        const put = await blob.upload(body, Buffer.byteLength(body), {
          blobHTTPHeaders: { blobContentType: 'application/json' },
          conditions: current ? { ifMatch: current.etag } : { ifNoneMatch: '*' },
          abortSignal: AbortSignal.timeout(BLOB_REQUEST_TIMEOUT_MS),
        });
        if (!put.etag) throw new Error(`Put Blob ${name} answered without an ETag`);
        this.known.set(name, { etag: put.etag, state });
        return starts;
      } catch (err) {
        this.known.delete(name);
        const status = blobStatus(err);
        if (status === 404 && (err as { code?: string }).code === 'ContainerNotFound') {
          // First use: the container is created here (the identity owns the account's blobs), not by the infra.
          try {
            await this.container.createIfNotExists({ abortSignal: AbortSignal.timeout(BLOB_REQUEST_TIMEOUT_MS) });
          } catch (e) {
            throw blobError('Create Container', undefined, e);
          }
          continue;
        }
        // 412 (another writer changed it) or 409 (created meanwhile): read again and count on top of it.
        if (status !== 412 && status !== 409) throw blobError('Put Blob', name, err);
      }
    }
    throw new Error(`the attempt counter ${name} kept changing under this writer`);
  }

  /** The blob's state and ETag, or undefined when it (or its container) does not exist yet. */
  private async read(name: string): Promise<{ etag: string; state: PartitionState } | undefined> {
    try {
      const got = await this.container.getBlobClient(name).download(0, undefined, { abortSignal: AbortSignal.timeout(BLOB_REQUEST_TIMEOUT_MS) });
      const chunks: Buffer[] = [];
      for await (const chunk of got.readableStreamBody!) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      if (!got.etag) throw new Error(`Get Blob ${name} answered without an ETag`);
      return { etag: got.etag, state: JSON.parse(Buffer.concat(chunks).toString('utf8')) as PartitionState };
    } catch (err) {
      if (blobStatus(err) === 404) return undefined;
      throw blobError('Get Blob', name, err);
    }
  }
}
