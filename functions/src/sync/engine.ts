import { DocCache } from './cache';
import { forEachConcurrently } from './concurrency';
import { classify, sequenceNumberOf, type Classified } from './events';
import { decodeDocId, encodeDocId } from './ids';
import { StoreError, type DeadLetter, type DeadLetterFields, type DeadLetterSink, type StoredDoc, type TwinStore, type WriteOp, type WriteResult } from './ports';
import { applyEvent, type FoldContext, type Outcome } from './rules';
import { normalizeTimestamp } from './timestamps';
import type { DeadLetterReason, DocKey, RawEvent, TwinDoc, TwinEvent } from './types';

/** Cosmos DB's item limit is 2 MB including system properties; keep a margin for them. */
export const MAX_DOCUMENT_BYTES = 2 * 1024 * 1024 - 4 * 1024;

export interface EngineOptions {
  store: TwinStore;
  deadLetters: DeadLetterSink;
  /** @default a DocCache of 20,000 documents / 64 MB */
  cache?: DocCache;
  /** Point reads (and single writes, for a store without writeMany) at once. @default 16 */
  concurrency?: number;
  /** Per-item TTL on tombstones. @default undefined (kept forever) */
  tombstoneTtlSeconds?: number;
  /** @default MAX_DOCUMENT_BYTES */
  maxDocumentBytes?: number;
  /** Guarded-write conflicts tolerated per document per batch before the batch is retried. @default 5 */
  maxConflicts?: number;
  now?: () => Date;
}

export interface BatchContext {
  partitionId?: string;
  invocationId?: string;
  /** 0 on the first try. */
  attempt?: number;
  /** On the last try, what still fails transiently is dead-lettered instead of retried. */
  isLastAttempt: boolean;
}

/** One invocation's accounting: received = applied + stale + skipped + deadLettered + retrying. */
export interface SyncSummary {
  received: number;
  applied: number;
  stale: number;
  skipped: number;
  deadLettered: number;
  /** Events whose document failed transiently: the invocation throws and the retry policy runs it again. */
  retrying: number;
  documents: number;
  writes: number;
  reads: number;
  conflicts: number;
  queries: number;
  skippedBySource: Record<string, number>;
  deadLetterReasons: Partial<Record<DeadLetterReason, number>>;
  partitionId?: string;
  attempt?: number;
  durationMs: number;
}

export type EventOutcome = 'applied' | 'stale' | 'skipped' | 'dead-lettered' | 'retrying';

export interface BatchResult {
  summary: SyncSummary;
  /** What became of each input event, by position. */
  outcomes: EventOutcome[];
  /** Set when the batch must be retried (transient failure before the last try, or the dead-letter store failing). */
  failure?: Error;
  /** Dead letters written (or, when `failure` is set, those that could not be). */
  deadLetters: DeadLetter[];
}

interface Item {
  index: number;
  event: TwinEvent;
  /** Module tombstones derived from a device deletion: not received events, so not counted. */
  synthetic?: boolean;
}

interface Group {
  id: string;
  key: DocKey;
  items: Item[];
}

type ItemResult = Outcome | { deadLetter: DeadLetterReason; detail: string };

export class SyncEngine {
  readonly store: TwinStore;
  readonly deadLetterSink: DeadLetterSink;
  readonly cache: DocCache;
  private readonly concurrency: number;
  private readonly ruleOptions: { tombstoneTtlSeconds?: number };
  private readonly maxBytes: number;
  private readonly maxConflicts: number;
  private readonly now: () => Date;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.deadLetterSink = options.deadLetters;
    this.cache = options.cache ?? new DocCache();
    this.concurrency = Math.max(1, options.concurrency ?? 16);
    this.ruleOptions = { tombstoneTtlSeconds: options.tombstoneTtlSeconds };
    this.maxBytes = options.maxDocumentBytes ?? MAX_DOCUMENT_BYTES;
    this.maxConflicts = options.maxConflicts ?? 5;
    this.now = options.now ?? (() => new Date());
  }

  /** Applies one trigger batch of raw IoT Hub events. */
  processBatch(batch: readonly RawEvent[], ctx: BatchContext): Promise<BatchResult> {
    return this.run(batch.map(triggerOrigin), batch.map((raw) => classify(raw)), ctx);
  }

  /**
   * Dead-letters every event of a batch that must not be applied, without parsing a body: a batch whose
   * bodies cannot be paired with their metadata, or one that has killed its worker too often. Events
   * that are not ours by their properties alone (telemetry) are skipped as usual.
   */
  deadLetterBatch(batch: readonly RawEvent[], reason: DeadLetterReason, detail: string, ctx: BatchContext): Promise<BatchResult> {
    return this.run(batch.map(triggerOrigin), batch.map((raw): Classified => {
      const c = classify({ properties: raw.properties, systemProperties: raw.systemProperties, body: undefined });
      return c.type === 'skip' ? c : { type: 'poison', reason, detail, source: c.source, opType: c.opType, key: c.type === 'poison' ? c.key : c.event.key };
    }), ctx);
  }

  /**
   * Applies changes that are already parsed, through the same rules, guards and accounting: the backfill's
   * and verify's `snapshot` events, or a repair's deletions. Their dead letters hold the change itself
   * (kind `twin-event`), not a raw event made up for it.
   */
  applyTwinEvents(events: readonly TwinEvent[], ctx: BatchContext & { source?: string }): Promise<BatchResult> {
    const source = ctx.source ?? 'replica-tools';
    return this.run(
      events.map((change): Origin => ({ kind: 'twin-event', change })),
      events.map((event) => ({ type: 'event' as const, event, source, opType: event.kind })),
      ctx,
    );
  }

  private async run(batch: readonly Origin[], classified: readonly Classified[], ctx: BatchContext): Promise<BatchResult> {
    const started = performance.now();
    const outcomes = new Array<EventOutcome>(batch.length).fill('skipped');
    const summary: SyncSummary = {
      received: batch.length, applied: 0, stale: 0, skipped: 0, deadLettered: 0, retrying: 0,
      documents: 0, writes: 0, reads: 0, conflicts: 0, queries: 0, skippedBySource: {}, deadLetterReasons: {},
      partitionId: ctx.partitionId, attempt: ctx.attempt, durationMs: 0,
    };
    const deadLetters: DeadLetter[] = [];
    const transientErrors: Error[] = [];
    const deadLetter = (index: number, reason: DeadLetterReason, detail: string, c?: Classified, key?: Partial<DocKey>) => {
      outcomes[index] = 'dead-lettered';
      deadLetters.push(this.deadLetterRecord(batch[index], reason, detail, ctx, c, key));
    };

    // 1. Classify; group the changes by document, keeping batch order within each document.
    const groups = new Map<string, Group>();
    classified.forEach((c, index) => {
      if (c.type === 'skip') {
        summary.skipped++;
        summary.skippedBySource[c.reason] = (summary.skippedBySource[c.reason] ?? 0) + 1;
      } else if (c.type === 'poison') {
        deadLetter(index, c.reason, c.detail, c, c.key);
      } else {
        const id = encodeDocId(c.event.key);
        let group = groups.get(id);
        if (!group) groups.set(id, (group = { id, key: c.event.key, items: [] }));
        group.items.push({ index, event: c.event });
      }
    });

    // 2. A device's deletion removes its modules too (IoT Hub deletes them with it): tombstone the module
    //    documents at the device's deletion time. This is the only query, and only for device deletions.
    const failedGroups = new Set<string>();
    for (const group of [...groups.values()]) {
      if (group.key.moduleId !== undefined) continue;
      for (const item of group.items) {
        if (item.event.kind !== 'delete') continue;
        let moduleIds: string[];
        try {
          summary.queries++;
          moduleIds = await this.store.listModuleIds(group.key.deviceId);
        } catch (err) {
          transientErrors.push(asError(err));
          failedGroups.add(group.id);
          break;
        }
        for (const other of groups.values()) {
          if (other.key.deviceId === group.key.deviceId && other.key.moduleId !== undefined && !moduleIds.includes(other.id)) moduleIds.push(other.id);
        }
        for (const moduleDocId of moduleIds) {
          const key = decodeDocId(moduleDocId);
          let moduleGroup = groups.get(moduleDocId);
          if (!moduleGroup) groups.set(moduleDocId, (moduleGroup = { id: moduleDocId, key, items: [] }));
          moduleGroup.items.push({ index: item.index, event: { kind: 'delete', key, ts: item.event.ts }, synthetic: true });
          moduleGroup.items.sort((a, b) => a.index - b.index);
        }
      }
    }

    // 3. Fold and write each document once: all the batch's writes together, one document never twice at once.
    const work = [...groups.values()];
    summary.documents = work.length;
    const failedDocs: Group[] = work.filter((g) => failedGroups.has(g.id));
    const synced = await this.syncDocuments(work.filter((g) => !failedGroups.has(g.id)), summary);
    for (const group of work) {
      const results = synced.results.get(group.id);
      if (!results) {
        const err = synced.failures.get(group.id);
        if (err) {
          transientErrors.push(err);
          failedDocs.push(group);
        }
        continue;
      }
      group.items.forEach((item, i) => {
        if (item.synthetic) return;
        const r = results[i];
        if (r === 'applied') summary.applied++;
        else if (r === 'stale') summary.stale++;
        if (typeof r === 'string') outcomes[item.index] = r;
        else deadLetter(item.index, r.deadLetter, r.detail, classified[item.index]);
      });
    }

    // 4. What failed transiently is retried by the trigger's retry policy; on the last try it is dead-lettered.
    for (const group of failedDocs) {
      this.cache.delete(group.id);
      for (const item of group.items) {
        if (item.synthetic) continue;
        if (ctx.isLastAttempt) {
          const cause = transientErrors[0]?.message ?? 'transient failure';
          deadLetter(item.index, 'transient-exhausted', `last retry failed: ${cause}`, classified[item.index]);
        } else {
          summary.retrying++;
          outcomes[item.index] = 'retrying';
        }
      }
    }

    // 5. Dead letters are written durably before the invocation returns.
    let failure: Error | undefined;
    if (deadLetters.length > 0) {
      try {
        await this.deadLetterSink.write(deadLetters);
        summary.deadLettered = deadLetters.length;
        for (const d of deadLetters) summary.deadLetterReasons[d.reason] = (summary.deadLetterReasons[d.reason] ?? 0) + 1;
      } catch (err) {
        summary.retrying += deadLetters.length;
        for (let i = 0; i < outcomes.length; i++) if (outcomes[i] === 'dead-lettered') outcomes[i] = 'retrying';
        failure = new Error(`dead-letter store failed: ${asError(err).message}`, { cause: err });
      }
    }
    if (!failure && summary.retrying > 0) {
      failure = new Error(`${summary.retrying} event(s) failed transiently and will be retried: ${transientErrors[0]?.message ?? ''}`, { cause: transientErrors[0] });
    }
    summary.durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    return { summary, outcomes, failure, deadLetters };
  }

  /**
   * Brings each document up to date in rounds: read what the cache does not hold (concurrently), fold,
   * then write every changed document in one call to the store (Cosmos bulk: one request per partition
   * range instead of one per document), each guarded by its ETag (create when absent). A document whose
   * guard fails (412/409/404) is dropped from the cache, re-read and re-folded in the next round.
   */
  private async syncDocuments(groups: readonly Group[], summary: SyncSummary): Promise<{ results: Map<string, ItemResult[]>; failures: Map<string, Error> }> {
    const results = new Map<string, ItemResult[]>();
    const failures = new Map<string, Error>();
    let pending = groups;
    for (let round = 0; pending.length > 0; round++) {
      if (round >= this.maxConflicts) {
        for (const g of pending) failures.set(g.id, new Error(`${round} write conflicts on ${g.id}`));
        break;
      }
      const current = new Map<string, StoredDoc | undefined>();
      const toRead: Group[] = [];
      const wasRead = new Set<string>();
      for (const g of pending) {
        const hit = this.cache.get(g.id);
        if (hit) current.set(g.id, hit);
        else {
          toRead.push(g);
          wasRead.add(g.id);
        }
      }
      await forEachConcurrently(toRead, this.concurrency, async (g) => {
        summary.reads++;
        try {
          current.set(g.id, await this.store.read(g.id, g.key.deviceId));
        } catch (err) {
          failures.set(g.id, asError(err));
        }
      });

      // A module seen for the first time may belong to a device deleted in an earlier batch (no module
      // delete event is documented for a device deletion): its device's document decides (rules.ts,
      // orphanedModule). One point read per first-seen module, none for devices or known modules.
      const devices = new Map<string, TwinDoc | undefined>();
      const orphans = pending.filter((g) => g.key.moduleId !== undefined && !failures.has(g.id) && current.get(g.id) === undefined);
      await forEachConcurrently([...new Set(orphans.map((g) => g.key.deviceId))], this.concurrency, async (deviceId) => {
        const id = encodeDocId({ deviceId });
        const hit = this.cache.get(id);
        if (hit) return void devices.set(deviceId, hit.doc);
        // The device's own events are in this round: its document was just read above (the same stored state).
        if (current.has(id)) return void devices.set(deviceId, current.get(id)?.doc);
        summary.reads++;
        try {
          devices.set(deviceId, (await this.store.read(id, deviceId))?.doc);
        } catch (err) {
          for (const g of orphans) if (g.key.deviceId === deviceId) failures.set(g.id, asError(err));
        }
      });

      const writes: { group: Group; op: WriteOp; results: ItemResult[]; bytes: number }[] = [];
      for (const g of pending) {
        if (failures.has(g.id)) continue;
        const stored = current.get(g.id);
        const folded = this.fold(stored?.doc, g.items, stored === undefined ? { device: devices.get(g.key.deviceId) } : {});
        if (folded.doc === stored?.doc || folded.doc === undefined) {
          if (stored && wasRead.has(g.id)) this.cache.set(g.id, stored, folded.bytes ?? estimateBytes(stored.doc));
          results.set(g.id, folded.results);
          continue;
        }
        const doc: TwinDoc = { ...folded.doc, replica: { ...folded.doc.replica, syncedAt: this.now().toISOString() } };
        writes.push({ group: g, op: { doc, etag: stored?.etag }, results: folded.results, bytes: folded.bytes ?? estimateBytes(doc) });
      }
      if (writes.length === 0) break;

      let written: WriteResult[];
      try {
        written = this.store.writeMany ? await this.store.writeMany(writes.map((w) => w.op)) : await this.writeEach(writes.map((w) => w.op));
      } catch (err) {
        const e = err instanceof StoreError ? err : new StoreError('transient', asError(err).message);
        written = writes.map(() => ({ error: e }));
      }
      const conflicted: Group[] = [];
      writes.forEach((w, i) => {
        const r = written[i];
        if (r && 'stored' in r) {
          summary.writes++;
          // Without an ETag the next write could not be guarded: such a document is read again instead.
          if (r.stored.etag) this.cache.set(w.group.id, { doc: w.op.doc, etag: r.stored.etag }, w.bytes);
          else this.cache.delete(w.group.id);
          results.set(w.group.id, w.results);
          return;
        }
        const err = r?.error ?? new StoreError('transient', 'the store returned no result for a write');
        this.cache.delete(w.group.id);
        if (err.kind === 'conflict') {
          summary.conflicts++;
          conflicted.push(w.group);
        } else if (err.kind === 'rejected') {
          results.set(w.group.id, w.results.map((x) => (x === 'applied' ? { deadLetter: 'rejected-by-store' as const, detail: err.message } : x)));
        } else {
          failures.set(w.group.id, err);
        }
      });
      pending = conflicted;
    }
    return { results, failures };
  }

  /** For stores without a multi-document write: the same guarded writes, concurrently. */
  private async writeEach(ops: readonly WriteOp[]): Promise<WriteResult[]> {
    const out = new Array<WriteResult>(ops.length);
    await forEachConcurrently(ops.map((op, i) => ({ op, i })), this.concurrency, async ({ op, i }) => {
      try {
        out[i] = { stored: op.etag === undefined ? await this.store.create(op.doc) : await this.store.replace(op.doc, op.etag) };
      } catch (err) {
        out[i] = { error: err instanceof StoreError ? err : new StoreError('transient', asError(err).message) };
      }
    });
    return out;
  }

  /**
   * Folds the events onto the stored document. The size guard serialises only the final document; when
   * it is over the limit the fold is replayed event by event so that only the events that push the twin
   * over Cosmos DB's item limit are dead-lettered.
   */
  private fold(start: TwinDoc | undefined, items: readonly Item[], context: FoldContext = {}): { doc: TwinDoc | undefined; results: ItemResult[]; bytes?: number } {
    const results: ItemResult[] = [];
    let doc = start;
    for (const item of items) {
      const r = applyEvent(doc, item.event, this.ruleOptions, context);
      doc = r.doc;
      results.push(r.outcome);
    }
    if (doc === start || doc === undefined) return { doc, results };
    const bytes = estimateBytes(doc);
    if (bytes <= this.maxBytes) return { doc, results, bytes };
    results.length = 0;
    doc = start;
    for (const item of items) {
      const r = applyEvent(doc, item.event, this.ruleOptions, context);
      if (r.outcome === 'applied' && r.doc && estimateBytes(r.doc) > this.maxBytes) {
        results.push({ deadLetter: 'twin-too-large', detail: `the twin would be ${estimateBytes(r.doc)} bytes; Cosmos DB stores at most ${this.maxBytes}` });
        continue;
      }
      doc = r.doc;
      results.push(r.outcome);
    }
    return { doc, results };
  }

  private deadLetterRecord(origin: Origin, reason: DeadLetterReason, detail: string, ctx: BatchContext, c?: Classified, key?: Partial<DocKey>): DeadLetter {
    const raw = origin.kind === 'trigger-event' ? origin.event : undefined;
    const sys = raw?.systemProperties ?? {};
    const props = raw?.properties ?? {};
    const k = key ?? (c?.type === 'event' ? c.event.key : undefined);
    const fields: DeadLetterFields = {
      reason,
      detail,
      deviceId: k?.deviceId ?? (typeof props.deviceId === 'string' ? props.deviceId : undefined),
      moduleId: k?.moduleId ?? (typeof props.moduleId === 'string' ? props.moduleId : undefined),
      source: c?.type === 'event' ? c.source : c?.type === 'poison' ? c.source : undefined,
      opType: c?.type === 'event' ? c.opType : typeof props.opType === 'string' ? props.opType : undefined,
      partitionId: ctx.partitionId,
      sequenceNumber: sequenceNumberOf(sys) as number | string | undefined,
      offset: (sys.offset ?? sys['x-opt-offset']) as number | string | undefined,
      enqueuedTimeUtc: normalizeTimestamp(sys.enqueuedTimeUtc ?? sys['x-opt-enqueued-time']),
      invocationId: ctx.invocationId,
      attempt: ctx.attempt,
      deadLetteredAt: this.now().toISOString(),
    };
    for (const f of Object.keys(fields) as (keyof DeadLetterFields)[]) if (fields[f] === undefined) delete fields[f];
    if (origin.kind === 'twin-event') return { ...fields, kind: 'twin-event', change: origin.change };
    const { body, properties, systemProperties } = origin.event;
    return { ...fields, kind: 'trigger-event', event: { body: body instanceof Uint8Array ? Buffer.from(body).toString('utf8') : body, properties, systemProperties } };
  }
}

/** Where a batch item came from: a trigger event, or a change the tools already parsed. */
type Origin = { kind: 'trigger-event'; event: RawEvent } | { kind: 'twin-event'; change: TwinEvent };

function triggerOrigin(event: RawEvent): Origin {
  return { kind: 'trigger-event', event };
}

function estimateBytes(doc: TwinDoc): number {
  return Buffer.byteLength(JSON.stringify(doc));
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
