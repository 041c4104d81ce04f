/**
 * `npm run bench:query`: what the IoT Hub query language costs on the replica. Never a timed test.
 *
 * 1. Translation overhead: parse + translate of each documented example (median of many runs, after a warm-up;
 *    the one-off grammar generation is printed apart).
 * 2. Estimated RU per documented example on a replica of 100,000 twins, next to IoT Hub's throttle. The local
 *    server charges 1 RU for everything, so the charge is modelled, from counts taken on a generated fleet of
 *    100k twins (the oracle evaluates every query over it) and these assumptions:
 *    - every request (a page) costs QUERY_BASE_RU (2.8 RU, bench/ru.ts);
 *    - the index narrows the candidates to the twins matching the most selective top-level AND condition that
 *      the index serves (a comparison, IN, IS_DEFINED or STARTSWITH of an indexed path with constants; the
 *      live-twin and collection predicates are always served); without one, every twin of the collection;
 *    - each candidate costs INDEX_RU_PER_ENTRY for the lookup, and, unless the query is an index-only COUNT,
 *      LOAD_RU_PER_KB per KB of the document loaded to finish the filter and project;
 *    - results come back in pages of up to 1,000 items (SELECT * pages are limited to 4 MB by Cosmos DB).
 *    INDEX_RU_PER_ENTRY and LOAD_RU_PER_KB are assumptions, not published figures: confirm them on an account
 *    by running a query's `--explain` SQL in Data Explorer and reading its request charge (docs/query.md).
 */
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { numberOption } from '../tools/options';
import { parseQuery, resolvePath, translate, type Expr } from '../functions/src/public';
import { REPLICA_INDEXING_POLICY } from '../infra/constructs/cosmos';
import { MICROSOFT_EXAMPLES } from '../test/fixtures/query/microsoftExamples';
import { evalExpr, evaluate } from '../testkit/twinQueryOracle';
import { QUERY_BASE_RU } from './ru';

export const INDEX_RU_PER_ENTRY = 0.01;
export const LOAD_RU_PER_KB = 0.1;
const PAGE_ITEMS = 1000;
/** IoT Hub S1/S2: 20 twin queries per minute per unit (Microsoft Learn, IoT Hub quotas and throttling). */
const IOT_HUB_QUERIES_PER_MINUTE_PER_UNIT = 20;

type Twin = Record<string, unknown>;

/** A seeded fleet shaped like Microsoft's sample twin, with modules and tombstones. */
export function fleet(total: number, moduleShare = 0.2, seed = 1): { devices: Twin[]; modules: Twin[]; tombstones: number } {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const devices: Twin[] = [];
  const modules: Twin[] = [];
  const nModules = Math.round(total * moduleShare);
  for (let i = 0; i < total - nModules; i++) {
    const reported: Twin = { telemetryConfig: { sendFrequencyInSecs: pick([30, 60, 300]), status: pick(['Success', 'Success', 'Success', 'Pending', 'Error']) }, $version: 7 };
    const c = pick(['wired', 'wifi', { type: 'cellular' }, undefined]);
    if (c !== undefined) reported.connectivity = c;
    reported.config = pick(['a', 'b']);
    devices.push({
      deviceId: i < 3 ? `device${i + 1}` : `dev-${i}`, etag: 'AAAAAAAAAAc=', status: rnd() < 0.95 ? 'enabled' : 'disabled', connectionState: rnd() < 0.7 ? 'Connected' : 'Disconnected',
      lastActivityTime: '2026-01-01T00:00:00Z', version: 2, tags: { location: { region: pick(['US', 'EU', 'APAC', 'US']), plant: pick(['Redmond43', 'Dublin1']) }, ...(rnd() < 0.01 ? { group: { name: 'some_value' } } : {}) },
      properties: { desired: { telemetryConfig: { sendFrequencyInSecs: 300 }, config: pick(['a', 'b']), $version: 4 }, reported },
    });
  }
  for (let i = 0; i < nModules; i++) {
    modules.push({ deviceId: devices[i % devices.length].deviceId, moduleId: `m${Math.floor(i / devices.length)}`, version: 2, tags: {}, properties: { desired: {}, reported: { status: rnd() < 0.1 ? 'scanning' : 'idle' } } });
  }
  return { devices, modules, tombstones: Math.round(total * 0.05) };
}

function indexedPath(segments: string[]): boolean {
  const key = '/' + segments.join('/');
  if (segments.some((s) => s === '$metadata')) return false;
  return REPLICA_INDEXING_POLICY.includedPath.some((p) => (p.endsWith('/*') ? key.startsWith(p.slice(0, -1)) : key + '/?' === p));
}

function conjuncts(e: Expr | undefined): Expr[] {
  if (!e) return [];
  return e.kind === 'binary' && e.op === 'AND' ? [...conjuncts(e.left), ...conjuncts(e.right)] : [e];
}

const constant = (e: Expr) => e.kind === 'literal' || e.kind === 'array' || (e.kind === 'unary' && e.operand.kind === 'literal');

/** Whether Cosmos DB can serve this condition from the index (a path it indexes against constants). */
function servable(e: Expr, collection: 'devices' | 'devices.modules'): boolean {
  const onIndexedPath = (x: Expr) => x.kind === 'path' && indexedPath(resolvePath(x, collection));
  if (e.kind === 'compare') return (onIndexedPath(e.left) && constant(e.right)) || (onIndexedPath(e.right) && constant(e.left));
  if (e.kind === 'in') return !e.negated && onIndexedPath(e.value);
  if (e.kind === 'call') return ['IS_DEFINED', 'STARTSWITH'].includes(e.name.toUpperCase()) && onIndexedPath(e.args[0]);
  return false;
}

export interface Estimate {
  matched: number;
  candidates: number;
  pages: number;
  ru: number;
  /** Queries the same result takes on IoT Hub (pages of ≤ 100). */
  hubPages: number;
}

export function estimate(text: string, population: ReturnType<typeof fleet>, docKb: number, groupBy: 'client' | 'native' = 'client'): Estimate {
  const ast = parseQuery(text);
  const plan = translate(text);
  const collection = ast.from.name.toLowerCase() === 'devices.modules' ? 'devices.modules' : 'devices';
  const twins = collection === 'devices' ? population.devices : population.modules;
  const matched = ast.where ? twins.filter((t) => evalExpr(t, ast.where!) === true).length : twins.length;
  const served = conjuncts(ast.where).filter((c) => servable(c, collection));
  const candidates = served.length ? Math.min(...served.map((c) => twins.filter((t) => evalExpr(t, c) === true).length)) : twins.length;
  const allServed = served.length === conjuncts(ast.where).length;
  const indexOnly = plan.kind === 'count' && allServed;
  const groups = plan.kind === 'group' ? evaluate(ast, population).length : 0;
  const rows = plan.kind === 'count' ? 1 : plan.kind === 'group' ? (groupBy === 'native' ? groups : matched) : matched;
  const pages = Math.max(1, Math.ceil(rows / PAGE_ITEMS));
  const ru = QUERY_BASE_RU * pages + INDEX_RU_PER_ENTRY * candidates + (indexOnly ? 0 : LOAD_RU_PER_KB * docKb * candidates);
  // IoT Hub pages a query result by at most 100 items (Microsoft Learn, IoT Hub query language: "Query results pagination").
  const hubPages = Math.max(1, Math.ceil((plan.kind === 'group' ? groups : plan.kind === 'count' ? 1 : matched) / 100));
  return { matched, candidates, pages, ru, hubPages };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const program = new Command('bench:query')
    .description('Translation overhead and estimated RU per documented IoT Hub example query on the replica.')
    .option('--twins <n>', 'twins in the modelled replica', numberOption({ integer: true, min: 10, underscores: true }), 100_000)
    .option('--doc-kb <kb>', 'average replica document size in KB ($metadata included)', numberOption({ above: 0 }), 2)
    .option('--ru-per-second <n>', 'throughput the replica queries may use', numberOption({ above: 0 }), 1000)
    .option('--iterations <n>', 'translations timed per example', numberOption({ integer: true, min: 1 }), 2000)
    .parse();
  const o = program.opts<{ twins: number; docKb: number; ruPerSecond: number; iterations: number }>();

  let t0 = performance.now();
  translate('SELECT * FROM devices');
  const firstMs = performance.now() - t0;
  const examples = [...new Map(MICROSOFT_EXAMPLES.filter((e) => !e.expect).map((e) => [e.query.replace(/\s+/g, ' '), e])).values()];
  const population = fleet(o.twins);
  console.log(`IoT Hub query language on the replica: ${o.twins.toLocaleString('en')} twins modelled (${population.devices.length.toLocaleString('en')} devices, ${population.modules.length.toLocaleString('en')} modules, ${population.tombstones.toLocaleString('en')} tombstones), ${o.docKb} KB per document`);
  console.log(`first translation (grammar generated once per process): ${firstMs.toFixed(1)} ms`);
  console.log(`RU model: ${QUERY_BASE_RU} RU per page + ${INDEX_RU_PER_ENTRY} RU per index candidate + ${LOAD_RU_PER_KB} RU per KB loaded (assumed; see docs/query.md)`);
  console.log(`IoT Hub S1/S2 allows ${IOT_HUB_QUERIES_PER_MINUTE_PER_UNIT} twin queries per minute per unit; the replica at ${o.ruPerSecond} RU/s:\n`);
  console.log(['translate µs', 'matched', 'candidates', 'pages', 'est. RU', 'replica queries/min', 'hub queries (time at 1 unit)', 'query'].join('\t'));
  for (const ex of examples) {
    const text = ex.query.replace(/\s+/g, ' ');
    const times: number[] = [];
    for (let i = 0; i < o.iterations; i++) {
      t0 = performance.now();
      translate(text);
      times.push(performance.now() - t0);
    }
    const variants: [string, Estimate][] = translate(text).kind === 'group'
      ? [['', estimate(text, population, o.docKb, 'client')], [' (native GROUP BY)', estimate(text, population, o.docKb, 'native')]]
      : [['', estimate(text, population, o.docKb)]];
    for (const [label, e] of variants) {
      const hubMinutes = e.hubPages / IOT_HUB_QUERIES_PER_MINUTE_PER_UNIT;
      console.log([(median(times) * 1000).toFixed(1), e.matched, e.candidates, e.pages, e.ru.toFixed(0), Math.floor((o.ruPerSecond * 60) / e.ru).toLocaleString('en'), `${e.hubPages} (${hubMinutes < 1 ? `${Math.round(hubMinutes * 60)} s` : `${hubMinutes.toFixed(0)} min`})`, text + label].join('\t'));
    }
  }
  console.log('\npoint read (getTwin) of a 2 KB twin: ~1 RU');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
