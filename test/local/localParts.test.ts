import fc from 'fast-check';
import type { InvocationContext } from '@azure/functions';
import { describe, expect, it } from 'vitest';
import { EventHubTrigger, HostCrashed, LocalEventHub } from '../../local/eventHub';
import { coalescedPatch, isObj, SimulatedHub, type Obj } from '../../local/hub';
import { twinUpdate } from '../../testkit/events';

const RETRY = { maxRetryCount: 5, minimumIntervalMs: 5000, maximumIntervalMs: 300_000 };

function hubWith(n: number, partitions = 2): LocalEventHub {
  const hub = new LocalEventHub(partitions);
  for (let i = 0; i < n; i++) hub.publish(twinUpdate({ deviceId: `dev${i % 5}`, ts: '2026-01-01T00:00:00.0000000Z', version: i + 2, tags: { i } }), 0, `e${i}`);
  return hub;
}

describe('local Event Hubs trigger stand-in', () => {
  it('keeps a device in one partition and hands over at most maxEventBatchSize events with the trigger metadata', async () => {
    const hub = hubWith(250, 3);
    for (let d = 0; d < 5; d++) {
      const parts = hub.partitions.map((log, p) => (log.some((e) => e.event.properties.deviceId === `dev${d}`) ? p : -1)).filter((p) => p >= 0);
      expect(parts).toHaveLength(1);
    }
    const seen: { size: number; partitionId: unknown; retry: unknown; first: unknown }[] = [];
    const trigger = new EventHubTrigger({
      hub, retry: RETRY, timeScale: 0, maxEventBatchSize: 100,
      handler: async (messages, ctx: InvocationContext) => {
        const meta = ctx.triggerMetadata as Record<string, any>;
        expect(meta.propertiesArray).toHaveLength(messages.length);
        expect(meta.systemPropertiesArray).toHaveLength(messages.length);
        expect(messages[0]).toMatchObject({ version: expect.any(Number) }); // parsed by the library (tryJsonParse)
        seen.push({ size: messages.length, partitionId: meta.partitionContext.partitionId, retry: ctx.retryContext, first: meta.systemPropertiesArray[0].sequenceNumber });
      },
    });
    await trigger.drain();
    expect(seen.every((s) => s.size <= 100)).toBe(true);
    expect(seen.reduce((n, s) => n + s.size, 0)).toBe(250);
    expect(seen[0].retry).toEqual({ retryCount: 0, maxRetryCount: 5 });
    expect(trigger.lag()).toBe(0);
  });

  it('holds the checkpoint while the retry policy runs, with growing retryCount and exponential intervals, then moves on', async () => {
    const hub = hubWith(3, 1);
    const tries: number[] = [];
    const trigger = new EventHubTrigger({
      hub, retry: RETRY, timeScale: 0,
      handler: async (_m, ctx) => {
        tries.push(ctx.retryContext!.retryCount);
        expect(trigger.checkpoints[0]).toBe(0);
        throw new Error('transient');
      },
    });
    await trigger.runOnce(0);
    expect(tries).toEqual([0, 1, 2, 3, 4, 5]);
    expect(trigger.checkpoints[0]).toBe(3);
    expect(trigger.stats).toMatchObject({ retries: 5, exhausted: 1 });
    expect([0, 1, 2, 6, 7].map((a) => trigger.backoffMs(a))).toEqual([0, 0, 0, 0, 0]);
    const scaled = new EventHubTrigger({ hub, retry: RETRY, timeScale: 1, handler: async () => undefined });
    expect([0, 1, 2, 6, 7].map((a) => scaled.backoffMs(a))).toEqual([5000, 10_000, 20_000, 300_000, 300_000]);
  });

  it('redelivers from the last checkpoint with a fresh retry count after the host crashes', async () => {
    const hub = hubWith(6, 1);
    let host = { crashed: false };
    let restarts = 0;
    const batches: { first: number; retry: number }[] = [];
    const trigger = new EventHubTrigger({
      hub, retry: RETRY, timeScale: 0, maxEventBatchSize: 4,
      host: { current: () => host, restart: () => { restarts++; host = { crashed: false }; } },
      handler: async (_m, ctx) => {
        const first = (ctx.triggerMetadata as any).systemPropertiesArray[0].sequenceNumber;
        batches.push({ first, retry: ctx.retryContext!.retryCount });
        if (batches.length === 2) throw new Error('transient');
        if (batches.length === 3) {
          host.crashed = true;
          throw new HostCrashed('gone');
        }
      },
    });
    await trigger.runOnce(0); // ok: 0..3
    await trigger.runOnce(0); // 4..5 fails, retried, host dies during the retry
    expect(trigger.checkpoints[0]).toBe(4);
    expect(restarts).toBe(1);
    await trigger.runOnce(0); // the new host reads 4..5 again, retry count from 0
    expect(batches).toEqual([{ first: 0, retry: 0 }, { first: 4, retry: 0 }, { first: 4, retry: 1 }, { first: 4, retry: 0 }]);
    expect(trigger.checkpoints[0]).toBe(6);
  });

  it('replays the tail of a partition as new events', () => {
    const hub = hubWith(5, 1);
    expect(hub.replay(0, 2)).toBe(2);
    expect(hub.partitions[0].map((e) => e.event.body)).toEqual([0, 1, 2, 3, 4, 3, 4].map((i) => hub.partitions[0][i].event.body));
    expect(hub.partitions[0].map((e) => e.sequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
});

/** RFC 7396, written again here so that the hub's coalescing is checked against an independent apply. */
function apply(target: Obj, patch: Obj): Obj {
  const out: Obj = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (isObj(v)) out[k] = apply(isObj(out[k]) ? (out[k]) : {}, v);
    else out[k] = v;
  }
  return out;
}

describe('simulated hub', () => {
  const name = fc.constantFrom('a', 'b', 'c');
  const leaf = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(null));
  const patch = fc.dictionary(name, fc.oneof(leaf, fc.dictionary(name, fc.oneof(leaf, fc.dictionary(name, leaf)))), { minKeys: 1 }) as fc.Arbitrary<Obj>;

  it('coalesces several patches into one that takes the old state to the new, naming every sent key', () => {
    fc.assert(fc.property(patch, fc.array(patch, { minLength: 1, maxLength: 4 }), (start, patches) => {
      const pre = apply({}, start);
      const post = patches.reduce(apply, pre);
      const combined = coalescedPatch(pre, post, patches);
      expect(apply(pre, combined)).toEqual(post);
      for (const p of patches) for (const k of Object.keys(p)) expect(k in combined).toBe(true);
    }), { numRuns: 500 });
  });

  it('versions twins and sections as IoT Hub does, and a coalesced notification carries the last version', () => {
    const events: { opType: unknown; body: any }[] = [];
    const hub = new SimulatedHub((e) => events.push({ opType: e.event.properties.opType, body: e.event.body }));
    hub.create({ deviceId: 'd' });
    hub.update({ deviceId: 'd' }, { desired: { a: { b: 1 } } }, { hold: true });
    hub.update({ deviceId: 'd' }, { desired: { a: 5 }, tags: { t: 1 } });
    const t = hub.twin({ deviceId: 'd' })!;
    expect(t.version).toBe(4);
    expect(t.desired.version).toBe(3);
    expect(t.desired.meta.a).toEqual({ $lastUpdated: expect.any(String), $lastUpdatedVersion: 3 });
    expect(events.map((e) => e.opType)).toEqual(['createDeviceIdentity', 'updateTwin']);
    expect(events[1].body).toMatchObject({ version: 4, tags: { t: 1 }, properties: { desired: { a: 5, $version: 3 } } });
    hub.delete({ deviceId: 'd' });
    hub.create({ deviceId: 'd' });
    expect(hub.twin({ deviceId: 'd' })!.version).toBe(2);
  });
});
