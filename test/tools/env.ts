import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { CosmosTwinStore } from '../../functions/src/adapters/cosmosStore';
import { buildSyncRuntime } from '../../functions/src/runtime/build';
import { readSettings } from '../../functions/src/runtime/settings';
import type { SyncEngine } from '../../functions/src/sync/engine';
import { encodeDocId } from '../../functions/src/sync/ids';
import type { TwinQuery } from '../../functions/src/adapters/twinQuery';
import type { TwinStore } from '../../functions/src/sync/ports';
import type { TwinDoc } from '../../functions/src/sync/types';
import { CONTAINER, DATABASE, LOCAL_COSMOS_KEY, startAzurite, startLocalCosmos, type LocalBlob, type LocalCosmos } from '../../testkit/servers';
import { startHubStandIn, type HubStandIn } from './hubStandIn';

export interface ToolEnv {
  cosmos: LocalCosmos;
  blob?: LocalBlob;
  hub?: HubStandIn;
  deadLetters?: ContainerClient;
  /** The app settings the function and the CLI read, pointing at the local servers. */
  settings: Record<string, string>;
  credential: TokenCredential;
  engine(store?: TwinStore): SyncEngine;
  readDoc(deviceId: string, moduleId?: string): Promise<TwinDoc | undefined>;
  clear(): Promise<void>;
  close(): Promise<void>;
}

/** A static token the stand-in accepts (it checks `Authorization: Bearer <token>`). */
export function staticCredential(token: string): TokenCredential & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async getToken(scopes: string | string[]): Promise<AccessToken> {
      calls.push(Array.isArray(scopes) ? scopes.join(' ') : scopes);
      return { token, expiresOnTimestamp: Date.now() + 3_600_000 };
    },
  };
}

export async function startToolEnv(opts: { hub?: boolean; blob?: boolean } = {}): Promise<ToolEnv> {
  const [cosmos, blob, hub] = await Promise.all([
    startLocalCosmos(),
    opts.blob === false ? undefined : startAzurite(),
    opts.hub === false ? undefined : startHubStandIn(),
  ]);
  let deadLetters: ContainerClient | undefined;
  if (blob) {
    deadLetters = BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters');
    await deadLetters.createIfNotExists();
    await BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('reports').createIfNotExists();
  }
  const settings: Record<string, string> = {
    COSMOS_ENDPOINT: cosmos.endpoint,
    COSMOS_DATABASE: DATABASE,
    COSMOS_CONTAINER: CONTAINER,
    COSMOS_KEY: LOCAL_COSMOS_KEY,
    DEADLETTER_CONTAINER: 'deadletters',
    REPORTS_CONTAINER: 'reports',
  };
  if (blob) settings.DEADLETTER_CONNECTION_STRING = blob.connectionString;
  if (hub) settings.IOTHUB_HOSTNAME = hub.hostName;
  return {
    cosmos, blob, hub, deadLetters, settings,
    credential: staticCredential(hub?.token ?? 'none'),
    engine(store) {
      // The function app's factory on these settings; the store defaults to this environment's container (its client).
      return buildSyncRuntime(readSettings(settings), { store: store ?? new CosmosTwinStore(cosmos.container), attempts: null }).engine;
    },
    async readDoc(deviceId, moduleId) {
      try {
        const { resource } = await cosmos.container.item(encodeDocId({ deviceId, moduleId }), deviceId).read<TwinDoc>();
        return resource ?? undefined;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
    },
    async clear() {
      const { resources } = await cosmos.container.items.query<{ id: string; deviceId: string }>('SELECT c.id, c.deviceId FROM c').fetchAll();
      for (const r of resources) await cosmos.container.item(r.id, r.deviceId).delete();
      if (deadLetters) for await (const b of deadLetters.listBlobsFlat()) await deadLetters.deleteBlob(b.name);
      hub?.reset();
    },
    async close() {
      await Promise.all([cosmos.close(), blob?.close(), hub?.close()]);
    },
  };
}

/**
 * Wraps a twin query client and stamps every page request when the pager sends it (after its pacing
 * wait). Spacing measured here is what the pager controls: machine load can only lengthen it, whereas
 * arrival times at the stand-in also carry connection set-up and would make a lower bound flaky.
 */
export function stampedQuery<Q extends TwinQuery>(inner: Q): { query: TwinQuery; sentAt: number[] } {
  const sentAt: number[] = [];
  return {
    sentAt,
    query: {
      page(sql, continuation, pageSize, signal) {
        sentAt.push(Date.now());
        return inner.page(sql, continuation, pageSize, signal);
      },
      twin: (key, signal) => inner.twin(key, signal),
    },
  };
}
