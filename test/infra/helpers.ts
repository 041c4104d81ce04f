import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFunctionsPackage } from '../../functions/build';
import { synthesize, type SynthOptions } from '../../infra/app';

process.env.CHECKPOINT_DISABLE = '1';

export const FIXTURE_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'functions-entry.ts');

/** Parsed cdk.tf.json of one stack. */
export interface StackJson {
  terraform: Record<string, any>;
  provider: Record<string, any>;
  data?: Record<string, Record<string, any>>;
  resource: Record<string, Record<string, any>>;
  output?: Record<string, { value: unknown; description?: string; sensitive?: boolean }>;
}

const tempDirs: string[] = [];

export async function tempDir(prefix = 'twin-replica-infra-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/**
 * Removes every temp dir made here. These tests synthesize into their own mkdtemp
 * folders (never cdktf's Testing.app, which leaves /tmp/cdktf.outdir.* behind);
 * cdktfOutdirs() lets a test prove that.
 */
export async function cleanup(): Promise<void> {
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export function cdktfOutdirs(): string[] {
  return readdirSync(os.tmpdir()).filter((e) => e.startsWith('cdktf.outdir.'));
}

export interface Synthesized {
  outdir: string;
  packageDir: string;
  stacks: Record<string, StackJson>;
  raw: Record<string, string>;
}

/** Bundles the fixture entry and synthesizes the app into a temp folder, like `npm run synth`. */
export async function synthFixture(opts: Omit<SynthOptions, 'outdir' | 'functionsPackageDir'> = {}): Promise<Synthesized> {
  const root = await tempDir();
  const pkg = await buildFunctionsPackage({ outDir: path.join(root, 'package'), entry: FIXTURE_ENTRY });
  const outdir = path.join(root, 'cdktf.out');
  const result = await synthesize({ backend: 'azurerm', ...opts, outdir, functionsPackageDir: pkg.dir });
  const stacks: Record<string, StackJson> = {};
  const raw: Record<string, string> = {};
  for (const name of result.stacks) {
    raw[name] = await readFile(path.join(outdir, 'stacks', name, 'cdk.tf.json'), 'utf8');
    stacks[name] = JSON.parse(raw[name]);
  }
  return { outdir, packageDir: pkg.dir, stacks, raw };
}

/** All resources of one Terraform type, as a list of their bodies. */
export function resources(stack: StackJson, type: string): any[] {
  return Object.values(stack.resource[type] ?? {});
}

/** The only resource of a type; fails when there are none or several. */
export function single(stack: StackJson, type: string): any {
  const list = resources(stack, type);
  if (list.length !== 1) throw new Error(`expected exactly one ${type}, found ${list.length}`);
  return list[0];
}

/** The resource of a type whose construct path ends with the given suffix. */
export function byPath(stack: StackJson, type: string, suffix: string): any {
  const found = resources(stack, type).filter((r) => String(r['//']?.metadata?.path ?? '').endsWith(suffix));
  if (found.length !== 1) throw new Error(`expected one ${type} at *${suffix}, found ${found.length}`);
  return found[0];
}

/** The Terraform address (`type.name`) of the resource with the given construct path suffix. */
export function addressOf(stack: StackJson, type: string, suffix: string): string {
  for (const [name, body] of Object.entries(stack.resource[type] ?? {})) {
    if (String(body['//']?.metadata?.path ?? '').endsWith(suffix)) return `${type}.${name}`;
  }
  throw new Error(`no ${type} at *${suffix}`);
}

/** `${type.name.attr}` reference string for a resource found by path suffix. */
export function ref(stack: StackJson, type: string, suffix: string, attr: string): string {
  return `\${${addressOf(stack, type, suffix)}.${attr}}`;
}
