import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { isLoopback } from '../functions/src/public';
import { Rng } from './random';

const require = createRequire(import.meta.url);

/**
 * A loopback HTTPS proxy between the Cosmos DB SDK and the local Cosmos-compatible server, for the
 * faults the server cannot produce: throttling (429 with `x-ms-retry-after-ms`, as Cosmos DB answers
 * when a partition is over its RU budget), slow responses, and the endpoint going away and coming back
 * (connections refused and open sockets cut). The SDK's own retry logic is what meets these faults.
 * It serves the local server's self-signed certificate: the SDK accepts it only for loopback endpoints.
 */
export interface ProxyStats {
  forwarded: number;
  throttled: number;
  /** Operations inside bulk requests answered 429 (not sent to the server). */
  throttledOps: number;
  dropped: number;
}

export interface FaultProxyOptions {
  /** The local server's endpoint (must be loopback). */
  upstream: string;
  /** Probability that any request is answered 429. @default 0 */
  throttleRate?: number;
  /** `x-ms-retry-after-ms` on injected 429s. @default 5 */
  retryAfterMs?: number;
  /** Probability that one operation inside a bulk request is answered 429 (the others run). @default 0 */
  bulkOpThrottleRate?: number;
  /** Added latency per request, in ms. @default 0 */
  delayMs?: number;
  seed?: number;
}

export class FaultProxy {
  readonly stats: ProxyStats = { forwarded: 0, throttled: 0, throttledOps: 0, dropped: 0 };
  throttleRate: number;
  bulkOpThrottleRate: number;
  retryAfterMs: number;
  delayMs: number;
  private throttleBudget = 0;
  private opThrottleBudget = 0;
  private server?: https.Server;
  private port = 0;
  private readonly upstream: URL;
  // Idle upstream sockets are dropped after 4 s, before the local server's 5 s keep-alive timeout closes
  // them: reusing a socket the server is closing gives ECONNRESET (and the SDK's fixed 1 s read retry).
  private readonly agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false, timeout: 4000 });
  private readonly rng: Rng;

  constructor(private readonly options: FaultProxyOptions) {
    if (!isLoopback(options.upstream)) throw new Error(`the fault proxy forwards to loopback only, not ${options.upstream}`);
    this.upstream = new URL(options.upstream);
    this.throttleRate = options.throttleRate ?? 0;
    this.bulkOpThrottleRate = options.bulkOpThrottleRate ?? 0;
    this.retryAfterMs = options.retryAfterMs ?? 5;
    this.delayMs = options.delayMs ?? 0;
    this.rng = new Rng(options.seed ?? 7);
  }

  get endpoint(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get isUp(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<this> {
    const dir = require.resolve('@vercel/cosmosdb-server/package.json').replace(/package\.json$/, '');
    const server = https.createServer({ cert: readFileSync(dir + 'cert.pem'), key: readFileSync(dir + 'key.pem'), keepAlive: true }, (req, res) => this.handle(req, res));
    // Like Cosmos DB's gateway, keep idle client connections far longer than the SDK keeps them idle.
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 121_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this;
  }

  /** A throttling storm: the next `requests` requests are answered 429 with the retry-after hint (storms overlap, they do not add up). */
  throttleNext(requests: number, retryAfterMs = this.retryAfterMs): void {
    this.throttleBudget = Math.max(this.throttleBudget, requests);
    this.retryAfterMs = retryAfterMs;
  }

  /**
   * Throttles single operations inside bulk requests: the next `operations` bulk operations come back
   * with status 429 and `retryAfterMilliseconds` in a 207 multi-status answer, without reaching the
   * server, as Cosmos DB does when some partitions of a bulk call are over budget.
   */
  throttleBulkOps(operations: number, retryAfterMs = this.retryAfterMs): void {
    this.opThrottleBudget = Math.max(this.opThrottleBudget, operations);
    this.retryAfterMs = retryAfterMs;
  }

  /** Ends pending storms and latency (the endpoint's up/down state is left as it is). */
  calm(): void {
    this.throttleBudget = 0;
    this.opThrottleBudget = 0;
    this.delayMs = 0;
  }

  /** The endpoint goes away: no new connections, open ones cut. */
  async goDown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /** The endpoint comes back on the same port. */
  async comeBack(): Promise<void> {
    if (!this.server) await this.start();
  }

  async close(): Promise<void> {
    await this.goDown();
    this.agent.destroy();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const go = () => {
        if (!this.isUp) {
          this.stats.dropped++;
          req.socket.destroy();
          return;
        }
        if (this.throttleBudget > 0 || (this.throttleRate > 0 && this.rng.chance(this.throttleRate))) {
          if (this.throttleBudget > 0) this.throttleBudget--;
          this.stats.throttled++;
          const body = JSON.stringify({ code: 'TooManyRequests', message: 'Request rate is large. More Request Units may be needed, so no changes were made. Please retry this request later.' });
          res.writeHead(429, {
            'content-type': 'application/json',
            'x-ms-retry-after-ms': String(this.retryAfterMs),
            'x-ms-substatus': '3200',
            'x-ms-request-charge': '0',
            'x-ms-activity-id': '00000000-0000-0000-0000-000000000429',
            'content-length': Buffer.byteLength(body),
          });
          res.end(body);
          return;
        }
        const body = Buffer.concat(chunks);
        if (String(req.headers['x-ms-cosmos-is-batch-request']).toLowerCase() === 'true' && (this.opThrottleBudget > 0 || this.bulkOpThrottleRate > 0)) {
          this.forwardBulk(req, body, res);
          return;
        }
        this.forward(req, body, res);
      };
      if (this.delayMs > 0) setTimeout(go, this.delayMs);
      else go();
    });
  }

  /** A bulk request with some operations throttled: the rest go to the server, the answers are merged in order. */
  private forwardBulk(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): void {
    let ops: unknown[];
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8'));
      if (!Array.isArray(parsed)) throw new Error('not an array');
      ops = parsed;
    } catch {
      this.forward(req, body, res);
      return;
    }
    const throttled = ops.map(() => {
      if (this.opThrottleBudget > 0) {
        this.opThrottleBudget--;
        return true;
      }
      return this.bulkOpThrottleRate > 0 && this.rng.chance(this.bulkOpThrottleRate);
    });
    if (!throttled.some(Boolean)) {
      this.forward(req, body, res);
      return;
    }
    const tooMany = { statusCode: 429, subStatusCode: 3200, requestCharge: 0, retryAfterMilliseconds: this.retryAfterMs };
    const answer = (statusCode: number, headers: http.IncomingHttpHeaders, results: unknown[]) => {
      const merged: unknown[] = [];
      let next = 0;
      throttled.forEach((t) => merged.push(t ? tooMany : results[next++]));
      this.stats.throttledOps += throttled.filter(Boolean).length;
      const out = Buffer.from(JSON.stringify(merged));
      const h = { ...headers };
      delete h['content-length'];
      delete h['transfer-encoding'];
      res.writeHead(statusCode >= 200 && statusCode < 300 ? 207 : statusCode, { ...h, 'content-type': 'application/json', 'content-length': out.length });
      res.end(out);
    };
    const rest = ops.filter((_, i) => !throttled[i]);
    if (rest.length === 0) {
      answer(207, { 'x-ms-request-charge': '0', 'x-ms-activity-id': '00000000-0000-0000-0000-000000000429' }, []);
      return;
    }
    const forwardedBody = Buffer.from(JSON.stringify(rest));
    const headers = { ...req.headers, host: this.upstream.host, 'content-length': String(forwardedBody.length) };
    const up = https.request(
      { protocol: 'https:', hostname: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers, agent: this.agent },
      (upRes) => {
        this.stats.forwarded++;
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          let results: unknown;
          try {
            results = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            results = undefined;
          }
          if (!Array.isArray(results)) {
            // Not a per-operation answer (an error for the whole request): pass it through as it came.
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(Buffer.concat(chunks));
            return;
          }
          answer(upRes.statusCode ?? 200, upRes.headers, results);
        });
      },
    );
    up.on('error', () => {
      this.stats.dropped++;
      req.socket.destroy();
    });
    up.end(forwardedBody);
  }

  private forward(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): void {
    const headers = { ...req.headers, host: this.upstream.host };
    const up = https.request(
      { protocol: 'https:', hostname: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers, agent: this.agent },
      (upRes) => {
        this.stats.forwarded++;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => {
      this.stats.dropped++;
      req.socket.destroy();
    });
    up.end(body);
  }
}
