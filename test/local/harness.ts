import https from 'node:https';
import { CosmosClient, type Container } from '@azure/cosmos';
import fc from 'fast-check';
import { isLoopback } from '../../functions/src/adapters/endpoints';
import { CosmosTwinStore, stripSystemFields } from '../../functions/src/adapters/cosmosStore';
import { MemoryDeadLetterSink } from '../../functions/src/adapters/memoryDeadLetters';
import { SYNC_RETRY, toRawEvents } from '../../functions/src/handlers/syncTwins';
import { SyncEngine } from '../../functions/src/sync/engine';
import type { TwinStore } from '../../functions/src/sync/ports';
import type { TwinDoc } from '../../functions/src/sync/types';
import { toTrigger } from '../../testkit/events';
import { DATABASE, LOCAL_COSMOS_KEY, type LocalCosmos } from '../../testkit/servers';
import { compareReplica } from '../../local/compare';
import { EventHubTrigger, LocalEventHub, sleep, type InvocationRecord } from '../../local/eventHub';
import type { FaultProxy } from '../../local/faultProxy';
import { FaultyDeadLetters, FaultyStore, LocalHost } from '../../local/host';
import { deepEqual, keyId, keyLabel, SimulatedHub, type HistoryEntry, type HubOptions, type Obj, type TwinKey } from '../../local/hub';

/**
 * One model-based run: the simulated hub is the model; the real system is the Event Hub, the trigger
 * stand-in, the real `syncTwins` on a SyncEngine whose store goes through the fault proxy to the local
 * Cosmos server (one fresh container per run), and a second writer for ETag races.
 *
 * The SDK's throttling retries are configured small here (3 retries, 2 s total wait, instead of the
 * default 9 / 30 s) so that storms longer than that reach the function's retry policy quickly.
 */
export const TEST_RETRY_OPTIONS = { maxRetryAttemptCount: 3, maxWaitTimeInSeconds: 2 };
/**
 * Faults are bounded so that a batch always succeeds within the function's retry policy (5 retries):
 * an outage lasts at most 2 tries, a storm of fewer than 2 × (1 + 3) requests exhausts the SDK's retries
 * for at most one call (one more try), at most 8 throttled bulk operations outlast the store's 5 re-send
 * rounds at most once (one more try), an ETag race costs a re-read, and a crash restarts the count. Faults beyond that budget are dead-lettered by design (transient-exhausted), which the test
 * treats as a failure: the budget is part of the claim.
 */
export const PARTITIONS = 2;

export interface Model {
  hub: SimulatedHub;
}

export class Real {
  readonly eventHub = new LocalEventHub(PARTITIONS);
  readonly deadLetters = new MemoryDeadLetterSink();
  readonly invocations: InvocationRecord[] = [];
  readonly problems: string[] = [];
  readonly trigger: EventHubTrigger;
  readonly host: LocalHost;
  /** Set by newRun: the hub whose history judges the observations. */
  hub?: SimulatedHub;
  /** Per identity (hub key): the earliest hub step every observation so far can be placed at, in order. */
  private readonly floor = new Map<string, number>();
  private readonly connectionSeen = new Map<string, bigint>();
  private readonly everSeen = new Set<string>();
  readonly judgement = { judged: 0, unjudged: 0 };
  /** Differences only verify/repair can close, found by the final comparison. */
  awaitingRepair = 0;
  readonly awaitingByReason: Record<string, number> = {};
  /** Tries left before an outage ends (undefined: the endpoint is up). */
  outageTries: number | undefined;

  constructor(readonly proxy: FaultProxy, readonly viaProxy: Container, readonly direct: Container, wrapStore: (store: TwinStore) => TwinStore = (x) => x) {
    this.host = new LocalHost((faults) => new SyncEngine({
      store: new FaultyStore(wrapStore(new CosmosTwinStore(viaProxy)), faults),
      deadLetters: new FaultyDeadLetters(this.deadLetters, faults),
      concurrency: 4,
    }));
    this.trigger = new EventHubTrigger({
      hub: this.eventHub,
      handler: this.host.handler,
      retry: { maxRetryCount: SYNC_RETRY.maxRetryCount, minimumIntervalMs: SYNC_RETRY.minimumInterval.seconds * 1000, maximumIntervalMs: SYNC_RETRY.maximumInterval.minutes * 60_000 },
      timeScale: 0,
      host: this.host,
      beforeAttempt: async () => {
        if (this.outageTries !== undefined && this.outageTries-- <= 0) {
          this.outageTries = undefined;
          await this.proxy.comeBack();
        }
      },
      onInvocation: (r) => {
        this.invocations.push(r);
        this.checkAccounting(r);
      },
    });
  }

  private checkAccounting(r: InvocationRecord): void {
    const s = r.summary as Record<string, number> | undefined;
    const where = `partition ${r.partition} from #${r.firstSequence} try ${r.attempt}`;
    if (!s) {
      this.problems.push(`${where}: no summary logged`);
      return;
    }
    const sum = s.applied + s.stale + s.skipped + s.deadLettered + s.retrying;
    if (s.received !== r.count || sum !== s.received) this.problems.push(`${where}: received ${s.received} of ${r.count}, applied+stale+skipped+deadLettered+retrying = ${sum}`);
    if (r.ok && s.retrying !== 0) this.problems.push(`${where}: returned normally with ${s.retrying} events retrying`);
    if (!r.ok && !r.crashed && s.retrying === 0) this.problems.push(`${where}: threw with nothing to retry: ${r.error}`);
  }

  /**
   * Reads every document (directly, not through the faults) and checks that none went back in time. The
   * judge is the hub's own history, not the engine's bookkeeping: each observed document is placed at the
   * hub steps whose state it shows (same version, tags, sections and, when it has one, ETag; a tombstone at
   * a deletion), and the places of one identity's observations must be able to rise in order. A document
   * that shows no state the hub passed through (built from reordered or partial events) is counted as
   * unjudged. Connection state is judged by the hub's sequence numbers alone.
   */
  async observe(): Promise<TwinDoc[]> {
    const { resources } = await this.direct.items.readAll<TwinDoc>().fetchAll();
    const docs = resources.map((d) => stripSystemFields(d));
    const seen = new Set<string>();
    for (const doc of docs) {
      const key: TwinKey = doc.moduleId === undefined ? { deviceId: doc.deviceId } : { deviceId: doc.deviceId, moduleId: doc.moduleId };
      const id = keyId(key);
      seen.add(id);
      this.everSeen.add(id);
      const history = this.hub?.history.get(id) ?? [];
      const places = history.filter((h) => (doc.deleted ? h.deleted : !h.deleted && showsState(doc, h))).map((h) => h.step);
      if (places.length === 0) this.judgement.unjudged++;
      else {
        this.judgement.judged++;
        const floor = this.floor.get(id) ?? 0;
        const next = places.find((p) => p >= floor);
        if (next === undefined) this.problems.push(`${keyLabel(key)}: went back in time (now shows hub step ${places[places.length - 1]}, had shown step ${floor})`);
        else this.floor.set(id, next);
      }
      const seq = doc.connectionStateSequenceNumber;
      if (seq !== undefined) {
        const n = BigInt(`0x${seq}`);
        if (n < (this.connectionSeen.get(id) ?? 0n)) this.problems.push(`${keyLabel(key)}: connection state went back to sequence ${seq}`);
        else this.connectionSeen.set(id, n);
      }
    }
    for (const id of this.everSeen) if (!seen.has(id)) this.problems.push(`${id}: document disappeared`);
    return docs;
  }

  /** Delivers one batch of a partition (what the trigger does next), then looks at the replica. */
  async deliver(partition: number, maxBatch: number): Promise<void> {
    await this.trigger.runOnce(partition % PARTITIONS, maxBatch);
    await this.observe();
  }

  /**
   * A second writer (another instance that got the partition's lease during a rebalance) applies the same
   * pending events with its own engine just before this host's next write: that write then meets a new ETag.
   */
  armRace(): void {
    this.host.faults.beforeNextWrite = async (doc) => {
      const p = this.eventHub.partitionOf(doc.deviceId);
      const from = this.trigger.checkpoints[p];
      const events = this.eventHub.partitions[p].slice(from, from + 100).map((e) => e.event);
      if (events.length === 0) return;
      const rival = new SyncEngine({ store: new CosmosTwinStore(this.direct), deadLetters: new MemoryDeadLetterSink() });
      const { messages, triggerMetadata } = toTrigger(events, { partitionId: String(p) });
      await rival.processBatch(toRawEvents(messages, triggerMetadata), { partitionId: String(p), isLastAttempt: false }).catch(() => undefined);
    };
  }

  async outage(tries: number): Promise<void> {
    await this.proxy.goDown();
    // Let the SDK's agent see its idle connections closed: a read on a cut keep-alive socket gets ECONNRESET,
    // which the SDK retries after a fixed 1 s (DefaultRetryPolicy); a refused connection fails at once.
    await sleep(20);
    this.outageTries = Math.max(this.outageTries ?? 0, tries);
  }

  /** Everything settles: the hub releases what it held, the endpoint is back, the trigger drains every partition. */
  async settle(hub: SimulatedHub): Promise<TwinDoc[]> {
    hub.flush();
    this.proxy.delayMs = 0;
    await this.trigger.drain();
    await this.proxy.comeBack();
    this.outageTries = undefined;
    return this.observe();
  }

  /** A readable account of what reached the Event Hub, for counterexamples. */
  eventLog(): string {
    return this.eventHub.partitions.map((log, p) => log.map((e) => `  p${p}#${e.sequenceNumber} ${e.label}`).join('\n')).filter(Boolean).join('\n');
  }
}

/** The document shows this hub state (twin content only: identity fields and connection state travel apart). */
function showsState(doc: TwinDoc, h: HistoryEntry): boolean {
  return doc.version === h.version && deepEqual(doc.tags, h.tags) && deepEqual(doc.properties?.desired, h.desired)
    && deepEqual(doc.properties?.reported, h.reported) && (doc.etag === undefined || doc.etag === h.etag);
}

/** Checks the end state; throws with the mismatches and the event sequence. */
export async function verify(model: Model, real: Real): Promise<void> {
  const docs = await real.settle(model.hub);
  const cmp = compareReplica(model.hub, docs);
  real.awaitingRepair += cmp.awaitingRepair.length;
  for (const a of cmp.awaitingRepair) {
    const why = /\(([^()]*)\)$/.exec(a)?.[1] ?? 'other';
    real.awaitingByReason[why] = (real.awaitingByReason[why] ?? 0) + 1;
  }
  const problems = [...real.problems, ...cmp.mismatches];
  if (real.deadLetters.records.length) problems.push(`dead-lettered: ${real.deadLetters.records.map((d) => `${d.reason} ${d.deviceId}/${d.moduleId ?? ''} ${d.detail}`).join('; ')}`);
  if (real.trigger.stats.exhausted) problems.push(`${real.trigger.stats.exhausted} batch(es) gave up after the last retry`);
  if (problems.length) throw new Error(`replica does not converge:\n  ${problems.slice(0, 8).join('\n  ')}\nevents as delivered:\n${real.eventLog()}`);
}

// ---- the services every run shares ------------------------------------------------------------------

export interface Services {
  cosmos: LocalCosmos;
  proxy: FaultProxy;
  viaProxy: CosmosClient;
  /** Straight to the server (observation, the second writer), without the faults. */
  direct: CosmosClient;
  /** What the runs exercised, summed (to show that the faults really happened). */
  tally: Record<string, number>;
}

export function newTally(): Record<string, number> {
  return { runs: 0, events: 0, invocations: 0, applied: 0, stale: 0, crashes: 0, retries: 0, etagConflicts: 0, deletes: 0, coalesced: 0, replays: 0, judged: 0, unjudged: 0, awaitingRepair: 0, lateDisconnects: 0, silentModuleCreates: 0, keyByKeyMerges: 0, drifts: 0 };
}

/**
 * A client straight to the local server. Its idle sockets are dropped after 4 s, before the server's 5 s
 * keep-alive timeout: reusing a socket the server is closing gives ECONNRESET, which the SDK retries
 * after a fixed second.
 */
export function directClient(cosmos: LocalCosmos): CosmosClient {
  if (!isLoopback(cosmos.endpoint)) throw new Error(`refusing to skip certificate checks for ${cosmos.endpoint}`);
  return new CosmosClient({
    endpoint: cosmos.endpoint,
    key: LOCAL_COSMOS_KEY,
    agent: new https.Agent({ rejectUnauthorized: false, keepAlive: true, timeout: 4000 }),
    connectionPolicy: { enableEndpointDiscovery: false },
  });
}

export function proxiedClient(proxy: FaultProxy): CosmosClient {
  if (!isLoopback(proxy.endpoint)) throw new Error(`refusing to skip certificate checks for ${proxy.endpoint}`);
  return new CosmosClient({
    endpoint: proxy.endpoint,
    key: LOCAL_COSMOS_KEY,
    // Self-signed certificate, accepted only because the endpoint is a loopback proxy.
    agent: new https.Agent({ rejectUnauthorized: false, keepAlive: true }),
    connectionPolicy: { enableEndpointDiscovery: false, retryOptions: TEST_RETRY_OPTIONS },
  });
}

let runNumber = 0;
export async function newRun(s: Services, hubOptions: HubOptions & { seed: number }, wrapStore?: (store: TwinStore) => TwinStore): Promise<{ model: Model; real: Real; dispose: () => Promise<void> }> {
  const id = `run-${++runNumber}`;
  const { container: direct } = await s.direct.database(DATABASE).containers.create({ id, partitionKey: { paths: ['/deviceId'] } });
  s.proxy.calm();
  await s.proxy.comeBack();
  const real = new Real(s.proxy, s.viaProxy.database(DATABASE).container(id), direct, wrapStore);
  const hub = new SimulatedHub((e) => real.eventHub.publish(e.event, e.ms, e.label), hubOptions);
  real.hub = hub;
  return {
    model: { hub },
    real,
    dispose: async () => {
      const t = s.tally;
      t.runs++;
      t.events += real.eventHub.total;
      t.invocations += real.invocations.length;
      for (const r of real.invocations) {
        const sum = (r.summary ?? {}) as Record<string, number>;
        t.applied += sum.applied ?? 0;
        t.stale += sum.stale ?? 0;
        t.etagConflicts += sum.conflicts ?? 0;
      }
      t.crashes += real.trigger.stats.crashes;
      t.judged += real.judgement.judged;
      t.unjudged += real.judgement.unjudged;
      t.awaitingRepair += real.awaitingRepair;
      for (const [why, n] of Object.entries(real.awaitingByReason)) t[`repair: ${why}`] = (t[`repair: ${why}`] ?? 0) + n;
      t.lateDisconnects += hub.counts.lateDisconnect ?? 0;
      t.silentModuleCreates += hub.counts.silentModuleCreate ?? 0;
      t.keyByKeyMerges += hub.counts.keyByKeyMerge ?? 0;
      t.drifts += hub.counts.drift ?? 0;
      t.retries += real.trigger.stats.retries;
      for (const log of real.eventHub.partitions) {
        for (const e of log) {
          if (e.label.startsWith('replay')) t.replays++;
          else if (e.label.startsWith('delete')) t.deletes++;
          else if (e.label.startsWith('coalesced')) t.coalesced++;
        }
      }
      real.host.stop();
      await s.proxy.comeBack();
      await direct.delete();
    },
  };
}

// ---- commands ---------------------------------------------------------------------------------------

export type Cmd = fc.AsyncCommand<Model, Real>;

abstract class Base implements Cmd {
  check(): boolean {
    return true;
  }
  abstract run(m: Model, r: Real): Promise<void>;
  abstract toString(): string;
}

const DEVICES = ['d0', 'd#1', 'd2'];
const KEYS: TwinKey[] = [
  { deviceId: 'd0' }, { deviceId: 'd#1' }, { deviceId: 'd2' },
  { deviceId: 'd0', moduleId: 'm0' }, { deviceId: 'd#1', moduleId: 'm.1' },
];
const show = (k: TwinKey) => keyLabel(k);

export class Create extends Base {
  constructor(readonly key: TwinKey, readonly tags: Obj | undefined) { super(); }
  async run(m: Model) { m.hub.create(this.key, this.tags); }
  toString() { return `create ${show(this.key)}${this.tags ? ' tags ' + JSON.stringify(this.tags) : ''}`; }
}
export class Patch extends Base {
  constructor(readonly key: TwinKey, readonly section: 'tags' | 'desired' | 'reported', readonly patch: Obj, readonly hold: boolean) { super(); }
  async run(m: Model) { m.hub.update(this.key, { [this.section]: this.patch }, { hold: this.hold }); }
  toString() { return `patch ${show(this.key)} ${this.section} ${JSON.stringify(this.patch)}${this.hold ? ' (coalesced with the next)' : ''}`; }
}
export class Replace extends Base {
  constructor(readonly key: TwinKey, readonly tags: Obj, readonly desired: Obj) { super(); }
  async run(m: Model) { m.hub.replace(this.key, { tags: this.tags, desired: this.desired }); }
  toString() { return `replace ${show(this.key)} tags ${JSON.stringify(this.tags)} desired ${JSON.stringify(this.desired)}`; }
}
export class Delete extends Base {
  constructor(readonly key: TwinKey) { super(); }
  async run(m: Model) { m.hub.delete(this.key); }
  toString() { return `delete ${show(this.key)}`; }
}
export class Flap extends Base {
  constructor(readonly key: TwinKey, readonly hold: boolean) { super(); }
  async run(m: Model) {
    const t = m.hub.twin(this.key);
    if (t) m.hub.setConnection(this.key, t.connectionState !== 'Connected', { hold: this.hold });
  }
  toString() { return `connection flap ${show(this.key)}${this.hold ? ' (reported with the next snapshot)' : ''}`; }
}
export class Drift extends Base {
  constructor(readonly key: TwinKey, readonly change: 'status' | 'activity' | 'scope') { super(); }
  async run(m: Model) {
    if (m.hub.drift(this.key, this.change)) m.hub.counts.drift = (m.hub.counts.drift ?? 0) + 1;
  }
  toString() { return `${show(this.key)}: ${this.change} changes with no routed event`; }
}
export class Flush extends Base {
  async run(m: Model) { m.hub.flush(); }
  toString() { return 'hub releases held notifications'; }
}
export class Duplicate extends Base {
  constructor(readonly partition: number, readonly count: number) { super(); }
  async run(_m: Model, r: Real) { r.eventHub.replay(this.partition % PARTITIONS, this.count); }
  toString() { return `hub replays the last ${this.count} events of partition ${this.partition % PARTITIONS}`; }
}
export class Deliver extends Base {
  constructor(readonly partition: number, readonly maxBatch: number) { super(); }
  async run(_m: Model, r: Real) { await r.deliver(this.partition, this.maxBatch); }
  toString() { return `deliver ≤${this.maxBatch} events of partition ${this.partition % PARTITIONS}`; }
}
export class Crash extends Base {
  constructor(readonly partition: number, readonly afterOps: number) { super(); }
  async run(_m: Model, r: Real) {
    r.host.faults.armCrash(this.afterOps);
    await r.deliver(this.partition, 100);
  }
  toString() { return `host crashes at its ${this.afterOps}. Cosmos call while delivering partition ${this.partition % PARTITIONS}`; }
}
export class Throttle extends Base {
  constructor(readonly requests: number, readonly retryAfterMs: number) { super(); }
  async run(_m: Model, r: Real) { r.proxy.throttleNext(this.requests, this.retryAfterMs); }
  toString() { return `throttling storm: next ${this.requests} Cosmos requests get 429 retry-after ${this.retryAfterMs} ms`; }
}
export class BulkThrottle extends Base {
  constructor(readonly operations: number, readonly retryAfterMs: number) { super(); }
  async run(_m: Model, r: Real) { r.proxy.throttleBulkOps(this.operations, this.retryAfterMs); }
  toString() { return `partial throttling: next ${this.operations} operations inside bulk calls get 429 retry-after ${this.retryAfterMs} ms`; }
}
export class Race extends Base {
  async run(_m: Model, r: Real) { r.armRace(); }
  toString() { return 'a second writer applies the pending events just before the next write (ETag race)'; }
}
export class Outage extends Base {
  constructor(readonly tries: number) { super(); }
  async run(_m: Model, r: Real) { await r.outage(this.tries); }
  toString() { return `Cosmos endpoint goes away, back after ${this.tries} tries`; }
}
export class Slow extends Base {
  constructor(readonly ms: number) { super(); }
  async run(_m: Model, r: Real) { r.proxy.delayMs = this.ms; }
  toString() { return `Cosmos answers ${this.ms} ms slower`; }
}

const name = fc.constantFrom('x', 'y', 'z');
const leaf = fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom('on', 'off'), fc.boolean());
const inner = fc.dictionary(name, fc.oneof(leaf, fc.constant(null)), { minKeys: 1, maxKeys: 2 });
const patch = fc.dictionary(name, fc.oneof(leaf, fc.constant(null), inner), { minKeys: 1, maxKeys: 3 }) as fc.Arbitrary<Obj>;
const plain = fc.dictionary(name, fc.oneof(leaf, fc.dictionary(name, leaf, { maxKeys: 2 })), { maxKeys: 3 }) as fc.Arbitrary<Obj>;
const key = fc.constantFrom(...KEYS);
const partition = fc.nat({ max: PARTITIONS - 1 });

const create = fc.tuple(key, fc.option(plain, { nil: undefined })).map(([k, t]) => new Create(k, t));

/** Every command but re-creation (identities are created once, by `provision`). */
export const commandArbsWithoutCreate: fc.Arbitrary<Cmd>[] = [
  fc.tuple(key, fc.constantFrom<'tags' | 'desired' | 'reported'>('tags', 'desired', 'reported'), patch, fc.boolean()).map(([k, s, p, h]) => new Patch(k, s, p, h)),
  fc.tuple(key, fc.constantFrom<'tags' | 'desired' | 'reported'>('tags', 'desired', 'reported'), patch, fc.boolean()).map(([k, s, p, h]) => new Patch(k, s, p, h)),
  fc.tuple(key, plain, plain).map(([k, t, d]) => new Replace(k, t, d)),
  key.map((k) => new Delete(k)),
  fc.tuple(key, fc.boolean()).map(([k, h]) => new Flap(k, h)),
  fc.tuple(key, fc.boolean()).map(([k, h]) => new Flap(k, h)),
  fc.tuple(key, fc.constantFrom('status' as const, 'activity' as const, 'scope' as const)).map(([k, c]) => new Drift(k, c)),
  fc.constant(new Flush()),
  fc.tuple(partition, fc.integer({ min: 1, max: 4 })).map(([p, n]) => new Duplicate(p, n)),
  fc.tuple(partition, fc.integer({ min: 1, max: 6 })).map(([p, n]) => new Deliver(p, n)),
  fc.tuple(partition, fc.integer({ min: 1, max: 6 })).map(([p, n]) => new Deliver(p, n)),
  fc.tuple(partition, fc.integer({ min: 1, max: 8 })).map(([p, n]) => new Crash(p, n)),
  fc.tuple(fc.integer({ min: 1, max: 2 * (TEST_RETRY_OPTIONS.maxRetryAttemptCount + 1) - 1 }), fc.integer({ min: 1, max: 20 })).map(([n, ms]) => new Throttle(n, ms)),
  fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 20 })).map(([n, ms]) => new BulkThrottle(n, ms)),
  fc.constant(new Race()),
  fc.integer({ min: 1, max: 2 }).map((t) => new Outage(t)),
  fc.integer({ min: 0, max: 15 }).map((ms) => new Slow(ms)),
];

export const commandArbs: fc.Arbitrary<Cmd>[] = [create, ...commandArbsWithoutCreate];

/** Every run starts with the devices created, so most commands act on live twins. */
export function provision(hub: SimulatedHub): void {
  for (const d of DEVICES) hub.create({ deviceId: d });
  for (const k of KEYS) hub.create(k);
}
