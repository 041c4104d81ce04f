import type { Container } from '@azure/cosmos';
import { replicaEntry, UNROUTED_FIELDS, type ReplicaEntry, type ReplicaIndex } from '../scan/verify';

/** Lists the replica container's documents, projecting only what verify compares. */
export class CosmosReplicaIndex implements ReplicaIndex {
  constructor(private readonly container: Container, private readonly pageSize = 1000) {}
  async *list(): AsyncIterable<ReplicaEntry> {
    const iterator = this.container.items.query<Record<string, unknown>>(
      `SELECT c.id, c.deviceId, c.moduleId, c.version, c.deleted, c.replica, ${UNROUTED_FIELDS.map((f) => `c.${f}`).join(', ')} FROM c`,
      { maxItemCount: this.pageSize },
    );
    while (iterator.hasMoreResults()) {
      const { resources } = await iterator.fetchNext();
      for (const r of resources ?? []) yield replicaEntry(r);
    }
  }
}
