/** The bench's printed report: the table, the headline ratios, memory runs, artifacts and targets. */
import type { BenchResults, PhaseFigures } from './run';

function n(v: number | undefined, digits = 0): string {
  if (v === undefined || Number.isNaN(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
const mb = (b: number | undefined) => (b === undefined ? '–' : `${n(b / 1024 / 1024, 0)} MB`);

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r, i) => {
    const line = r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
    return i === 0 ? `${line}\n${widths.map((w) => '─'.repeat(w)).join('  ')}` : line;
  }).join('\n');
}

export function render(r: BenchResults): string {
  const w = r.workload;
  const phases = [r.phases.shipped, r.phases.perEvent, r.phases.perEventCached, r.phases.inMemory].filter(Boolean) as PhaseFigures[];
  const row = (label: string, f: (p: PhaseFigures) => string) => [label, ...phases.map(f)];
  const out: string[] = [];
  out.push(`twin-replica bench · ${r.meta.command}`);
  out.push(`${r.meta.node} · ${r.meta.cpus} × ${r.meta.cpuModel} · load ${r.meta.loadAvgStart.map((x) => x.toFixed(2)).join(' ')} → ${r.meta.loadAvgEnd?.map((x) => x.toFixed(2)).join(' ')} · servers: ${r.meta.serverMode}${r.meta.rttMs ? `, simulated RTT ${r.meta.rttMs} ms` : ', no added RTT (loopback)'}`);
  out.push(`workload${w.name ? ` "${w.name}"` : ''}: ${n(w.devices)} devices, ${n(w.events)} events, ${w.partitions} partitions, batches of ${w.batchSize}, burst ${w.burst} (interleave ${w.interleave}), docs ${n(w.minDocBytes / 1024)}–${n(w.maxDocBytes / 1024)} KB, seed ${w.seed}`);
  if (w.deleteRate || w.moduleShare || w.replayRate) out.push(`          deletes ${n((w.deleteRate ?? 0) * 100, 1)}% of events, ${n((w.moduleShare ?? 0) * 100)}% of devices with 2 modules, replays ${n((w.replayRate ?? 0) * 100, 1)}% of events`);
  out.push(`          ${n(w.batches)} batches, ${n(w.avgChangedDocsPerBatch, 1)} changed docs/batch, ${n(w.avgEventsPerChangedDoc, 2)} events per changed doc per batch`);
  if (r.meta.rounds) out.push(`          server-bound strategies interleaved in ${r.meta.rounds} rounds (order reversed every other round), each after an unmeasured warm-up`);
  out.push('');
  out.push(table([
    ['', ...phases.map((p) => p.name)],
    row('events/s', (p) => n(p.eventsPerSec)),
    row('Cosmos requests/event (server)', (p) => (p.server ? n(p.server.requestsPerEvent, 3) : '–')),
    row('  reads/event', (p) => (p.server ? n(p.server.readsPerEvent, 3) : '–')),
    row('  write requests/event', (p) => (p.server ? n(p.server.writesPerEvent, 3) : '–')),
    row('  bulk requests/event', (p) => (p.server ? n((p.server.byKind.bulk ?? 0) / p.events, 3) : '–')),
    row('documents written/event', (p) => (p.server ? n(p.server.writeOpsPerEvent, 3) : '–')),
    row('requests per changed doc/batch', (p) => (p.server ? n(p.server.requestsPerChangedDoc, 3) : '–')),
    row('est. RU/event', (p) => (p.server ? n(p.server.ruPerEvent, 2) : '–')),
    row('avg doc written', (p) => (p.server ? `${n(p.server.avgWriteBytes / 1024, 1)} KB` : '–')),
    row('batch latency p50', (p) => `${n(p.latencyP50Ms, 1)} ms`),
    row('batch latency p95', (p) => `${n(p.latencyP95Ms, 1)} ms`),
    row('handler CPU µs/event', (p) => (p.invocationCpuUsPerEvent > 0 ? n(p.invocationCpuUsPerEvent, 1) : '–')),
    row('client process CPU µs/event', (p) => n(p.processCpuUsPerEvent, 1)),
    row(`server process CPU µs/event${r.meta.serverMode === 'child' ? '' : ' (same process)'}`, (p) => (p.server ? n(p.server.serverCpuUsPerEvent, 1) : '–')),
    row('peak RSS, bench process (at start)', (p) => `${mb(p.peakRssBytes)} (${mb(p.rssStartBytes)})`),
    row('applied / stale / dead-lettered', (p) => `${p.tally.applied} / ${p.tally.stale} / ${p.tally.deadLettered}`),
    row('failed invocations', (p) => n(p.tally.failedInvocations)),
  ]));
  if (r.ratios) {
    out.push('');
    out.push(`headline (shipped ÷ per-event): ${r.ratios.eventsPerSec.toFixed(2)}× events/s, ${r.ratios.requestsPerEvent.toFixed(3)}× requests/event, ${r.ratios.ruPerEvent.toFixed(3)}× RU/event, ${r.ratios.p50Latency.toFixed(3)}× p50 batch latency`);
    const c = r.ratiosVsCached;
    if (c) out.push(`headline (shipped ÷ per-event with cached ETag, 16 documents at once): ${c.eventsPerSec.toFixed(2)}× events/s, ${c.requestsPerEvent.toFixed(3)}× requests/event, ${c.ruPerEvent.toFixed(3)}× RU/event, ${c.p50Latency.toFixed(3)}× p50 batch latency`);
  }
  const cpu = (p?: PhaseFigures) => (p?.server ? p.processCpuUsPerEvent + p.server.serverCpuUsPerEvent : NaN);
  if (r.meta.serverMode === 'child' && r.phases.shipped?.server && r.phases.perEvent?.server) {
    const s = cpu(r.phases.shipped);
    const p = cpu(r.phases.perEvent);
    out.push(`CPU per event, client + server (what bounds events/s on loopback): shipped ${n(s, 0)} µs, per-event ${n(p, 0)} µs → ${(p / s).toFixed(2)}×`);
  }
  if (r.memory?.length) {
    out.push('');
    out.push(table([
      ['memory run (fresh process)', 'devices', 'events', 'RSS start', 'RSS at 25/50/75/100%', 'peak RSS', 'heap after GC at 25/50/75/100%', 'cache docs', 'cache (serialized)', 'reads/write'],
      ...r.memory.map((m) => [
        'syncTwins (shipped)', n(m.devices), n(m.events), mb(m.rssStartBytes), m.rssCheckpoints.map((b) => n(b / 1048576)).join('/') + ' MB', mb(m.peakRssBytes),
        m.heapCheckpoints.map((b) => n(b / 1048576)).join('/') + ' MB', n(m.cacheEntries), `${mb(m.cacheBytes)} of ${mb(m.cacheMaxBytes)}`, n(m.reads / Math.max(1, m.writes), 3),
      ]),
    ]));
  }
  out.push('');
  if (r.bundle) {
    out.push(r.bundle.error ? `bundle: failed: ${r.bundle.error}` : `bundle: ${n(r.bundle.bundleBytes)} B as built by ${r.bundle.builder} (minified ${n(r.bundle.minifiedBytes)} B, not minified ${n(r.bundle.unminifiedBytes)} B); largest (not minified): ${r.bundle.topPackages.slice(0, 5).map((p) => `${p.name} ${n(p.bytes / 1024)} KB`).join(', ')}`);
  }
  if (r.moduleLoad) {
    out.push(r.moduleLoad.error ? `module load: failed: ${r.moduleLoad.error}` : `module load (fresh node, require of the bundle): median ${n(r.moduleLoad.medianMs, 1)} ms of ${r.moduleLoad.runs.map((x) => x.toFixed(0)).join('/')} ms; registered: ${r.moduleLoad.registered.join(', ') || 'nothing'}`);
  }
  if (r.synth) out.push(r.synth.ms !== undefined ? `synth (npm run synth, spawn to exit): ${n(r.synth.ms / 1000, 2)} s · ${r.synth.output?.split('\n').pop()}` : `synth: not available (${r.synth.error})`);
  else out.push('synth: skipped');
  out.push('');
  const d = { devices: 1_000, events: 50_000, partitions: 4, batchSize: 100, burst: 5 };
  const isDefault = (Object.keys(d) as (keyof typeof d)[]).every((k) => w[k] === d[k]) && !r.meta.rttMs;
  if (!isDefault) out.push('note: the targets are defined on the default workload (no added RTT); this run is not it.');
  out.push(table([['target', 'limit', 'measured', 'result', 'margin'], ...r.targets.map((t) => [t.name, t.target, t.measured, t.pass === null ? 'N/A' : t.pass ? 'PASS' : 'MISS', t.margin])]));
  out.push('');
  out.push(`RU estimate: ${r.meta.ruFormula}`);
  out.push(`took ${n((r.meta.durationMs ?? 0) / 1000, 1)} s`);
  return out.join('\n');
}
