/**
 * Runs the benchmark: the same seeded workload through the three strategies against the same local
 * servers, then the memory runs and the artifact figures. Returns plain figures; main.ts prints them.
 */
import { fork } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundle, measureModuleLoad, PROJECT_ROOT, measureSynth, percentile, type BundleFigures, type LoadFigures, type SynthFigures } from './artifacts';
import type { MemoryRun } from './memoryChild';
import { addCounts, diffCounts, startServersInChild, startServersInProcess, type BenchServers, type ServerCounts } from './servers';
import { CachedPerEventStrategy, drive, inMemoryEngine, localSettingsEnv, mergeDrive, PerEventStrategy, shippedEngine, syncTwinsInvoker, emptyTally, type DriveResult, type Invoke, type Tally } from './strategies';
import { generateWorkload, type Batch, type WorkloadOptions } from './workload';
import { RU_FORMULA } from './ru';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface BenchOptions {
  workload: WorkloadOptions;
  servers: 'child' | 'in-process';
  memory?: { devices: number[]; events: number };
  /**
   * Share of the workload first run through each strategy on other devices (same client, same container),
   * unmeasured, so that no strategy pays for JIT compilation and connection set-up in its figures. @default 0.2
   */
  warmup?: number;
  /** The server-bound strategies run interleaved in this many rounds (a slice of the workload each). @default 4 */
  rounds?: number;
  /** Simulated network round trip added by the server to every Cosmos response, ms. @default 0 */
  rttMs?: number;
  artifacts: boolean;
  synth: boolean;
  log?: (line: string) => void;
}

export interface PhaseFigures {
  name: string;
  events: number;
  batches: number;
  changes: number;
  changedDocs: number;
  wallMs: number;
  eventsPerSec: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  latencyMaxMs: number;
  /** Bench-process CPU per event over the phase (handler + SDK + HTTP client; the servers run elsewhere in child mode). */
  processCpuUsPerEvent: number;
  /** CPU per event measured around each invocation (the in-memory phase: the handler's own cost). */
  invocationCpuUsPerEvent: number;
  peakRssBytes: number;
  rssStartBytes: number;
  /** Parsing each batch's JSON (the worker's deserialization), excluded from the figures above; per event. */
  deserializeCpuUsPerEvent: number;
  tally: Tally;
  server?: ServerCounts & {
    dataRequests: number;
    requestsPerEvent: number;
    dataRequestsPerEvent: number;
    writesPerEvent: number;
    readsPerEvent: number;
    requestsPerChangedDoc: number;
    ruPerEvent: number;
    avgWriteBytes: number;
    /** Successful document writes per event, whether point requests or operations inside bulk requests. */
    writeOpsPerEvent: number;
    /** CPU of the server process per event (child mode only: in-process it is the bench's own). */
    serverCpuUsPerEvent: number;
  };
  cache?: { entries: number; bytes: number };
}

export interface Target {
  name: string;
  target: string;
  measured: string;
  pass: boolean | null;
  /** How far from the limit, in the target's direction (positive = headroom). */
  margin: string;
}

export interface Ratios {
  eventsPerSec: number;
  requestsPerEvent: number;
  ruPerEvent: number;
  p50Latency: number;
}

export interface BenchResults {
  meta: {
    command: string;
    startedAt: string;
    node: string;
    platform: string;
    cpus: number;
    cpuModel: string;
    loadAvgStart: number[];
    loadAvgEnd?: number[];
    serverMode: string;
    rttMs: number;
    rounds?: number;
    ruFormula: string;
    durationMs?: number;
  };
  workload: WorkloadOptions & { name?: string; batches: number; changedDocs: number; avgChangedDocsPerBatch: number; avgEventsPerChangedDoc: number };
  phases: { shipped?: PhaseFigures; perEvent?: PhaseFigures; perEventCached?: PhaseFigures; inMemory?: PhaseFigures };
  /** shipped ÷ per-event. */
  ratios?: Ratios;
  /** shipped ÷ per-event with a cached ETag and per-device concurrency (the stronger baseline). */
  ratiosVsCached?: Ratios;
  memory?: MemoryRun[];
  bundle?: BundleFigures & { error?: string };
  moduleLoad?: LoadFigures & { error?: string };
  synth?: SynthFigures;
  targets: Target[];
}

function figures(name: string, d: DriveResult, tally: Tally, server?: ServerCounts): PhaseFigures {
  const perSec = d.events / (d.wallMs / 1000);
  const f: PhaseFigures = {
    name,
    events: d.events,
    batches: d.batches,
    changes: d.changes,
    changedDocs: d.changedDocs,
    wallMs: d.wallMs,
    eventsPerSec: perSec,
    latencyP50Ms: percentile(d.latencies, 50),
    latencyP95Ms: percentile(d.latencies, 95),
    latencyMaxMs: percentile(d.latencies, 100),
    processCpuUsPerEvent: d.processCpuUs / d.events,
    invocationCpuUsPerEvent: d.invocationCpuUs / d.events,
    peakRssBytes: d.peakRssBytes,
    rssStartBytes: d.rssStartBytes,
    deserializeCpuUsPerEvent: d.deserializeCpuUs / d.events,
    tally,
  };
  if (server) {
    const k = server.byKind;
    const data = (k.read ?? 0) + (k.write ?? 0) + (k.query ?? 0) + (k.readfeed ?? 0) + (k.bulk ?? 0);
    f.server = {
      ...server,
      dataRequests: data,
      requestsPerEvent: server.total / d.events,
      dataRequestsPerEvent: data / d.events,
      writesPerEvent: (k.write ?? 0) / d.events,
      readsPerEvent: (k.read ?? 0) / d.events,
      requestsPerChangedDoc: data / d.changedDocs,
      ruPerEvent: server.ru / d.events,
      avgWriteBytes: server.writeOps ? server.writeBytes / server.writeOps : 0,
      serverCpuUsPerEvent: server.cpuUs / d.events,
      writeOpsPerEvent: server.writeOps / d.events,
    };
  }
  return f;
}

function ratios(a: PhaseFigures, b: PhaseFigures): Ratios {
  return {
    eventsPerSec: a.eventsPerSec / b.eventsPerSec,
    requestsPerEvent: a.server!.requestsPerEvent / b.server!.requestsPerEvent,
    ruPerEvent: a.server!.ruPerEvent / b.server!.ruPerEvent,
    p50Latency: a.latencyP50Ms / b.latencyP50Ms,
  };
}

async function memoryRun(servers: BenchServers, workload: WorkloadOptions, container: string): Promise<MemoryRun> {
  await servers.createContainer(container);
  return new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'memoryChild.ts'), [JSON.stringify(workload)], {
      execArgv: ['--expose-gc', '--import', 'tsx'],
      env: { ...process.env, ...localSettingsEnv(servers, container) },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    let result: MemoryRun | undefined;
    child.on('message', (m) => (result = m as MemoryRun));
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`memory run exited ${code} without a result`))));
  });
}

export async function runBench(opts: BenchOptions, command = 'npm run bench'): Promise<BenchResults> {
  const log = opts.log ?? (() => undefined);
  const started = performance.now();
  const w = opts.workload;
  const results: BenchResults = {
    meta: {
      command,
      startedAt: new Date().toISOString(),
      node: process.version,
      platform: `${os.platform()} ${os.arch()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      loadAvgStart: os.loadavg(),
      serverMode: opts.servers,
      rttMs: opts.rttMs ?? 0,
      ruFormula: RU_FORMULA,
    },
    workload: { ...w, batches: 0, changedDocs: 0, avgChangedDocsPerBatch: 0, avgEventsPerChangedDoc: 0 },
    phases: {},
    targets: [],
  };

  log(`generating workload: ${w.devices} devices, ${w.events} events, ${w.partitions} partitions, batches of ${w.batchSize}, burst ${w.burst}`);
  const workload: Batch[][] = generateWorkload(w);
  const all = workload.flat();
  results.workload.batches = all.length;
  results.workload.changedDocs = all.reduce((a, b) => a + b.changedDocs, 0);
  results.workload.avgChangedDocsPerBatch = results.workload.changedDocs / all.length;
  results.workload.avgEventsPerChangedDoc = all.reduce((a, b) => a + b.changes, 0) / results.workload.changedDocs;

  log(`starting the local Cosmos-compatible server and Azurite (${opts.servers})`);
  const servers = opts.servers === 'child' ? await startServersInChild({ rttMs: opts.rttMs }) : await startServersInProcess({ rttMs: opts.rttMs });
  const warmupShare = opts.warmup ?? 0.2;
  const warmup: Batch[][] =
    warmupShare > 0 ? generateWorkload({ ...w, devicePrefix: 'warmup-', seed: w.seed + 1, events: Math.ceil(w.events * warmupShare) }) : [];
  try {
    // The strategies that talk to the server run interleaved in rounds (a slice of every partition's
    // batches each, the order reversed every other round), so that a change in the machine's load
    // (other processes on 2 shared cores) falls on all of them alike instead of on whichever ran last.
    interface Contender {
      key: 'shipped' | 'perEvent' | 'perEventCached';
      name: string;
      invoke: Invoke;
      tally: Tally;
      drive?: DriveResult;
      counts?: ServerCounts;
    }
    const contenders: Contender[] = [];

    // 1. syncTwins as shipped.
    await servers.createContainer('bench-shipped');
    const engine = shippedEngine(servers, 'bench-shipped');
    const shippedTally = emptyTally();
    contenders.push({ key: 'shipped', name: 'syncTwins (shipped)', invoke: syncTwinsInvoker(engine, shippedTally), tally: shippedTally });

    // 2. per-event strategy.
    await servers.createContainer('bench-per-event');
    const perEvent = PerEventStrategy.fromServers(servers, 'bench-per-event');
    contenders.push({ key: 'perEvent', name: 'per-event (baseline)', invoke: perEvent.invoker(), tally: perEvent.tally });

    // 4. per-event with a cached ETag and per-device concurrency (the stronger baseline).
    await servers.createContainer('bench-per-event-cached');
    const cached = CachedPerEventStrategy.fromServers(servers, 'bench-per-event-cached');
    contenders.push({ key: 'perEventCached', name: 'per-event, cached ETag', invoke: cached.invoker(), tally: cached.tally });

    if (warmup.length) {
      for (const c of contenders) {
        log(`warm-up: ${c.name} (${warmup.flat().length} batches on other devices, not measured)`);
        const t = emptyTally();
        await drive(warmup, c.key === 'perEvent' ? perEvent.invoker() : c.key === 'perEventCached' ? cached.invoker() : syncTwinsInvoker(engine, t));
      }
      perEvent.tally = emptyTally();
      contenders.find((c) => c.key === 'perEvent')!.tally = perEvent.tally;
      contenders.find((c) => c.key === 'perEvent')!.invoke = perEvent.invoker();
      cached.tally = emptyTally();
      contenders.find((c) => c.key === 'perEventCached')!.tally = cached.tally;
      contenders.find((c) => c.key === 'perEventCached')!.invoke = cached.invoker();
    }
    const rounds = Math.max(1, Math.min(opts.rounds ?? 4, Math.min(...workload.map((p) => p.length))));
    for (let round = 0; round < rounds; round++) {
      const slice = workload.map((p) => p.slice(Math.floor((p.length * round) / rounds), Math.floor((p.length * (round + 1)) / rounds)));
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const c of order) {
        log(`round ${round + 1}/${rounds}: ${c.name}`);
        const before = await servers.counts();
        const d = await drive(slice, c.invoke, { expectedBatches: slice.flat().length });
        const after = await servers.counts();
        c.drive = c.drive ? mergeDrive(c.drive, d) : d;
        c.counts = c.counts ? addCounts(c.counts, diffCounts(before, after)) : diffCounts(before, after);
      }
    }
    for (const c of contenders) {
      const f = figures(c.name, c.drive!, c.tally, c.counts);
      if (c.key === 'shipped') results.phases.shipped = { ...f, cache: { entries: engine.cache.size, bytes: engine.cache.totalBytes } };
      else if (c.key === 'perEventCached') results.phases.perEventCached = { ...f, cache: { entries: cached.cache.size, bytes: cached.cache.totalBytes } };
      else results.phases.perEvent = f;
    }
    results.meta.rounds = rounds;

    // 3. syncTwins on an in-memory store: a warm-up pass on a throwaway engine, then the measured pass.
    log('syncTwins on an in-memory store (handler CPU)');
    await drive(warmup.length ? warmup : workload.map((p) => p.slice(0, Math.ceil(p.length / 5))), syncTwinsInvoker(inMemoryEngine().engine, emptyTally()));
    const memTally = emptyTally();
    const mem = inMemoryEngine();
    const d3 = await drive(workload, syncTwinsInvoker(mem.engine, memTally), { measureInvocationCpu: true, expectedBatches: all.length });
    results.phases.inMemory = figures('syncTwins (in-memory store)', d3, memTally);
    results.phases.inMemory.cache = { entries: mem.engine.cache.size, bytes: mem.engine.cache.totalBytes };

    results.ratios = ratios(results.phases.shipped!, results.phases.perEvent!);
    results.ratiosVsCached = ratios(results.phases.shipped!, results.phases.perEventCached!);
    // Memory: fresh processes, growing device counts, the same number of events.
    if (opts.memory) {
      results.memory = [];
      for (const devices of opts.memory.devices) {
        log(`memory run: ${devices} devices, ${opts.memory.events} events (fresh process)`);
        results.memory.push(await memoryRun(servers, { ...w, devices, events: opts.memory.events }, `bench-memory-${devices}`));
      }
    }
  } finally {
    await servers.close();
  }

  if (opts.artifacts) {
    log('bundle and module load');
    const outRoot = path.join(here, 'out');
    try {
      results.bundle = await buildBundle(outRoot);
      try {
        results.moduleLoad = await measureModuleLoad(results.bundle.dir);
      } catch (err) {
        results.moduleLoad = { runs: [], medianMs: NaN, registered: [], error: (err as Error).message };
      }
    } catch (err) {
      results.bundle = { builder: 'none', dir: '', bundleFile: '', bundleBytes: NaN, minifiedBytes: NaN, unminifiedBytes: NaN, topPackages: [], error: (err as Error).message };
    }
  }
  if (opts.synth) {
    log('npm run synth');
    results.synth = await measureSynth();
  }
  // Paths relative to the project, so the committed results do not carry this machine's layout.
  if (results.bundle?.dir) {
    results.bundle.dir = path.relative(PROJECT_ROOT, results.bundle.dir);
    results.bundle.bundleFile = path.relative(PROJECT_ROOT, results.bundle.bundleFile);
  }
  if (results.synth?.output) results.synth.output = results.synth.output.split(PROJECT_ROOT + path.sep).join('');
  results.targets = evaluateTargets(results);
  results.meta.loadAvgEnd = os.loadavg();
  results.meta.durationMs = performance.now() - started;
  return results;
}

function target(name: string, targetText: string, measured: number | undefined, limit: number, direction: 'min' | 'max', fmt: (n: number) => string): Target {
  if (measured === undefined || Number.isNaN(measured)) return { name, target: targetText, measured: 'not available', pass: null, margin: '' };
  const pass = direction === 'min' ? measured >= limit : measured <= limit;
  const rel = Math.abs(measured - limit) / limit;
  const pct = `${(rel * 100).toFixed(rel < 0.1 ? 1 : 0)}%`;
  const margin = direction === 'min' ? (pass ? `${pct} above the floor` : `${pct} below the floor`) : pass ? `${pct} under the limit` : `${pct} over the limit`;
  return { name, target: targetText, measured: fmt(measured), pass, margin };
}

export function evaluateTargets(r: BenchResults): Target[] {
  const x = (n: number) => `${n.toFixed(2)}×`;
  const t: Target[] = [];
  t.push(target('throughput vs per-event', '≥ 5× events/s', r.ratios?.eventsPerSec, 5, 'min', x));
  t.push(target('requests/event vs per-event', '≤ 0.5×', r.ratios?.requestsPerEvent, 0.5, 'max', (n) => `${n.toFixed(3)}×`));
  t.push(target('requests per changed doc per batch', '≤ 1.1 (floor 1.0)', r.phases.shipped?.server?.requestsPerChangedDoc, 1.1, 'max', (n) => n.toFixed(3)));
  t.push(target('handler CPU', '≤ 50 µs/event', r.phases.inMemory?.invocationCpuUsPerEvent, 50, 'max', (n) => `${n.toFixed(1)} µs`));
  t.push(target('bundle size', '< 2 MB (2,000,000 B)', r.bundle?.bundleBytes, 2_000_000, 'max', (n) => `${(n / 1e6).toFixed(2)} MB`));
  t.push(target('module load', '≤ 150 ms', r.moduleLoad?.medianMs, 150, 'max', (n) => `${n.toFixed(0)} ms`));
  t.push(target('synth (all stacks)', '≤ 5 s', r.synth?.ms === undefined ? undefined : r.synth.ms / 1000, 5, 'max', (n) => `${n.toFixed(2)} s`));
  return t;
}
