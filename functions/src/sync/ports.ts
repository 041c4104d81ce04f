import type { DeadLetterReason, RawEvent, TwinDoc, TwinEvent } from './types';

export interface StoredDoc {
  doc: TwinDoc;
  etag: string;
}

/** Why a store call failed: the engine decides retry, re-read or dead-letter from this alone. */
export type StoreErrorKind =
  /** 409 / 412 / 404 on a guarded write: what we believed about the document is out of date. */
  | 'conflict'
  /** 429 after the SDK's own retries, 408, 5xx, 401/403, network errors and timeouts: try the batch again. */
  | 'transient'
  /** 400 / 413: the store refuses this document; retrying cannot help. */
  | 'rejected';

export class StoreError extends Error {
  constructor(readonly kind: StoreErrorKind, message: string, readonly status?: number) {
    super(message);
    this.name = 'StoreError';
  }
}

/** One guarded write: replace if the stored ETag is still `etag`, create when `etag` is undefined. */
export interface WriteOp {
  doc: TwinDoc;
  etag?: string;
}

export type WriteResult = { stored: StoredDoc } | { error: StoreError };

/** The replica container, reduced to what the engine needs: point reads and guarded writes. */
export interface TwinStore {
  /** Point read by id and partition key; undefined when absent. */
  read(id: string, deviceId: string): Promise<StoredDoc | undefined>;
  /** Creates; throws StoreError('conflict') when the id exists. */
  create(doc: TwinDoc): Promise<StoredDoc>;
  /** Replaces when the stored ETag still equals `etag`; throws StoreError('conflict') otherwise (or when absent). */
  replace(doc: TwinDoc, etag: string): Promise<StoredDoc>;
  /**
   * Optional: many guarded writes in one call (Cosmos bulk), a result per operation in order. Without
   * it the engine issues the same creates and replaces one by one, concurrently.
   */
  writeMany?(ops: readonly WriteOp[]): Promise<WriteResult[]>;
  /** Ids of the module documents under one device (one single-partition query; used only on device deletion). */
  listModuleIds(deviceId: string): Promise<string[]>;
}

/** What every dead letter records, whatever it holds. */
export interface DeadLetterFields {
  reason: DeadLetterReason;
  detail: string;
  deviceId?: string;
  moduleId?: string;
  source?: string;
  opType?: string;
  partitionId?: string;
  sequenceNumber?: number | string;
  offset?: number | string;
  enqueuedTimeUtc?: string;
  invocationId?: string;
  attempt?: number;
  deadLetteredAt: string;
}

/** A trigger event that could not be applied: the event as received, body untouched (a string stays a string), both property bags. */
export interface TriggerDeadLetter extends DeadLetterFields {
  kind: 'trigger-event';
  event: RawEvent;
}

/** A parsed change from the tools (backfill, verify --repair, a redrive of one) that could not be applied. */
export interface ChangeDeadLetter extends DeadLetterFields {
  kind: 'twin-event';
  change: TwinEvent;
}

/** An event that could not be applied, with everything needed to look at it or redrive it; `kind` says which. */
export type DeadLetter = TriggerDeadLetter | ChangeDeadLetter;

/**
 * A dead letter as read back from the store: letters written before `kind` existed have none, and a
 * tool's change was then stored as the body of `event` (see tools/redrive.ts readDeadLetter).
 */
export type StoredDeadLetter = DeadLetter | (DeadLetterFields & { kind?: undefined; event: RawEvent });

/** Durable storage for dead letters; it must not depend on the replica store being healthy. */
export interface DeadLetterSink {
  write(records: readonly DeadLetter[]): Promise<void>;
}
