import type { ContainerClient } from '@azure/storage-blob';
import { DEAD_LETTER_REASONS, deadLetterBlobName, type BatchResult, type DeadLetter, type DeadLetterReason, type EventOutcome, type StoredDeadLetter, type SyncEngine, type TwinEvent } from '../functions/src/public';

/** Landed dead letters are moved here (not deleted): an audit trail of what was redriven, outside the listing. */
export const REDRIVEN_PREFIX = 'redriven/';

export interface DeadLetterStore {
  /** Names of the dead letters waiting (never those under redriven/). */
  list(prefix?: string): AsyncIterable<string>;
  read(name: string): Promise<StoredDeadLetter>;
  /** Keeps a landed dead letter under redriven/ (as it was stored), then removes the original. */
  archive(name: string, record: StoredDeadLetter, outcome: string): Promise<void>;
  remove(name: string): Promise<void>;
}

export class BlobDeadLetterStore implements DeadLetterStore {
  constructor(private readonly container: ContainerClient) {}

  async *list(prefix?: string): AsyncIterable<string> {
    for await (const blob of this.container.listBlobsFlat(prefix ? { prefix } : {})) {
      if (!blob.name.startsWith(REDRIVEN_PREFIX)) yield blob.name;
    }
  }

  async read(name: string): Promise<StoredDeadLetter> {
    const buffer = await this.container.getBlockBlobClient(name).downloadToBuffer();
    return JSON.parse(buffer.toString('utf8')) as StoredDeadLetter;
  }

  async archive(name: string, record: StoredDeadLetter, outcome: string): Promise<void> {
    const content = JSON.stringify(record);
    await this.container.getBlockBlobClient(REDRIVEN_PREFIX + name).upload(content, Buffer.byteLength(content), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
      metadata: { reason: record.reason, outcome, redrivenat: new Date().toISOString() },
    });
    await this.remove(name);
  }

  async remove(name: string): Promise<void> {
    await this.container.getBlockBlobClient(name).deleteIfExists();
  }
}

export interface RedriveFilter {
  reasons?: DeadLetterReason[];
  /** Inclusive lower bound on the event's enqueued time (dead-lettering time when unknown). */
  since?: Date;
  /** Exclusive upper bound. */
  until?: Date;
}

export function reasonOfBlob(name: string): DeadLetterReason | undefined {
  return DEAD_LETTER_REASONS.find((r) => name.endsWith(`-${r}.json`));
}

/** The hour folder of a blob name (`YYYY/MM/DD/HH/...`) as epoch ms, or undefined. */
export function hourOfBlob(name: string): number | undefined {
  const m = /^(\d{4})\/(\d{2})\/(\d{2})\/(\d{2})\//.exec(name);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4]) : undefined;
}

function nameMatches(name: string, filter: RedriveFilter): boolean {
  if (filter.reasons?.length) {
    const reason = reasonOfBlob(name);
    if (!reason || !filter.reasons.includes(reason)) return false;
  }
  const hour = hourOfBlob(name);
  if (hour === undefined) return true; // judged on the record's own time
  if (filter.since && hour + 3_600_000 <= filter.since.getTime()) return false;
  if (filter.until && hour >= filter.until.getTime()) return false;
  return true;
}

function recordMatches(record: StoredDeadLetter, filter: RedriveFilter): boolean {
  if (filter.reasons?.length && !filter.reasons.includes(record.reason)) return false;
  const when = Date.parse(record.enqueuedTimeUtc ?? record.deadLetteredAt);
  if (filter.since && !(when >= filter.since.getTime())) return false;
  if (filter.until && !(when < filter.until.getTime())) return false;
  return true;
}

/**
 * A stored dead letter with its kind. Letters carry `kind` since it was introduced; an older one has none,
 * and a tool's change (backfill / verify) was then stored as the body of `event`, recognisable only by
 * its shape and its `replica-tools` source. That guess is kept for those old letters alone.
 */
export function readDeadLetter(stored: StoredDeadLetter): DeadLetter {
  if (stored.kind !== undefined) return stored;
  const { event, ...fields } = stored;
  const body = event?.body as { kind?: unknown; key?: { deviceId?: unknown } } | undefined;
  const change = (fields.source ?? '').startsWith('replica-tools') && typeof body === 'object' && body !== null && typeof body.kind === 'string' && typeof body.key?.deviceId === 'string';
  return change ? { ...fields, kind: 'twin-event', change: body as TwinEvent } : { ...fields, kind: 'trigger-event', event };
}

/** What a dead letter holds, for matching a letter that failed again with the one it came from. */
function contentOf(record: DeadLetter): string {
  return JSON.stringify(record.kind === 'twin-event' ? record.change : record.event.body);
}

export interface RedriveReport {
  selected: number;
  landed: { applied: number; stale: number; skipped: number };
  failedAgain: { count: number; byReason: Partial<Record<DeadLetterReason, number>>; reasonChanged: number };
  /** Dead letters left untouched because a batch could not be completed (dead-letter store failing). */
  errors: number;
  samples: { landed: string[]; failedAgain: { name: string; reason: DeadLetterReason; detail: string }[] };
  dryRun: boolean;
  durationMs: number;
}

export interface RedriveOptions {
  engine: SyncEngine;
  store: DeadLetterStore;
  filter?: RedriveFilter;
  /** Dead letters per engine batch. @default 100 */
  batchSize?: number;
  dryRun?: boolean;
  samples?: number;
  onProgress?: (done: number, total: number) => void;
}

interface Entry {
  name: string;
  /** As stored (archived unchanged). */
  stored: StoredDeadLetter;
  record: DeadLetter;
}

/**
 * Re-applies dead letters through the engine, as the last try of a trigger batch: raw IoT Hub events with
 * `processBatch` (grouped by their partition so that a record that fails again keeps its blob name), the
 * tools' own records with `applyTwinEvents`. Idempotent: landed records move under redriven/, and the rules
 * make a second application stale; records that fail again stay (under a new name if the reason changed).
 */
export async function redrive(opts: RedriveOptions): Promise<RedriveReport> {
  const started = Date.now();
  const filter = opts.filter ?? {};
  const maxSamples = opts.samples ?? 10;
  const report: RedriveReport = {
    selected: 0, landed: { applied: 0, stale: 0, skipped: 0 }, failedAgain: { count: 0, byReason: {}, reasonChanged: 0 }, errors: 0,
    samples: { landed: [], failedAgain: [] }, dryRun: opts.dryRun === true, durationMs: 0,
  };
  const names: string[] = [];
  for await (const name of opts.store.list()) if (nameMatches(name, filter)) names.push(name);
  names.sort();
  const batchSize = Math.max(1, opts.batchSize ?? 100);
  let done = 0;
  for (let i = 0; i < names.length; i += batchSize) {
    const entries: Entry[] = [];
    for (const name of names.slice(i, i + batchSize)) {
      const stored = await opts.store.read(name);
      if (recordMatches(stored, filter)) entries.push({ name, stored, record: readDeadLetter(stored) });
    }
    report.selected += entries.length;
    if (!opts.dryRun) {
      const groups = new Map<string, Entry[]>();
      for (const e of entries) {
        const key = e.record.kind === 'twin-event' ? `tools\u0000${e.record.source}` : `raw\u0000${e.record.partitionId ?? ''}`;
        groups.set(key, [...(groups.get(key) ?? []), e]);
      }
      for (const [key, group] of groups) await redriveGroup(opts, report, key.startsWith('tools'), group, maxSamples);
    }
    done += entries.length;
    opts.onProgress?.(done, names.length);
  }
  report.durationMs = Date.now() - started;
  return report;
}

async function redriveGroup(opts: RedriveOptions, report: RedriveReport, tool: boolean, group: Entry[], maxSamples: number): Promise<void> {
  let result: BatchResult;
  if (tool) {
    result = await opts.engine.applyTwinEvents(group.map((e) => (e.record as Extract<DeadLetter, { kind: 'twin-event' }>).change), { isLastAttempt: true, source: group[0].record.source });
  } else {
    const events = group.map((e) => (e.record as Extract<DeadLetter, { kind: 'trigger-event' }>).event);
    result = await opts.engine.processBatch(events, { isLastAttempt: true, partitionId: group[0].record.partitionId, invocationId: `redrive-${Date.now()}` });
  }
  if (result.failure) {
    // The dead-letter store failed while recording what failed again: leave every original in place.
    report.errors += group.length;
    throw new Error(`redrive stopped: ${result.failure.message}`, { cause: result.failure });
  }
  const rewritten = new Map(result.deadLetters.map((d) => [deadLetterBlobName(d), d]));
  for (let i = 0; i < group.length; i++) {
    const { name, stored, record } = group[i];
    const outcome: EventOutcome = result.outcomes[i];
    if (outcome === 'applied' || outcome === 'stale' || outcome === 'skipped') {
      report.landed[outcome]++;
      if (report.samples.landed.length < maxSamples) report.samples.landed.push(name);
      await opts.store.archive(name, stored, outcome);
      continue;
    }
    // dead-lettered again: the engine wrote a new blob; same name → overwritten in place, else the old one goes.
    report.failedAgain.count++;
    const again = rewritten.get(name) ?? result.deadLetters.find((d) => contentOf(d) === contentOf(record));
    const reason = again?.reason ?? record.reason;
    report.failedAgain.byReason[reason] = (report.failedAgain.byReason[reason] ?? 0) + 1;
    if (reason !== record.reason) report.failedAgain.reasonChanged++;
    if (report.samples.failedAgain.length < maxSamples) report.samples.failedAgain.push({ name, reason, detail: again?.detail ?? record.detail });
    if (!rewritten.has(name)) await opts.store.remove(name);
  }
}
