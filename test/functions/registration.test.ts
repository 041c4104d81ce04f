import Module from 'node:module';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

/**
 * The Functions Node worker provides `@azure/functions-core` to the app through Node's module loader;
 * @azure/functions requires it and calls `registerFunction(metadata, callback)` for each app.* call
 * (azure-functions-nodejs-library src/app.ts, src/converters/toCoreFunctionMetadata.ts). This test plays
 * the worker's part with the same mechanism and checks the metadata the host would receive.
 */
type Registered = { metadata: { name: string; bindings: Record<string, Record<string, unknown>>; retryOptions?: Record<string, unknown> }; callback: unknown };
const registered: Registered[] = [];
const loader = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
const originalLoad = loader._load;

beforeAll(() => {
  loader._load = function (request: string, ...rest: unknown[]) {
    if (request === '@azure/functions-core') {
      return {
        version: '3.10.1',
        hostVersion: '4.1037.0',
        registerFunction: (metadata: Registered['metadata'], callback: unknown) => {
          registered.push({ metadata, callback });
          return { dispose() {} };
        },
        setProgrammingModel: () => {},
        getProgrammingModel: () => undefined,
        registerHook: () => ({ dispose() {} }),
        log: () => {},
      };
    }
    return originalLoad.call(this, request, ...rest);
  };
});

afterAll(() => {
  loader._load = originalLoad;
});

describe('function registration', () => {
  it('registers syncTwins with cardinality many, its consumer group, string bodies and a bounded exponential retry', async () => {
    const { syncTwins } = await import('../../functions/src/functions/syncTwins');
    const entry = registered.find((r) => r.metadata.name === 'syncTwins');
    expect(entry).toBeDefined();
    expect(entry!.callback).toBe(syncTwins);
    const trigger = Object.values(entry!.metadata.bindings).find((b) => b.direction === 'in');
    expect(trigger).toMatchObject({
      type: 'eventHubTrigger',
      direction: 'in',
      cardinality: 'many',
      dataType: 'string',
      connection: 'IOTHUB_EVENTS',
      eventHubName: '%EVENTHUB_NAME%',
      consumerGroup: '%EVENTHUB_CONSUMER_GROUP%',
    });
    expect(entry!.metadata.retryOptions).toMatchObject({
      retryStrategy: 'exponentialBackoff',
      maxRetryCount: 5,
      minimumInterval: { seconds: 5 },
      maximumInterval: { seconds: 300 },
    });
    expect(entry!.metadata.retryOptions!.maxRetryCount).toBeGreaterThan(0); // -1 would retry forever
  });

  it('the entry point registers one function per module in functions/src/functions', async () => {
    vi.resetModules();
    const before = registered.length;
    await import('../../functions/src/index');
    const names = registered.slice(before).map((r) => r.metadata.name).sort();
    const modules = readdirSync(join(import.meta.dirname, '../../functions/src/functions')).filter((f) => f.endsWith('.ts')).map((f) => f.replace(/\.ts$/, '')).sort();
    expect(modules).toContain('syncTwins');
    expect(names).toEqual(modules);
  });
});
