/**
 * Figures about what ships rather than how it runs: the bundle's size, its cold module-load time in a
 * fresh `node` process, and how long `npm run synth` takes for all stacks.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PROJECT_ROOT = path.resolve(here, '..');

export interface BundleFigures {
  /** 'functions/build.ts' when the project's builder was used, else the equivalent esbuild call. */
  builder: string;
  dir: string;
  bundleFile: string;
  /** As the infra builds it (buildFunctionsPackage's defaults). */
  bundleBytes: number;
  /** The same entry and options, minified and not, for comparison. */
  minifiedBytes: number;
  unminifiedBytes: number;
  /** Largest contributors to the bundle (not minified), bytes in output. */
  topPackages: { name: string; bytes: number }[];
}

export async function buildBundle(outRoot: string): Promise<BundleFigures> {
  const { build } = await import('esbuild');
  const entry = path.join(PROJECT_ROOT, 'functions', 'src', 'index.ts');
  const common = { entryPoints: [entry], bundle: true, platform: 'node' as const, target: 'node22', format: 'cjs' as const, external: ['@azure/functions-core'], legalComments: 'none' as const, logLevel: 'warning' as const };
  let builder: string;
  let dir: string;
  let bundleBytes: number;
  if (existsSync(path.join(PROJECT_ROOT, 'functions', 'build.ts'))) {
    const { buildFunctionsPackage } = await import('../functions/build');
    const built = await buildFunctionsPackage({ outDir: path.join(outRoot, 'functions-package') });
    builder = 'functions/build.ts';
    dir = built.dir;
    bundleBytes = built.bundleBytes;
  } else {
    dir = path.join(outRoot, 'functions-package');
    const r = await build({ ...common, outfile: path.join(dir, 'dist', 'index.cjs'), metafile: true });
    builder = 'esbuild (equivalent of functions/build.ts)';
    bundleBytes = Object.values(r.metafile.outputs)[0].bytes;
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ main: 'dist/index.cjs' }));
  }
  // Attribution and the minified size, from the same entry and options.
  const meta = await build({ ...common, outfile: path.join(outRoot, 'meta', 'index.cjs'), write: false, metafile: true });
  const byPackage = new Map<string, number>();
  for (const [file, v] of Object.entries(Object.values(meta.metafile.outputs)[0].inputs)) {
    const m = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(file);
    const name = m ? m[1] : 'functions/src (own code)';
    byPackage.set(name, (byPackage.get(name) ?? 0) + v.bytesInOutput);
  }
  const minified = await build({ ...common, outfile: path.join(outRoot, 'meta', 'index.min.cjs'), write: false, minify: true, metafile: true });
  return {
    builder,
    dir,
    bundleFile: path.join(dir, 'dist', 'index.cjs'),
    bundleBytes,
    minifiedBytes: Object.values(minified.metafile.outputs)[0].bytes,
    unminifiedBytes: Object.values(meta.metafile.outputs)[0].bytes,
    topPackages: [...byPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([name, bytes]) => ({ name, bytes })),
  };
}

/** A stand-in for the host's @azure/functions-core, so the bundle registers its functions as on the host. */
const CORE_STUB = `'use strict';
const registered = [];
module.exports = {
  registered,
  setProgrammingModel() {},
  getProgrammingModel() { return undefined; },
  registerFunction(metadata) { registered.push(metadata && metadata.name); return { dispose() {} }; },
  registerHook() { return { dispose() {} }; },
  log() {},
  Disposable: class { constructor(cb) { this.cb = cb; } dispose() { if (this.cb) this.cb(); } },
};
`;

export interface LoadFigures {
  runs: number[];
  medianMs: number;
  /** Functions the bundle registered with the (stub) host API: proves the external functions-core resolves. */
  registered: string[];
}

/** Cold require of the bundle in fresh node processes; the time is measured inside the process around require(). */
export async function measureModuleLoad(bundleDir: string, runs = 5): Promise<LoadFigures> {
  const stubDir = path.join(bundleDir, 'node_modules', '@azure', 'functions-core');
  await mkdir(stubDir, { recursive: true });
  await writeFile(path.join(stubDir, 'package.json'), JSON.stringify({ name: '@azure/functions-core', version: '0.0.0-bench', main: 'index.js' }));
  await writeFile(path.join(stubDir, 'index.js'), CORE_STUB);
  const script = `const t=performance.now();require(${JSON.stringify(path.join(bundleDir, 'dist', 'index.cjs'))});const ms=performance.now()-t;` +
    `console.log(JSON.stringify({ms,registered:require('@azure/functions-core').registered}))`;
  const times: number[] = [];
  let registered: string[] = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(process.execPath, ['-e', script], { cwd: bundleDir, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) throw new Error(`loading the bundle failed: ${r.stderr || r.stdout}`);
    const parsed = JSON.parse(line) as { ms: number; registered: string[] };
    times.push(parsed.ms);
    registered = parsed.registered;
  }
  return { runs: times, medianMs: median(times), registered };
}

export interface SynthFigures {
  available: boolean;
  ms?: number;
  /** What infra/main.ts printed (its own timing and the stacks it wrote). */
  output?: string;
  error?: string;
}

/** `npm run synth` in a child process, timed from spawn to exit (includes tsx start-up and the bundle build). */
export async function measureSynth(): Promise<SynthFigures> {
  if (!existsSync(path.join(PROJECT_ROOT, 'infra', 'main.ts'))) return { available: false, error: 'infra/main.ts does not exist' };
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '--silent', 'synth'], { cwd: PROJECT_ROOT, env: { ...process.env, CHECKPOINT_DISABLE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      const ms = performance.now() - started;
      const text = out.split('\n').filter((l) => l.trim() && !l.startsWith('npm warn')).join('\n').slice(-600);
      resolve(code === 0 ? { available: true, ms, output: text } : { available: true, error: `exit ${code}: ${text}` });
    });
  });
}

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank];
}
