import https from 'node:https';
import { parseHubHost } from './endpoints';
import { backoffDelay, sleep } from '../sync/backoff';
import { isObject } from '../sync/merge';
import type { DocKey, JsonObject } from '../sync/types';

/**
 * The IoT Hub twin query (POST /devices/query, api-version 2021-04-12), reduced to one page call, and the
 * twin read by id (GET /twins/{id}, GET /twins/{id}/modules/{mid}): the one hub client of the timer
 * function and the CLI. Pacing, throttling back-off and retries live in {@link QueryPager}.
 *
 * Why a hand-written client and not the official service SDK (azure-iothub 1.16, Registry.createQuery /
 * getTwin / getModuleTwin): the SDK takes no abort signal and no per-request timeout (its calls can only
 * be raced, leaving the request running past verifyRepair's deadline and the function's timeout), it
 * dials port 443 only (a loopback stand-in needed its private `_restApiClient` replaced), and it adds
 * about 1 MB of dependencies to the function bundle for two documented calls. The REST calls here carry
 * the run's deadline as an abort signal, bound each request, and are paced per hub tier by QueryPager.
 * (infra/smoke.ts still uses azure-iothub to create devices on a real hub: nothing of it ships.)
 *
 * Why both calls: query results are eventually consistent ("delays of up to 30 minutes should be
 * tolerated"; Microsoft Learn, "Queries for IoT Hub device and module twins") and `devices.modules` rows of
 * deleted modules have been served for weeks (Azure/azure-iot-sdk-csharp#525), while a read by id returns
 * the twin's latest state. The scan finds candidates with the query; only a read by id decides a repair.
 */
export interface TwinQueryPage {
  items: JsonObject[];
  /** The `x-ms-continuation` of the response; undefined on the last page. */
  continuation?: string;
}

export interface TwinQuery {
  page(sql: string, continuation: string | undefined, pageSize: number, signal?: AbortSignal): Promise<TwinQueryPage>;
  /** The twin as the hub holds it now, or undefined when the hub answers 404 (no such device or module). */
  twin(key: DocKey, signal?: AbortSignal): Promise<JsonObject | undefined>;
}

/** The REST path of a twin read by id (azure-iothub Registry.getTwin / getModuleTwin build the same). */
export function twinPath(key: DocKey): string {
  const device = `/twins/${encodeURIComponent(key.deviceId)}`;
  return key.moduleId === undefined ? device : `${device}/modules/${encodeURIComponent(key.moduleId)}`;
}

export const IOTHUB_API_VERSION = '2021-04-12';
/** Names this client in the hub's logs. */
export const USER_AGENT = 'twin-replica/twin-query';

/** A failed page request: `status` 429 is throttling; `retryAfterMs` from a Retry-After header when sent. */
export class TwinQueryError extends Error {
  constructor(message: string, readonly status?: number, readonly retryAfterMs?: number) {
    super(message);
    this.name = 'TwinQueryError';
  }
  get throttled(): boolean {
    return this.status === 429;
  }
  /** 429, 408, 5xx and network errors: worth another try. 400/401/403/404 are not. */
  get transient(): boolean {
    return this.status === undefined || this.status === 429 || this.status === 408 || this.status >= 500;
  }
}

/**
 * The hub refused a continuation token (400 on a page that carried one: the token expired, or it belongs
 * to another query). The query must start again from its first page.
 */
export class ContinuationRejected extends TwinQueryError {
  constructor(message: string, status?: number) {
    super(message, status);
    this.name = 'ContinuationRejected';
  }
}

export interface PagerOptions {
  /**
   * Page requests per minute this run may use. IoT Hub S1/S2 allow 20 queries per minute per unit, S3
   * 1,000 (shared with every other caller of the hub's query API): see {@link hubBudgets}.
   * @default 15
   */
  queriesPerMinute?: number;
  /** Twin reads by id per second this run may use (see {@link hubBudgets}). @default 10 */
  twinReadsPerSecond?: number;
  /** Tries per page for throttling and transient errors before the run fails. @default 8 */
  maxAttempts?: number;
  /** First back-off after a 429 (doubles each time, ±20% jitter, capped at maxBackoffMs). @default 5000 */
  backoffMs?: number;
  /** @default 60000 */
  maxBackoffMs?: number;
  /** Aborts waits and stops between pages. */
  signal?: AbortSignal;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
  /** Called before every wait (pacing or back-off), for progress output. */
  onWait?: (ms: number, reason: 'pace' | 'throttled' | 'transient', error?: TwinQueryError) => void;
}

export interface PagerStats {
  /** Query page requests (every attempt). */
  requests: number;
  /** Twin reads by id (every attempt). */
  twinReads: number;
  throttled: number;
  retries: number;
  waitedMs: number;
}

/**
 * IoT Hub operation throttles per tier (Microsoft Learn, "IoT Hub quotas and throttling"): queries (device
 * and module) 20/min/unit on Free/B1/S1 and B2/S2, 1,000/min/unit on B3/S3; device twin reads 100/sec on
 * Free/S1, the higher of 100/sec or 10/sec/unit on S2, 500/sec/unit on S3. `share` is the part this run
 * takes, leaving the rest to the hub's other callers. An unknown tier gets the smallest budget.
 */
export function hubBudgets(sku: string | undefined, units = 1, share = 0.5): { queriesPerMinute: number; twinReadsPerSecond: number } {
  const tier = (sku ?? '').toUpperCase();
  const u = Math.max(1, Math.floor(units));
  const queries = /^[BS]3$/.test(tier) ? 1000 * u : 20 * u;
  const reads = tier === 'S3' || tier === 'B3' ? 500 * u : tier === 'S2' || tier === 'B2' ? Math.max(100, 10 * u) : 100;
  return { queriesPerMinute: Math.max(1, Math.floor(queries * share)), twinReadsPerSecond: Math.max(1, Math.floor(reads * share)) };
}

/** Paces page requests and twin reads to their budgets and backs off on 429 / transient errors. */
export class QueryPager {
  readonly stats: PagerStats = { requests: 0, twinReads: 0, throttled: 0, retries: 0, waitedMs: 0 };
  private readonly queryIntervalMs: number;
  private readonly readIntervalMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  private readonly last = { query: -Infinity, read: -Infinity };

  constructor(private readonly query: TwinQuery, private readonly options: PagerOptions = {}) {
    const rate = options.queriesPerMinute ?? 15;
    if (!(rate > 0)) throw new RangeError(`queriesPerMinute must be positive, got ${rate}`);
    const reads = options.twinReadsPerSecond ?? 10;
    if (!(reads > 0)) throw new RangeError(`twinReadsPerSecond must be positive, got ${reads}`);
    this.queryIntervalMs = 60_000 / rate;
    this.readIntervalMs = 1_000 / reads;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 8);
    this.backoffMs = options.backoffMs ?? 5_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.sleep = options.sleep ?? sleep;
    this.now = options.now ?? Date.now;
  }

  get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  /**
   * Requests one page. `beforeSend` runs right before each attempt is sent (after any wait). A 400 on a page
   * that carried a continuation is a {@link ContinuationRejected}.
   */
  async page(sql: string, continuation: string | undefined, pageSize: number, beforeSend?: () => void): Promise<TwinQueryPage> {
    try {
      return await this.attempt('query', beforeSend, (signal) => this.query.page(sql, continuation, pageSize, signal));
    } catch (err) {
      if (continuation !== undefined && err instanceof TwinQueryError && err.status === 400) throw new ContinuationRejected(err.message, err.status);
      throw err;
    }
  }

  /**
   * Reads one twin by id: undefined when the hub answers 404. `beforeSend` runs right before each attempt:
   * the caller dates the read there (everything the hub did before that moment is in the answer).
   */
  twin(key: DocKey, beforeSend?: () => void): Promise<JsonObject | undefined> {
    return this.attempt('read', beforeSend, (signal) => this.query.twin(key, signal));
  }

  private async attempt<T>(lane: 'query' | 'read', beforeSend: (() => void) | undefined, call: (signal?: AbortSignal) => Promise<T>): Promise<T> {
    const what = lane === 'query' ? 'twin query' : 'twin read';
    for (let attempt = 1; ; attempt++) {
      await this.pace(lane);
      beforeSend?.();
      this.last[lane] = this.now();
      if (lane === 'query') this.stats.requests++;
      else this.stats.twinReads++;
      try {
        return await call(this.options.signal);
      } catch (err) {
        this.options.signal?.throwIfAborted();
        const e = err instanceof TwinQueryError ? err : new TwinQueryError((err as Error)?.message ?? String(err));
        if (e.throttled) this.stats.throttled++;
        if (!e.transient || attempt >= this.maxAttempts) {
          throw new TwinQueryError(`${what} failed after ${attempt} attempt(s)${e.status ? ` (HTTP ${e.status})` : ''}: ${e.message}`, e.status, e.retryAfterMs);
        }
        this.stats.retries++;
        const wait = Math.max(e.retryAfterMs ?? 0, backoffDelay(attempt - 1, { baseMs: this.backoffMs, maxMs: this.maxBackoffMs, jitter: 0.2 }));
        this.options.onWait?.(wait, e.throttled ? 'throttled' : 'transient', e);
        await this.wait(wait);
      }
    }
  }

  private async pace(lane: 'query' | 'read'): Promise<void> {
    this.options.signal?.throwIfAborted();
    const interval = lane === 'query' ? this.queryIntervalMs : this.readIntervalMs;
    const due = this.last[lane] + interval - this.now();
    if (due > 0) {
      if (lane === 'query') this.options.onWait?.(due, 'pace');
      await this.wait(due);
    }
  }

  private async wait(ms: number): Promise<void> {
    this.stats.waitedMs += ms;
    await this.sleep(ms, this.options.signal);
  }
}

/** Retry-After in seconds or as an HTTP date. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface RestTwinQueryOptions {
  /** `<hub>.azure-devices.net` (or `127.0.0.1:<port>` for a local stand-in). */
  hostName: string;
  /** A bearer token for the `https://iothubs.azure.net/.default` scope (cached by the caller). */
  getToken: () => Promise<string>;
  /** Extra trusted CA (PEM) — only for a loopback stand-in with a self-signed certificate. */
  ca?: string | Buffer;
  /** Time allowed for one request, answer included. @default 60000 */
  timeoutMs?: number;
}

/** The documented REST call, with node:https (keep-alive); what the timer function uses instead of the SDK. */
export class RestTwinQuery implements TwinQuery {
  private readonly host: string;
  private readonly port?: number;
  private readonly agent: https.Agent;

  constructor(private readonly options: RestTwinQueryOptions) {
    const parsed = parseHubHost(options.hostName);
    if (options.ca !== undefined && !parsed.loopback) throw new Error('a custom CA is accepted only for a loopback hub stand-in');
    this.host = parsed.host;
    this.port = parsed.port;
    this.agent = new https.Agent({ keepAlive: true, ...(options.ca !== undefined ? { ca: options.ca } : {}) });
  }

  async page(sql: string, continuation: string | undefined, pageSize: number, signal?: AbortSignal): Promise<TwinQueryPage> {
    const headers: Record<string, string> = { 'x-ms-max-item-count': String(pageSize) };
    if (continuation) headers['x-ms-continuation'] = continuation;
    const res = await this.request('POST', '/devices/query', headers, JSON.stringify({ query: sql }), signal);
    if (res.status !== 200) {
      throw new TwinQueryError(`twin query answered ${res.status}: ${res.text.slice(0, 300)}`, res.status, parseRetryAfter(res.headers['retry-after']));
    }
    const items = JSON.parse(res.text) as unknown;
    if (!Array.isArray(items)) throw new TwinQueryError('twin query answered something other than a JSON array', res.status);
    const next = res.headers['x-ms-continuation'];
    return { items: items as JsonObject[], continuation: typeof next === 'string' && next !== '' ? next : undefined };
  }

  async twin(key: DocKey, signal?: AbortSignal): Promise<JsonObject | undefined> {
    const res = await this.request('GET', twinPath(key), {}, undefined, signal);
    if (res.status === 404) return undefined;
    if (res.status !== 200) {
      throw new TwinQueryError(`twin read answered ${res.status}: ${res.text.slice(0, 300)}`, res.status, parseRetryAfter(res.headers['retry-after']));
    }
    const twin = JSON.parse(res.text) as unknown;
    if (!isObject(twin)) throw new TwinQueryError('twin read answered something other than a JSON object', res.status);
    return twin;
  }

  /** One request; `timeoutMs` bounds the whole exchange, `signal` (the run's deadline) aborts it. */
  private async request(method: 'GET' | 'POST', path: string, extra: Record<string, string>, body: string | undefined, signal?: AbortSignal): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
    const token = await this.options.getToken();
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'user-agent': USER_AGENT, ...extra };
    if (body !== undefined) {
      headers['content-type'] = 'application/json; charset=utf-8';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const timeoutMs = this.options.timeoutMs ?? 60_000;
    const bounded = signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: this.host, port: this.port, method, path: `${path}?api-version=${IOTHUB_API_VERSION}`, headers, agent: this.agent, signal: bounded },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, text: Buffer.concat(chunks).toString('utf8') }));
          r.on('error', reject);
        },
      );
      req.on('error', (err) => {
        if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        reject(new TwinQueryError(`${method} ${path} failed: ${bounded.aborted ? `no answer within ${timeoutMs} ms` : err.message}`));
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
