import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlobAttemptCounter } from '../../functions/src/adapters/attemptCounter';
import { createAttemptCounter, createCosmosClient, FunctionAppRuntime } from '../../functions/src/runtime/build';
import { isLoopback, parseHubHost } from '../../functions/src/adapters/endpoints';
import { ConfigError, hubHostName, parseNumber, readSettings, readVerifySettings } from '../../functions/src/runtime/settings';

const base = {
  COSMOS_ENDPOINT: 'https://acct.documents.azure.com:443/',
  COSMOS_DATABASE: 'twin-replica',
  COSMOS_CONTAINER: 'twins',
  DEADLETTER_BLOB_ENDPOINT: 'https://acct.blob.core.windows.net',
};

describe('app settings', () => {
  it('reads the Azure settings with managed identity and no secrets', () => {
    expect(readSettings({ ...base, AZURE_CLIENT_ID: 'c1d', TOMBSTONE_TTL_SECONDS: '691200' })).toMatchObject({
      cosmosEndpoint: base.COSMOS_ENDPOINT, clientId: 'c1d', deadLetterContainer: 'deadletters', tombstoneTtlSeconds: 691200,
    });
  });

  it('names every missing setting', () => {
    expect(() => readSettings({})).toThrow(/missing app settings: COSMOS_ENDPOINT, COSMOS_DATABASE, COSMOS_CONTAINER, DEADLETTER_BLOB_ENDPOINT/);
  });

  it('accepts a Cosmos key only for a loopback endpoint', () => {
    expect(() => readSettings({ ...base, COSMOS_KEY: 'k' })).toThrow(ConfigError);
    expect(() => createCosmosClient({ cosmosEndpoint: 'https://acct.documents.azure.com', cosmosKey: 'k' })).toThrow(/loopback/);
    expect(readSettings({ ...base, COSMOS_ENDPOINT: 'https://127.0.0.1:8081', COSMOS_KEY: 'k' }).cosmosKey).toBe('k');
  });

  it('accepts a storage connection string only for Azurite on loopback', () => {
    const cs = (host: string) => `DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://${host}/a;`;
    const { DEADLETTER_BLOB_ENDPOINT: _, ...noBlob } = base;
    expect(readSettings({ ...noBlob, DEADLETTER_CONNECTION_STRING: cs('127.0.0.1:10000') }).deadLetterConnectionString).toBeDefined();
    expect(() => readSettings({ ...noBlob, DEADLETTER_CONNECTION_STRING: cs('acct.blob.core.windows.net') })).toThrow(/only for Azurite on loopback/);
  });

  it('counts batch starts in the configured container (the host account in Azure), Azurite locally, nowhere without either', () => {
    const azure = readSettings({ ...base, SYNC_ATTEMPTS_BLOB_ENDPOINT: 'https://host.blob.core.windows.net/' });
    expect(azure).toMatchObject({ attemptsEndpoint: 'https://host.blob.core.windows.net/', attemptsContainer: 'sync-attempts' });
    const counter = createAttemptCounter(azure);
    expect(counter).toBeInstanceOf(BlobAttemptCounter);
    expect((counter as BlobAttemptCounter).container.url).toBe('https://host.blob.core.windows.net/sync-attempts');
    const { DEADLETTER_BLOB_ENDPOINT: _, ...noBlob } = base;
    expect(() => readSettings({ ...noBlob, DEADLETTER_CONNECTION_STRING: 'AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/a;' })).toThrow(/DefaultEndpointsProtocol/);
    const local = readSettings({ ...noBlob, DEADLETTER_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/a;', SYNC_ATTEMPTS_CONTAINER: 'tries' });
    expect((createAttemptCounter(local) as BlobAttemptCounter).container.url).toBe('http://127.0.0.1:10000/a/tries');
    expect(createAttemptCounter(readSettings(base))).toBeUndefined();
  });

  it('rejects malformed numbers', () => {
    expect(() => readSettings({ ...base, TOMBSTONE_TTL_SECONDS: '8 days' })).toThrow(/TOMBSTONE_TTL_SECONDS must be a positive integer/);
  });

  it('reports every problem at once', () => {
    const problems = (() => {
      try {
        readVerifySettings({ COSMOS_ENDPOINT: 'https://acct.documents.azure.com', COSMOS_KEY: 'k', TOMBSTONE_TTL_SECONDS: '-1', VERIFY_PAGE_SIZE: '1.5', IOTHUB_HOSTNAME: 'evil.com', DEADLETTER_BLOB_ENDPOINT: 'https://evil.com' });
      } catch (err) {
        return (err as ConfigError).problems;
      }
      return [];
    })();
    expect(problems).toEqual([
      'missing app settings: COSMOS_DATABASE, COSMOS_CONTAINER',
      expect.stringMatching(/^COSMOS_KEY is accepted only/),
      expect.stringMatching(/^TOMBSTONE_TTL_SECONDS must be a positive integer/),
      expect.stringMatching(/^DEADLETTER_BLOB_ENDPOINT must be https:/),
      expect.stringMatching(/^the hub host name must be https:\/\/<name>\.azure-devices\.net/),
      expect.stringMatching(/^VERIFY_PAGE_SIZE must be a positive integer/),
    ]);
  });

  it('knows loopback addresses from everything else', () => {
    expect(['https://localhost:8081', 'https://127.0.0.1', 'https://127.8.9.10:1', 'https://[::1]:8081'].map(isLoopback)).toEqual([true, true, true, true]);
    expect(['https://10.0.0.1', 'https://localhost.evil.com', 'https://128.0.0.1', 'not a url'].map(isLoopback)).toEqual([false, false, false, false]);
  });
});

describe('one CosmosClient per process', () => {
  it('syncTwins and verifyRepair share the process\'s client (clients are created lazily: no server needed)', () => {
    const env = {
      COSMOS_ENDPOINT: 'https://127.0.0.1:18081', COSMOS_DATABASE: 'twin-replica', COSMOS_CONTAINER: 'twins', COSMOS_KEY: 'k',
      DEADLETTER_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/a;',
      IOTHUB_HOSTNAME: 'hub.azure-devices.net',
    };
    const runtime = new FunctionAppRuntime(env);
    const clientOf = (engine: { store: unknown }) => (engine.store as { container: { database: { client: unknown } } }).container.database.client;
    const client = clientOf(runtime.sync().engine);
    expect(runtime.sync()).toBe(runtime.sync());
    expect(clientOf(runtime.verify().engine)).toBe(client);
    const replica = runtime.verify().replica as unknown as { container: { database: { client: unknown } } };
    expect(replica.container.database.client).toBe(client);
    expect(clientOf(new FunctionAppRuntime({ ...env, COSMOS_ENDPOINT: 'https://127.0.0.1:18082' }).sync().engine)).not.toBe(client);
  });
});

describe('token audience: bearer tokens go only to Azure hosts of the right kind, or loopback', () => {
  const blob = (url: string) => () => readSettings({ ...base, DEADLETTER_BLOB_ENDPOINT: url });
  const hub = (host: string) => () => parseHubHost(host);

  it('accepts the Azure blob endpoint and loopback stand-ins', () => {
    for (const url of ['https://acct.blob.core.windows.net', 'https://acct.blob.core.windows.net/', 'https://ACCT.BLOB.CORE.WINDOWS.NET', 'http://127.0.0.1:10000/devstoreaccount1']) {
      expect(blob(url), url).not.toThrow();
    }
  });

  it('refuses any other blob endpoint: a Storage token is good on every account', () => {
    for (const url of [
      'https://acct.blob.core.windows.net.evil.com',
      'https://evil.com/acct.blob.core.windows.net',
      'http://acct.blob.core.windows.net',
      'https://.blob.core.windows.net',
      'https://user:pw@acct.blob.core.windows.net',
      'https://acct.queue.core.windows.net',
      'https://10.0.0.4',
      'acct.blob.core.windows.net',
    ]) {
      expect(blob(url), url).toThrow(/DEADLETTER_BLOB_ENDPOINT/);
    }
  });

  it('the function\'s hub host and the CLI\'s --hub accept only <name>.azure-devices.net or loopback', () => {
    expect(hub('myhub.azure-devices.net')).not.toThrow();
    expect(hub('127.0.0.1:8443')).not.toThrow();
    expect(hub('localhost:8443')).not.toThrow();
    for (const host of ['myhub.azure-devices.net.evil.com', 'evil.com', 'myhub.azure-devices.com', '10.1.2.3']) {
      expect(hub(host), host).toThrow(/azure-devices\.net/);
      expect(() => hubHostName(host, {}), host).toThrow(/azure-devices\.net/);
      expect(() => hubHostName(undefined, { IOTHUB_HOSTNAME: host }), host).toThrow(/azure-devices\.net/);
    }
    expect(() => readVerifySettings({ ...base, IOTHUB_HOSTNAME: 'evil.com' })).toThrow(/azure-devices\.net/);
    expect(hubHostName('myhub.azure-devices.net', {})).toBe('myhub.azure-devices.net');
  });
});

describe('the one number parser (settings and command-line options)', () => {
  it('accepts exactly the numbers inside the bounds, and says what it expected otherwise', () => {
    fc.assert(fc.property(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: -5, max: 5 }), (n, min) => {
      const r = parseNumber(String(n), { integer: true, min });
      expect('value' in r ? r.value : undefined).toBe(n >= min ? n : undefined);
    }));
    fc.assert(fc.property(fc.double({ noNaN: true, min: -10, max: 10 }), (x) => {
      const r = parseNumber(String(x), { min: 0, max: 1 });
      expect('value' in r).toBe(x >= 0 && x <= 1);
    }));
    expect(parseNumber('1.5', { integer: true, min: 1 })).toEqual({ problem: 'must be a positive integer, got "1.5"' });
    expect(parseNumber('', { above: 0 })).toEqual({ problem: 'must be a positive number, got ""' });
    expect(parseNumber('2', { min: 0, max: 1 })).toEqual({ problem: 'must be a number ≥ 0 and ≤ 1, got "2"' });
    expect(parseNumber('100_000', { integer: true, min: 10, underscores: true })).toEqual({ value: 100_000 });
    expect('problem' in parseNumber('100_000', { integer: true })).toBe(true);
  });
});
