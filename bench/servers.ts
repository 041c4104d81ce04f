/**
 * The local Cosmos-compatible server (@vercel/cosmosdb-server) and Azurite, metered at the server:
 * every request is classified the way Cosmos bills it (testkit's classifyRequest) and priced from its
 * bytes (ru.ts). The bench runs them in a child process by default, so the bench process's CPU and
 * memory figures are the client's own (in Azure, Cosmos DB is not in the function's process either);
 * tests run them in-process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';
import { classifyRequest, DATABASE, LOCAL_COSMOS_KEY, startAzurite, type CosmosDbServerModule } from '../testkit/servers';
import { requestRu } from './ru';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

export const DEADLETTER_CONTAINER = 'deadletters';

export interface ServerCounts {
  total: number;
  byKind: Record<string, number>;
  byStatus: Record<string, number>;
  /** Estimated RU (ru.ts), total and by kind. */
  ru: number;
  ruByKind: Record<string, number>;
  /** Body bytes of successful writes (point or inside bulk requests) and of successful point reads. */
  writeBytes: number;
  readBytes: number;
  /** Successful document writes, point or inside bulk requests. */
  writeOps: number;
  /** Operations carried inside bulk/batch requests (each priced on its own). */
  bulkOps: number;
  /** CPU used by the process the servers run in, µs (in-process mode: the bench's own process). */
  cpuUs: number;
}

export interface BenchServers {
  cosmosEndpoint: string;
  cosmosKey: string;
  database: string;
  blobConnectionString: string;
  deadLetterContainer: string;
  /** Where the servers run: their CPU and memory are not the bench process's when 'child'. */
  mode: 'child' | 'in-process';
  counts(): Promise<ServerCounts>;
  /** Creates an empty replica container (partitioned by /deviceId), as the infra does. */
  createContainer(name: string): Promise<void>;
  /** Dead letters stored in Azurite so far. */
  deadLetterBlobs(): Promise<number>;
  close(): Promise<void>;
}

export function emptyCounts(): ServerCounts {
  return { total: 0, byKind: {}, byStatus: {}, ru: 0, ruByKind: {}, writeBytes: 0, readBytes: 0, writeOps: 0, bulkOps: 0, cpuUs: 0 };
}

/** b − a, field by field. */
export function diffCounts(a: ServerCounts, b: ServerCounts): ServerCounts {
  const sub = (x: Record<string, number>, y: Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
      const v = (y[k] ?? 0) - (x[k] ?? 0);
      if (v !== 0) out[k] = v;
    }
    return out;
  };
  return {
    total: b.total - a.total,
    byKind: sub(a.byKind, b.byKind),
    byStatus: sub(a.byStatus, b.byStatus),
    ru: b.ru - a.ru,
    ruByKind: sub(a.ruByKind, b.ruByKind),
    writeBytes: b.writeBytes - a.writeBytes,
    readBytes: b.readBytes - a.readBytes,
    writeOps: b.writeOps - a.writeOps,
    bulkOps: b.bulkOps - a.bulkOps,
    cpuUs: b.cpuUs - a.cpuUs,
  };
}

export interface ServerOptions {
  /**
   * Added to every Cosmos response before it is sent (no CPU): models the network round trip to a Cosmos
   * account in the same region (~1-5 ms), which loopback does not have. @default 0
   */
  rttMs?: number;
}

/** a + b, field by field. */
export function addCounts(a: ServerCounts, b: ServerCounts): ServerCounts {
  const neg = diffCounts(b, emptyCounts());
  return diffCounts(neg, a);
}

export async function startServersInProcess(opts: ServerOptions = {}): Promise<BenchServers> {
  const rttMs = opts.rttMs ?? 0;
  const { createHttpsServer } = require('@vercel/cosmosdb-server') as CosmosDbServerModule;
  const server = createHttpsServer({ keepAlive: true });
  const counts = emptyCounts();
  // Prepended so that the response is wrapped before the server's own handler writes it.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const isBulk = /^true$/i.test(String(req.headers['x-ms-cosmos-is-batch-request'] ?? ''));
    const kind = isBulk ? 'bulk' : classifyRequest(req.method ?? '', req.url ?? '', req.headers);
    const requestBytes = Number(req.headers['content-length'] ?? 0) || 0;
    let responseBytes = 0;
    // Bulk requests carry many operations: keep both bodies to price each operation on its own.
    const requestChunks: Buffer[] = [];
    const responseChunks: Buffer[] = [];
    if (isBulk) req.on('data', (c: Buffer) => requestChunks.push(c));
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    const measure = (chunk: unknown) => {
      if (typeof chunk === 'string') responseBytes += Buffer.byteLength(chunk);
      else if (chunk instanceof Uint8Array) responseBytes += chunk.byteLength;
      if (isBulk && (typeof chunk === 'string' || chunk instanceof Uint8Array)) responseChunks.push(Buffer.from(chunk as never));
    };
    (res as { write: unknown }).write = (chunk: unknown, ...rest: unknown[]) => {
      measure(chunk);
      return write(chunk, ...rest);
    };
    (res as { end: unknown }).end = (chunk?: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== 'function') measure(chunk);
      if (rttMs > 0) {
        setTimeout(() => end(chunk, ...rest), rttMs);
        return res;
      }
      return end(chunk, ...rest);
    };
    res.on('finish', () => {
      const status = res.statusCode;
      counts.total++;
      counts.byKind[kind] = (counts.byKind[kind] ?? 0) + 1;
      const sk = `${kind}:${status}`;
      counts.byStatus[sk] = (counts.byStatus[sk] ?? 0) + 1;
      if (isBulk) {
        priceBulk(counts, Buffer.concat(requestChunks), Buffer.concat(responseChunks));
        return;
      }
      const ru = requestRu(kind, status, requestBytes, responseBytes);
      counts.ru += ru;
      counts.ruByKind[kind] = (counts.ruByKind[kind] ?? 0) + ru;
      if (status >= 200 && status < 300) {
        if (kind === 'write') {
          counts.writeBytes += requestBytes;
          counts.writeOps++;
        }
        if (kind === 'read') counts.readBytes += responseBytes;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const cosmosEndpoint = `https://127.0.0.1:${port}`;
  const client = new CosmosClient({
    endpoint: cosmosEndpoint,
    key: LOCAL_COSMOS_KEY,
    agent: new https.Agent({ rejectUnauthorized: false, keepAlive: true }),
    connectionPolicy: { enableEndpointDiscovery: false },
  });
  const { database } = await client.databases.createIfNotExists({ id: DATABASE });
  const blob = await startAzurite();
  const blobService = BlobServiceClient.fromConnectionString(blob.connectionString);
  const deadLetters = blobService.getContainerClient(DEADLETTER_CONTAINER);
  await deadLetters.createIfNotExists();
  return {
    cosmosEndpoint,
    cosmosKey: LOCAL_COSMOS_KEY,
    database: DATABASE,
    blobConnectionString: blob.connectionString,
    deadLetterContainer: DEADLETTER_CONTAINER,
    mode: 'in-process',
    counts: async () => {
      const cpu = process.cpuUsage();
      return { ...structuredClone(counts), cpuUs: cpu.user + cpu.system };
    },
    createContainer: async (name) => {
      await database.containers.createIfNotExists({ id: name, partitionKey: { paths: ['/deviceId'] } });
    },
    deadLetterBlobs: async () => {
      let n = 0;
      for await (const _ of deadLetters.listBlobsFlat()) n++;
      return n;
    },
    close: async () => {
      client.dispose();
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await blob.close();
    },
  };
}

/** Prices each operation of a bulk request like the point operation it stands for. */
function priceBulk(counts: ServerCounts, request: Buffer, response: Buffer): void {
  let ops: { operationType?: string; resourceBody?: unknown }[];
  let results: { statusCode?: number; resourceBody?: unknown }[];
  try {
    ops = JSON.parse(request.toString('utf8')) as typeof ops;
    results = JSON.parse(response.toString('utf8')) as typeof results;
  } catch {
    return;
  }
  ops.forEach((op, i) => {
    const status = results[i]?.statusCode ?? 0;
    const type = String(op.operationType ?? '').toLowerCase();
    const isRead = type === 'read';
    const bytes = isRead ? Buffer.byteLength(JSON.stringify(results[i]?.resourceBody ?? {})) : Buffer.byteLength(JSON.stringify(op.resourceBody ?? {}));
    const kind = isRead ? 'read' : 'write';
    const ru = requestRu(kind, status, bytes, bytes);
    counts.bulkOps++;
    counts.ru += ru;
    counts.ruByKind[`bulk-${kind}`] = (counts.ruByKind[`bulk-${kind}`] ?? 0) + ru;
    counts.byStatus[`bulk-${kind}:${status}`] = (counts.byStatus[`bulk-${kind}:${status}`] ?? 0) + 1;
    if (status >= 200 && status < 300) {
      if (kind === 'write') {
        counts.writeBytes += bytes;
        counts.writeOps++;
      } else counts.readBytes += bytes;
    }
  });
}

type Reply = { id: number; result?: unknown; error?: string };

/** Starts the servers in a child Node process (bench/serverChild.ts) and talks to it over IPC. */
export async function startServersInChild(opts: ServerOptions = {}): Promise<BenchServers> {
  const child: ChildProcess = fork(path.join(here, 'serverChild.ts'), [JSON.stringify(opts)], {
    // BENCH_SERVER_NODE_ARGS: extra node flags for the server process (e.g. --cpu-prof to see where the server spends its time).
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, (r: Reply) => void>();
  let nextId = 1;
  const ready = new Promise<Omit<BenchServers, 'mode' | 'counts' | 'createContainer' | 'deadLetterBlobs' | 'close'>>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server child exited (${code})`)));
    child.on('message', (m: { ready?: Record<string, string> } & Reply) => {
      if (m.ready) resolve(m.ready as never);
      else pending.get(m.id)?.(m);
    });
  });
  const call = (op: string, arg?: unknown) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (r) => {
        pending.delete(id);
        if (r.error) reject(new Error(r.error));
        else resolve(r.result);
      });
      child.send({ id, op, arg });
    });
  const info = await ready;
  return {
    ...info,
    mode: 'child',
    counts: () => call('counts') as Promise<ServerCounts>,
    createContainer: async (name) => {
      await call('createContainer', name);
    },
    deadLetterBlobs: () => call('deadLetterBlobs') as Promise<number>,
    close: async () => {
      await call('close').catch(() => undefined);
      child.disconnect?.();
      await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
    },
  };
}
