/** Plain JSON values as IoT Hub sends them and Cosmos DB stores them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Identifies one replica document: a device twin, or a module twin when `moduleId` is set. */
export interface DocKey {
  deviceId: string;
  moduleId?: string;
}

/** Replica bookkeeping, kept under the single `replica` field of every document. */
export interface ReplicaMeta {
  /** IoT Hub operation timestamp of the create that began the current incarnation. */
  createdAt?: string;
  /** Operation timestamp of the newest twin-content change applied (create, update, replace). */
  updatedAt?: string;
  /** Operation timestamp of the change that set `version`; absent when unknown (a backfill snapshot). */
  versionAt?: string;
  /**
   * Time of the newest snapshot applied: the hub state at that time is what the document holds, so no
   * twin change at or before it (a redrive, a late delivery, an earlier incarnation's event) may change it.
   */
  snapshotAt?: string;
  /** Tombstones: operation timestamp of the deletion. */
  deletedAt?: string;
  /** Set while the document was built from changes alone (the device predates the replica): a backfill completes it. */
  partial?: true;
  /** Wall-clock time of the write that produced this document (not part of the replica's ordering). */
  syncedAt?: string;
}

/** One replica document, as stored in the container partitioned by `/deviceId`. */
export interface TwinDoc {
  id: string;
  deviceId: string;
  moduleId?: string;
  /** Twin version of the last applied change (absent when only connection state is known). */
  version?: number;
  etag?: string;
  tags?: JsonObject;
  properties?: { desired?: JsonObject; reported?: JsonObject };
  connectionState?: string;
  /** The connection-state event's sequence number that set `connectionState` (64 hex digits; larger is newer). */
  connectionStateSequenceNumber?: string;
  /** Operation timestamp of the connection-state event that set `connectionState`. */
  connectionStateUpdatedTime?: string;
  deleted?: true;
  /** Per-item time to live (seconds) on tombstones; the container has TTL on with no default expiry. */
  ttl?: number;
  replica: ReplicaMeta;
  /** Other twin fields sent by IoT Hub in full twins (status, modelId, capabilities, ...), kept as sent. */
  [field: string]: unknown;
}

export type TwinSections = { tags?: JsonObject | null; desired?: JsonObject | null; reported?: JsonObject | null };

interface EventBase {
  key: DocKey;
  /** Normalised IoT Hub operation timestamp (`YYYY-MM-DDTHH:mm:ss.fffffffZ`), or the enqueued time when absent. */
  ts?: string;
  /**
   * Set when `ts` is the enqueued time standing in for a missing `operationTimestamp`: a re-sent event gets
   * a newer one, so it orders the event but never proves a re-creation.
   */
  enqueuedTs?: true;
}

/** A change the replica understands, parsed from one Event Hubs event (or produced by the backfill). */
export type TwinEvent =
  | (EventBase & { kind: 'create'; version?: number; twin: JsonObject })
  | (EventBase & { kind: 'replace'; version: number; twin: JsonObject })
  | (EventBase & { kind: 'update'; version: number; patch: TwinSections })
  | (EventBase & { kind: 'delete'; version?: number })
  | (EventBase & { kind: 'connection'; state: 'Connected' | 'Disconnected'; sequenceNumber: string })
  /**
   * A full twin read from the hub by the backfill / verify tools; `ts` is the time it describes (every hub
   * change up to `ts` is in it). `confirmed`: read by id (GET /twins/{id}), which IoT Hub answers with the
   * latest state; such a snapshot replaces a document that reflects nothing newer than `ts`, whatever its
   * version (the document then holds an earlier incarnation). Without it (a twin query row, which may lag
   * or be a ghost) versions decide.
   */
  | (EventBase & { kind: 'snapshot'; version: number; twin: JsonObject; confirmed?: true });

export type DeadLetterReason =
  | 'malformed-body'
  | 'body-not-object'
  | 'unknown-op-type'
  | 'missing-device-id'
  | 'invalid-id'
  | 'invalid-event'
  | 'missing-timestamp'
  | 'twin-too-large'
  | 'rejected-by-store'
  | 'transient-exhausted'
  /** The host sent fewer (or more) bodies than metadata entries: no body can be paired with its event. */
  | 'misaligned-batch'
  /** The batch was started more times than the retry policy allows (its worker died each time): not run again. */
  | 'attempts-exhausted';

export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  'malformed-body',
  'body-not-object',
  'unknown-op-type',
  'missing-device-id',
  'invalid-id',
  'invalid-event',
  'missing-timestamp',
  'twin-too-large',
  'rejected-by-store',
  'transient-exhausted',
  'misaligned-batch',
  'attempts-exhausted',
];

/** An event as the Event Hubs trigger hands it over: body plus the two property bags. */
export interface RawEvent {
  body: unknown;
  properties?: Record<string, unknown>;
  systemProperties?: Record<string, unknown>;
}
