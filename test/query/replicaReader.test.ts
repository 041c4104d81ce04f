import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, QueryError, ReplicaReader } from '../../functions/src/client';
import { DATABASE, LOCAL_COSMOS_KEY, startLocalCosmos, type LocalCosmos } from '../../testkit/servers';

/** The typed read client against the local Cosmos-compatible server, on documents shaped as docs/replica.md defines them. */
let cosmos: LocalCosmos;
let reader: ReplicaReader;

beforeAll(async () => {
  cosmos = await startLocalCosmos();
  const replica = { createdAt: '2026-01-01T00:00:00.0000000Z', syncedAt: '2026-01-01T00:00:01Z' };
  for (let i = 0; i < 9; i++) {
    await cosmos.container.items.create({
      id: `d${i}`, deviceId: `d${i}`, version: 3, etag: 'AAAAAAAAAAE=', status: 'enabled', connectionState: i % 2 ? 'Connected' : 'Disconnected',
      connectionStateSequenceNumber: '0'.repeat(63) + '1', connectionStateUpdatedTime: '2026-01-01T00:00:02.0000000Z',
      tags: { region: i < 5 ? 'US' : 'EU' }, properties: { desired: { $version: 1 }, reported: { fw: i % 3 === 0 ? null : '1.0', $version: 2 } }, replica,
    });
  }
  await cosmos.container.items.create({ id: 'gone', deviceId: 'gone', deleted: true, ttl: 100, version: 4, tags: { region: 'US' }, replica: { deletedAt: '2026-01-01T00:00:00.0000000Z' } });
  await cosmos.container.items.create({ id: 'd1|m1', deviceId: 'd1', moduleId: 'm1', version: 2, tags: { region: 'US' }, replica });
  await cosmos.container.items.create({ id: 'd1|m2', deviceId: 'd1', moduleId: 'm2', deleted: true, replica: { deletedAt: '2026-01-01T00:00:00.0000000Z' } });
  reader = new ReplicaReader({ endpoint: cosmos.endpoint, key: LOCAL_COSMOS_KEY });
});

afterAll(async () => {
  reader?.dispose();
  await cosmos?.close();
});

describe('ReplicaReader', () => {
  it('getTwin: a live twin in IoT Hub\'s shape; nothing for a tombstone or an unknown id', async () => {
    const twin = await reader.getTwin('d1');
    expect(twin).toEqual({
      deviceId: 'd1', version: 3, etag: 'AAAAAAAAAAE=', status: 'enabled', connectionState: 'Connected', tags: { region: 'US' },
      properties: { desired: { $version: 1 }, reported: { fw: '1.0', $version: 2 } },
    });
    expect(await reader.getTwin('d1', 'm1')).toMatchObject({ deviceId: 'd1', moduleId: 'm1' });
    expect(await reader.getTwin('gone')).toBeUndefined();
    expect(await reader.getTwin('d1', 'm2')).toBeUndefined();
    expect(await reader.getTwin('never')).toBeUndefined();
  });

  it('SELECT * returns live device twins only, without bookkeeping; modules apart', async () => {
    const { items, continuationToken } = await reader.query("SELECT * FROM devices WHERE tags.region = 'US'");
    expect(items.map((t) => (t as { deviceId: string }).deviceId).sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4']);
    expect(continuationToken).toBeUndefined();
    for (const t of items) for (const k of ['id', 'replica', 'deleted', 'ttl', 'connectionStateSequenceNumber', 'connectionStateUpdatedTime', '_rid', '_etag', '_ts']) expect(t).not.toHaveProperty(k);
    expect((await reader.query('SELECT * FROM devices.modules')).items).toEqual([{ deviceId: 'd1', moduleId: 'm1', version: 2, tags: { region: 'US' } }]);
  });

  it('pages with a page size and a continuation token until every twin was returned once', async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await reader.query<{ deviceId: string }>('SELECT deviceId FROM devices', { pageSize: 4, continuationToken: token });
      expect(page.items.length).toBeLessThanOrEqual(4);
      seen.push(...page.items.map((r) => r.deviceId));
      token = page.continuationToken;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8']);
  });

  it('TOP caps the whole result across pages', async () => {
    const first = await reader.query('SELECT TOP 5 deviceId FROM devices', { pageSize: 3 });
    expect(first.items).toHaveLength(3);
    const second = await reader.query('SELECT TOP 5 deviceId FROM devices', { pageSize: 3, continuationToken: first.continuationToken });
    expect(second.items).toHaveLength(2);
    expect(second.continuationToken).toBeUndefined();
    expect((await reader.query('SELECT TOP 2 * FROM devices')).items).toHaveLength(2);
  });

  it('refuses a continuation token of another query, a forged one, and a token without a page size', async () => {
    const page = await reader.query('SELECT deviceId FROM devices', { pageSize: 2 });
    await expect(reader.query("SELECT deviceId FROM devices WHERE tags.region = 'EU'", { pageSize: 2, continuationToken: page.continuationToken })).rejects.toThrow(/another query/);
    await expect(reader.query('SELECT deviceId FROM devices', { pageSize: 2, continuationToken: 'not-a-token' })).rejects.toThrow(/not a continuation token/);
    await expect(reader.query('SELECT deviceId FROM devices', { continuationToken: page.continuationToken })).rejects.toThrow(/pageSize/);
  });

  it('COUNT() and GROUP BY rows shaped as IoT Hub\'s; null and absent are different groups', async () => {
    expect((await reader.query('SELECT COUNT() AS total FROM devices')).items).toEqual([{ total: 9 }]);
    expect((await reader.query('SELECT COUNT() AS total FROM devices.modules')).items).toEqual([{ total: 1 }]);
    const groups = (await reader.query('SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw')).items;
    expect(groups).toEqual(expect.arrayContaining([{ fw: null, n: 3 }, { fw: '1.0', n: 6 }]));
    expect(groups).toHaveLength(2);
    const absent = (await reader.query('SELECT tags.missing AS m, COUNT() AS n FROM devices GROUP BY tags.missing')).items;
    expect(absent).toEqual([{ n: 9 }]);
    // Modules too (IoT Hub documents GROUP BY on device twins only; the replica groups either collection).
    expect((await reader.query('SELECT tags.region AS r, COUNT() AS n FROM devices.modules GROUP BY tags.region')).items).toEqual([{ r: 'US', n: 1 }]);
  });

  it('refuses before any request', async () => {
    const before = cosmos.requests.total;
    await expect(reader.query('SELECT * FROM devices.jobs')).rejects.toBeInstanceOf(QueryError);
    expect(cosmos.requests.total).toBe(before);
  });

  it('explain shows the Cosmos SQL and parameters (native GROUP BY on request)', () => {
    expect(explain("SELECT * FROM devices WHERE tags.region = 'US'")).toEqual({
      plan: 'twins', query: 'SELECT * FROM c WHERE NOT IS_DEFINED(c.deleted) AND NOT IS_DEFINED(c.moduleId) AND c.tags.region = @p0', parameters: [{ name: '@p0', value: 'US' }],
    });
    expect(explain('SELECT status, COUNT() AS n FROM devices GROUP BY status', { groupBy: 'native' }).query).toMatch(/GROUP BY c\.status$/);
  });

  it('takes a key only for a loopback endpoint, and otherwise needs a credential', () => {
    expect(() => new ReplicaReader({ endpoint: 'https://acct.documents.azure.com', key: 'k' })).toThrow(/loopback/);
    expect(() => new ReplicaReader({ endpoint: 'https://acct.documents.azure.com' })).toThrow(/credential/);
  });

  it('is what the package exports as twin-replica/client', async () => {
    const exported = await import('twin-replica/client');
    expect(exported.ReplicaReader).toBe(ReplicaReader);
    expect(exported.explain).toBe(explain);
  });

  it('without a page size, drains every page of a result larger than one Cosmos page (up to TOP)', async () => {
    const { container } = await cosmos.client.database(DATABASE).containers.createIfNotExists({ id: 'many', partitionKey: { paths: ['/deviceId'] } });
    for (let i = 0; i < 1200; i += 100) {
      await container.items.bulk(Array.from({ length: 100 }, (_, j) => ({ operationType: 'Create' as const, partitionKey: `m${i + j}`, resourceBody: { id: `m${i + j}`, deviceId: `m${i + j}`, replica: {} } })));
    }
    const many = new ReplicaReader({ container });
    expect((await many.query('SELECT deviceId FROM devices')).items).toHaveLength(1200);
    expect((await many.query('SELECT TOP 1100 deviceId FROM devices')).items).toHaveLength(1100);
  });
});
