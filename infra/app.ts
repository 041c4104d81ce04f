import { App } from 'cdktf';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFunctionsPackage } from '../functions/build.js';
import { environments as defaultEnvironments, InvalidConfigError, stateSeparationProblems, validateConfig, type EnvironmentConfig } from './config.js';
import { backendKindFromEnv, type BackendKind } from './backend.js';
import { TwinReplicaStack } from './stack.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface SynthOptions {
  /** @default '<project>/cdktf.out' */
  readonly outdir?: string;
  /** @default every environment in config.ts */
  readonly environments?: readonly EnvironmentConfig[];
  /** A prebuilt package folder; when omitted the functions are bundled first. */
  readonly functionsPackageDir?: string;
  /** @default from TWIN_REPLICA_BACKEND, else 'azurerm' */
  readonly backend?: BackendKind;
}

export interface SynthResult {
  readonly outdir: string;
  readonly stacks: string[];
  readonly bundleBytes?: number;
}

/**
 * Builds the app: validates every configuration first (so one bad environment stops the
 * synth before anything is written), bundles the functions once, then one stack per
 * environment, and writes cdktf.out/stacks/<env>/cdk.tf.json.
 */
export async function synthesize(opts: SynthOptions = {}): Promise<SynthResult> {
  const envs = opts.environments ?? defaultEnvironments;
  envs.forEach(validateConfig);
  const names = envs.map((e) => e.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`Environment ${JSON.stringify(dup)} is defined twice`);
  const shared = stateSeparationProblems(envs);
  if (shared.length > 0) throw new InvalidConfigError(names.join(', '), shared);
  const backend = opts.backend ?? backendKindFromEnv();

  let packageDir = opts.functionsPackageDir;
  let bundleBytes: number | undefined;
  if (!packageDir) {
    const built = await buildFunctionsPackage({ outDir: path.join(PROJECT_ROOT, 'dist', 'functions-package') });
    packageDir = built.dir;
    bundleBytes = built.bundleBytes;
  }

  const outdir = opts.outdir ?? path.join(PROJECT_ROOT, 'cdktf.out');
  const app = new App({ outdir, skipValidation: false });
  for (const config of envs) {
    new TwinReplicaStack(app, { config, functionsPackageDir: packageDir, backend });
  }
  app.synth();
  return { outdir, stacks: names, bundleBytes };
}
