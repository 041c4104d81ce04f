import { InvocationContext, type RetryContext } from '@azure/functions';
import { describe, expect, it } from 'vitest';
import { alertQueries } from '../../infra/constructs/monitoring';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { MemoryTwinStore } from '../../functions/src/adapters/memoryStore';
import { makeSyncTwins, SYNC_RETRY } from '../../functions/src/handlers/syncTwins';
import { SyncEngine } from '../../functions/src/sync/engine';
import { StoreError, type DeadLetterSink, type TwinStore } from '../../functions/src/sync/ports';
import { opTimestamp, toTrigger, twinUpdate, type WireEvent } from '../../testkit/events';
import { evaluate, letStatement, type TraceRow } from './kqlSubset';

/**
 * The alerts' intent, run rather than read: the real syncTwins handler writes its summary lines for
 * batches that succeed, that are retried until their last try, and whose dead-letter store fails; the
 * dead-letter and lag queries (their AppTraces side) then run over those lines in kqlSubset.ts, an
 * evaluator of exactly the KQL forms they use. What is not run here: Log Analytics itself, the
 * AzureMetrics side of the lag query and the join (their text is asserted in stack.test.ts).
 */
const queries = alertQueries({ appInsightsId: '/subscriptions/s/appinsights', eventHubNamespaceId: '/subscriptions/s/namespace' });
const T = new Date('2026-06-01T12:03:00Z');
const at = (s: number) => opTimestamp(T.getTime() + s * 1000);
const rows: TraceRow[] = [];
let seq = 1;

async function batch(events: WireEvent[], store: TwinStore, deadLetters: DeadLetterSink, retries: number): Promise<void> {
  const runtime = { engine: new SyncEngine({ store, deadLetters }) };
  const syncTwins = makeSyncTwins(() => runtime);
  const { messages, triggerMetadata } = toTrigger(events, { partitionId: '0', firstSequence: seq });
  seq += events.length;
  // The trigger's retry loop: the same batch until it succeeds or the policy has no try left.
  for (let retryCount = 0; retryCount <= retries; retryCount++) {
    const retryContext: RetryContext = { retryCount, maxRetryCount: SYNC_RETRY.maxRetryCount };
    const context = new InvocationContext({ triggerMetadata, retryContext, logHandler: (_l, ...a) => rows.push({ TimeGenerated: T, Message: a.map(String).join(' ') }) });
    try {
      await syncTwins(messages, context);
      return;
    } catch {
      // retried by the policy
    }
  }
}

const down = (): TwinStore => {
  const s = new MemoryTwinStore();
  s.read = async () => {
    throw new StoreError('transient', 'service unavailable', 503);
  };
  return s;
};
const failingSink: DeadLetterSink = { write: async () => { throw new Error('blob endpoint unreachable'); } };
const poison = (deviceId: string): WireEvent => ({ ...twinUpdate({ deviceId, ts: at(0), version: 2, tags: {} }), body: 'not json' });
const update = (deviceId: string): WireEvent => twinUpdate({ deviceId, ts: at(1), version: 2, tags: { a: 1 } });

describe('the summary-line alerts count each batch once', () => {
  it('over a retried batch, a clean batch and a batch whose dead letters only reached the log', async () => {
    // 1. Cosmos down through all six tries: 3 events (1 poison, 2 transient) → 3 dead letters, 6 summary lines.
    await batch([poison('p1'), update('u1'), update('u2')], down(), new MemoryDeadLetterSink(), SYNC_RETRY.maxRetryCount);
    // 2. Two events applied on the first try.
    await batch([update('ok1'), update('ok2')], new MemoryTwinStore(), new MemoryDeadLetterSink(), SYNC_RETRY.maxRetryCount);
    // 3. Two poison events, dead-letter store down through all six tries: 2 events logged by the last resort.
    await batch([poison('q1'), poison('q2')], new MemoryTwinStore(), failingSink, SYNC_RETRY.maxRetryCount);

    const summaries = rows.filter((r) => r.Message.startsWith('syncTwins summary '));
    expect(summaries).toHaveLength(6 + 1 + 6);
    const bin = '2026-06-01T12:00:00.000Z';

    const dead = evaluate(queries.deadLetters, rows);
    expect(dead).toEqual({ column: 'deadLettered', bins: { [bin]: 3 + 0 + 2 } });
    const processed = evaluate(letStatement(queries.consumerLag, 'processed'), rows);
    expect(processed).toEqual({ column: 'processed', bins: { [bin]: 3 + 2 + 2 } });

    // The same queries without the final-try filter: every try counted (what the alerts did before).
    const everyTry = (q: string) => q.split('\n').filter((l) => l !== '| where tobool(summary.final)').join('\n');
    expect(evaluate(everyTry(queries.deadLetters), rows).bins[bin]).toBe(5 * 1 + 3 + 0 + 0 + 2);
    expect(evaluate(everyTry(letStatement(queries.consumerLag, 'processed')), rows).bins[bin]).toBe(6 * 3 + 2 + 6 * 2);
  });

  it('lines from before the final flag (or any other trace) are not counted', () => {
    const old: TraceRow[] = [
      { TimeGenerated: T, Message: 'syncTwins summary {"received":5,"deadLettered":2}' },
      { TimeGenerated: T, Message: 'syncTwins summary not json' },
      { TimeGenerated: T, Message: 'Executed \'Functions.syncTwins\' (Succeeded)' },
    ];
    expect(evaluate(queries.deadLetters, old).bins).toEqual({});
  });

  it('the evaluator refuses KQL it does not know', () => {
    expect(() => evaluate(`${queries.deadLetters}\n| take 1`, rows)).toThrow(/unsupported line after summarize: | take 1/);
  });
});
