/**
 * A local HTTPS stand-in for the documented IoT Hub twin query and twin read endpoints:
 *   POST /devices/query?api-version=2021-04-12   body {"query": "..."}
 *   request headers  Authorization: Bearer <token>, x-ms-max-item-count, x-ms-continuation
 *   response         200 JSON array of twins, x-ms-continuation while more pages remain, x-ms-item-type
 *   projection       SELECT a, b FROM devices[.modules] returns only those fields (IoT Hub query language)
 *   GET /twins/{id}, GET /twins/{id}/modules/{mid}   200 the twin, 404 DeviceNotFound / ModuleNotFound
 *   throttling       429 with IoT Hub's error body ({"Message":"ErrorCode:ThrottlingException;..."})
 * Pages are cut from the hub's CURRENT state after the last key returned (like a live query), so twins
 * deleted or changed between pages behave as they would on a hub. Loopback only, self-signed certificate.
 *
 * The real service's habits it can be told to show (each a documented or reported behaviour):
 * - reads by id always answer the latest state; query results are eventually consistent, "delays of up to
 *   30 minutes should be tolerated" (Microsoft Learn, "Queries for IoT Hub device and module twins"):
 *   `freezeQueryView()` serves queries from the hub as it was at that moment (a lagging index);
 * - `devices.modules` keeps returning modules that were deleted (Azure/azure-iot-sdk-csharp#525): `ghostModule()`;
 * - a page may hold fewer items than x-ms-max-item-count even when more follow, and the service may use a page
 *   size of its own (the SDKs follow x-ms-continuation, never count items): `shortPages()`, `maxPageSize`;
 * - throttles are "subject to traffic shaping": requests over the rate are first queued (answered late),
 *   then answered 429 (Microsoft Learn, "IoT Hub quotas and throttling"): `limitRate(max, window, queueMs)`;
 * - a continuation token the service no longer accepts: `expireContinuations()` (400).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fullTwin } from '../../testkit/events';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Twin = { [k: string]: Json };

export interface QueryRequest {
  at: number;
  sql: string;
  continuation?: string;
  pageSize?: number;
  status: number;
  items: number;
  userAgent?: string;
}

export interface Certificate {
  dir: string;
  certFile: string;
  cert: string;
  key: string;
}

/** A self-signed certificate for 127.0.0.1 (openssl), valid one day. */
export function makeCertificate(): Certificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'hub-standin-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { dir, certFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

export interface HubStandIn {
  hostName: string;
  cert: Certificate;
  token: string;
  requests: QueryRequest[];
  /** Device twins by deviceId; module twins by `deviceId/moduleId`. */
  devices: Map<string, Twin>;
  modules: Map<string, Twin>;
  /** The next n query requests answer 429 (optionally with Retry-After seconds). */
  throttleNext(n: number, retryAfterSeconds?: number): void;
  /**
   * At most `max` queries per `windowMs` (a sliding window, like the hub's per-minute budget). Beyond it a
   * request is first held for `queueMs` (traffic shaping), then answered 429 if still over.
   */
  limitRate(max: number, windowMs: number, queueMs?: number): void;
  /** Queries see the hub as it is now until `thawQueryView()` (reads by id keep answering the live state). */
  freezeQueryView(): void;
  thawQueryView(): void;
  /** A row the modules query keeps returning although the module does not exist (reads by id: 404). */
  ghostModule(deviceId: string, moduleId: string, version?: number): void;
  /** Pages hold at most n items whatever x-ms-max-item-count asks (undefined: off). */
  shortPages(n: number | undefined): void;
  /** Every continuation token issued so far expires: a request carrying one is answered 400. */
  expireContinuations(): void;
  /** Milliseconds every request waits before it is answered (a slow hub). */
  delayMs: number;
  /** Reads by id served (GET /twins/...). */
  reads: { at: number; path: string; status: number }[];
  /** Called before a successful page is served (1-based count of served pages), to change the hub mid-scan; a promise holds the answer. */
  beforePage?: (served: number, sql: string) => void | Promise<void>;
  addDevice(deviceId: string, opts?: { version?: number; tags?: Twin; modules?: string[] }): Twin;
  updateTwin(deviceId: string, moduleId: string | undefined, change: { tags?: Twin; desired?: Twin }): Twin;
  deleteDevice(deviceId: string): void;
  deleteModule(deviceId: string, moduleId: string): void;
  /** The service's own page size: pages never exceed it, whatever x-ms-max-item-count asks. */
  maxPageSize?: number;
  /** Forgets twins, requests, throttling, rate limits and hooks. */
  reset(): void;
  close(): Promise<void>;
}

/** `SELECT * | f1, f2 FROM devices | devices.modules` (no WHERE): the only shapes the tools send. */
function parseSelect(sql: string): { source: 'devices' | 'modules'; fields?: string[] } | undefined {
  const m = /^select\s+(.+?)\s+from\s+(devices(?:\.modules)?)$/i.exec(sql.trim().replace(/\s+/g, ' '));
  if (!m) return undefined;
  const source = m[2].toLowerCase() === 'devices' ? 'devices' : 'modules';
  if (m[1].trim() === '*') return { source };
  const fields = m[1].split(',').map((f) => f.trim());
  return fields.every((f) => /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(f)) ? { source, fields } : undefined;
}

/** A projection returns the named top-level fields a twin has (absent ones are left out, as in the query language). */
function project(twin: Twin, fields: string[] | undefined): Twin {
  if (!fields) return twin;
  const out: Twin = {};
  for (const f of fields) if (twin[f] !== undefined) out[f] = twin[f];
  return out;
}

let identities = 0;
function hubTwin(deviceId: string, moduleId: string | undefined, version: number, tags: Twin = {}): Twin {
  // deviceEtag: the identity's ETag, new for every identity created (assumed; see docs/azure-behaviours.md)
  const deviceEtag = Buffer.from(String(614894245 + ++identities)).toString('base64');
  const twin = fullTwin({ deviceId, moduleId, version, tags, etag: `AAAAAAAAAA${version}=`, extra: { deviceEtag, status: 'enabled', statusUpdateTime: '0001-01-01T00:00:00Z', connectionState: 'Disconnected', lastActivityTime: '0001-01-01T00:00:00Z', cloudToDeviceMessageCount: 0, authenticationType: 'sas', x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null }, modelId: '' } });
  if (moduleId === undefined) twin.capabilities = { iotEdge: false };
  return twin;
}

export async function startHubStandIn(opts: { token?: string; cert?: Certificate } = {}): Promise<HubStandIn> {
  const cert = opts.cert ?? makeCertificate();
  const token = opts.token ?? 'stand-in-token';
  const devices = new Map<string, Twin>();
  const modules = new Map<string, Twin>();
  const requests: QueryRequest[] = [];
  let throttle = 0;
  let retryAfter: number | undefined;
  let rate: { max: number; windowMs: number } | undefined;
  let served = 0;
  let frozen: { devices: Map<string, Twin>; modules: Map<string, Twin> } | undefined;
  const ghosts = new Map<string, Twin>();
  let shortPage: number | undefined;
  let epoch = 0;
  let queueMs = 0;
  const reads: { at: number; path: string; status: number }[] = [];

  const standIn: HubStandIn = {
    hostName: '', cert, token, requests, devices, modules, reads, delayMs: 0,
    throttleNext(n, seconds) {
      throttle = n;
      retryAfter = seconds;
    },
    limitRate(max, windowMs, queue = 0) {
      rate = { max, windowMs };
      queueMs = queue;
    },
    freezeQueryView() {
      frozen = { devices: new Map([...devices].map(([k, v]) => [k, structuredClone(v)])), modules: new Map([...modules].map(([k, v]) => [k, structuredClone(v)])) };
    },
    thawQueryView() {
      frozen = undefined;
    },
    ghostModule(deviceId, moduleId, version = 1) {
      ghosts.set(`${deviceId}/${moduleId}`, hubTwin(deviceId, moduleId, version));
    },
    shortPages(n) {
      shortPage = n;
    },
    expireContinuations() {
      epoch++;
    },
    addDevice(deviceId, o = {}) {
      const twin = hubTwin(deviceId, undefined, o.version ?? 1, o.tags);
      devices.set(deviceId, twin);
      for (const m of o.modules ?? []) modules.set(`${deviceId}/${m}`, hubTwin(deviceId, m, 1));
      return twin;
    },
    updateTwin(deviceId, moduleId, change) {
      const map = moduleId === undefined ? devices : modules;
      const k = moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`;
      const twin = structuredClone(map.get(k)!);
      twin.version = (twin.version as number) + 1;
      if (change.tags) twin.tags = { ...(twin.tags as Twin), ...change.tags };
      if (change.desired) {
        const props = twin.properties as { desired: Twin };
        props.desired = { ...props.desired, ...change.desired, $version: ((props.desired.$version as number) ?? 1) + 1 };
      }
      map.set(k, twin);
      return twin;
    },
    deleteDevice(deviceId) {
      devices.delete(deviceId);
      for (const k of [...modules.keys()]) if (k.startsWith(`${deviceId}/`)) modules.delete(k);
    },
    deleteModule(deviceId, moduleId) {
      modules.delete(`${deviceId}/${moduleId}`);
    },
    reset() {
      devices.clear();
      modules.clear();
      requests.length = 0;
      throttle = 0;
      retryAfter = undefined;
      rate = undefined;
      served = 0;
      standIn.beforePage = undefined;
      frozen = undefined;
      ghosts.clear();
      shortPage = undefined;
      epoch = 0;
      queueMs = 0;
      reads.length = 0;
      standIn.delayMs = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      if (!opts.cert) rmSync(cert.dir, { recursive: true, force: true });
    },
  };

  const server = https.createServer({ cert: cert.cert, key: cert.key, keepAlive: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void (async () => {
      if (standIn.delayMs > 0) await new Promise((r) => setTimeout(r, standIn.delayMs));
      if (res.destroyed) return;
      const url = new URL(req.url ?? '/', 'https://stand-in');
      const record: QueryRequest = { at: Date.now(), sql: '', status: 0, items: 0, userAgent: req.headers['user-agent'] };
      const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        record.status = status;
        requests.push(record);
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
        res.end(JSON.stringify(body));
      };
      const error = (status: number, code: string, message: string, headers?: Record<string, string>) =>
        reply(status, { Message: `ErrorCode:${code};${message}`, ExceptionMessage: `Tracking ID:standin-${requests.length}` }, headers);
      const twinRoute = /^\/twins\/([^/]+)(?:\/modules\/([^/]+))?$/.exec(url.pathname);
      if (req.method === 'GET' && twinRoute) {
        if (url.searchParams.get('api-version') !== '2021-04-12') return error(400, 'InvalidProtocolVersion', 'api-version must be 2021-04-12');
        if (req.headers.authorization !== `Bearer ${token}`) return error(401, 'IotHubUnauthorizedAccess', 'Unauthorized');
        const deviceId = decodeURIComponent(twinRoute[1]);
        const moduleId = twinRoute[2] === undefined ? undefined : decodeURIComponent(twinRoute[2]);
        const twin = moduleId === undefined ? devices.get(deviceId) : modules.get(`${deviceId}/${moduleId}`);
        const status = twin ? 200 : 404;
        reads.push({ at: Date.now(), path: url.pathname, status });
        if (!twin) {
          const code = moduleId === undefined || !devices.has(deviceId) ? 'DeviceNotFound' : 'ModuleNotFound';
          res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
          return res.end(JSON.stringify({ Message: `ErrorCode:${code};${moduleId ?? deviceId} not found`, ExceptionMessage: 'Tracking ID:standin-read' }));
        }
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', etag: `"${typeof twin.etag === 'string' ? twin.etag : JSON.stringify(twin.etag)}"` });
        return res.end(JSON.stringify(twin));
      }
      if (req.method !== 'POST' || url.pathname !== '/devices/query') return error(404, 'NotFound', `no route ${req.method} ${url.pathname}`);
      if (url.searchParams.get('api-version') !== '2021-04-12') return error(400, 'InvalidProtocolVersion', 'api-version must be 2021-04-12');
      if (req.headers.authorization !== `Bearer ${token}`) return error(401, 'IotHubUnauthorizedAccess', 'Unauthorized');
      let sql: string;
      try {
        sql = String(JSON.parse(Buffer.concat(chunks).toString('utf8')).query ?? '');
      } catch {
        return error(400, 'ArgumentInvalid', 'body is not JSON');
      }
      record.sql = sql;
      const continuation = req.headers['x-ms-continuation'];
      record.continuation = typeof continuation === 'string' ? continuation : undefined;
      const pageSize = Number(req.headers['x-ms-max-item-count'] ?? 100);
      record.pageSize = pageSize;
      if (throttle > 0) {
        throttle--;
        return error(429, 'ThrottlingException', 'IotHub throttling: query rate exceeded', retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {});
      }
      if (rate) {
        const over = () => requests.filter((r) => r.at > Date.now() - rate!.windowMs && r.status === 200).length >= rate!.max;
        if (over() && queueMs > 0) await new Promise((r) => setTimeout(r, queueMs)); // traffic shaping: held first
        if (over()) return error(429, 'ThrottlingException', 'IotHub throttling: 20 queries per minute per unit');
      }
      const parsedSql = parseSelect(sql);
      if (!parsedSql) return error(400, 'InvalidQuery', `the stand-in serves only SELECT * | <fields> FROM devices[.modules], not ${sql}`);
      const { source, fields } = parsedSql;
      if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 1000) return error(400, 'ArgumentInvalid', 'x-ms-max-item-count must be 1..1000');
      let after = '';
      if (record.continuation) {
        try {
          // Tokens carry the epoch they were issued in: expireContinuations() makes older ones invalid.
          const parsed = JSON.parse(Buffer.from(record.continuation, 'base64').toString('utf8')) as { q: string; after: string; e?: number };
          if (parsed.q !== source || (parsed.e ?? 0) !== epoch) throw new Error('wrong query or expired');
          after = parsed.after;
        } catch {
          return error(400, 'InvalidContinuationToken', 'the continuation token is not valid for this query');
        }
      }
      served++;
      await standIn.beforePage?.(served, sql);
      if (res.destroyed) return;
      const view = frozen ?? { devices, modules };
      const map = source === 'devices' ? view.devices : new Map([...ghosts, ...view.modules]);
      const keys = [...map.keys()].filter((k) => k > after).sort();
      const page = keys.slice(0, Math.min(pageSize, shortPage ?? Infinity, standIn.maxPageSize ?? Infinity));
      record.items = page.length;
      const headers: Record<string, string> = { 'x-ms-item-type': 'Twin' };
      if (keys.length > page.length) headers['x-ms-continuation'] = Buffer.from(JSON.stringify({ q: source, after: page[page.length - 1], e: epoch })).toString('base64');
      reply(200, page.map((k) => project(map.get(k)!, fields)), headers);
    })());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  standIn.hostName = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standIn;
}
