/**
 * The three ways the bench pushes the workload through, and the driver that times them.
 *
 * 1. shipped: the real `syncTwins` handler, a real InvocationContext, the engine built from app settings
 *    (runtime/build.ts: @azure/cosmos SDK, dead letters to Azurite), against the local Cosmos-compatible server.
 * 2. per-event: a careful port of the original design: for each event, point-read the document, merge in
 *    memory (the same rules as the engine, so both produce the same documents), replace with an ETag
 *    guard or create when absent, awaited, one event after another.
 * 3. in-memory: the real `syncTwins` on a SyncEngine with MemoryTwinStore: the handler's own CPU.
 * 4. per-event, cached: the per-event design as a careful engineer would write it today: each document's
 *    last known version and ETag kept in memory (the engine's own DocCache, same limits), so a change costs
 *    one guarded replace and no read while cached; the batch's documents processed concurrently (16 at a
 *    time, the engine's default), each document's events in order. It writes once per event, not once per
 *    document per batch, and sends point writes, not bulk.
 *
 * Partitions run concurrently, each one invocation at a time, as the Event Hubs trigger does.
 */
import functionsLib from '@azure/functions';
import type { InvocationContext as Context } from '@azure/functions';
import type { Container } from '@azure/cosmos';
import { BlobDeadLetterSink, DocCache, MemoryDeadLetterSink, MemoryTwinStore, SYNC_RETRY, SyncEngine, applyEvent, buildSyncRuntime, classify, createBlobContainer, createCosmosClient, encodeDocId, forEachConcurrently, makeSyncTwins, readSettings, stripSystemFields, toRawEvents, type DeadLetter, type DeadLetterSink, type SyncSummary, type TwinDoc, type TwinEvent } from '../functions/src/public';
import type { Batch, Trigger } from './workload';

// The library is CommonJS built by webpack: Node's ESM loader cannot see its named class exports.
const { InvocationContext } = functionsLib;
type InvocationContext = Context;
import type { BenchServers } from './servers';

/** Counters every strategy reports, in the engine's terms (the SyncSummary counters, summed). */
export type Tally = Pick<SyncSummary, 'received' | 'applied' | 'stale' | 'skipped' | 'deadLettered' | 'retrying' | 'documents' | 'writes' | 'reads' | 'conflicts' | 'queries'> & {
  invocations: number;
  failedInvocations: number;
  /** Summary lines the handler logged ("syncTwins summary {json}") that agree with what it returned. */
  loggedSummaries: number;
};

export function emptyTally(): Tally {
  return { invocations: 0, failedInvocations: 0, received: 0, applied: 0, stale: 0, skipped: 0, deadLettered: 0, retrying: 0, documents: 0, writes: 0, reads: 0, conflicts: 0, queries: 0, loggedSummaries: 0 };
}

function addSummary(t: Tally, s: SyncSummary): void {
  t.received += s.received;
  t.applied += s.applied;
  t.stale += s.stale;
  t.skipped += s.skipped;
  t.deadLettered += s.deadLettered;
  t.retrying += s.retrying;
  t.documents += s.documents;
  t.writes += s.writes;
  t.reads += s.reads;
  t.conflicts += s.conflicts;
  t.queries += s.queries;
}

export interface DriveResult {
  events: number;
  changes: number;
  changedDocs: number;
  batches: number;
  wallMs: number;
  /** Wall time of each invocation, ms. */
  latencies: number[];
  /** Process CPU (user + system) over the whole phase, µs. */
  processCpuUs: number;
  /** Process CPU measured around each invocation only, µs (meaningful when nothing else runs in the process). */
  invocationCpuUs: number;
  rssStartBytes: number;
  peakRssBytes: number;
  /** RSS after each quarter of the batches. */
  rssCheckpoints: number[];
  /** Heap used after a full GC at each quarter (only with gcAtCheckpoints and --expose-gc): what is retained. */
  heapCheckpoints: number[];
  /** Time and CPU spent deserializing batches (the worker's job, not the handler's): left out of wallMs and processCpuUs. */
  deserializeMs: number;
  deserializeCpuUs: number;
}

export type Invoke = (batch: Batch, trigger: Trigger) => Promise<void>;

/** Runs the partitions concurrently, each one batch at a time, timing every invocation. */
export async function drive(
  partitions: Iterable<Batch>[],
  invoke: Invoke,
  opts: {
    expectedBatches?: number;
    /**
     * Measure process CPU around each invocation. process.cpuUsage() is process-wide, so overlapping
     * invocations would be counted several times: this also runs the partitions one after another.
     */
    measureInvocationCpu?: boolean;
    /** Force a GC at each quarter and record the heap still used (needs node --expose-gc; memory runs only). */
    gcAtCheckpoints?: boolean;
  } = {},
): Promise<DriveResult> {
  const result: DriveResult = { events: 0, changes: 0, changedDocs: 0, batches: 0, wallMs: 0, latencies: [], processCpuUs: 0, invocationCpuUs: 0, rssStartBytes: process.memoryUsage.rss(), peakRssBytes: 0, rssCheckpoints: [], heapCheckpoints: [], deserializeMs: 0, deserializeCpuUs: 0 };
  let peak = result.rssStartBytes;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 100);
  const quarter = opts.expectedBatches ? Math.max(1, Math.ceil(opts.expectedBatches / 4)) : 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const runPartition = async (batches: Iterable<Batch>) => {
    for (const batch of batches) {
      // Synchronous on the one JS thread: nothing else runs meanwhile, so its time can be taken out of the wall time.
      const p0 = process.cpuUsage();
      const d0 = performance.now();
      const trigger = batch.trigger();
      result.deserializeMs += performance.now() - d0;
      const pc = process.cpuUsage(p0);
      result.deserializeCpuUs += pc.user + pc.system;
      const c0 = opts.measureInvocationCpu ? process.cpuUsage() : undefined;
      const started = performance.now();
      await invoke(batch, trigger);
      result.latencies.push(performance.now() - started);
      if (c0) {
        const c = process.cpuUsage(c0);
        result.invocationCpuUs += c.user + c.system;
      }
      result.batches++;
      result.events += trigger.messages.length;
      result.changes += batch.changes;
      result.changedDocs += batch.changedDocs;
      if (quarter && result.batches % quarter === 0) {
        const rss = process.memoryUsage.rss();
        peak = Math.max(peak, rss);
        result.rssCheckpoints.push(rss);
        const gc = (globalThis as { gc?: () => void }).gc;
        if (opts.gcAtCheckpoints && gc) {
          gc();
          result.heapCheckpoints.push(process.memoryUsage().heapUsed);
        }
      }
    }
  };
  if (opts.measureInvocationCpu) for (const p of partitions) await runPartition(p);
  else await Promise.all(partitions.map(runPartition));
  result.wallMs = performance.now() - t0 - result.deserializeMs;
  const cpu = process.cpuUsage(cpu0);
  result.processCpuUs = cpu.user + cpu.system - result.deserializeCpuUs;
  clearInterval(sampler);
  result.peakRssBytes = Math.max(peak, process.memoryUsage.rss());
  return result;
}

/** Two runs of the same strategy as one (rounds of an interleaved run). */
export function mergeDrive(a: DriveResult, b: DriveResult): DriveResult {
  return {
    events: a.events + b.events,
    changes: a.changes + b.changes,
    changedDocs: a.changedDocs + b.changedDocs,
    batches: a.batches + b.batches,
    wallMs: a.wallMs + b.wallMs,
    latencies: [...a.latencies, ...b.latencies],
    processCpuUs: a.processCpuUs + b.processCpuUs,
    invocationCpuUs: a.invocationCpuUs + b.invocationCpuUs,
    rssStartBytes: a.rssStartBytes,
    peakRssBytes: Math.max(a.peakRssBytes, b.peakRssBytes),
    rssCheckpoints: [...a.rssCheckpoints, ...b.rssCheckpoints],
    heapCheckpoints: [...a.heapCheckpoints, ...b.heapCheckpoints],
    deserializeMs: a.deserializeMs + b.deserializeMs,
    deserializeCpuUs: a.deserializeCpuUs + b.deserializeCpuUs,
  };
}

function contextFor(batch: Batch, trigger: Trigger, onLog: (level: string, message: string) => void): InvocationContext {
  return new InvocationContext({
    invocationId: `bench-${batch.partitionId}-${batch.index}`,
    functionName: 'syncTwins',
    triggerMetadata: trigger.triggerMetadata,
    // As the host passes it when the function has a retry policy (first try).
    retryContext: { retryCount: 0, maxRetryCount: SYNC_RETRY.maxRetryCount },
    logHandler: (level, ...args) => onLog(level, args.map(String).join(' ')),
  });
}

/** Invokes the real handler exactly as the host would, and checks the summary it logs against what it returns. */
export function syncTwinsInvoker(engine: SyncEngine, tally: Tally): Invoke {
  const syncTwins = makeSyncTwins(() => ({ engine }));
  return async (batch, trigger) => {
    let logged: SyncSummary | undefined;
    const context = contextFor(batch, trigger, (_level, message) => {
      const m = /^syncTwins summary (.*)$/s.exec(message);
      if (m) logged = JSON.parse(m[1]) as SyncSummary;
    });
    tally.invocations++;
    try {
      const summary = await syncTwins(trigger.messages, context);
      addSummary(tally, summary);
      if (logged && logged.received === summary.received && logged.writes === summary.writes) tally.loggedSummaries++;
    } catch (err) {
      tally.failedInvocations++;
      if (logged) addSummary(tally, logged);
      if (tally.failedInvocations <= 3) console.error(`invocation ${context.invocationId} failed: ${(err as Error).message}`);
    }
  };
}

/** App settings that make runtime/build.ts build the engine against the local servers (loopback only). */
export function localSettingsEnv(servers: BenchServers, container: string): Record<string, string> {
  return {
    COSMOS_ENDPOINT: servers.cosmosEndpoint,
    COSMOS_DATABASE: servers.database,
    COSMOS_CONTAINER: container,
    COSMOS_KEY: servers.cosmosKey,
    DEADLETTER_CONNECTION_STRING: servers.blobConnectionString,
    DEADLETTER_CONTAINER: servers.deadLetterContainer,
  };
}

/**
 * Strategy 1: the engine built from the app settings by the function app's own factory (what syncTwins
 * does on its first invocation; done here so the bench can read the cache's size).
 */
export function shippedEngine(servers: BenchServers, container: string): SyncEngine {
  return buildSyncRuntime(readSettings(localSettingsEnv(servers, container)), { attempts: null }).engine;
}

/** Strategy 3: the real handler on an in-memory store. */
export function inMemoryEngine(): { engine: SyncEngine; store: MemoryTwinStore; deadLetters: MemoryDeadLetterSink } {
  const store = new MemoryTwinStore();
  const deadLetters = new MemoryDeadLetterSink();
  const engine = new SyncEngine({ store, deadLetters });
  return { engine, store, deadLetters };
}

/**
 * Strategy 2: one event at a time: point read → merge → guarded replace (or create), awaited.
 * A 412/409 (someone wrote in between) re-reads and retries that event; a stale event costs its read only.
 */
/** The replica container and the dead-letter sink a hand-written strategy writes to, on the bench's servers. */
function serverParts(servers: BenchServers, container: string): [Container, DeadLetterSink] {
  const client = createCosmosClient({ cosmosEndpoint: servers.cosmosEndpoint, cosmosKey: servers.cosmosKey });
  const deadLetters = new BlobDeadLetterSink(createBlobContainer({ connectionString: servers.blobConnectionString }, servers.deadLetterContainer));
  return [client.database(servers.database).container(container), deadLetters];
}

/** What the hand-written strategies share: their tally, and an invoker calling `handle` as the host would. */
abstract class HandWrittenStrategy {
  tally = emptyTally();

  invoker(): Invoke {
    return async (batch, trigger) => {
      const context = contextFor(batch, trigger, () => undefined);
      await this.handle(trigger.messages, context);
    };
  }

  abstract handle(messages: unknown[], context: InvocationContext): Promise<void>;
}

export class PerEventStrategy extends HandWrittenStrategy {
  constructor(readonly container: Container, readonly deadLetters: DeadLetterSink) {
    super();
  }

  static fromServers(servers: BenchServers, container: string): PerEventStrategy {
    return new PerEventStrategy(...serverParts(servers, container));
  }

  async handle(messages: unknown[], context: InvocationContext): Promise<void> {
    const t = this.tally;
    t.invocations++;
    const raws = toRawEvents(messages, context.triggerMetadata);
    t.received += raws.length;
    for (const [i, raw] of raws.entries()) {
      const c = classify(raw);
      if (c.type === 'skip') {
        t.skipped++;
        continue;
      }
      if (c.type === 'poison') {
        await this.deadLetter({ kind: 'trigger-event', reason: c.reason, detail: c.detail, deadLetteredAt: new Date().toISOString(), invocationId: context.invocationId, sequenceNumber: i, event: raw });
        continue;
      }
      const key = c.event.key;
      const id = encodeDocId(key);
      t.documents++;
      for (let attempt = 0; ; attempt++) {
        t.reads++;
        let current: { doc: TwinDoc; etag: string } | undefined;
        try {
          const r = await this.container.item(id, key.deviceId).read<TwinDoc>();
          if (r.resource) current = { doc: stripSystemFields(r.resource), etag: r.etag };
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
        }
        const { doc, outcome } = applyEvent(current?.doc, c.event);
        if (outcome === 'stale' || doc === undefined || doc === current?.doc) {
          t.stale++;
          break;
        }
        const next: TwinDoc = { ...doc, replica: { ...doc.replica, syncedAt: new Date().toISOString() } };
        try {
          t.writes++;
          if (current) await this.container.item(id, key.deviceId).replace(next, { accessCondition: { type: 'IfMatch', condition: current.etag } });
          else await this.container.items.create(next, { disableAutomaticIdGeneration: true });
          t.applied++;
          break;
        } catch (err) {
          const code = (err as { code?: number }).code;
          if ((code === 412 || code === 409) && attempt < 5) {
            t.conflicts++;
            continue;
          }
          throw err;
        }
      }
    }
  }

  private async deadLetter(record: DeadLetter): Promise<void> {
    await this.deadLetters.write([record]);
    this.tally.deadLettered++;
  }
}

/** Strategy 4: per event, with a cached ETag per document and the batch's documents in parallel. */
export class CachedPerEventStrategy extends HandWrittenStrategy {
  readonly cache = new DocCache();

  constructor(readonly container: Container, readonly deadLetters: DeadLetterSink, readonly concurrency = 16) {
    super();
  }

  static fromServers(servers: BenchServers, container: string): CachedPerEventStrategy {
    return new CachedPerEventStrategy(...serverParts(servers, container));
  }

  async handle(messages: unknown[], context: InvocationContext): Promise<void> {
    const t = this.tally;
    t.invocations++;
    const raws = toRawEvents(messages, context.triggerMetadata);
    t.received += raws.length;
    const byDoc = new Map<string, TwinEvent[]>();
    const poison: DeadLetter[] = [];
    raws.forEach((raw, i) => {
      const c = classify(raw);
      if (c.type === 'skip') t.skipped++;
      else if (c.type === 'poison') poison.push({ kind: 'trigger-event', reason: c.reason, detail: c.detail, deadLetteredAt: new Date().toISOString(), invocationId: context.invocationId, sequenceNumber: i, event: raw });
      else {
        const id = encodeDocId(c.event.key);
        const list = byDoc.get(id);
        if (list) list.push(c.event);
        else byDoc.set(id, [c.event]);
      }
    });
    if (poison.length) {
      await this.deadLetters.write(poison);
      t.deadLettered += poison.length;
    }
    const docs = [...byDoc.entries()];
    t.documents += docs.length;
    await forEachConcurrently(docs, this.concurrency, async ([id, events]) => {
      for (const event of events) await this.applyOne(id, event);
    });
  }

  private async applyOne(id: string, event: TwinEvent): Promise<void> {
    const t = this.tally;
    const pk = event.key.deviceId;
    for (let attempt = 0; ; attempt++) {
      let current = this.cache.get(id);
      if (!current) {
        t.reads++;
        try {
          const r = await this.container.item(id, pk).read<TwinDoc>();
          if (r.resource) current = { doc: stripSystemFields(r.resource), etag: r.etag };
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
        }
      }
      const { doc, outcome } = applyEvent(current?.doc, event);
      if (outcome === 'stale' || doc === undefined || doc === current?.doc) {
        t.stale++;
        return;
      }
      const next: TwinDoc = { ...doc, replica: { ...doc.replica, syncedAt: new Date().toISOString() } };
      try {
        t.writes++;
        const r = current
          ? await this.container.item(id, pk).replace(next, { accessCondition: { type: 'IfMatch', condition: current.etag } })
          : await this.container.items.create(next, { disableAutomaticIdGeneration: true });
        this.cache.set(id, { doc: next, etag: r.etag }, Buffer.byteLength(JSON.stringify(next)));
        t.applied++;
        return;
      } catch (err) {
        this.cache.delete(id);
        const code = (err as { code?: number }).code;
        if ((code === 412 || code === 409) && attempt < 5) {
          t.conflicts++;
          continue;
        }
        throw err;
      }
    }
  }
}
