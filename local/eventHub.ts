import { randomUUID } from 'node:crypto';
import * as functionsLib from '@azure/functions';
import type { InvocationContext as InvocationContextType } from '@azure/functions';
import { backoffDelay } from '../functions/src/public';
import { toTrigger, type WireEvent } from '../testkit/events';

// @azure/functions is CommonJS; under ESM loaders only some of its names are statically visible.
const { InvocationContext } = ((functionsLib as { InvocationContext?: unknown }).InvocationContext ? functionsLib : (functionsLib as unknown as { default: typeof functionsLib }).default);

/**
 * A local Event Hub and a stand-in for the Functions Event Hubs trigger, behaving as documented:
 * - IoT Hub uses the device id as the partition key, so one device's events stay in one partition, in order;
 * - the trigger reads up to `maxEventBatchSize` events from the last checkpoint of a partition and calls the
 *   function once with all of them (cardinality many) and the trigger metadata the v4 library builds;
 * - the checkpoint moves after every invocation, whether or not it threw; with a retry policy it is held while
 *   the policy runs the same batch again (exponential backoff, `retryContext` {retryCount, maxRetryCount}), and
 *   after the last try the trigger moves on anyway;
 * - when the host dies mid-invocation nothing is checkpointed: a new host reads again from the last checkpoint
 *   (at least once), with a fresh retry count: the retry count lives in the instance's memory (Microsoft
 *   Learn, Azure Functions error handling and retries, "Max retry counts"), so a batch that kills its host
 *   every time would be read forever unless the function counts its starts durably (syncTwins does);
 * - messages are what the Node worker hands a `dataType: 'string'` function (testkit toTrigger: bodies
 *   JSON-parsed by the library where they parse, empty entries kept as the function asks the host to).
 */
export interface Enqueued {
  event: WireEvent;
  sequenceNumber: number;
  enqueuedMs: number;
  label: string;
}

export class LocalEventHub {
  readonly partitions: Enqueued[][];

  constructor(readonly partitionCount: number) {
    this.partitions = Array.from({ length: partitionCount }, () => []);
  }

  /** A stable hash of the partition key (Event Hubs uses its own; any stable one keeps a device in one partition). */
  partitionOf(deviceId: string): number {
    let h = 2166136261;
    for (let i = 0; i < deviceId.length; i++) h = Math.imul(h ^ deviceId.charCodeAt(i), 16777619);
    return (h >>> 0) % this.partitionCount;
  }

  publish(event: WireEvent, enqueuedMs: number, label = ''): number {
    const deviceId = String(event.properties.deviceId ?? event.systemProperties['iothub-connection-device-id']);
    const p = this.partitionOf(deviceId);
    const log = this.partitions[p];
    log.push({ event, sequenceNumber: log.length, enqueuedMs, label });
    return p;
  }

  /** IoT Hub's at-least-once delivery: the last `count` events of a partition are sent again ("1,2,1,2,3"). */
  replay(partition: number, count: number): number {
    const log = this.partitions[partition];
    const again = log.slice(Math.max(0, log.length - count));
    for (const e of again) log.push({ ...e, sequenceNumber: log.length, label: `replay of #${e.sequenceNumber} ${e.label}` });
    return again.length;
  }

  get total(): number {
    return this.partitions.reduce((n, p) => n + p.length, 0);
  }
}

export interface RetryPolicy {
  maxRetryCount: number;
  minimumIntervalMs: number;
  maximumIntervalMs: number;
}

/** The handler as the Functions host sees it: messages plus a real InvocationContext. */
export type Handler = (messages: unknown[], context: InvocationContextType) => Promise<unknown>;

/** Raised by a host's fault switch: the process running the invocation is gone. */
export class HostCrashed extends Error {
  override name = 'HostCrashed';
}

export interface InvocationRecord {
  partition: number;
  firstSequence: number;
  count: number;
  attempt: number;
  ok: boolean;
  crashed: boolean;
  error?: string;
  /** The `syncTwins summary {...}` line the handler logged, parsed. */
  summary?: Record<string, unknown>;
}

export interface TriggerOptions {
  hub: LocalEventHub;
  handler: Handler;
  functionName?: string;
  /** host.json eventHubs.maxEventBatchSize. @default 100 */
  maxEventBatchSize?: number;
  retry: RetryPolicy;
  /** Multiplies the retry intervals (local runs shrink minutes to milliseconds). @default 1 */
  timeScale?: number;
  /**
   * Called before every try with the batch it will hand over; a fault plan uses it to end an outage after
   * some tries, or to make a batch that holds a worker-killing event kill its host (`HostFaults.poisoned`).
   */
  beforeAttempt?: (info: { partition: number; attempt: number; events: readonly Enqueued[] }) => void | Promise<void>;
  /**
   * The host process running the function: `current()` is read before each invocation; when that host's
   * `crashed` flag is set afterwards the invocation's result is ignored and `restart(host)` starts a new
   * process (new engine, empty caches) unless another partition already did.
   */
  host?: { current(): { crashed: boolean }; restart(crashed: { crashed: boolean }): void | Promise<void> };
  onInvocation?: (r: InvocationRecord) => void;
  onLog?: (level: string, message: string) => void;
}

export class EventHubTrigger {
  /** Next sequence number to read, per partition (the checkpoint store). */
  readonly checkpoints: number[];
  readonly stats = { invocations: 0, retries: 0, crashes: 0, exhausted: 0 };

  constructor(private readonly o: TriggerOptions) {
    this.checkpoints = o.hub.partitions.map(() => 0);
  }

  /** Events published but not yet checkpointed. */
  lag(partition?: number): number {
    const ps = partition === undefined ? this.o.hub.partitions.map((_, i) => i) : [partition];
    return ps.reduce((n, p) => n + this.o.hub.partitions[p].length - this.checkpoints[p], 0);
  }

  /**
   * Runs one batch of a partition through the retry policy and checkpoints it. Returns false when
   * there was nothing to read. `maxBatch` lowers the batch size for this read only.
   */
  async runOnce(partition: number, maxBatch?: number): Promise<boolean> {
    const from = this.checkpoints[partition];
    const size = Math.min(maxBatch ?? Infinity, this.o.maxEventBatchSize ?? 100);
    const batch = this.o.hub.partitions[partition].slice(from, from + size);
    if (batch.length === 0) return false;
    const { messages, triggerMetadata } = toTrigger(batch.map((e) => e.event), { partitionId: String(partition), firstSequence: batch[0].sequenceNumber, enqueuedMs: batch[0].enqueuedMs });
    const { maxRetryCount } = this.o.retry;
    for (let attempt = 0; ; attempt++) {
      await this.o.beforeAttempt?.({ partition, attempt, events: batch });
      const record: InvocationRecord = { partition, firstSequence: from, count: batch.length, attempt, ok: false, crashed: false };
      const context = new InvocationContext({
        functionName: this.o.functionName ?? 'syncTwins',
        invocationId: randomUUID(),
        triggerMetadata,
        retryContext: { retryCount: attempt, maxRetryCount },
        logHandler: (level, ...args) => {
          const message = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
          const m = /^syncTwins summary (\{.*\})$/.exec(message);
          if (m) record.summary = JSON.parse(m[1]) as Record<string, unknown>;
          this.o.onLog?.(level, message);
        },
      });
      this.stats.invocations++;
      const host = this.o.host?.current();
      try {
        await this.o.handler(messages, context);
        record.ok = true;
      } catch (err) {
        record.error = (err as Error)?.message ?? String(err);
      }
      if (host?.crashed) {
        // The process died: no checkpoint; a new host reads the partition again from the checkpoint.
        record.crashed = true;
        this.stats.crashes++;
        this.o.onInvocation?.(record);
        await this.o.host!.restart(host);
        return true;
      }
      this.o.onInvocation?.(record);
      if (record.ok) break;
      if (attempt >= maxRetryCount && maxRetryCount >= 0) {
        this.stats.exhausted++;
        break; // the retry policy gives up: the trigger checkpoints and moves on
      }
      this.stats.retries++;
      await sleep(this.backoffMs(attempt));
    }
    this.checkpoints[partition] = from + batch.length;
    return true;
  }

  /** Exponential backoff as the Functions retry policy: the minimum interval, doubling, capped at the maximum. */
  backoffMs(attempt: number): number {
    const { minimumIntervalMs, maximumIntervalMs } = this.o.retry;
    return backoffDelay(attempt, { baseMs: minimumIntervalMs, maxMs: maximumIntervalMs }) * (this.o.timeScale ?? 1);
  }

  /** Reads every partition until nothing is left (partitions in turn). */
  async drain(): Promise<void> {
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (let p = 0; p < this.o.hub.partitionCount; p++) if (await this.runOnce(p)) progressed = true;
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
}
