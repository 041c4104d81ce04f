/**
 * Builds the deployable Functions package: one esbuild bundle plus host.json and a
 * package.json whose `main` loads every function. The folder it returns is what the
 * infrastructure zips (TerraformAsset) and ships with `cdktf deploy`.
 *
 * `@azure/functions-core` stays external: the Functions host injects it at run time, and
 * an app that bundles it (or cannot load it) silently registers zero functions.
 */
import { build } from 'esbuild';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FUNCTION_TIMEOUT } from './src/runtime/contracts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The entry that imports every function module (owned by the function code). */
export const DEFAULT_FUNCTIONS_ENTRY = path.join(here, 'src', 'index.ts');

/** Path of the bundle inside the package, with its linked source map beside it (`dist/index.cjs.map`). */
export const BUNDLE_PATH = 'dist/index.cjs';

/** The package's `main`: turns on source-mapped stack traces, then loads the bundle. */
export const MAIN_PATH = 'dist/main.cjs';

/**
 * Stack traces in the original sources without a Node flag. The worker loads `main` with require
 * (azure-functions-nodejs-worker loadScriptFile), so the map applies to the bundle loaded after this
 * call. The alternative, `--enable-source-maps` through the app setting languageWorkers__node__arguments,
 * is honoured by the host (azure-functions-host RpcWorkerConfigFactory.AddArgumentsFromAppSettings) but
 * makes it discard its pre-started placeholder worker on every cold start
 * (WebHostRpcWorkerChannelManager.UsePlaceholderChannel: "Restart worker process if custom
 * languageWorkers:[runtime]:arguments are passed in"), and whether Flex Consumption keeps that setting is
 * not documented. module.setSourceMapsSupport is Node 22.14+; process.setSourceMapsEnabled is the older name.
 */
export const MAIN_SOURCE = [
  "'use strict';",
  '// Written by functions/build.ts: source-mapped stack traces, then the bundle.',
  "const m = require('node:module');",
  'if (typeof m.setSourceMapsSupport === "function") m.setSourceMapsSupport(true); else process.setSourceMapsEnabled(true);',
  "module.exports = require('./index.cjs');",
  '',
].join('\n');

/** Kept at the Functions defaults on purpose (Functions Event Hubs trigger docs: host.json settings): raising the checkpoint frequency breaks target-based scaling. */
export const EVENT_HUBS_HOST_SETTINGS = {
  maxEventBatchSize: 100,
  prefetchCount: 300,
  batchCheckpointFrequency: 1,
} as const;

export const HOST_JSON = {
  version: '2.0',
  // Explicit, above the verifyRepair timer's own deadline (VERIFY_MAX_MINUTES, checked against it).
  functionTimeout: FUNCTION_TIMEOUT,
  extensionBundle: {
    id: 'Microsoft.Azure.Functions.ExtensionBundle',
    version: '[4.*, 5.0.0)',
  },
  extensions: {
    eventHubs: EVENT_HUBS_HOST_SETTINGS,
  },
  logging: {
    applicationInsights: {
      samplingSettings: {
        isEnabled: true,
        // Traces carry the per-invocation "syncTwins summary" lines the dead-letter and lag
        // alerts add up; requests carry the failures alert. Sampling any of them would
        // make those alerts undercount.
        excludedTypes: 'Request;Exception;Trace',
      },
    },
  },
} as const;

export interface BuildFunctionsPackageOptions {
  /** Folder to (re)create; it receives host.json, package.json and dist/index.cjs. */
  outDir: string;
  /**
   * Minified, the bundle stays well under the 2 MB target (see docs/performance.md); the
   * linked source map (dist/index.cjs.map, names and mappings only, no sources) maps its stack traces
   * back to the TypeScript at run time (see MAIN_SOURCE).
   * @default true
   */
  minify?: boolean;
  /** Entry module. @default functions/src/index.ts */
  entry?: string;
}

export async function buildFunctionsPackage(
  opts: BuildFunctionsPackageOptions,
): Promise<{ dir: string; bundleBytes: number }> {
  const dir = path.resolve(opts.outDir);
  const entry = path.resolve(opts.entry ?? DEFAULT_FUNCTIONS_ENTRY);
  try {
    await stat(entry);
  } catch {
    throw new Error(`Functions entry ${entry} does not exist: it must import every function module (syncTwins, verifyRepair)`);
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'dist'), { recursive: true });
  const outfile = path.join(dir, BUNDLE_PATH);
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    external: ['@azure/functions-core'],
    // @azure/storage-blob's dependency @azure/storage-common (ESM build) reads import.meta.url at load
    // time (createRequire for its CRC64 module); a CommonJS bundle has none, so it is the bundle's own URL.
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__bundleUrl' },
    minify: opts.minify ?? true,
    sourcemap: (opts.minify ?? true) ? 'linked' : false,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
    // Deterministic output: no absolute paths of the build machine in the bundle.
    absWorkingDir: path.resolve(here, '..'),
    // An entry outside the project (a test fixture) still resolves the project's packages.
    nodePaths: [path.resolve(here, '..', 'node_modules')],
  });
  await writeFile(path.join(dir, MAIN_PATH), MAIN_SOURCE);
  await writeFile(path.join(dir, 'host.json'), `${JSON.stringify(HOST_JSON, null, 2)}\n`);
  const pkg = {
    name: 'twin-replica-functions',
    version: '0.1.0',
    private: true,
    description: 'Bundled by functions/build.ts; deployed by infra (cdktf deploy).',
    main: MAIN_PATH,
    engines: { node: '>=22' },
  };
  await writeFile(path.join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const { size } = await stat(outfile);
  return { dir, bundleBytes: size };
}
