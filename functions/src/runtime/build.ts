import https from 'node:https';
import { CosmosClient } from '@azure/cosmos';
import type { TokenCredential } from '@azure/identity';
import { BlobAttemptCounter, type AttemptCounter } from '../adapters/attemptCounter';
import { BlobServiceClient, ContainerClient, type StoragePipelineOptions } from '@azure/storage-blob';
import { BlobDeadLetterSink, BlobReportStore, type ReportStore } from '../adapters/blobDeadLetters';
import { CosmosTwinStore } from '../adapters/cosmosStore';
import { IOTHUB_SCOPE, processCredential, TokenCache } from '../adapters/credentials';
import { CosmosReplicaIndex } from '../adapters/replicaIndex';
import { hubBudgets, RestTwinQuery, type TwinQuery } from '../adapters/twinQuery';
import type { ReplicaIndex } from '../scan/verify';
import { SyncEngine } from '../sync/engine';
import type { DeadLetterSink, TwinStore } from '../sync/ports';
import { isLoopback } from '../adapters/endpoints';
import { ConfigError, processEnv, readSettings, readVerifySettings, type Env, type ReplicaSettings, type SyncSettings, type VerifySettings } from './settings';

/**
 * The composition root: settings in, the runtime out (credential, Cosmos client, store, dead-letter sink,
 * attempt counter, twin-query client, report store, engine). Nothing else constructs these. The function
 * app builds its runtime once per process ({@link FunctionAppRuntime}); the CLI, the local run, the bench
 * and the tests call the same builders with options for what they replace or wrap.
 */
export interface BuildOptions {
  /** The Entra ID credential; default: the process's DefaultAzureCredential (AZURE_CLIENT_ID). */
  credential?: TokenCredential;
  /** A Cosmos client to share (the function app's one per process); default: a new one from the settings. */
  cosmosClient?: CosmosClient;
  /** A store instead of Cosmos DB (the bench's in-memory store). */
  store?: TwinStore;
  /** Wraps the store (the local run's dead-host faults). */
  wrapStore?: (store: TwinStore) => TwinStore;
  /** A dead-letter sink instead of Blob Storage. */
  deadLetters?: DeadLetterSink;
  /** Wraps the dead-letter sink. */
  wrapDeadLetters?: (sink: DeadLetterSink) => DeadLetterSink;
  /** The durable count of batch starts; `null` for none; default: from the settings (see createAttemptCounter). */
  attempts?: AttemptCounter | null;
  /** verifyRepair: the hub client instead of the REST client. */
  twinQuery?: TwinQuery;
  /** verifyRepair: where reports and the saved pass go instead of the reports container. */
  reports?: ReportStore;
}

/** What syncTwins runs on. */
export interface SyncRuntime {
  engine: SyncEngine;
  /** Without one, the handler counts nothing durably and relies on the retry context alone. */
  attempts?: AttemptCounter;
}

/** What verifyRepair runs on. */
export interface VerifyRuntime {
  engine: SyncEngine;
  twinQuery: TwinQuery;
  replica: ReplicaIndex;
  reports: ReportStore;
  hub: string;
  queriesPerMinute: number;
  twinReadsPerSecond: number;
  maxMinutes: number;
  pageSize: number;
}

export function createCosmosClient(settings: Pick<ReplicaSettings, 'cosmosEndpoint' | 'cosmosKey' | 'clientId'>, credential?: TokenCredential): CosmosClient {
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
  return new CosmosClient({ endpoint: settings.cosmosEndpoint, aadCredentials: credential ?? processCredential(settings.clientId) });
}

/**
 * Blob requests: the SDK's own retries (exponential, for 5xx, 408, timeouts and network errors; never for
 * 409/412, which the attempt counter handles), 30 s per try, at most 3 tries, so a dead-letter write fails
 * within about 1.5 minutes and the invocation's retry policy takes over.
 */
const BLOB_PIPELINE: StoragePipelineOptions = { retryOptions: { maxTries: 3, tryTimeoutInMs: 30_000, maxRetryDelayInMs: 5_000 } };

/**
 * One Blob container of the settings' storage: the account endpoint with Entra ID (the SDK caches the token),
 * or Azurite's connection string (Shared Key; readSettings has already refused one that is not on loopback).
 */
export function createBlobContainer(
  storage: { endpoint?: string; connectionString?: string; clientId?: string },
  container: string,
  credential?: TokenCredential,
): ContainerClient {
  if (storage.endpoint) return new ContainerClient(`${storage.endpoint.replace(/\/$/, '')}/${container}`, credential ?? processCredential(storage.clientId), BLOB_PIPELINE);
  if (storage.connectionString) return BlobServiceClient.fromConnectionString(storage.connectionString, BLOB_PIPELINE).getContainerClient(container);
  throw new ConfigError(`no Blob Storage configured for the ${container} container`);
}

/** The dead-letter account of the settings (dead letters, verify reports). */
function deadLetterStorage(settings: SyncSettings) {
  return { endpoint: settings.deadLetterEndpoint, connectionString: settings.deadLetterConnectionString, clientId: settings.clientId };
}

/** The durable count of batch starts (see adapters/attemptCounter.ts); undefined when no store is configured. */
export function createAttemptCounter(settings: SyncSettings, credential?: TokenCredential): AttemptCounter | undefined {
  if (settings.attemptsEndpoint) return new BlobAttemptCounter(createBlobContainer({ endpoint: settings.attemptsEndpoint, clientId: settings.clientId }, settings.attemptsContainer, credential));
  if (settings.deadLetterConnectionString) return new BlobAttemptCounter(createBlobContainer({ connectionString: settings.deadLetterConnectionString }, settings.attemptsContainer));
  return undefined;
}

/** The dead-letter container (the engine's sink, the CLI's redrive). */
export function createDeadLetterContainer(settings: SyncSettings, credential?: TokenCredential): ContainerClient {
  return createBlobContainer(deadLetterStorage(settings), settings.deadLetterContainer, credential);
}

function buildEngine(settings: SyncSettings, options: BuildOptions): SyncEngine {
  let store = options.store;
  if (!store) {
    const client = options.cosmosClient ?? createCosmosClient(settings, options.credential);
    store = new CosmosTwinStore(client.database(settings.cosmosDatabase).container(settings.cosmosContainer));
  }
  const deadLetters = options.deadLetters ?? new BlobDeadLetterSink(createDeadLetterContainer(settings, options.credential));
  return new SyncEngine({
    store: options.wrapStore ? options.wrapStore(store) : store,
    deadLetters: options.wrapDeadLetters ? options.wrapDeadLetters(deadLetters) : deadLetters,
    tombstoneTtlSeconds: settings.tombstoneTtlSeconds,
    concurrency: settings.concurrency,
  });
}

/** The hub client (the timer's and the CLI's): a token per request from the credential, cached until 5 minutes before it expires. */
export function createTwinQuery(options: { hostName: string; credential: TokenCredential; ca?: string | Buffer; timeoutMs?: number }): RestTwinQuery {
  return new RestTwinQuery({ hostName: options.hostName, getToken: new TokenCache(options.credential).getter(IOTHUB_SCOPE), ca: options.ca, timeoutMs: options.timeoutMs });
}

/** syncTwins' runtime (and the engine every tool writes through). */
export function buildSyncRuntime(settings: SyncSettings, options: BuildOptions = {}): SyncRuntime {
  const attempts = options.attempts === null ? undefined : options.attempts ?? createAttemptCounter(settings, options.credential);
  return { engine: buildEngine(settings, options), attempts };
}

/** verifyRepair's runtime: budgets follow the hub's tier (half of its throttles) unless overridden. */
export function buildVerifyRuntime(settings: VerifySettings, options: BuildOptions = {}): VerifyRuntime {
  const client = options.cosmosClient ?? createCosmosClient(settings, options.credential);
  const budget = hubBudgets(settings.hubSku, settings.hubUnits, 0.5);
  const reports = options.reports ?? new BlobReportStore(createBlobContainer(deadLetterStorage(settings), settings.reportsContainer, options.credential));
  return {
    engine: buildEngine(settings, { ...options, cosmosClient: client }),
    twinQuery: options.twinQuery ?? createTwinQuery({ hostName: settings.hub, credential: options.credential ?? processCredential(settings.clientId) }),
    replica: new CosmosReplicaIndex(client.database(settings.cosmosDatabase).container(settings.cosmosContainer)),
    reports,
    hub: settings.hub,
    queriesPerMinute: settings.queriesPerMinute ?? budget.queriesPerMinute,
    twinReadsPerSecond: settings.twinReadsPerSecond ?? budget.twinReadsPerSecond,
    maxMinutes: settings.maxMinutes,
    pageSize: settings.pageSize,
  };
}

/**
 * The function app's runtime: built on first use from the app settings, one per process, shared by every
 * function in it (syncTwins, verifyRepair): one CosmosClient (one connection pool, one cache of partition
 * key ranges, one token), one credential. Each function's part is built when that function first runs, so
 * syncTwins does not need the hub's settings.
 */
export class FunctionAppRuntime {
  private cosmos?: CosmosClient;
  private syncRuntime?: SyncRuntime;
  private verifyRuntime?: VerifyRuntime;

  constructor(private readonly env: Env) {}

  private client(settings: SyncSettings): CosmosClient {
    return (this.cosmos ??= createCosmosClient(settings));
  }

  sync(): SyncRuntime {
    if (!this.syncRuntime) {
      const settings = readSettings(this.env);
      this.syncRuntime = buildSyncRuntime(settings, { cosmosClient: this.client(settings) });
    }
    return this.syncRuntime;
  }

  verify(): VerifyRuntime {
    if (!this.verifyRuntime) {
      const settings = readVerifySettings(this.env);
      this.verifyRuntime = buildVerifyRuntime(settings, { cosmosClient: this.client(settings) });
    }
    return this.verifyRuntime;
  }
}

let processRuntime: FunctionAppRuntime | undefined;
/** The registered functions' runtime, from the process's app settings. */
export function functionAppRuntime(): FunctionAppRuntime {
  return (processRuntime ??= new FunctionAppRuntime(processEnv()));
}
