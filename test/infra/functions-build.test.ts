import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFunctionsPackage, BUNDLE_PATH, DEFAULT_FUNCTIONS_ENTRY, MAIN_PATH } from '../../functions/build';
import { writeFile } from 'node:fs/promises';
import { cleanup, FIXTURE_ENTRY, single, synthFixture, tempDir } from './helpers';

const LOADER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'load-package.cjs');

/** Dummy values for every app setting, so module-scope client construction finds its configuration. */
export const DUMMY_APP_SETTINGS: Record<string, string> = {
  AZURE_CLIENT_ID: '00000000-0000-0000-0000-000000000000',
  COSMOS_ENDPOINT: 'https://localhost:8081/',
  COSMOS_DATABASE: 'twin-replica',
  COSMOS_CONTAINER: 'twins',
  IOTHUB_EVENTS__fullyQualifiedNamespace: 'example.servicebus.windows.net',
  IOTHUB_EVENTS__credential: 'managedidentity',
  IOTHUB_EVENTS__clientId: '00000000-0000-0000-0000-000000000000',
  EVENTHUB_NAME: 'iothub-events',
  EVENTHUB_CONSUMER_GROUP: 'sync-twins',
  DEADLETTER_BLOB_ENDPOINT: 'https://example.blob.core.windows.net',
  DEADLETTER_CONTAINER: 'deadletters',
  REPORTS_CONTAINER: 'reports',
  TOMBSTONE_TTL_SECONDS: '172800',
  IOTHUB_HOSTNAME: 'example.azure-devices.net',
  VERIFY_SCHEDULE: '0 30 3 * * *',
};

export function loadPackage(dir: string, withoutCore = false) {
  const out = execFileSync(process.execPath, [LOADER, dir, ...(withoutCore ? ['--without-core'] : [])], {
    env: { PATH: process.env.PATH, ...DUMMY_APP_SETTINGS },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return JSON.parse(out) as { registered: { name: string; bindings: Record<string, any> }[]; warnings: string[]; capabilities?: Record<string, string> };
}

afterAll(cleanup);

describe('buildFunctionsPackage', () => {
  let dir: string;
  let bundleBytes: number;
  beforeAll(async () => {
    ({ dir, bundleBytes } = await buildFunctionsPackage({ outDir: path.join(await tempDir(), 'pkg'), entry: FIXTURE_ENTRY }));
  });

  it('defaults to functions/src/index.ts as the entry', () => {
    expect(path.relative(path.resolve('functions'), DEFAULT_FUNCTIONS_ENTRY)).toBe(path.join('src', 'index.ts'));
  });

  it('writes host.json with extension bundle [4.*, 5.0.0) and the default Event Hubs batch settings', async () => {
    const host = JSON.parse(await readFile(path.join(dir, 'host.json'), 'utf8'));
    expect(host.version).toBe('2.0');
    expect(host.extensionBundle).toEqual({ id: 'Microsoft.Azure.Functions.ExtensionBundle', version: '[4.*, 5.0.0)' });
    expect(host.extensions.eventHubs).toEqual({ maxEventBatchSize: 100, prefetchCount: 300, batchCheckpointFrequency: 1 });
    expect(host.logging.applicationInsights.samplingSettings.excludedTypes.split(';')).toEqual(
      expect.arrayContaining(['Request', 'Trace']),
    );
  });

  it('writes a package.json whose main loads the bundle, and reports the bundle\'s size', async () => {
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
    expect(pkg.main).toBe(MAIN_PATH);
    expect(await readFile(path.join(dir, MAIN_PATH), 'utf8')).toContain("require('./index.cjs')");
    expect(pkg.dependencies).toBeUndefined();
    expect((await stat(path.join(dir, BUNDLE_PATH))).size).toBe(bundleBytes);
    expect(bundleBytes).toBeGreaterThan(10_000);
  });

  it('bundles @azure/functions but leaves @azure/functions-core to the host', async () => {
    const bundle = await readFile(path.join(dir, BUNDLE_PATH), 'utf8');
    expect(bundle).toContain('require("@azure/functions-core")');
    expect(bundle).not.toMatch(/from ["']@azure\/functions["']|require\(["']@azure\/functions["']\)/);
    expect(bundle).not.toMatch(/^import /m);
  });

  it('loading main with the host-provided core registers every function', () => {
    const { registered } = loadPackage(dir);
    expect(registered.map((r) => r.name).sort()).toEqual(['syncTwins', 'verifyRepair']);
    const sync = registered.find((r) => r.name === 'syncTwins')!;
    const trigger = Object.values(sync.bindings).find((b: any) => b.type === 'eventHubTrigger');
    expect(trigger).toMatchObject({ connection: 'IOTHUB_EVENTS', cardinality: 'many' });
  });

  it('without the host core nothing registers (why it must stay external)', () => {
    const { registered, warnings } = loadPackage(dir, true);
    expect(registered).toEqual([]);
    expect(warnings.join('\n')).toContain('Skipping call to register function "syncTwins"');
  });

  it('ships a linked source map that the runtime applies: a stack trace names the TypeScript line, with no Node flag', async () => {
    const src = path.join(await tempDir(), 'explode.ts');
    await writeFile(src, ['export function explode(): never {', "  throw new Error('boom from the bundle');", '}', 'if (process.env.EXPLODE) explode();', ''].join('\n'));
    const built = await buildFunctionsPackage({ outDir: path.join(await tempDir(), 'pkg'), entry: src });
    expect(await readFile(path.join(built.dir, BUNDLE_PATH), 'utf8')).toMatch(/\/\/# sourceMappingURL=index\.cjs\.map\s*$/);
    const map = JSON.parse(await readFile(path.join(built.dir, `${BUNDLE_PATH}.map`), 'utf8'));
    expect(map.sourcesContent).toBeUndefined();
    const stderrOf = (file: string) => {
      try {
        execFileSync(process.execPath, [path.join(built.dir, file)], { env: { PATH: process.env.PATH, EXPLODE: '1' }, encoding: 'utf8', stdio: 'pipe' });
        return '';
      } catch (err) {
        return String((err as { stderr?: string }).stderr);
      }
    };
    expect(stderrOf(MAIN_PATH)).toMatch(/explode\.ts:2:\d+/);
    // The bundle loaded directly (no source maps turned on): only minified positions.
    expect(stderrOf(BUNDLE_PATH)).not.toMatch(/explode\.ts/);
  });

  it('is reproducible: the same sources give the same bytes', async () => {
    const again = await buildFunctionsPackage({ outDir: path.join(await tempDir(), 'pkg'), entry: FIXTURE_ENTRY });
    expect(await readFile(path.join(again.dir, BUNDLE_PATH))).toEqual(await readFile(path.join(dir, BUNDLE_PATH)));
  });

  it('names the missing entry when there is none', async () => {
    await expect(buildFunctionsPackage({ outDir: path.join(await tempDir(), 'pkg'), entry: '/nonexistent/index.ts' })).rejects.toThrow(
      'Functions entry /nonexistent/index.ts does not exist',
    );
  });
});

describe('the real functions entry (functions/src/index.ts)', () => {
  let registered: { name: string; bindings: Record<string, any> }[];
  let capabilities: Record<string, string> | undefined;
  let appSettings: Record<string, string>;
  beforeAll(async () => {
    const { dir } = await buildFunctionsPackage({ outDir: path.join(await tempDir(), 'pkg') });
    ({ registered, capabilities } = loadPackage(dir));
    appSettings = single((await synthFixture()).stacks.dev, 'azurerm_function_app_flex_consumption').app_settings;
  });

  it('asks the host for empty message entries: the capability reaches the worker through @azure/functions app.setup', () => {
    // The worker merges this into its init response (getWorkerCapabilities); the host keeps empty bodies in
    // place when it is set (GrpcMessageConversionExtensions.ToRpcStringArray).
    expect(capabilities).toMatchObject({ TypedDataCollection: 'true', IncludeEmptyEntriesInMessagePayload: 'true' });
  });

  it('registers syncTwins on the IOTHUB_EVENTS connection, the configured hub and consumer group', () => {
    const sync = registered.find((r) => r.name === 'syncTwins');
    expect(sync, 'syncTwins is registered').toBeDefined();
    const trigger = Object.values(sync!.bindings).find((b: any) => b.type === 'eventHubTrigger');
    expect(trigger).toMatchObject({
      connection: 'IOTHUB_EVENTS',
      eventHubName: '%EVENTHUB_NAME%',
      consumerGroup: '%EVENTHUB_CONSUMER_GROUP%',
      cardinality: 'many',
    });
  });

  it('every connection and %setting% its bindings name is an app setting the stack sets', () => {
    const names = Object.keys(appSettings);
    for (const fn of registered) {
      for (const binding of Object.values(fn.bindings)) {
        for (const value of Object.values(binding as Record<string, unknown>)) {
          for (const [, setting] of String(value).matchAll(/%([A-Za-z0-9_]+)%/g)) {
            expect(names, `${fn.name} reads %${setting}%`).toContain(setting);
          }
        }
        const connection = (binding as { connection?: string }).connection;
        if (connection) {
          expect(names, `${fn.name} connection ${connection}`).toEqual(
            expect.arrayContaining([`${connection}__fullyQualifiedNamespace`, `${connection}__credential`, `${connection}__clientId`]),
          );
        }
      }
    }
  });
});
