import https from 'node:https';
import { assertTokenAudience, isLoopback } from '../config';
import type { JsonObject } from '../sync/types';

/**
 * The IoT Hub twin query (POST /devices/query, api-version 2021-04-12), reduced to one page call. The
 * tools read it with the official SDK (azure-iothub); the timer function, whose bundle has no room for
 * the SDK, with {@link RestTwinQuery}. Pacing, throttling back-off and retries live in {@link QueryPager},
 * shared by both.
 */
export interface TwinQueryPage {
  items: JsonObject[];
  /** The `x-ms-continuation` of the response; undefined on the last page. */
  continuation?: string;
}

export interface TwinQuery {
  page(sql: string, continuation: string | undefined, pageSize: number): Promise<TwinQueryPage>;
}

export const IOTHUB_API_VERSION = '2021-04-12';
export const IOTHUB_SCOPE = 'https://iothubs.azure.net/.default';

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

export interface PagerOptions {
  /**
   * Page requests per minute this run may use. IoT Hub S1/S2 allow 20 queries per minute per unit (shared
   * with every other caller of the hub's query API): the default leaves headroom on a one-unit hub.
   * @default 15
   */
  queriesPerMinute?: number;
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
  requests: number;
  throttled: number;
  retries: number;
  waitedMs: number;
}

/** Paces page requests to a per-minute budget and backs off on 429 / transient errors. */
export class QueryPager {
  readonly stats: PagerStats = { requests: 0, throttled: 0, retries: 0, waitedMs: 0 };
  private readonly intervalMs: number;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly now: () => number;
  private lastRequestAt = -Infinity;

  constructor(private readonly query: TwinQuery, private readonly options: PagerOptions = {}) {
    const rate = options.queriesPerMinute ?? 15;
    if (!(rate > 0)) throw new RangeError(`queriesPerMinute must be positive, got ${rate}`);
    this.intervalMs = 60_000 / rate;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 8);
    this.backoffMs = options.backoffMs ?? 5_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.sleep = options.sleep ?? abortableSleep;
    this.now = options.now ?? Date.now;
  }

  /**
   * Requests one page. `beforeSend` runs right before each attempt is sent (after any wait): the caller
   * takes the snapshot time there, so a change the hub makes after the read is newer than the snapshot.
   */
  async page(sql: string, continuation: string | undefined, pageSize: number, beforeSend?: () => void): Promise<TwinQueryPage> {
    for (let attempt = 1; ; attempt++) {
      await this.pace();
      beforeSend?.();
      this.lastRequestAt = this.now();
      this.stats.requests++;
      try {
        return await this.query.page(sql, continuation, pageSize);
      } catch (err) {
        const e = err instanceof TwinQueryError ? err : new TwinQueryError((err as Error)?.message ?? String(err));
        if (e.throttled) this.stats.throttled++;
        if (!e.transient || attempt >= this.maxAttempts) {
          throw new TwinQueryError(`twin query failed after ${attempt} attempt(s)${e.status ? ` (HTTP ${e.status})` : ''}: ${e.message}`, e.status, e.retryAfterMs);
        }
        this.stats.retries++;
        const exp = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
        const wait = Math.max(e.retryAfterMs ?? 0, Math.round(exp * (0.8 + Math.random() * 0.4)));
        this.options.onWait?.(wait, e.throttled ? 'throttled' : 'transient', e);
        await this.wait(wait);
      }
    }
  }

  private async pace(): Promise<void> {
    this.options.signal?.throwIfAborted();
    const due = this.lastRequestAt + this.intervalMs - this.now();
    if (due > 0) {
      this.options.onWait?.(due, 'pace');
      await this.wait(due);
    }
  }

  private async wait(ms: number): Promise<void> {
    this.stats.waitedMs += ms;
    await this.sleep(ms, this.options.signal);
  }
}

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Retry-After in seconds or as an HTTP date. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Splits a hub host name that may carry a port. A port (or an IP address) is accepted only for a loopback
 * stand-in: the real hub is always `<name>.azure-devices.net` on 443, and only such a host (or loopback)
 * is ever sent the IoT Hub bearer token (assertTokenAudience).
 */
export function parseHubHost(hostName: string): { host: string; port?: number; loopback: boolean } {
  const m = /^([^:/]+)(?::(\d{1,5}))?$/.exec(hostName.trim());
  if (!m) throw new Error(`not a hub host name: ${JSON.stringify(hostName)} (expected <hub>.azure-devices.net)`);
  const host = m[1];
  const loopback = isLoopback(`https://${host}`);
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && !loopback) throw new Error(`a port in the hub host name is accepted only for a loopback stand-in: ${hostName}`);
  assertTokenAudience('iotHub', `https://${host}`, 'the hub host name');
  return { host, port, loopback };
}

export interface RestTwinQueryOptions {
  /** `<hub>.azure-devices.net` (or `127.0.0.1:<port>` for a local stand-in). */
  hostName: string;
  /** A bearer token for the `https://iothubs.azure.net/.default` scope (cached by the caller). */
  getToken: () => Promise<string>;
  /** Extra trusted CA (PEM) — only for a loopback stand-in with a self-signed certificate. */
  ca?: string | Buffer;
  /** @default 60000 */
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

  async page(sql: string, continuation: string | undefined, pageSize: number): Promise<TwinQueryPage> {
    const token = await this.options.getToken();
    const body = JSON.stringify({ query: sql });
    const headers: Record<string, string> = {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'x-ms-max-item-count': String(pageSize),
    };
    if (continuation) headers['x-ms-continuation'] = continuation;
    const res = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>((resolve, reject) => {
      const req = https.request(
        { host: this.host, port: this.port, method: 'POST', path: `/devices/query?api-version=${IOTHUB_API_VERSION}`, headers, agent: this.agent, timeout: this.options.timeoutMs ?? 60_000 },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, text: Buffer.concat(chunks).toString('utf8') }));
          r.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('twin query timed out')));
      req.on('error', (err) => reject(new TwinQueryError(`twin query request failed: ${err.message}`)));
      req.end(body);
    });
    if (res.status !== 200) {
      throw new TwinQueryError(`twin query answered ${res.status}: ${res.text.slice(0, 300)}`, res.status, parseRetryAfter(res.headers['retry-after']));
    }
    const items = JSON.parse(res.text) as unknown;
    if (!Array.isArray(items)) throw new TwinQueryError('twin query answered something other than a JSON array', res.status);
    const next = res.headers['x-ms-continuation'];
    return { items: items as JsonObject[], continuation: typeof next === 'string' && next !== '' ? next : undefined };
  }

  close(): void {
    this.agent.destroy();
  }
}
