import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';

/** Scopes of the bearer tokens this project asks for. */
export const IOTHUB_SCOPE = 'https://iothubs.azure.net/.default';

let credential: { clientId: string | undefined; credential: TokenCredential } | undefined;

/**
 * The process's one Entra ID credential (managed identity in Azure; AZURE_CLIENT_ID picks the user-assigned
 * one; the CLI also takes an Azure CLI login or workload identity through the same chain).
 */
export function processCredential(clientId: string | undefined): TokenCredential {
  if (!credential || credential.clientId !== clientId) {
    credential = { clientId, credential: new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {}) };
  }
  return credential.credential;
}

/**
 * A token per scope, renewed 5 minutes before it expires: the token cache of the one hand-written REST
 * client (IoT Hub, adapters/twinQuery.ts). The SDK clients (@azure/cosmos, @azure/storage-blob) cache their own.
 */
export class TokenCache {
  private readonly tokens = new Map<string, { token: string; expiresOnTimestamp: number }>();
  constructor(private readonly credential: TokenCredential, private readonly renewBeforeMs = 5 * 60_000) {}

  async token(scope: string): Promise<string> {
    const cached = this.tokens.get(scope);
    if (cached && cached.expiresOnTimestamp - Date.now() > this.renewBeforeMs) return cached.token;
    const fresh = await this.credential.getToken(scope);
    if (!fresh) throw new Error(`no token for ${scope}`);
    this.tokens.set(scope, fresh);
    return fresh.token;
  }

  /** A getter for one scope, in the shape the REST clients take. */
  getter(scope: string): () => Promise<string> {
    return () => this.token(scope);
  }
}
