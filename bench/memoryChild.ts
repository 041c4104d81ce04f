/**
 * One memory run in a fresh process (so earlier phases do not inflate its RSS): the shipped handler,
 * engine from app settings (env), against the parent's local servers, on a workload generated lazily
 * batch by batch. Reports RSS through the run, heap after a full GC, and the engine cache's size.
 * Started by bench/run.ts with `node --expose-gc --import tsx`.
 */
import { buildSyncRuntime, processEnv, readSettings } from '../functions/src/public';
import { drive, emptyTally, syncTwinsInvoker } from './strategies';
import { partitionBatches, type WorkloadOptions } from './workload';

export interface MemoryRun {
  devices: number;
  events: number;
  batches: number;
  wallMs: number;
  rssStartBytes: number;
  rssCheckpoints: number[];
  /** Heap still used after a full GC at each quarter of the run: the memory the handler retains. */
  heapCheckpoints: number[];
  peakRssBytes: number;
  heapUsedAfterGcBytes: number;
  cacheEntries: number;
  cacheBytes: number;
  cacheMaxBytes: number;
  cacheMaxEntries: number;
  writes: number;
  reads: number;
  failedInvocations: number;
}

const workload = JSON.parse(process.argv[2]) as WorkloadOptions;
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const engine = buildSyncRuntime(readSettings(processEnv()), { attempts: null }).engine;
const tally = emptyTally();
const batchesPerPartition = Math.ceil(workload.events / workload.partitions / workload.batchSize);
const r = await drive(
  Array.from({ length: workload.partitions }, (_, p) => partitionBatches(workload, p)),
  syncTwinsInvoker(engine, tally),
  { expectedBatches: batchesPerPartition * workload.partitions, gcAtCheckpoints: true },
);
gc?.();
const result: MemoryRun = {
  devices: workload.devices,
  events: r.events,
  batches: r.batches,
  wallMs: r.wallMs,
  rssStartBytes: r.rssStartBytes,
  rssCheckpoints: r.rssCheckpoints,
  heapCheckpoints: r.heapCheckpoints,
  peakRssBytes: r.peakRssBytes,
  heapUsedAfterGcBytes: process.memoryUsage().heapUsed,
  cacheEntries: engine.cache.size,
  cacheBytes: engine.cache.totalBytes,
  cacheMaxBytes: engine.cache.maxBytes,
  cacheMaxEntries: engine.cache.maxEntries,
  writes: tally.writes,
  reads: tally.reads,
  failedInvocations: tally.failedInvocations,
};
process.send!(result, () => process.exit(0));
