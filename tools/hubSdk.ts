import https from 'node:https';
import type { TokenCredential } from '@azure/identity';
import iothub from 'azure-iothub';
import { TwinQueryError, parseHubHost, parseRetryAfter, type DocKey, type JsonObject, type TwinQuery, type TwinQueryPage } from '../functions/src/public';

export interface SdkTwinQueryOptions {
  /** `<hub>.azure-devices.net`, or `127.0.0.1:<port>` for a local stand-in. */
  hostName: string;
  credential: TokenCredential;
  /** Extra trusted CA (PEM) for a loopback stand-in's self-signed certificate; refused for any other host. */
  ca?: string | Buffer;
  /**
   * Time allowed for one request, answer included. The SDK takes no timeout or abort signal of its own, so
   * the wait for its answer is bounded here (the request itself is left to its keep-alive socket). @default 60000
   */
  timeoutMs?: number;
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
  private readonly timeoutMs: number;

  constructor(options: SdkTwinQueryOptions) {
    const { host, port, loopback } = parseHubHost(options.hostName);
    if (options.ca !== undefined && !loopback) throw new Error('a custom CA is accepted only for a loopback hub stand-in');
    this.registry = iothub.Registry.fromTokenCredential(host, options.credential);
    this.timeoutMs = options.timeoutMs ?? 60_000;
    if (port !== undefined || options.ca !== undefined) {
      // The SDK always dials https://<host>:443 and offers no port option. For a loopback stand-in only, the
      // keep-alive agent it installs is replaced by one whose default port is the stand-in's (Node uses the
      // agent's defaultPort when a request names none) and which trusts the stand-in's certificate.
      const agent = new https.Agent({ keepAlive: true, ...(options.ca !== undefined ? { ca: options.ca } : {}) });
      if (port !== undefined) (agent as https.Agent & { defaultPort: number }).defaultPort = port;
      (this.registry as unknown as { _restApiClient: RestApiClientLike })._restApiClient.setOptions({ http: { agent } });
    }
  }

  async page(sql: string, continuation: string | undefined, pageSize: number, signal?: AbortSignal): Promise<TwinQueryPage> {
    const query = this.registry.createQuery(sql, pageSize);
    try {
      const { result, message } = await bounded(query.next(continuation as string), this.timeoutMs, signal, 'twin query');
      const next = message?.headers?.['x-ms-continuation'] ?? query.continuationToken;
      return { items: (Array.isArray(result) ? result : []) as JsonObject[], continuation: typeof next === 'string' && next !== '' ? next : undefined };
    } catch (err) {
      throw asQueryError(err, signal);
    }
  }

  /** Registry.getTwin / getModuleTwin (GET /twins/{id}[/modules/{mid}]); 404 → undefined. */
  async twin(key: DocKey, signal?: AbortSignal): Promise<JsonObject | undefined> {
    try {
      const call = key.moduleId === undefined ? this.registry.getTwin(key.deviceId) : this.registry.getModuleTwin(key.deviceId, key.moduleId);
      const { responseBody } = await bounded(call, this.timeoutMs, signal, 'twin read');
      // The SDK wraps the answer in a Twin object; its toJSON drops the registry reference it adds.
      return JSON.parse(JSON.stringify(responseBody)) as JsonObject;
    } catch (err) {
      const e = asQueryError(err, signal);
      if (e instanceof TwinQueryError && e.status === 404) return undefined;
      throw e;
    }
  }
}

function asQueryError(err: unknown, signal: AbortSignal | undefined): TwinQueryError | Error {
  if (err instanceof TwinQueryError) return err;
  if (signal?.aborted) return signal.reason as Error;
  const e = err as Error & { response?: { statusCode?: number; headers?: Record<string, unknown> } };
  return new TwinQueryError(`${e.name ?? 'Error'}: ${e.message}`, e.response?.statusCode, parseRetryAfter(e.response?.headers?.['retry-after']));
}

/** Settles with `work`, or rejects when `timeoutMs` passes (a transient TwinQueryError) or `signal` aborts. */
function bounded<T>(work: Promise<T>, timeoutMs: number, signal: AbortSignal | undefined, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => finish(() => reject(new TwinQueryError(`${what}: no answer within ${timeoutMs} ms`))), timeoutMs);
    const onAbort = () => finish(() => reject(signal!.reason));
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then((v) => finish(() => resolve(v)), (e) => finish(() => reject(e)));
  });
}
