import type { InvocationContext } from '@azure/functions';
import type { SyncRuntime } from '../runtime/build';
import { LAST_RESORT_PREFIX, SUMMARY_PREFIX, TRACE_MESSAGE_LIMIT, type SummaryLineFields } from '../runtime/contracts';
import type { BatchResult, SyncSummary } from '../sync/engine';
import type { DeadLetter } from '../sync/ports';
import { sequenceNumberOf } from '../sync/events';
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

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

export interface PairedBatch {
  events: RawEvent[];
  /** Set when the bodies cannot be paired with the metadata: then no event carries a body. */
  misaligned?: string;
}

/**
 * Pairs each message with its application and system properties from the trigger metadata, by position,
 * and only when the counts agree. The Functions host leaves empty and null bodies out of the message
 * array unless the worker asks for them (azure-functions-host GrpcMessageConversionExtensions.ToRpcStringArray,
 * capability IncludeEmptyEntriesInMessagePayload, asked for in ../index.ts), while the metadata arrays keep
 * every entry: a shorter message array would shift every later body onto another device's metadata. Such a
 * batch yields the metadata alone, so the caller can record every event, and no document is written from
 * a guessed pairing.
 */
export function pairTriggerBatch(messages: unknown, triggerMetadata: Record<string, unknown> | undefined): PairedBatch {
  const list: unknown[] = Array.isArray(messages) ? messages : [messages];
  const props = Array.isArray(triggerMetadata?.propertiesArray) ? triggerMetadata.propertiesArray : undefined;
  const sys = Array.isArray(triggerMetadata?.systemPropertiesArray) ? triggerMetadata.systemPropertiesArray : undefined;
  const counts = [props?.length, sys?.length].filter((n): n is number => n !== undefined);
  if (counts.every((n) => n === list.length)) {
    return { events: list.map((body, i) => ({ body, properties: asRecord(props?.[i]), systemProperties: asRecord(sys?.[i]) })) };
  }
  const n = Math.max(...counts);
  return {
    events: Array.from({ length: n }, (_, i) => ({ body: undefined, properties: asRecord(props?.[i]), systemProperties: asRecord(sys?.[i]) })),
    misaligned: `the host sent ${list.length} bodies for ${n} events (propertiesArray ${props?.length ?? 'absent'}, systemPropertiesArray ${sys?.length ?? 'absent'}): bodies cannot be paired with their events, so none was applied; the twins of these devices are repaired from the hub (verify --repair)`,
  };
}

/** The events of one trigger batch (see pairTriggerBatch: without bodies when they cannot be paired). */
export function toRawEvents(messages: unknown, triggerMetadata: Record<string, unknown> | undefined): RawEvent[] {
  return pairTriggerBatch(messages, triggerMetadata).events;
}

function partitionContextOf(triggerMetadata: Record<string, unknown> | undefined) {
  const pc = asRecord(triggerMetadata?.partitionContext);
  const text = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined);
  return {
    partitionId: text(pc?.partitionId ?? pc?.PartitionId),
    eventHubName: text(pc?.eventHubName ?? pc?.EventHubName),
    consumerGroup: text(pc?.consumerGroup ?? pc?.ConsumerGroup),
  };
}

function firstSequenceOf(events: readonly RawEvent[], triggerMetadata: Record<string, unknown> | undefined): string | undefined {
  const sys = events[0]?.systemProperties;
  const seq: unknown = sequenceNumberOf(sys) ?? (Array.isArray(triggerMetadata?.sequenceNumberArray) ? (triggerMetadata.sequenceNumberArray as unknown[])[0] : undefined);
  return typeof seq === 'string' || typeof seq === 'number' || typeof seq === 'bigint' ? String(seq) : undefined;
}

const LAST_RESORT_FIELD_CHARS = 1024;

/**
 * The last resort, one line per event: identifiers and where the event still is (Event Hubs partition,
 * sequence number, offset, enqueued time), never the body or the property bags. Every string is cut to
 * 1,024 characters, so a line stays far below Application Insights' 32,768-character limit whatever the
 * event held; the twin itself is recovered from the hub (verify --repair) or the event from Event Hubs
 * within its retention.
 */
export function lastResortLines(records: readonly DeadLetter[]): string[] {
  const cut = (v: unknown) => (typeof v === 'string' && v.length > LAST_RESORT_FIELD_CHARS ? `${v.slice(0, LAST_RESORT_FIELD_CHARS)}…` : v);
  return records.map((r) => {
    const line = LAST_RESORT_PREFIX + JSON.stringify({
      reason: r.reason, detail: cut(r.detail), deviceId: cut(r.deviceId), moduleId: cut(r.moduleId), opType: cut(r.opType), source: cut(r.source),
      partitionId: cut(r.partitionId), sequenceNumber: cut(r.sequenceNumber), offset: cut(r.offset), enqueuedTimeUtc: cut(r.enqueuedTimeUtc),
      invocationId: cut(r.invocationId), attempt: r.attempt,
    });
    if (line.length >= TRACE_MESSAGE_LIMIT) throw new Error('a last-resort line would exceed the trace message limit'); // unreachable: every field is cut
    return line;
  });
}

export type SyncTwinsHandler = (messages: unknown[], context: InvocationContext) => Promise<SyncSummary>;

/**
 * The Event Hubs-triggered handler (cardinality many): applies IoT Hub twin, lifecycle and connection-state
 * events to the replica. `runtime` gives the engine and the attempt counter (runtime/build.ts); the
 * registered instance uses the function app's, built on first use. The local run and the bench make their
 * own instance on a runtime of their own (in-memory store, fault injection, a counter that outlives their
 * simulated host processes).
 */
export function makeSyncTwins(runtime: () => SyncRuntime): SyncTwinsHandler {
  return async (messages, context) => handleBatch(runtime(), messages, context);
}

async function handleBatch({ engine, attempts }: SyncRuntime, messages: unknown[], context: InvocationContext): Promise<SyncSummary> {
  const retry = context.retryContext;
  const meta = context.triggerMetadata;
  const batch = pairTriggerBatch(messages, meta);
  const where = partitionContextOf(meta);

  // Tries the retry policy allows; the durable count of starts bounds a batch across instances too.
  const tries = (retry && retry.maxRetryCount >= 0 ? retry.maxRetryCount : SYNC_RETRY.maxRetryCount) + 1;
  const firstSequence = firstSequenceOf(batch.events, meta);
  let starts: number | undefined;
  if (attempts && where.partitionId !== undefined && firstSequence !== undefined) {
    try {
      starts = await attempts.start({ ...where, partitionId: where.partitionId, firstSequence });
    } catch (err) {
      // The counter bounds crash loops; it never gates the batch: without it the retry context decides alone.
      context.warn(`syncTwins attempt counter unavailable: ${(err as Error)?.message ?? String(err)}`);
    }
  }
  // Without a retry context nobody will run this batch again: treat it as the last try.
  const finalTry = !retry || (retry.maxRetryCount >= 0 && retry.retryCount >= retry.maxRetryCount);
  const ctx = {
    partitionId: where.partitionId,
    invocationId: context.invocationId,
    // Earlier tries known: the durable count sees those of crashed instances, the retry context only its own.
    attempt: Math.max(retry?.retryCount ?? 0, starts !== undefined ? starts - 1 : 0),
    isLastAttempt: finalTry || (starts !== undefined && starts >= tries),
  };

  let result: BatchResult;
  if (batch.misaligned) {
    result = await engine.deadLetterBatch(batch.events, 'misaligned-batch', batch.misaligned, ctx);
  } else if (starts !== undefined && starts > tries) {
    // Started more often than the policy allows: earlier starts ended without a checkpoint, i.e. the worker died.
    result = await engine.deadLetterBatch(
      batch.events,
      'attempts-exhausted',
      `started ${starts} times from sequence number ${firstSequence} of partition ${where.partitionId} without finishing (the retry policy allows ${tries}): its worker died each time (out of memory, a crash or the function timeout), so it is recorded unprocessed`,
      ctx,
    );
  } else {
    result = await engine.processBatch(batch.events, ctx);
  }

  // The trigger moves on after this invocation when it succeeds or when the retry policy has no try left.
  const final = !result.failure || finalTry;
  const lastResort = final && result.failure ? result.deadLetters : [];
  for (const line of lastResortLines(lastResort)) context.error(line);
  const fields: SummaryLineFields = { final, received: result.summary.received, deadLettered: result.summary.deadLettered, lastResort: lastResort.length };
  context.info(`${SUMMARY_PREFIX}${JSON.stringify({ ...result.summary, ...fields, starts })}`);
  if (result.failure) throw result.failure;
  return result.summary;
}
