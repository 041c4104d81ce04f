/**
 * `npm run synth:measure [-- --runs N]`: time and peak memory of a cold synth of every stack,
 * the way `npm run synth` runs it (fresh process: tsx startup, imports, esbuild bundle,
 * two stacks). Each run is a separate process that reports its own phases and peak RSS.
 * Goal: at most 5 s.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const GOAL_MS = 5000;
const self = fileURLToPath(import.meta.url);

interface RunReport {
  importMs: number;
  synthMs: number;
  totalMs: number;
  peakRssMiB: number;
  stacks: string[];
  bundleKiB: number;
}

async function measureOnce(): Promise<RunReport> {
  process.env.CHECKPOINT_DISABLE = '1';
  const importStart = performance.now();
  const { synthesize } = await import('./app.js');
  const importEnd = performance.now();
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'twin-replica-measure-'));
  try {
    const result = await synthesize({ outdir: path.join(outdir, 'cdktf.out') });
    const end = performance.now();
    return {
      importMs: Math.round(importEnd - importStart),
      synthMs: Math.round(end - importEnd),
      // performance.now() counts from process start: includes node + tsx startup.
      totalMs: Math.round(end),
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      stacks: result.stacks,
      bundleKiB: Math.round((result.bundleBytes ?? 0) / 1024),
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

function parseRuns(argv: string[]): number {
  const i = argv.indexOf('--runs');
  if (i === -1) return 3;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error(`--runs must be an integer from 1 to 20, got ${JSON.stringify(argv[i + 1])}`);
  return n;
}

if (process.argv.includes('--once')) {
  process.stdout.write(JSON.stringify(await measureOnce()));
} else {
  const runs = parseRuns(process.argv.slice(2));
  const reports: RunReport[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const child = spawnSync(process.execPath, ['--import', 'tsx', self, '--once'], { encoding: 'utf8', env: process.env });
    const wallMs = Math.round(performance.now() - started);
    if (child.status !== 0) {
      console.error(child.stderr || child.stdout);
      process.exit(1);
    }
    const report = JSON.parse(child.stdout) as RunReport;
    reports.push(report);
    console.log(
      `run ${i + 1}: ${report.stacks.length} stacks (${report.stacks.join(', ')}) in ${report.totalMs} ms ` +
        `(imports ${report.importMs} ms, bundle+synth ${report.synthMs} ms; process wall ${wallMs} ms), ` +
        `peak RSS ${report.peakRssMiB} MiB, bundle ${report.bundleKiB} KiB`,
    );
  }
  const sorted = reports.map((r) => r.totalMs).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const peak = Math.max(...reports.map((r) => r.peakRssMiB));
  console.log(`median ${median} ms, worst ${sorted.at(-1)} ms, peak RSS ${peak} MiB (goal <= ${GOAL_MS} ms): ${sorted.at(-1)! <= GOAL_MS ? 'met' : 'MISSED'}`);
  if (sorted.at(-1)! > GOAL_MS) process.exitCode = 1;
}
