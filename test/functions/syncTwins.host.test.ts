import { InvocationContext, type RetryContext } from '@azure/functions';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryAttemptCounter } from '../../testkit/attempts';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { LAST_RESORT_PREFIX, SUMMARY_PREFIX, TRACE_MESSAGE_LIMIT } from '../../functions/src/runtime/contracts';
import { lastResortLines, makeSyncTwins, pairTriggerBatch } from '../../functions/src/handlers/syncTwins';
import type { SyncRuntime } from '../../functions/src/runtime/build';
import { SyncEngine } from '../../functions/src/sync/engine';
import { encodeDocId } from '../../functions/src/sync/ids';
import { StoreError, type DeadLetter, type DeadLetterSink, type TwinStore } from '../../functions/src/sync/ports';
import { created, fullTwin, opTimestamp, telemetry, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';

/**
 * syncTwins with what the Functions host really hands it: the trigger payload as the Node worker and
 * @azure/functions build it (testkit/events.ts toTrigger: bodies JSON-parsed by the library's tryJsonParse;
 * `dropEmptyBodies` models a worker that did not ask for IncludeEmptyEntriesInMessagePayload, when the host
 * leaves empty bodies out of the message array: azure-functions-host GrpcMessageConversionExtensions.ToRpcStringArray),
 * the real InvocationContext, the real engine on an in-memory store.
 */
const at = (s: number) => opTimestamp(Date.parse('2026-04-01T10:00:00Z') + s * 1000);
const LAST: RetryContext = { retryCount: 5, maxRetryCount: 5 };

// The handler on this test's runtime (what the registered instance gets from runtime/build.ts).
let runtime: SyncRuntime | undefined;
const syncTwins = makeSyncTwins(() => {
  if (!runtime) throw new Error('no runtime set up');
  return runtime;
});

class FailingDeadLetters implements DeadLetterSink {
  async write(): Promise<void> {
    throw new Error('blob endpoint unreachable');
  }
}

function run(events: WireEvent[], o: { retry?: RetryContext; dropEmptyBodies?: boolean; firstSequence?: number; partitionId?: string } = {}) {
  const { messages, triggerMetadata } = toTrigger(events, { partitionId: o.partitionId ?? '2', firstSequence: o.firstSequence ?? 100, dropEmptyBodies: o.dropEmptyBodies });
  const lines: { level: string; message: string }[] = [];
  const context = new InvocationContext({
    functionName: 'syncTwins',
    invocationId: 'inv-1',
    triggerMetadata,
    retryContext: o.retry ?? { retryCount: 0, maxRetryCount: 5 },
    logHandler: (level, ...args) => lines.push({ level, message: args.map(String).join(' ') }),
  });
  const done = syncTwins(messages, context).then(
    (summary) => ({ summary, error: undefined as Error | undefined }),
    (error: Error) => ({ summary: undefined, error }),
  );
  return done.then((r) => ({ ...r, lines, messages, summaryLine: JSON.parse(lines.find((l) => l.message.startsWith(SUMMARY_PREFIX))!.message.slice(SUMMARY_PREFIX.length)) }));
}

function setup(o: { store?: TwinStore; deadLetters?: DeadLetterSink; attempts?: MemoryAttemptCounter } = {}) {
  const store = (o.store ?? new MemoryTwinStore()) as MemoryTwinStore;
  const sink = new MemoryDeadLetterSink();
  runtime = { engine: new SyncEngine({ store, deadLetters: o.deadLetters ?? sink }), attempts: o.attempts };
  return { store, sink };
}

afterEach(() => (runtime = undefined));

/** An empty-body twin event for one device, then ordinary updates for two others. */
const misalignable = (): WireEvent[] => [
  { ...twinUpdate({ deviceId: 'dev-a', ts: at(1), version: 2, tags: { owner: 'a' } }), body: '' },
  twinUpdate({ deviceId: 'dev-b', ts: at(2), version: 2, tags: { owner: 'b' } }),
  twinUpdate({ deviceId: 'dev-c', ts: at(3), version: 2, tags: { owner: 'c' } }),
];

describe('bodies and metadata are never paired by position when their counts differ', () => {
  it('a message array one shorter than its metadata writes no document and dead-letters every event with its own metadata', async () => {
    const { store, sink } = setup();
    const r = await run(misalignable(), { dropEmptyBodies: true });
    expect(r.messages).toHaveLength(2);
    // Paired by position, dev-a would have received dev-b's tags and dev-b dev-c's.
    expect(store.docs.size).toBe(0);
    expect(r.error).toBeUndefined();
    expect(sink.records.map((d) => [d.deviceId, d.reason, d.sequenceNumber])).toEqual([
      ['dev-a', 'misaligned-batch', 100], ['dev-b', 'misaligned-batch', 101], ['dev-c', 'misaligned-batch', 102],
    ]);
    for (const d of sink.records) {
      expect(d.kind === 'trigger-event' && d.event.body).toBeUndefined();
      expect(d.detail).toContain('the host sent 2 bodies for 3 events');
    }
    expect(r.summaryLine).toMatchObject({ received: 3, deadLettered: 3, applied: 0, final: true });
  });

  it('telemetry in a misaligned batch is still skipped, not dead-lettered', async () => {
    const { sink } = setup();
    const r = await run([...misalignable(), telemetry('dev-z')], { dropEmptyBodies: true });
    expect(r.summaryLine).toMatchObject({ received: 4, deadLettered: 3, skipped: 1 });
    expect(sink.records.map((d) => d.deviceId)).toEqual(['dev-a', 'dev-b', 'dev-c']);
  });

  it('with the capability the host asks for, the empty body arrives in its place: only that event is dead-lettered', async () => {
    const { store, sink } = setup();
    const r = await run(misalignable());
    expect(r.messages).toEqual(['', expect.objectContaining({ tags: { owner: 'b' } }), expect.objectContaining({ tags: { owner: 'c' } })]);
    expect(sink.records.map((d) => [d.deviceId, d.reason])).toEqual([['dev-a', 'malformed-body']]);
    expect(store.docs.get(`dev-b\u0000${encodeDocId({ deviceId: 'dev-b' })}`)?.doc.tags).toEqual({ owner: 'b' });
    expect(store.docs.get(`dev-c\u0000${encodeDocId({ deviceId: 'dev-c' })}`)?.doc.tags).toEqual({ owner: 'c' });
  });

  it('bodies handed over as raw strings (no library parsing) give the same outcome as parsed ones', async () => {
    const events = [...misalignable().slice(1), { ...twinUpdate({ deviceId: 'dev-x', ts: at(4), version: 2, tags: {} }), body: '{"version": 2, "tags": ' }];
    const outcome = async (asStrings: boolean) => {
      const { store, sink } = setup();
      const { messages, triggerMetadata } = toTrigger(events, { partitionId: '2', firstSequence: 100, asStrings });
      await syncTwins(messages, new InvocationContext({ triggerMetadata, retryContext: { retryCount: 0, maxRetryCount: 5 } }));
      return { messages, docs: [...store.docs.values()].map((d) => [d.doc.deviceId, d.doc.tags]), letters: sink.records.map((d) => [d.deviceId, d.reason, d.kind === 'trigger-event' ? d.event.body : d.change]) };
    };
    const raw = await outcome(true);
    const parsed = await outcome(false);
    expect(raw.messages.every((m) => typeof m === 'string')).toBe(true);
    expect(parsed.messages.map((m) => typeof m)).toEqual(['object', 'object', 'string']);
    expect(raw.docs).toEqual(parsed.docs);
    expect(raw.letters).toEqual([['dev-x', 'malformed-body', '{"version": 2, "tags": ']]);
    expect(parsed.letters).toEqual(raw.letters);
  });

  it('pairs by position when the counts agree, and with no metadata at all', () => {
    expect(pairTriggerBatch([{ a: 1 }], { propertiesArray: [{ deviceId: 'x' }], systemPropertiesArray: [{ sequenceNumber: 1 }] })).toEqual({
      events: [{ body: { a: 1 }, properties: { deviceId: 'x' }, systemProperties: { sequenceNumber: 1 } }],
    });
    expect(pairTriggerBatch(['x'], undefined).misaligned).toBeUndefined();
    expect(pairTriggerBatch(['x', 'y'], { propertiesArray: [{}, {}, {}], systemPropertiesArray: [{}, {}, {}] }).misaligned).toMatch(/2 bodies for 3 events/);
    // More bodies than metadata (never seen, refused all the same).
    expect(pairTriggerBatch(['x', 'y'], { propertiesArray: [{}], systemPropertiesArray: [{}] }).events).toHaveLength(1);
  });
});

describe('the last resort, when the dead-letter store fails on the final try', () => {
  const secret = 'SECRET-REPORTED-VALUE';
  const poison = (n: number): WireEvent[] => Array.from({ length: n }, (_, i) => ({ ...twinUpdate({ deviceId: `dev-${i}`, ts: at(i), version: 2, reported: { note: secret } }), body: `{"broken": "${secret}"` }));

  it('logs one line per event, identifiers only, each below the trace limit, and counts them in the final summary', async () => {
    setup({ deadLetters: new FailingDeadLetters() });
    const r = await run(poison(300), { retry: LAST });
    expect(r.error?.message).toMatch(/dead-letter store failed/);
    const last = r.lines.filter((l) => l.message.startsWith(LAST_RESORT_PREFIX));
    expect(last).toHaveLength(300);
    for (const l of last) {
      expect(l.level).toBe('error');
      expect(l.message.length).toBeLessThan(TRACE_MESSAGE_LIMIT);
      expect(l.message).not.toContain(secret);
    }
    expect(JSON.parse(last[7].message.slice(LAST_RESORT_PREFIX.length))).toMatchObject({ reason: 'malformed-body', deviceId: 'dev-7', partitionId: '2', sequenceNumber: 107, offset: 107 * 512 });
    expect(r.summaryLine).toMatchObject({ final: true, received: 300, deadLettered: 0, lastResort: 300 });
  });

  it('before the final try nothing is logged as last resort: the batch is retried', async () => {
    setup({ deadLetters: new FailingDeadLetters() });
    const r = await run(poison(3), { retry: { retryCount: 2, maxRetryCount: 5 } });
    expect(r.error).toBeDefined();
    expect(r.lines.filter((l) => l.message.startsWith(LAST_RESORT_PREFIX))).toEqual([]);
    expect(r.summaryLine).toMatchObject({ final: false, lastResort: 0 });
  });

  it('cuts every field, so even absurd identifiers keep a line within the limit', () => {
    const huge = 'x'.repeat(100_000);
    const record: DeadLetter = {
      kind: 'trigger-event', reason: 'invalid-id', detail: huge, deviceId: huge, moduleId: huge, opType: huge, source: huge, partitionId: huge, sequenceNumber: huge,
      offset: huge, enqueuedTimeUtc: huge, invocationId: huge, attempt: 3, deadLetteredAt: huge, event: { body: huge, properties: { p: huge } },
    };
    const [line] = lastResortLines([record]);
    expect(line.length).toBeLessThan(TRACE_MESSAGE_LIMIT);
    expect(line.length).toBeGreaterThan(10 * 1024);
  });
});

describe('the summary line says whether the trigger moves on after this try', () => {
  const flaky = (): TwinStore => {
    const store = new MemoryTwinStore();
    store.read = async () => {
      throw new StoreError('transient', 'service unavailable', 503);
    };
    return store;
  };

  it('a try that will be retried is not final; the last try and a success are', async () => {
    setup({ store: flaky() });
    const events = [twinUpdate({ deviceId: 'dev-r', ts: at(1), version: 2, tags: { a: 1 } })];
    expect((await run(events, { retry: { retryCount: 0, maxRetryCount: 5 } })).summaryLine).toMatchObject({ final: false, retrying: 1 });
    expect((await run(events, { retry: LAST })).summaryLine).toMatchObject({ final: true, deadLettered: 1, deadLetterReasons: { 'transient-exhausted': 1 } });
    setup();
    expect((await run(events)).summaryLine).toMatchObject({ final: true, applied: 1 });
  });
});

describe('a durable count of starts bounds a batch across instances', () => {
  const events = () => [created({ deviceId: 'dev-k', ts: at(0), twin: fullTwin({ deviceId: 'dev-k', version: 1 }) })];

  it('past the tries the policy allows, the batch is dead-lettered unprocessed, with a reason that says so', async () => {
    const attempts = new MemoryAttemptCounter();
    const { store, sink } = setup({ attempts });
    // Six starts that each ended with the process (a new instance restarts the retry count at 0).
    for (let i = 0; i < 6; i++) await attempts.start({ eventHubName: 'iothub-events', consumerGroup: 'sync-twins', partitionId: '2', firstSequence: '100' });
    const r = await run(events());
    expect(r.error).toBeUndefined();
    expect(store.counts.reads + store.counts.creates).toBe(0);
    expect(sink.records.map((d) => [d.deviceId, d.reason, d.attempt])).toEqual([['dev-k', 'attempts-exhausted', 6]]);
    expect(sink.records[0].detail).toMatch(/started 7 times from sequence number 100 of partition 2 .*worker died/);
    expect(r.summaryLine).toMatchObject({ final: true, deadLettered: 1, starts: 7 });
  });

  it('the start that reaches the bound is the last try even when the retry context says 0', async () => {
    const attempts = new MemoryAttemptCounter();
    const store = new MemoryTwinStore();
    store.read = async () => {
      throw new StoreError('transient', 'timeout', 408);
    };
    const { sink } = setup({ store, attempts });
    for (let i = 0; i < 5; i++) await attempts.start({ eventHubName: 'iothub-events', consumerGroup: 'sync-twins', partitionId: '2', firstSequence: '100' });
    const r = await run(events());
    expect(sink.records.map((d) => d.reason)).toEqual(['transient-exhausted']);
    expect(r.summaryLine).toMatchObject({ starts: 6, final: true });
  });

  it('a new first sequence number starts the count again', async () => {
    const attempts = new MemoryAttemptCounter();
    const { store } = setup({ attempts });
    for (let i = 0; i < 9; i++) await attempts.start({ eventHubName: 'iothub-events', consumerGroup: 'sync-twins', partitionId: '2', firstSequence: '99' });
    const r = await run(events());
    expect(r.summaryLine).toMatchObject({ starts: 1, applied: 1 });
    expect(store.docs.size).toBe(1);
  });

  it('a counter that fails does not stop the batch: the retry context decides alone', async () => {
    const broken = new MemoryAttemptCounter();
    broken.start = async () => {
      throw new Error('403 AuthorizationPermissionMismatch');
    };
    setup({ attempts: broken });
    const r = await run(events());
    expect(r.summaryLine).toMatchObject({ applied: 1, final: true });
    expect(r.lines.find((l) => l.level === 'warning')?.message).toMatch(/attempt counter unavailable: 403/);
  });
});
