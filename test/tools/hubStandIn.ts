/**
 * A local HTTPS stand-in for the documented IoT Hub twin query endpoint:
 *   POST /devices/query?api-version=2021-04-12   body {"query": "..."}
 *   request headers  Authorization: Bearer <token>, x-ms-max-item-count, x-ms-continuation
 *   response         200 JSON array of twins, x-ms-continuation while more pages remain, x-ms-item-type
 *   throttling       429 with IoT Hub's error body ({"Message":"ErrorCode:ThrottlingException;..."})
 * Pages are cut from the hub's CURRENT state after the last key returned (like a live query), so twins
 * deleted or changed between pages behave as they would on a hub. Loopback only, self-signed certificate.
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
  /** At most `max` queries per `windowMs` (a sliding window, like the hub's per-minute budget); beyond: 429. */
  limitRate(max: number, windowMs: number): void;
  /** Called before a successful page is served (1-based count of served pages), to change the hub mid-scan. */
  beforePage?: (served: number, sql: string) => void;
  addDevice(deviceId: string, opts?: { version?: number; tags?: Twin; modules?: string[] }): Twin;
  updateTwin(deviceId: string, moduleId: string | undefined, change: { tags?: Twin; desired?: Twin }): Twin;
  deleteDevice(deviceId: string): void;
  /** Forgets twins, requests, throttling, rate limits and hooks. */
  reset(): void;
  close(): Promise<void>;
}

const SELECTS: Record<string, 'devices' | 'modules'> = {
  'select * from devices': 'devices',
  'select * from devices.modules': 'modules',
};

function hubTwin(deviceId: string, moduleId: string | undefined, version: number, tags: Twin = {}): Twin {
  const twin = fullTwin({ deviceId, moduleId, version, tags, etag: `AAAAAAAAAA${version}=`, extra: { deviceEtag: 'NjE0ODk0MjQ1', status: 'enabled', statusUpdateTime: '0001-01-01T00:00:00Z', connectionState: 'Disconnected', lastActivityTime: '0001-01-01T00:00:00Z', cloudToDeviceMessageCount: 0, authenticationType: 'sas', x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null }, modelId: '' } });
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

  const standIn: HubStandIn = {
    hostName: '', cert, token, requests, devices, modules,
    throttleNext(n, seconds) {
      throttle = n;
      retryAfter = seconds;
    },
    limitRate(max, windowMs) {
      rate = { max, windowMs };
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
    reset() {
      devices.clear();
      modules.clear();
      requests.length = 0;
      throttle = 0;
      retryAfter = undefined;
      rate = undefined;
      served = 0;
      standIn.beforePage = undefined;
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
    req.on('end', () => {
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
        const since = Date.now() - rate.windowMs;
        const recent = requests.filter((r) => r.at > since && r.status === 200).length;
        if (recent >= rate.max) return error(429, 'ThrottlingException', 'IotHub throttling: 20 queries per minute per unit');
      }
      const source = SELECTS[sql.trim().replace(/\s+/g, ' ').toLowerCase()];
      if (!source) return error(400, 'InvalidQuery', `the stand-in serves only SELECT * FROM devices and SELECT * FROM devices.modules, not ${sql}`);
      if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 1000) return error(400, 'ArgumentInvalid', 'x-ms-max-item-count must be 1..1000');
      let after = '';
      if (record.continuation) {
        try {
          const parsed = JSON.parse(Buffer.from(record.continuation, 'base64').toString('utf8')) as { q: string; after: string };
          if (parsed.q !== source) throw new Error('wrong query');
          after = parsed.after;
        } catch {
          return error(400, 'InvalidContinuationToken', 'the continuation token is not valid for this query');
        }
      }
      served++;
      standIn.beforePage?.(served, sql);
      const map = source === 'devices' ? devices : modules;
      const keys = [...map.keys()].filter((k) => k > after).sort();
      const page = keys.slice(0, pageSize);
      record.items = page.length;
      const headers: Record<string, string> = { 'x-ms-item-type': 'Twin' };
      if (keys.length > page.length) headers['x-ms-continuation'] = Buffer.from(JSON.stringify({ q: source, after: page[page.length - 1] })).toString('base64');
      reply(200, page.map((k) => map.get(k)), headers);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  standIn.hostName = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return standIn;
}
