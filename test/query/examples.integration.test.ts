import { runProcess } from '../../testkit/process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient } from '@azure/storage-blob';
import { InvocationContext } from '@azure/functions';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaReader } from '../../functions/src/client';
import { syncTwins } from '../../functions/src/functions/syncTwins';
import { parseQuery } from '../../functions/src/query';
import { SimulatedHub, type Emitted } from '../../local/hub';
import { exampleQueryCommands } from '../../local/queryExample';
import { toTrigger } from '../../testkit/events';
import { CONTAINER, DATABASE, LOCAL_COSMOS_KEY, startAzurite, startLocalCosmos, type LocalBlob, type LocalCosmos } from '../../testkit/servers';
import { evaluate } from '../../testkit/twinQueryOracle';
import { buildProgram } from '../../tools/cli';
import { MICROSOFT_EXAMPLES } from '../fixtures/query/microsoftExamples';

/**
 * Every example query on Microsoft's two twin-query pages, run through the CLI (`twin-replica query`)
 * against a replica that the real `syncTwins` handler filled from the simulated hub's events (devices,
 * modules, connection changes, deletions, a re-created device, a deleted module), and checked against an
 * independent evaluation of the same query over the hub's own twins (testkit/twinQueryOracle.ts).
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let cosmos: LocalCosmos;
let blob: LocalBlob;
let hub: SimulatedHub;
let settings: Record<string, string>;

async function deliver(events: Emitted[]): Promise<void> {
  let seq = 1;
  for (let i = 0; i < events.length; i += 50) {
    const batch = events.slice(i, i + 50).map((e) => e.event);
    const { messages, triggerMetadata } = toTrigger(batch, { partitionId: '0', firstSequence: seq });
    seq += batch.length;
    const context = new InvocationContext({ functionName: 'syncTwins', invocationId: `q-${seq}`, triggerMetadata, retryContext: { retryCount: 0, maxRetryCount: 5 }, logHandler: () => {} });
    const summary = await syncTwins(messages, context);
    expect(summary).toMatchObject({ deadLettered: 0, retrying: 0 });
  }
}

function fleet(h: SimulatedHub): void {
  const regions = ['US', 'EU', 'US', 'APAC', undefined];
  const statuses = ['Success', 'Pending', 'Error', 'Success', undefined];
  const connectivity = ['wired', 'wifi', { type: 'cellular' }, 'wifi', undefined, 'satellite'];
  for (let i = 0; i < 24; i++) {
    const key = { deviceId: `dev-${String(i).padStart(2, '0')}` };
    const region = regions[i % regions.length];
    h.create(key, region ? { location: { region, plant: `plant-${i % 3}` } } : { other: true });
    const reported: Record<string, unknown> = { telemetryConfig: { sendFrequencyInSecs: [30, 60, 300][i % 3], ...(statuses[i % 5] ? { status: statuses[i % 5] } : {}) } };
    const c = connectivity[i % connectivity.length];
    if (c !== undefined) reported.connectivity = c;
    reported.config = i % 4 === 0 ? 'x' : 'y';
    h.update(key, { reported: reported as never, desired: { config: i % 3 === 0 ? 'x' : 'y' } });
    if (i % 7 === 0) h.update(key, { tags: { group: { name: 'some_value' } } });
    if (i % 2 === 0) h.setConnection(key, true);
  }
  for (const deviceId of ['device1', 'device2', 'device3']) {
    h.create({ deviceId }, { location: { region: 'US' } });
    for (const [moduleId, status] of [['scanner', 'scanning'], ['idle', 'idle']]) {
      h.create({ deviceId, moduleId }, {});
      h.update({ deviceId, moduleId }, { reported: { status } });
    }
  }
  // Deletions (never shown), a deleted module whose device stays, a re-created device with new content.
  h.delete({ deviceId: 'dev-00' });
  h.delete({ deviceId: 'dev-05' });
  h.delete({ deviceId: 'device2', moduleId: 'scanner' });
  h.delete({ deviceId: 'dev-10' });
  h.create({ deviceId: 'dev-10' }, { location: { region: 'EU' } });
  h.update({ deviceId: 'dev-10' }, { reported: { connectivity: 'wired', telemetryConfig: { status: 'Pending', sendFrequencyInSecs: 90 } } });
  h.flush();
}

function hubTwins() {
  const rendered = hub.twins().map((t) => hub.renderTwin(t) as Record<string, unknown>);
  return { devices: rendered.filter((t) => t.moduleId === undefined), modules: rendered.filter((t) => t.moduleId !== undefined) };
}

/** Twins compared on what the replica keeps exactly: identity, version, tags, desired and reported data (metadata aside). */
function comparable(t: Record<string, unknown>) {
  const section = (s: Record<string, unknown> | undefined) => Object.fromEntries(Object.entries(s ?? {}).filter(([k]) => k !== '$metadata'));
  const p = (t.properties ?? {}) as Record<string, Record<string, unknown>>;
  return { deviceId: t.deviceId, moduleId: t.moduleId, version: t.version, status: t.status, connectionState: t.connectionState, tags: t.tags, desired: section(p.desired), reported: section(p.reported) };
}

/** JSON with object keys in order: rows compared as multisets, whatever the key order. */
const stable = (v: unknown): string => (Array.isArray(v) ? `[${v.map(stable).join(',')}]` : v !== null && typeof v === 'object' ? `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(',')}}` : JSON.stringify(v));
const sorted = (rows: unknown[]) => rows.map(stable).sort();

async function cliInProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  let code = 0;
  const program = buildProgram({ out: (t) => (out += t + '\n'), err: (t) => (err += t + '\n'), env: settings, progress: false }, (c) => (code = c));
  try {
    await program.parseAsync(['node', 'twin-replica', ...args]);
  } catch (e) {
    err += (e as Error).message;
    code = 1;
  }
  return { code, out, err };
}

beforeAll(async () => {
  [cosmos, blob] = await Promise.all([startLocalCosmos(), startAzurite()]);
  await BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters').createIfNotExists();
  settings = { COSMOS_ENDPOINT: cosmos.endpoint, COSMOS_DATABASE: DATABASE, COSMOS_CONTAINER: CONTAINER, COSMOS_KEY: LOCAL_COSMOS_KEY };
  Object.assign(process.env, settings, { DEADLETTER_CONNECTION_STRING: blob.connectionString, DEADLETTER_CONTAINER: 'deadletters', TOMBSTONE_TTL_SECONDS: '691200' });
  const events: Emitted[] = [];
  hub = new SimulatedHub((e) => events.push(e), { seed: 11 });
  fleet(hub);
  await deliver(events);
});

afterAll(async () => {
  await Promise.all([cosmos?.close(), blob?.close()]);
});

describe('Microsoft\'s example queries, through the CLI, against a replica filled by syncTwins', () => {
  it('the replica holds tombstones the queries must not show', async () => {
    const { resources } = await cosmos.container.items.query('SELECT VALUE COUNT(1) FROM c WHERE c.deleted = true').fetchAll();
    expect(resources[0]).toBeGreaterThanOrEqual(3);
  });

  for (const example of MICROSOFT_EXAMPLES) {
    it(`${example.section}: ${example.query.replace(/\s+/g, ' ')}`, async () => {
      const run = await cliInProcess(['--json', 'query', example.query]);
      if (example.expect) {
        expect(run.code).toBe(1);
        expect(run.err).toContain(example.expect.refused);
        return;
      }
      expect(run.err).toBe('');
      const rows = JSON.parse(run.out) as Record<string, unknown>[];
      const expected = evaluate(parseQuery(example.query), hubTwins());
      const ast = parseQuery(example.query);
      if (!Array.isArray(ast.select)) {
        expect(sorted(rows.map(comparable))).toEqual(sorted(expected.map(comparable)));
        for (const r of rows) for (const k of ['replica', 'id', 'deleted', 'ttl', 'connectionStateSequenceNumber', '_etag', '_rid']) expect(r).not.toHaveProperty(k);
      } else {
        expect(sorted(rows)).toEqual(sorted(expected));
      }
      // Not vacuous: every example except the ones that select nothing in this fleet returns rows.
      expect(expected.length).toBeGreaterThan(0);
    });
  }

  it('the installed command line refuses what it does not support (exit 1, message on stderr) and answers the rest', async () => {
    const run = (args: string[]) => runProcess(process.execPath, [path.join(root, 'bin', 'twin-replica.mjs'), ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...settings } });
    const refused = await run(['query', 'SELECT AVG(version) AS v FROM devices']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/line 1, column 8: AVG\(\) is not supported yet/);
    expect(refused.stdout).toBe('');
    const ok = await run(['--json', 'query', "SELECT deviceId FROM devices.modules WHERE properties.reported.status = 'scanning'"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).map((r: { deviceId: string }) => r.deviceId).sort()).toEqual(['device1', 'device3']);
  });

  it('the commands `npm run local -- --keep` prints run as pasted into a shell', async () => {
    const lines = exampleQueryCommands({ endpoint: cosmos.endpoint, key: LOCAL_COSMOS_KEY, database: DATABASE, container: CONTAINER });
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      const result = await runProcess('sh', ['-c', line], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
      expect(result.stderr, line).toBe('');
      expect(result.code, line).toBe(0);
      expect(Array.isArray(JSON.parse(result.stdout))).toBe(true);
    }
  });

  it('--explain prints the Cosmos SQL and parameters and sends nothing; --page-size and --continuation page through', async () => {
    const before = cosmos.requests.total;
    const explained = await cliInProcess(['query', '--explain', "SELECT * FROM devices WHERE tags.location.region = 'US'"]);
    expect(JSON.parse(explained.out)).toEqual({
      plan: 'twins',
      query: 'SELECT * FROM c WHERE NOT IS_DEFINED(c.deleted) AND NOT IS_DEFINED(c.moduleId) AND c.tags.location.region = @p0',
      parameters: [{ name: '@p0', value: 'US' }],
    });
    expect(cosmos.requests.total).toBe(before);
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const page = await cliInProcess(['--json', 'query', 'SELECT deviceId FROM devices', '--page-size', '10', ...(token ? ['--continuation', token] : [])]);
      expect(page.code).toBe(0);
      const body = JSON.parse(page.out) as { items: { deviceId: string }[]; continuationToken?: string };
      expect(body.items.length).toBeLessThanOrEqual(10);
      ids.push(...body.items.map((r) => r.deviceId));
      token = body.continuationToken;
    } while (token);
    expect(ids.sort()).toEqual(hubTwins().devices.map((t) => t.deviceId as string).sort());
  });

  it('random queries: the replica answers as the oracle over the hub\'s twins (property)', async () => {
    // Paths with the literals of their own type: the local server and Cosmos DB then agree on every
    // comparison (they differ only on comparisons across types under NOT), so any difference is ours.
    const typed: [string, fc.Arbitrary<string>][] = [
      ['tags.location.region', fc.constantFrom("'US'", "'EU'", "'APAC'", "'us'")],
      ['properties.reported.telemetryConfig.status', fc.constantFrom("'Success'", "'Pending'", "'Error'")],
      ['properties.reported.telemetryConfig.sendFrequencyInSecs', fc.constantFrom('30', '60', '90', '300', '0x3C', '-1')],
      ['connectionState', fc.constantFrom("'Connected'", "'Disconnected'")],
      ['Version', fc.constantFrom('2', '3', '4', '5')],
      ['deviceId', fc.constantFrom("'dev-03'", "'device1'", "'dev-10'", "'dev-00'")],
    ];
    const comparison = fc.oneof(
      ...typed.map(([p, lit]) => fc.tuple(fc.constantFrom('=', '!=', '<>', '<', '<=', '>', '>='), lit).map(([op, l]) => `${p} ${op} ${l}`)),
      ...typed.map(([p, lit]) => fc.tuple(fc.constantFrom('IN', 'NIN'), fc.array(lit, { minLength: 1, maxLength: 3 })).map(([op, ls]) => `${p} ${op} [${ls.join(', ')}]`)),
      fc.constantFrom('is_defined(properties.reported.connectivity)', 'IS_DEFINED(tags.group)', "STARTSWITH(deviceId, 'dev-1')", "ENDSWITH(devices.deviceId, '3')",
        'IS_STRING(properties.reported.connectivity)', 'IS_OBJECT(properties.reported.connectivity)', 'properties.desired.config = properties.reported.config'),
    );
    const condition: fc.Arbitrary<string> = fc.letrec<{ c: string }>((tie) => ({
      c: fc.oneof({ depthSize: 'small', withCrossShrink: true }, comparison, fc.tuple(tie('c'), fc.constantFrom('AND', 'OR'), tie('c')).map(([a, op, b]) => `(${a} ${op} ${b})`), tie('c').map((c) => `NOT ${c}`)),
    })).c;
    const query = fc.oneof(
      condition.map((c) => `SELECT * FROM devices WHERE ${c}`),
      condition.map((c) => `SELECT deviceId, tags.location.region AS r FROM devices WHERE ${c}`),
      condition.map((c) => `SELECT COUNT() AS n FROM devices WHERE ${c}`),
      condition.map((c) => `SELECT tags.location.region AS region, COUNT() AS n FROM devices WHERE ${c} GROUP BY tags.location.region`),
    );
    const reader = new ReplicaReader({ container: cosmos.container });
    const twins = hubTwins();
    await fc.assert(
      fc.asyncProperty(query, async (text) => {
        const { items } = await reader.query(text);
        const expected = evaluate(parseQuery(text), twins);
        const shape = (rows: Record<string, unknown>[]) => (text.startsWith('SELECT *') ? sorted(rows.map(comparable)) : sorted(rows));
        expect(shape(items as Record<string, unknown>[]), text).toEqual(shape(expected));
      }),
      { numRuns: 60, endOnFailure: true },
    );
  }, 180_000);
});
