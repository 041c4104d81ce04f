import { app, type InvocationContext } from '@azure/functions';
import { createEngine, readSettings, sharedCosmosClient } from '../config';
import type { SyncEngine, SyncSummary } from '../sync/engine';
import type { RawEvent } from '../sync/types';

/**
 * Retry policy: exponential and bounded. While it runs, the Event Hubs trigger holds the checkpoint, so
 * a transient failure (Cosmos throttling past the SDK's retries, 5xx, timeouts) replays the batch
 * instead of losing it; on the last try what still fails is dead-lettered. Needs @azure/functions >= 4.5.
 */
export const SYNC_RETRY = {
  strategy: 'exponentialBackoff' as const,
  maxRetryCount: 5,
  minimumInterval: { seconds: 5 },
  maximumInterval: { minutes: 5 },
};

// One engine (one CosmosClient) per process, created on first use from the app settings.
let engine: SyncEngine | undefined;

/** Lets local tools run the real handler on an engine of their own (in-memory store, fault injection). */
export function useEngine(custom: SyncEngine | undefined): void {
  engine = custom;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Pairs each message with its application and system properties from the trigger metadata. */
export function toRawEvents(messages: unknown, triggerMetadata: Record<string, unknown> | undefined): RawEvent[] {
  const list = Array.isArray(messages) ? messages : [messages];
  const props = Array.isArray(triggerMetadata?.propertiesArray) ? triggerMetadata.propertiesArray : [];
  const sys = Array.isArray(triggerMetadata?.systemPropertiesArray) ? triggerMetadata.systemPropertiesArray : [];
  return list.map((body, i) => ({ body, properties: asRecord(props[i]), systemProperties: asRecord(sys[i]) }));
}

function partitionIdOf(triggerMetadata: Record<string, unknown> | undefined): string | undefined {
  const pc = asRecord(triggerMetadata?.partitionContext);
  const id = pc?.partitionId ?? pc?.PartitionId;
  return id === undefined || id === null ? undefined : String(id);
}

/** Event Hubs-triggered (cardinality many): applies IoT Hub twin, lifecycle and connection-state events to the replica. */
export async function syncTwins(messages: unknown[], context: InvocationContext): Promise<SyncSummary> {
  if (!engine) {
    const settings = readSettings();
    engine = createEngine(settings, sharedCosmosClient(settings));
  }
  const retry = context.retryContext;
  // Without a retry context nobody will run this batch again: treat it as the last try.
  const isLastAttempt = !retry || (retry.maxRetryCount >= 0 && retry.retryCount >= retry.maxRetryCount);
  const meta = context.triggerMetadata as Record<string, unknown> | undefined;
  const result = await engine.processBatch(toRawEvents(messages, meta), {
    partitionId: partitionIdOf(meta),
    invocationId: context.invocationId,
    attempt: retry?.retryCount ?? 0,
    isLastAttempt,
  });
  context.info(`syncTwins summary ${JSON.stringify(result.summary)}`);
  if (result.failure) {
    if (isLastAttempt && result.deadLetters.length > 0) {
      // Last resort when even the dead-letter store fails on the last try: the raw events go to the log.
      context.error(`syncTwins dead letters not stored ${JSON.stringify(result.deadLetters)}`);
    }
    throw result.failure;
  }
  return result.summary;
}

app.eventHub('syncTwins', {
  connection: 'IOTHUB_EVENTS',
  eventHubName: '%EVENTHUB_NAME%',
  consumerGroup: '%EVENTHUB_CONSUMER_GROUP%',
  cardinality: 'many',
  // Bodies as strings: the handler parses them, so one non-JSON event is dead-lettered instead of failing the batch.
  ...({ dataType: 'string' } as object),
  retry: SYNC_RETRY,
  handler: syncTwins,
});
