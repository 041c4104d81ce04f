import https from 'node:https';
import { CosmosClient } from '@azure/cosmos';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { BlobAttemptCounter, type AttemptCounter } from './adapters/attemptCounter';
import { BlobContainerRest, BlobDeadLetterSink, fromConnectionString, type BlobAuth } from './adapters/blobDeadLetters';
import { CosmosTwinStore } from './adapters/cosmosStore';
import { SyncEngine } from './sync/engine';

/**
 * App settings (all read here, nowhere else):
 * - COSMOS_ENDPOINT, COSMOS_DATABASE, COSMOS_CONTAINER: the replica container (created by the infra, never here).
 * - AZURE_CLIENT_ID: client id of the user-assigned managed identity (managed identity is the default auth).
 * - COSMOS_KEY: only for a local Cosmos-compatible server on a loopback address; refused for any other endpoint.
 * - DEADLETTER_BLOB_ENDPOINT + DEADLETTER_CONTAINER: dead letters in Blob Storage, with the managed identity
 *   (an `https://<account>.blob.core.windows.net` endpoint, or loopback: see AZURE_HOST_SUFFIXES).
 * - DEADLETTER_CONNECTION_STRING: instead of the endpoint, for Azurite on loopback only.
 * - TOMBSTONE_TTL_SECONDS: per-item TTL of tombstones (Event Hub retention + 1 day); unset keeps them.
 * - SYNC_CONCURRENCY: point reads at once per invocation (default 16); a batch's writes go in one bulk call.
 * - SYNC_ATTEMPTS_BLOB_ENDPOINT + SYNC_ATTEMPTS_CONTAINER (default sync-attempts): where syncTwins counts the
 *   starts of each batch durably (the Functions host's storage account, with the managed identity); without
 *   the endpoint, Azurite's DEADLETTER_CONNECTION_STRING on loopback; with neither, no durable count.
 */
export interface SyncSettings {
  cosmosEndpoint: string;
  cosmosDatabase: string;
  cosmosContainer: string;
  cosmosKey?: string;
  clientId?: string;
  deadLetterEndpoint?: string;
  deadLetterConnectionString?: string;
  deadLetterContainer: string;
  tombstoneTtlSeconds?: number;
  concurrency?: number;
  attemptsEndpoint?: string;
  attemptsContainer: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function isLoopback(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return false;
  }
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Token audience: a Storage token (`https://storage.azure.com/.default`) is good on every storage account and
 * an IoT Hub token (`https://iothubs.azure.net/.default`) on every hub, so a mistyped or planted endpoint
 * would receive a token it could replay against ours. Bearer tokens go only to hosts under these suffixes
 * (Azure public cloud: the token scopes above are the public cloud's too), or to a loopback stand-in.
 */
export const AZURE_HOST_SUFFIXES = {
  iotHub: '.azure-devices.net',
  blob: '.blob.core.windows.net',
} as const;

/** Refuses to send a bearer token to `host` unless it is loopback or an Azure host of the given kind. */
export function assertTokenAudience(kind: keyof typeof AZURE_HOST_SUFFIXES, url: string, setting: string): void {
  if (isLoopback(url)) return;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`${setting} is not a URL: ${JSON.stringify(url)}`);
  }
  const suffix = AZURE_HOST_SUFFIXES[kind];
  const host = parsed.hostname.toLowerCase();
  if (parsed.protocol !== 'https:' || !host.endsWith(suffix) || host.length === suffix.length || parsed.username || parsed.password) {
    throw new ConfigError(`${setting} must be https://<name>${suffix} (or a loopback stand-in): a bearer token is sent there, got ${JSON.stringify(url)}`);
  }
}

/** A positive number read from an app setting; undefined when unset. Whole numbers only unless `fractional`. */
export function positiveSetting(env: Record<string, string | undefined>, name: string, opts: { fractional?: boolean } = {}): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  const ok = opts.fractional ? Number.isFinite(n) && n > 0 : Number.isSafeInteger(n) && n > 0;
  if (!ok) throw new ConfigError(`${name} must be a positive ${opts.fractional ? 'number' : 'integer'}, got ${JSON.stringify(raw)}`);
  return n;
}

export function readSettings(env: Record<string, string | undefined> = process.env): SyncSettings {
  const missing = ['COSMOS_ENDPOINT', 'COSMOS_DATABASE', 'COSMOS_CONTAINER'].filter((n) => !env[n]);
  if (!env.DEADLETTER_BLOB_ENDPOINT && !env.DEADLETTER_CONNECTION_STRING) missing.push('DEADLETTER_BLOB_ENDPOINT');
  if (missing.length) throw new ConfigError(`missing app settings: ${missing.join(', ')}`);
  const settings: SyncSettings = {
    cosmosEndpoint: env.COSMOS_ENDPOINT!,
    cosmosDatabase: env.COSMOS_DATABASE!,
    cosmosContainer: env.COSMOS_CONTAINER!,
    cosmosKey: env.COSMOS_KEY || undefined,
    clientId: env.AZURE_CLIENT_ID || undefined,
    deadLetterEndpoint: env.DEADLETTER_BLOB_ENDPOINT || undefined,
    deadLetterConnectionString: env.DEADLETTER_CONNECTION_STRING || undefined,
    deadLetterContainer: env.DEADLETTER_CONTAINER || 'deadletters',
    tombstoneTtlSeconds: positiveSetting(env, 'TOMBSTONE_TTL_SECONDS'),
    concurrency: positiveSetting(env, 'SYNC_CONCURRENCY'),
    attemptsEndpoint: env.SYNC_ATTEMPTS_BLOB_ENDPOINT || undefined,
    attemptsContainer: env.SYNC_ATTEMPTS_CONTAINER || 'sync-attempts',
  };
  if (settings.deadLetterEndpoint) assertTokenAudience('blob', settings.deadLetterEndpoint, 'DEADLETTER_BLOB_ENDPOINT');
  if (settings.cosmosKey && !isLoopback(settings.cosmosEndpoint)) {
    throw new ConfigError('COSMOS_KEY is accepted only for a local server on a loopback endpoint; use the managed identity for Azure');
  }
  if (!settings.deadLetterEndpoint && settings.deadLetterConnectionString) {
    const { containerUrl } = fromConnectionString(settings.deadLetterConnectionString, settings.deadLetterContainer);
    if (!isLoopback(containerUrl)) throw new ConfigError('DEADLETTER_CONNECTION_STRING is accepted only for Azurite on loopback; use DEADLETTER_BLOB_ENDPOINT');
  }
  return settings;
}

let credential: TokenCredential | undefined;
/** The process's one Entra ID credential (managed identity in Azure; AZURE_CLIENT_ID picks the user-assigned one). */
export function azureCredential(clientId: string | undefined): TokenCredential {
  return (credential ??= new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {}));
}

export function createCosmosClient(settings: Pick<SyncSettings, 'cosmosEndpoint' | 'cosmosKey' | 'clientId'>): CosmosClient {
  if (settings.cosmosKey) {
    if (!isLoopback(settings.cosmosEndpoint)) throw new ConfigError('a Cosmos key is accepted only for a loopback endpoint');
    return new CosmosClient({
      endpoint: settings.cosmosEndpoint,
      key: settings.cosmosKey,
      // The local server's certificate is self-signed: accepted for a loopback endpoint with a key, never otherwise.
      agent: new https.Agent({ rejectUnauthorized: false, keepAlive: true }),
      connectionPolicy: { enableEndpointDiscovery: false },
    });
  }
  return new CosmosClient({ endpoint: settings.cosmosEndpoint, aadCredentials: azureCredential(settings.clientId) });
}

let shared: { endpoint: string; client: CosmosClient } | undefined;
/**
 * The function app's one CosmosClient per process, shared by every function in it (syncTwins, verifyRepair):
 * one connection pool, one cache of partition key ranges, one token.
 */
export function sharedCosmosClient(settings: Pick<SyncSettings, 'cosmosEndpoint' | 'cosmosKey' | 'clientId'>): CosmosClient {
  if (!shared || shared.endpoint !== settings.cosmosEndpoint) shared = { endpoint: settings.cosmosEndpoint, client: createCosmosClient(settings) };
  return shared.client;
}

/** A Blob container reached with the managed identity (a token for Azure Storage, renewed 5 minutes before it expires). */
function tokenAuth(clientId: string | undefined): BlobAuth {
  const cred = azureCredential(clientId);
  let token: { token: string; expiresOnTimestamp: number } | null = null;
  return {
    kind: 'token',
    getToken: async () => {
      if (!token || token.expiresOnTimestamp - Date.now() < 5 * 60_000) token = await cred.getToken('https://storage.azure.com/.default');
      if (!token) throw new Error('no token for Azure Storage');
      return token.token;
    },
  };
}

/** The durable count of batch starts (see adapters/attemptCounter.ts); undefined when no store is configured. */
export function createAttemptCounter(settings: SyncSettings): AttemptCounter | undefined {
  if (settings.attemptsEndpoint) {
    return new BlobAttemptCounter(new BlobContainerRest(`${settings.attemptsEndpoint.replace(/\/$/, '')}/${settings.attemptsContainer}`, tokenAuth(settings.clientId)));
  }
  if (settings.deadLetterConnectionString) {
    const { containerUrl, auth } = fromConnectionString(settings.deadLetterConnectionString, settings.attemptsContainer);
    return new BlobAttemptCounter(new BlobContainerRest(containerUrl, auth));
  }
  return undefined;
}

/** An engine on the replica container; with no client given it makes its own (tools, local host restarts). */
export function createEngine(settings: SyncSettings, client: CosmosClient = createCosmosClient(settings)): SyncEngine {
  const container = client.database(settings.cosmosDatabase).container(settings.cosmosContainer);
  let sink: BlobDeadLetterSink;
  if (settings.deadLetterEndpoint) {
    sink = new BlobDeadLetterSink(`${settings.deadLetterEndpoint.replace(/\/$/, '')}/${settings.deadLetterContainer}`, tokenAuth(settings.clientId));
  } else {
    const { containerUrl, auth } = fromConnectionString(settings.deadLetterConnectionString!, settings.deadLetterContainer);
    sink = new BlobDeadLetterSink(containerUrl, auth);
  }
  return new SyncEngine({
    store: new CosmosTwinStore(container),
    deadLetters: sink,
    tombstoneTtlSeconds: settings.tombstoneTtlSeconds,
    concurrency: settings.concurrency,
  });
}
