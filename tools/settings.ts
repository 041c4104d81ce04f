import type { TokenCredential } from '@azure/identity';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import { azureCredential, ConfigError, createCosmosClient, isLoopback, readSettings, type SyncSettings } from './configBridge';
import { parseHubHost } from '../functions/src/replicaTools/twinQuery';

/**
 * The tools read the same settings as the function app (COSMOS_*, DEADLETTER_*, AZURE_CLIENT_ID), plus
 * IOTHUB_HOSTNAME. Authentication is Entra ID throughout (DefaultAzureCredential: Azure CLI login, managed
 * identity, workload identity or environment credentials); keys only for local servers on loopback.
 */
export function hubHostName(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const host = flag ?? env.IOTHUB_HOSTNAME;
  if (!host) throw new ConfigError('the hub is unknown: pass --hub <name>.azure-devices.net or set IOTHUB_HOSTNAME');
  // Before any token is fetched: the hub token is only ever sent to <name>.azure-devices.net or loopback.
  parseHubHost(host);
  return host;
}

export function toolCredential(env: NodeJS.ProcessEnv): TokenCredential {
  return azureCredential(env.AZURE_CLIENT_ID || undefined);
}

export function engineSettings(env: NodeJS.ProcessEnv): SyncSettings {
  return readSettings(env);
}

/** Cosmos settings alone (show / query need nothing else). */
export function replicaContainer(env: NodeJS.ProcessEnv) {
  const missing = ['COSMOS_ENDPOINT', 'COSMOS_DATABASE', 'COSMOS_CONTAINER'].filter((n) => !env[n]);
  if (missing.length) throw new ConfigError(`missing settings: ${missing.join(', ')}`);
  if (env.COSMOS_KEY && !isLoopback(env.COSMOS_ENDPOINT!)) throw new ConfigError('COSMOS_KEY is accepted only for a local server on a loopback endpoint');
  const client = createCosmosClient({ cosmosEndpoint: env.COSMOS_ENDPOINT!, cosmosKey: env.COSMOS_KEY || undefined, clientId: env.AZURE_CLIENT_ID || undefined });
  return { client, container: client.database(env.COSMOS_DATABASE!).container(env.COSMOS_CONTAINER!) };
}

/** The dead-letter container through @azure/storage-blob: Entra ID, or Azurite's connection string on loopback. */
export function deadLetterContainer(env: NodeJS.ProcessEnv): ContainerClient {
  const settings = readSettings(env);
  if (settings.deadLetterEndpoint) {
    return new ContainerClient(`${settings.deadLetterEndpoint.replace(/\/$/, '')}/${settings.deadLetterContainer}`, toolCredential(env));
  }
  // readSettings has already refused a connection string that is not Azurite on loopback.
  return BlobServiceClient.fromConnectionString(settings.deadLetterConnectionString!).getContainerClient(settings.deadLetterContainer);
}
