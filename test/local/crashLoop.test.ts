import { describe, expect, it } from 'vitest';
import { MemoryAttemptCounter } from '../../testkit/attempts';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { SYNC_RETRY } from '../../functions/src/handlers/syncTwins';
import { SyncEngine } from '../../functions/src/sync/engine';
import { EventHubTrigger, LocalEventHub } from '../../local/eventHub';
import { FaultyDeadLetters, FaultyStore, LocalHost } from '../../local/host';
import { created, fullTwin, opTimestamp } from '../../testkit/events';

/**
 * The local run's crash model (local/eventHub.ts, local/host.ts) with a batch that kills its worker every
 * time it is processed. The trigger stand-in behaves as the Event Hubs extension does: no checkpoint when
 * the host dies, the batch read again from the same first sequence number by a new host whose retry count
 * starts at 0 (Microsoft Learn, "Azure Functions error handling and retries": the count is kept in the
 * instance's memory). Store, dead letters and the attempt counter outlive the host processes, as Cosmos DB
 * and Blob Storage do.
 */
const RETRY = { maxRetryCount: SYNC_RETRY.maxRetryCount, minimumIntervalMs: 0, maximumIntervalMs: 0 };
const KILLER = 150;

function setup(withCounter: boolean) {
  const eventHub = new LocalEventHub(1);
  for (let i = 0; i < 250; i++) {
    const deviceId = `dev-${i}`;
    eventHub.publish(created({ deviceId, ts: opTimestamp(Date.parse('2026-05-01T00:00:00Z') + i), twin: fullTwin({ deviceId, version: 1 }) }), 0, i === KILLER ? 'killer' : `e${i}`);
  }
  const store = new MemoryTwinStore();
  const deadLetters = new MemoryDeadLetterSink();
  const host = new LocalHost(
    (faults) => new SyncEngine({ store: new FaultyStore(store, faults), deadLetters: new FaultyDeadLetters(deadLetters, faults) }),
    undefined,
    withCounter ? new MemoryAttemptCounter() : undefined,
  );
  const trigger = new EventHubTrigger({
    hub: eventHub,
    handler: host.handler,
    retry: RETRY,
    timeScale: 0,
    host,
    // The event labelled "killer" kills whichever host processes a batch holding it (out of memory, say).
    beforeAttempt: ({ events }) => {
      host.faults.poisoned = events.some((e) => e.label === 'killer');
    },
  });
  return { eventHub, store, deadLetters, host, trigger };
}

describe('a batch that kills its worker every time', () => {
  it('is started at most the tries the policy allows, then dead-lettered unprocessed with a reason that says so, and the partition moves on', async () => {
    const { store, deadLetters, host, trigger } = setup(true);
    await trigger.drain();
    expect(trigger.lag()).toBe(0);
    // Six starts die (each on a new host, retry count back at 0); the seventh records the batch and returns.
    expect(trigger.stats.crashes).toBe(SYNC_RETRY.maxRetryCount + 1);
    expect(host.generation).toBe(SYNC_RETRY.maxRetryCount + 2);
    const killed = deadLetters.records;
    expect(killed).toHaveLength(100);
    expect(new Set(killed.map((d) => d.reason))).toEqual(new Set(['attempts-exhausted']));
    expect(killed.map((d) => d.sequenceNumber)).toEqual(Array.from({ length: 100 }, (_, i) => 100 + i));
    expect(killed[0].detail).toMatch(/started 7 times from sequence number 100 of partition 0 without finishing .*its worker died each time/);
    expect(killed.every((d) => d.kind === 'trigger-event' && d.event.body !== undefined)).toBe(true);
    // The batches before and after were applied; the dead-lettered one wrote nothing.
    expect(store.docs.size).toBe(150);
  });

  it('without the durable count the partition never gets past it (the retry count restarts with every host)', async () => {
    const { deadLetters, trigger } = setup(false);
    for (let i = 0; i < 1 + 40; i++) await trigger.runOnce(0);
    expect(trigger.checkpoints[0]).toBe(100);
    expect(trigger.stats.crashes).toBe(40);
    expect(deadLetters.records).toEqual([]);
  });
});
