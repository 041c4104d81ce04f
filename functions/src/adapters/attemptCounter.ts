import type { BlobContainerRest } from './blobDeadLetters';

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
  return (value ?? fallback).replace(/[^A-Za-z0-9._-]/g, '_') || fallback;
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

  constructor(private readonly blobs: BlobContainerRest, private readonly now: () => Date = () => new Date()) {}

  async start(key: BatchKey): Promise<number> {
    const name = attemptBlobName(key);
    for (let round = 0; round < 5; round++) {
      let current = this.known.get(name);
      if (!current) {
        const got = await this.blobs.send('GET', name);
        if (got.status === 200 && got.etag) current = { etag: got.etag, state: JSON.parse(got.text) as PartitionState };
        else if (got.status !== 404) throw new Error(`Get Blob ${name} answered ${got.status}: ${got.text.slice(0, 300)}`);
      }
      const starts = current?.state.firstSequence === key.firstSequence ? current.state.starts + 1 : 1;
      const state: PartitionState = { firstSequence: key.firstSequence, starts, updatedAt: this.now().toISOString() };
      const put = await this.blobs.send('PUT', name, {
        body: JSON.stringify(state),
        headers: { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'application/json', ...(current ? { 'if-match': current.etag } : { 'if-none-match': '*' }) },
      });
      if (put.status === 201 && put.etag) {
        this.known.set(name, { etag: put.etag, state });
        return starts;
      }
      this.known.delete(name);
      if (put.status === 404 && /ContainerNotFound/.test(put.text)) {
        // First use: the container is created here (the identity owns the account's blobs), not by the infra.
        const created = await this.blobs.send('PUT', undefined, { query: { restype: 'container' } });
        if (created.status !== 201 && created.status !== 409) throw new Error(`Create Container answered ${created.status}: ${created.text.slice(0, 300)}`);
        continue;
      }
      // 412 (another writer changed it) or 409 (created meanwhile): read again and count on top of it.
      if (put.status !== 412 && put.status !== 409) throw new Error(`Put Blob ${name} answered ${put.status}: ${put.text.slice(0, 300)}`);
    }
    throw new Error(`the attempt counter ${name} kept changing under this writer`);
  }
}

/** In memory: for tests, the bench and the local run, where one object outlives the simulated host processes. */
export class MemoryAttemptCounter implements AttemptCounter {
  readonly partitions = new Map<string, { firstSequence: string; starts: number }>();

  async start(key: BatchKey): Promise<number> {
    const name = attemptBlobName(key);
    const current = this.partitions.get(name);
    const starts = current?.firstSequence === key.firstSequence ? current.starts + 1 : 1;
    this.partitions.set(name, { firstSequence: key.firstSequence, starts });
    return starts;
  }
}
