import https from 'node:https';
import { createRequire } from 'node:module';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CosmosClient, type Container } from '@azure/cosmos';

const require = createRequire(import.meta.url);

export const AZURITE_ACCOUNT = 'devstoreaccount1';
/** Azurite's well-known development key (public, documented; only ever used on loopback). */
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
export const LOCAL_COSMOS_KEY = 'local-cosmos-key';
export const DATABASE = 'twin-replica';
export const CONTAINER = 'twins';

export interface LocalCosmos {
  endpoint: string;
  port: number;
  client: CosmosClient;
  container: Container;
  /** Requests the server has answered (all kinds), counted at the server. */
  requests: { total: number; byKind: Record<string, number> };
  close(): Promise<void>;
}

/** @vercel/cosmosdb-server ships its own typings; it is loaded with require, so they are applied here. */
export type CosmosDbServerModule = typeof import('@vercel/cosmosdb-server');

/** Starts @vercel/cosmosdb-server on an ephemeral loopback port and creates the replica container as the infra does. */
export async function startLocalCosmos(opts: { port?: number } = {}): Promise<LocalCosmos> {
  const { createHttpsServer } = require('@vercel/cosmosdb-server') as CosmosDbServerModule;
  const server = createHttpsServer({ keepAlive: true });
  const requests = { total: 0, byKind: {} as Record<string, number> };
  server.on('request', (req: IncomingMessage) => {
    requests.total++;
    const kind = classifyRequest(req.method ?? '', req.url ?? '', req.headers);
    requests.byKind[kind] = (requests.byKind[kind] ?? 0) + 1;
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const endpoint = `https://127.0.0.1:${port}`;
  const client = new CosmosClient({
    endpoint,
    key: LOCAL_COSMOS_KEY,
    agent: new https.Agent({ rejectUnauthorized: false, keepAlive: true }),
    connectionPolicy: { enableEndpointDiscovery: false },
  });
  const { database } = await client.databases.createIfNotExists({ id: DATABASE });
  const { container } = await database.containers.createIfNotExists({ id: CONTAINER, partitionKey: { paths: ['/deviceId'] } });
  return {
    endpoint, port, client, container, requests,
    close: () => new Promise<void>((resolve) => {
      client.dispose();
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

/** Names a REST call: point read, write, bulk, query, or control-plane (metadata). */
export function classifyRequest(method: string, url: string, headers: IncomingHttpHeaders): string {
  const path = url.split('?')[0];
  // A bulk request (many operations, one HTTP call; the SDK's executeBulkOperations) is named on its own.
  if (/^true$/i.test(String(headers['x-ms-cosmos-is-batch-request'] ?? ''))) return 'bulk';
  const isDoc = /\/docs(\/|$)/.test(path);
  if (!isDoc) return 'control-plane';
  if (method === 'POST' && (headers['x-ms-documentdb-isquery'] === 'True' || headers['x-ms-documentdb-isquery'] === 'true' || String(headers['content-type']).includes('query+json'))) return 'query';
  if (method === 'GET') return /\/docs\/[^/]+$/.test(path) ? 'read' : 'readfeed';
  if (method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE') return 'write';
  return 'other';
}

export interface LocalBlob {
  endpoint: string;
  connectionString: string;
  close(): Promise<void>;
}

/** The part of Azurite's (untyped) in-process Blob server API used here. */
interface AzuriteBlobServer {
  start(): Promise<void>;
  getHttpServerAddress(): string;
  close(): Promise<void>;
}
type AzuriteBlobConfigurationCtor = new (...args: unknown[]) => object;
type AzuriteBlobServerCtor = new (config: object) => AzuriteBlobServer;

/** Starts Azurite's Blob service in-process, in memory, on an ephemeral loopback port. */
export async function startAzurite(): Promise<LocalBlob> {
  const BlobServer = (require('azurite/dist/src/blob/BlobServer') as { default: AzuriteBlobServerCtor }).default;
  const BlobConfiguration = (require('azurite/dist/src/blob/BlobConfiguration') as { default: AzuriteBlobConfigurationCtor }).default;
  // host, port, keepAliveTimeout, metadataDB, extentDB, persistence, accessLog, accessLogStream, debugLog, debugLogPath,
  // loose, skipApiVersionCheck, cert, key, pwd, oauth, disableProductStyleUrl, inMemoryPersistence
  const config = new BlobConfiguration('127.0.0.1', 0, 0, undefined, undefined, undefined, false, undefined, false, undefined, true, true, '', '', '', undefined, false, true);
  const server = new BlobServer(config);
  await server.start();
  const endpoint = `${server.getHttpServerAddress()}/${AZURITE_ACCOUNT}`;
  return {
    endpoint,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
    close: () => server.close(),
  };
}
