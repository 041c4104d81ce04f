import { createHash } from 'node:crypto';
import type { CosmosClient, Container } from '@azure/cosmos';
import type { TokenCredential } from '@azure/identity';
import { stripSystemFields } from '../adapters/cosmosStore';
import { createCosmosClient } from '../runtime/build';
import { isLoopback } from '../adapters/endpoints';
import { translate, type CosmosQuery, type Plan } from '../query';
import { encodeDocId } from '../sync/ids';
import type { Json, JsonObject, TwinDoc } from '../sync/types';

/**
 * A typed read client for applications: IoT Hub's twin query language and get-twin, answered by the
 * replica instead of the hub (no 20-queries-per-minute throttle). Only live twins are returned, devices
 * and modules apart, in IoT Hub's twin shape (no replica bookkeeping).
 *
 * ```ts
 * const reader = new ReplicaReader({ endpoint: 'https://<account>.documents.azure.com', credential: new DefaultAzureCredential() });
 * const { items, continuationToken } = await reader.query("SELECT * FROM devices WHERE tags.location.region = 'US'", { pageSize: 100 });
 * ```
 */

/** A device or module twin as IoT Hub returns it. */
export interface Twin {
  deviceId: string;
  moduleId?: string;
  etag?: string;
  version?: number;
  status?: string;
  connectionState?: string;
  tags?: JsonObject;
  properties?: { desired?: JsonObject; reported?: JsonObject };
  [field: string]: unknown;
}

export type Row = Record<string, Json>;

export interface QueryOptions {
  /** Items per page (as IoT Hub's `x-ms-max-item-count`). Without it every item is returned at once. */
  pageSize?: number;
  /** From the previous page of the same query. */
  continuationToken?: string;
  /** GROUP BY: `client` (default) counts in the reader from one projected query; `native` sends Cosmos DB's GROUP BY (not on the local server). */
  groupBy?: 'client' | 'native';
}

export interface QueryPage<T> {
  items: T[];
  /** Present when more items remain; pass it back with the same query. */
  continuationToken?: string;
}

export type ReplicaReaderOptions =
  | { container: Container }
  | {
      endpoint: string;
      /** Entra ID (a data-plane role on the account: Cosmos DB Built-in Data Reader is enough). */
      credential?: TokenCredential;
      /** Only for a local Cosmos-compatible server on a loopback endpoint. */
      key?: string;
      /** @default 'twin-replica' */
      database?: string;
      /** @default 'twins' */
      container?: string;
    };

/** Replica fields that are not part of IoT Hub's twin (docs/replica.md): removed from every twin returned. */
const BOOKKEEPING = ['id', 'replica', 'deleted', 'ttl', 'connectionStateSequenceNumber', 'connectionStateUpdatedTime'];

/** A replica document as IoT Hub's twin. */
export function toTwin(doc: TwinDoc | Record<string, unknown>): Twin {
  const twin = stripSystemFields({ ...doc }) as Record<string, unknown>;
  for (const f of BOOKKEEPING) delete twin[f];
  return twin as Twin;
}

/** What the reader would send for a query (`--explain`). */
export function explain(iotHubQuery: string, opts: Pick<QueryOptions, 'groupBy'> = {}): CosmosQuery & { plan: Plan['kind'] } {
  const plan = translate(iotHubQuery);
  const sql = plan.kind === 'group' && opts.groupBy === 'native' ? plan.nativeSql : plan.sql;
  return { plan: plan.kind, query: sql.query, parameters: sql.parameters };
}

interface Token {
  /** Which query it continues (hash of the Cosmos query and its parameters). */
  q: string;
  /** The Cosmos continuation. */
  c: string;
  /** Items already returned (for TOP). */
  n: number;
}

function fingerprint(sql: CosmosQuery): string {
  return createHash('sha256').update(JSON.stringify(sql)).digest('base64url').slice(0, 16);
}

export class ReplicaReader {
  readonly container: Container;
  private readonly client?: CosmosClient;

  constructor(opts: ReplicaReaderOptions) {
    if ('endpoint' in opts) {
      if (opts.key !== undefined && !isLoopback(opts.endpoint)) throw new Error('a key is accepted only for a local server on a loopback endpoint; use an Entra ID credential');
      if (opts.key === undefined && !opts.credential) throw new Error('a credential is required');
      // The function app's own factory: a key for loopback only (the local server's certificate), else the credential.
      this.client = createCosmosClient({ cosmosEndpoint: opts.endpoint, cosmosKey: opts.key }, opts.credential);
      this.container = this.client.database(opts.database ?? 'twin-replica').container(opts.container ?? 'twins');
    } else {
      this.container = opts.container;
    }
  }

  /** One live twin by point read (1 RU per KB), or undefined when it does not exist or was deleted. */
  async getTwin(deviceId: string, moduleId?: string): Promise<Twin | undefined> {
    try {
      const { resource } = await this.container.item(encodeDocId({ deviceId, moduleId }), deviceId).read<TwinDoc>();
      if (!resource || resource.deleted) return undefined;
      return toTwin(resource);
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  /**
   * Runs an IoT Hub twin query. The query is translated (and refused with a QueryError) before any request.
   * `SELECT *` yields twins; projections, COUNT() and GROUP BY yield rows shaped as IoT Hub's.
   */
  async query<T = Twin | Row>(iotHubQuery: string, opts: QueryOptions = {}): Promise<QueryPage<T>> {
    const plan = translate(iotHubQuery);
    if (opts.pageSize !== undefined && !(Number.isSafeInteger(opts.pageSize) && opts.pageSize > 0)) throw new Error('pageSize must be a positive integer');
    if (opts.continuationToken !== undefined && opts.pageSize === undefined) throw new Error('a continuation token continues a paged query: give the pageSize too');
    if (plan.kind === 'count') {
      const { resources } = await this.container.items.query<number>(plan.sql).fetchAll();
      return { items: [{ [plan.alias]: resources.reduce((a, b) => a + b, 0) } as T] };
    }
    if (plan.kind === 'group') return { items: (await this.group(plan, opts.groupBy ?? 'client')) as T[] };

    const shape = (r: Record<string, unknown>): T => {
      if (plan.kind === 'twins') return toTwin(r) as T;
      const row: Row = {};
      for (const c of plan.columns) if (r[c.field] !== undefined) row[c.name] = r[c.field] as Json;
      return row as T;
    };
    const id = fingerprint(plan.sql);
    let token: Token | undefined;
    if (opts.continuationToken !== undefined) {
      try {
        token = JSON.parse(Buffer.from(opts.continuationToken, 'base64url').toString('utf8')) as Token;
      } catch {
        throw new Error('not a continuation token of this reader');
      }
      if (token.q !== id) throw new Error('this continuation token belongs to another query');
    }
    const done = token?.n ?? 0;
    const limit = plan.top !== undefined ? Math.max(0, plan.top - done) : undefined;
    if (limit === 0) return { items: [] };
    if (opts.pageSize === undefined) {
      // Every item at once (up to TOP): Cosmos pages may hold fewer items than asked, so drain them.
      const iterator = this.container.items.query<Record<string, unknown>>(plan.sql, { maxItemCount: Math.min(limit ?? 1000, 1000) });
      const all: T[] = [];
      while (iterator.hasMoreResults() && (limit === undefined || all.length < limit)) {
        const { resources } = await iterator.fetchNext();
        all.push(...(resources ?? []).map(shape));
      }
      return { items: limit === undefined ? all : all.slice(0, limit) };
    }
    const pageSize = limit !== undefined ? Math.min(opts.pageSize, limit) : opts.pageSize;
    const iterator = this.container.items.query<Record<string, unknown>>(plan.sql, { maxItemCount: pageSize, continuationToken: token?.c });
    const items: T[] = [];
    let next: string | undefined;
    // A page may come back empty while more remain (Cosmos DB): keep going until one has items.
    do {
      const page = await iterator.fetchNext();
      items.push(...(page.resources ?? []).map(shape));
      next = page.continuationToken ?? undefined;
    } while (items.length === 0 && next !== undefined && iterator.hasMoreResults());
    const total = done + items.length;
    const more = next !== undefined && (plan.top === undefined || total < plan.top);
    return {
      items,
      continuationToken: more ? Buffer.from(JSON.stringify({ q: id, c: next, n: total } satisfies Token)).toString('base64url') : undefined,
    };
  }

  /** Releases the client's connections when the reader made its own client. */
  dispose(): void {
    this.client?.dispose();
  }

  private async group(plan: Extract<Plan, { kind: 'group' }>, mode: 'client' | 'native'): Promise<Row[]> {
    const groups = new Map<string, { key: unknown[]; n: number }>();
    if (mode === 'native') {
      const { resources } = await this.container.items.query<Record<string, unknown>>(plan.nativeSql).fetchAll();
      for (const r of resources) groups.set(JSON.stringify(r), { key: Array.from({ length: plan.keys }, (_, i) => r[`g${i}`]), n: Number(r.n) });
    } else {
      // The client completes the aggregation: one projected row per matching twin, counted here.
      const iterator = this.container.items.query<Record<string, unknown>>(plan.sql, { maxItemCount: 1000 });
      while (iterator.hasMoreResults()) {
        const { resources } = await iterator.fetchNext();
        for (const r of resources ?? []) {
          const key = Array.from({ length: plan.keys }, (_, i) => r[`g${i}`]);
          // undefined (absent) and null are different groups.
          const id = JSON.stringify(key.map((k) => (k === undefined ? { absent: true } : { v: k })));
          const g = groups.get(id);
          if (g) g.n++;
          else groups.set(id, { key, n: 1 });
        }
      }
    }
    return [...groups.values()].map(({ key, n }) => {
      const row: Row = {};
      for (const c of plan.columns) {
        if ('count' in c) row[c.name] = n;
        else if (key[c.key] !== undefined) row[c.name] = key[c.key] as Json;
      }
      return row;
    });
  }
}
