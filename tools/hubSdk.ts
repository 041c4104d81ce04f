import https from 'node:https';
import type { TokenCredential } from '@azure/identity';
import iothub from 'azure-iothub';
import { parseHubHost, parseRetryAfter, TwinQueryError, type TwinQuery, type TwinQueryPage } from '../functions/src/replicaTools/twinQuery';
import type { JsonObject } from '../functions/src/sync/types';

export interface SdkTwinQueryOptions {
  /** `<hub>.azure-devices.net`, or `127.0.0.1:<port>` for a local stand-in. */
  hostName: string;
  credential: TokenCredential;
  /** Extra trusted CA (PEM) for a loopback stand-in's self-signed certificate; refused for any other host. */
  ca?: string | Buffer;
}

interface RestApiClientLike {
  setOptions(options: { http: { agent: https.Agent } }): void;
}

/**
 * The twin query through the official service SDK: `Registry.fromTokenCredential` (Entra ID, scope
 * https://iothubs.azure.net/.default) and `Registry.createQuery(sql, pageSize).next(continuation)`.
 */
export class SdkTwinQuery implements TwinQuery {
  private readonly registry: InstanceType<typeof iothub.Registry>;

  constructor(options: SdkTwinQueryOptions) {
    const { host, port, loopback } = parseHubHost(options.hostName);
    if (options.ca !== undefined && !loopback) throw new Error('a custom CA is accepted only for a loopback hub stand-in');
    this.registry = iothub.Registry.fromTokenCredential(host, options.credential);
    if (port !== undefined || options.ca !== undefined) {
      // The SDK always dials https://<host>:443 and offers no port option. For a loopback stand-in only, the
      // keep-alive agent it installs is replaced by one whose default port is the stand-in's (Node uses the
      // agent's defaultPort when a request names none) and which trusts the stand-in's certificate.
      const agent = new https.Agent({ keepAlive: true, ...(options.ca !== undefined ? { ca: options.ca } : {}) });
      if (port !== undefined) (agent as https.Agent & { defaultPort: number }).defaultPort = port;
      (this.registry as unknown as { _restApiClient: RestApiClientLike })._restApiClient.setOptions({ http: { agent } });
    }
  }

  async page(sql: string, continuation: string | undefined, pageSize: number): Promise<TwinQueryPage> {
    const query = this.registry.createQuery(sql, pageSize);
    try {
      const { result, message } = await query.next(continuation as string);
      const next = message?.headers?.['x-ms-continuation'] ?? query.continuationToken;
      return { items: (Array.isArray(result) ? result : []) as JsonObject[], continuation: typeof next === 'string' && next !== '' ? next : undefined };
    } catch (err) {
      const e = err as Error & { response?: { statusCode?: number; headers?: Record<string, unknown> } };
      const status = e.response?.statusCode;
      throw new TwinQueryError(`${e.name ?? 'Error'}: ${e.message}`, status, parseRetryAfter(e.response?.headers?.['retry-after']));
    }
  }
}
