/**
 * Where a credential may go. Checked before any client is made (runtime/settings.ts) and again by the
 * hub client itself (adapters/twinQuery.ts), so a mistyped or planted endpoint never receives a token.
 */
export class EndpointError extends Error {
  override name = 'EndpointError';
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
    throw new EndpointError(`${setting} is not a URL: ${JSON.stringify(url)}`);
  }
  const suffix = AZURE_HOST_SUFFIXES[kind];
  const host = parsed.hostname.toLowerCase();
  if (parsed.protocol !== 'https:' || !host.endsWith(suffix) || host.length === suffix.length || parsed.username || parsed.password) {
    throw new EndpointError(`${setting} must be https://<name>${suffix} (or a loopback stand-in): a bearer token is sent there, got ${JSON.stringify(url)}`);
  }
}

/**
 * Splits a hub host name that may carry a port. A port (or an IP address) is accepted only for a loopback
 * stand-in: the real hub is always `<name>.azure-devices.net` on 443, and only such a host (or loopback)
 * is ever sent the IoT Hub bearer token (assertTokenAudience).
 */
export function parseHubHost(hostName: string): { host: string; port?: number; loopback: boolean } {
  const m = /^([^:/]+)(?::(\d{1,5}))?$/.exec(hostName.trim());
  if (!m) throw new EndpointError(`not a hub host name: ${JSON.stringify(hostName)} (expected <hub>.azure-devices.net)`);
  const host = m[1];
  const loopback = isLoopback(`https://${host}`);
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && !loopback) throw new EndpointError(`a port in the hub host name is accepted only for a loopback stand-in: ${hostName}`);
  assertTokenAudience('iotHub', `https://${host}`, 'the hub host name');
  return { host, port, loopback };
}
