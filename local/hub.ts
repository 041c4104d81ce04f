import { encodeDocId } from '../functions/src/sync/ids';
import { connection, connectionSequence, created, deleted, opTimestamp, twinReplace, twinUpdate, type WireEvent } from '../testkit/events';
import { Rng } from './random';

/**
 * A simulated IoT Hub: an independent model of device and module twins as IoT Hub documents them, and
 * of the events its routes emit. It shares no merge or ordering code with the sync engine, so a replica
 * that matches it was produced by the engine, not copied from a common implementation.
 *
 * Twin shape (learn.microsoft.com, "Understand and use device twins"): `tags` (no metadata),
 * `properties.desired` / `properties.reported`, each with `$version` (one more on every change of the
 * section) and `$metadata` mirroring the data: every object and leaf has `$lastUpdated`, desired ones
 * also `$lastUpdatedVersion`; an object's entry is re-stamped whenever something under it changes.
 * The twin's top-level `version` grows by one on every twin change and starts again for a re-created
 * identity; `etag` changes on every change.
 *
 * Events (Microsoft Learn, IoT Hub non-telemetry event schema): an `updateTwin` body holds every key the caller sent (not a
 * minimal diff) with the `$metadata` of those keys and the section's `$version`; `replaceTwin`,
 * `createDeviceIdentity` and `deleteDeviceIdentity` carry the whole twin. IoT Hub may coalesce several
 * changes into one notification carrying the last version (`hold`), replays what it already sent, and
 * orders one device's events per route but not across routes (`reorderWindow`).
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Obj = { [key: string]: Json };

export interface TwinKey {
  deviceId: string;
  moduleId?: string;
}

export type Route = 'twinChangeEvents' | 'deviceLifecycleEvents' | 'deviceConnectionStateEvents';

interface Section {
  data: Obj;
  /** `$metadata` as IoT Hub shows it. */
  meta: Obj;
  version: number;
}

export interface HubTwin {
  key: TwinKey;
  version: number;
  etag: string;
  tags: Obj;
  desired: Section;
  reported: Section;
  connectionState: 'Connected' | 'Disconnected';
}

export interface Emitted {
  event: WireEvent;
  route: Route;
  /** Operation time in ms (the hub's clock), used as the enqueued time. */
  ms: number;
  /** For readable traces: what happened. */
  label: string;
}

export interface HubOptions {
  seed?: number;
  /** Events of one device held back and released in a random cross-route order (0: in order). */
  reorderWindow?: number;
  /** A device deletion also emits a delete for each of its modules (default: only the device's own event). */
  moduleDeleteEvents?: boolean;
  hubName?: string;
}

/** Identity fields a full twin carries besides the twin content; constant in this model. */
export const IDENTITY_FIELDS = ['status', 'statusUpdateTime', 'authenticationType', 'x509Thumbprint', 'modelId', 'cloudToDeviceMessageCount', 'lastActivityTime', 'capabilities'] as const;
const EPOCH = '0001-01-01T00:00:00Z';

export function keyId(key: TwinKey): string {
  return encodeDocId(key);
}

export function keyLabel(key: TwinKey): string {
  return key.moduleId === undefined ? key.deviceId : `${key.deviceId}/${key.moduleId}`;
}

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function clone<T extends Json | undefined>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (!isObj(a) || !isObj(b)) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
}

/** The desired/reported section exactly as IoT Hub renders it: data, `$metadata`, `$version`. */
export function renderSection(s: Section): Obj {
  return { ...clone(s.data), $metadata: clone(s.meta), $version: s.version };
}

interface Pending {
  pre: { tags: Obj; desired: Obj; reported: Obj };
  sent: { tags: Obj[]; desired: Obj[]; reported: Obj[] };
  labels: string[];
}

export class SimulatedHub {
  private readonly rng: Rng;
  private readonly twinsById = new Map<string, HubTwin>();
  /** Every identity that ever existed (to check that deleted ones are not live in the replica). */
  readonly everKnown = new Map<string, TwinKey>();
  private readonly pending = new Map<string, Pending>();
  private readonly heldConnections = new Map<string, TwinKey>();
  private readonly outboxes = new Map<string, Emitted[]>();
  private ticks: number;
  private etagCounter = 0;
  private connectionCounter = 0;
  readonly counts: Record<string, number> = {};

  constructor(private readonly sink: (e: Emitted) => void, readonly options: HubOptions = {}) {
    this.rng = new Rng(options.seed ?? 1);
    this.ticks = Date.parse('2026-01-01T00:00:00Z') * 10_000;
  }

  // ---- reading the hub's state -------------------------------------------------------------------

  twin(key: TwinKey): HubTwin | undefined {
    return this.twinsById.get(keyId(key));
  }

  twins(): HubTwin[] {
    return [...this.twinsById.values()];
  }

  deviceIds(): string[] {
    return [...new Set([...this.everKnown.values()].map((k) => k.deviceId))];
  }

  /** The hub's clock in ms: a read of the hub now reflects every operation up to it, none after. */
  clockMs(): number {
    return Math.floor(this.ticks / 10_000);
  }

  modulesOf(deviceId: string): HubTwin[] {
    return this.twins().filter((t) => t.key.deviceId === deviceId && t.key.moduleId !== undefined);
  }

  /** The whole twin as the service API and full-twin events show it. */
  renderTwin(t: HubTwin): Obj {
    const twin: Obj = { deviceId: t.key.deviceId };
    if (t.key.moduleId !== undefined) twin.moduleId = t.key.moduleId;
    Object.assign(twin, {
      etag: t.etag,
      status: 'enabled',
      statusUpdateTime: EPOCH,
      connectionState: t.connectionState,
      lastActivityTime: EPOCH,
      cloudToDeviceMessageCount: 0,
      authenticationType: 'sas',
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      modelId: '',
      version: t.version,
      tags: clone(t.tags),
      properties: { desired: renderSection(t.desired), reported: renderSection(t.reported) },
    });
    if (t.key.moduleId === undefined) twin.capabilities = { iotEdge: false };
    return twin;
  }

  // ---- operations ----------------------------------------------------------------------------------

  /** Creates a device, or a module of an existing device; false when it cannot (exists, or no device). */
  create(key: TwinKey, initialTags?: Obj): boolean {
    const id = keyId(key);
    if (this.twinsById.has(id)) return false;
    if (key.moduleId !== undefined && !this.twinsById.has(keyId({ deviceId: key.deviceId }))) return false;
    const ts = this.tick();
    const emptySection = (): Section => ({ data: {}, meta: { $lastUpdated: EPOCH }, version: 1 });
    // As in the documented creation event: version 2, sections at $version 1.
    const t: HubTwin = { key, version: 2, etag: this.nextEtag(), tags: clone(initialTags ?? {}), desired: emptySection(), reported: emptySection(), connectionState: 'Disconnected' };
    this.twinsById.set(id, t);
    this.everKnown.set(id, key);
    this.emit(key, 'deviceLifecycleEvents', created({ ...this.common(key, ts), twin: this.renderTwin(t) }), `create ${keyLabel(key)}`);
    return true;
  }

  /**
   * A twin patch (service: tags and desired; device: reported). `hold` keeps the notification back so
   * that the next change is coalesced into it, as IoT Hub may do.
   */
  update(key: TwinKey, patch: { tags?: Obj; desired?: Obj; reported?: Obj }, opts: { hold?: boolean } = {}): boolean {
    const t = this.twin(key);
    if (!t) return false;
    const id = keyId(key);
    const ts = this.tick();
    let p = this.pending.get(id);
    if (!p) {
      p = { pre: { tags: clone(t.tags), desired: clone(t.desired.data), reported: clone(t.reported.data) }, sent: { tags: [], desired: [], reported: [] }, labels: [] };
      this.pending.set(id, p);
    }
    if (patch.tags) {
      applyData(t.tags, undefined, patch.tags, () => {});
      p.sent.tags.push(clone(patch.tags));
    }
    for (const name of ['desired', 'reported'] as const) {
      const sectionPatch = patch[name];
      if (!sectionPatch) continue;
      const s = t[name];
      s.version++;
      const stamp = (node: Obj) => {
        node.$lastUpdated = ts;
        if (name === 'desired') node.$lastUpdatedVersion = s.version;
      };
      stamp(s.meta);
      applyData(s.data, s.meta, sectionPatch, stamp);
      p.sent[name].push(clone(sectionPatch));
    }
    t.version++;
    t.etag = this.nextEtag();
    p.labels.push(`update ${keyLabel(key)} v${t.version} ${JSON.stringify(patch)}`);
    if (!opts.hold) this.flushTwin(id);
    return true;
  }

  /** Replace twin (service side): tags and desired replaced as a whole; reported stays the device's. */
  replace(key: TwinKey, next: { tags: Obj; desired: Obj }): boolean {
    const t = this.twin(key);
    if (!t) return false;
    const id = keyId(key);
    this.flushTwin(id);
    const ts = this.tick();
    t.tags = clone(next.tags);
    t.desired.version++;
    t.desired.data = clone(next.desired);
    t.desired.meta = buildMeta(t.desired.data, ts, t.desired.version);
    t.version++;
    t.etag = this.nextEtag();
    this.emit(key, 'twinChangeEvents', twinReplace({ ...this.common(key, ts), twin: this.renderTwin(t) }), `replace ${keyLabel(key)} v${t.version} ${JSON.stringify(next)}`);
    return true;
  }

  /** Deletes an identity; a device takes its modules with it (IoT Hub deletes them together). */
  delete(key: TwinKey): boolean {
    const t = this.twin(key);
    if (!t) return false;
    const victims = key.moduleId === undefined ? [...this.modulesOf(key.deviceId), t] : [t];
    for (const v of victims) {
      this.flushTwin(keyId(v.key));
      this.flushConnection(keyId(v.key));
      // A connected identity is disconnected before it goes.
      if (v.connectionState === 'Connected') this.setConnection(v.key, false, {});
    }
    if (key.moduleId === undefined && this.options.moduleDeleteEvents) {
      for (const m of victims.slice(0, -1)) this.emitDelete(m);
    }
    for (const m of victims.slice(0, -1)) this.twinsById.delete(keyId(m.key));
    this.emitDelete(t);
    this.twinsById.delete(keyId(key));
    return true;
  }

  /** A connection flap's edge; `hold` models the 60 s snapshot: the change is reported later, or merged with the next. */
  setConnection(key: TwinKey, connected: boolean, opts: { hold?: boolean } = {}): boolean {
    const t = this.twin(key);
    if (!t) return false;
    t.connectionState = connected ? 'Connected' : 'Disconnected';
    const id = keyId(key);
    this.heldConnections.set(id, key);
    if (!opts.hold) this.flushConnection(id);
    return true;
  }

  /** Releases everything held back (coalesced twin changes, connection snapshots, reorder buffers). */
  flush(): void {
    for (const id of [...this.pending.keys()]) this.flushTwin(id);
    for (const id of [...this.heldConnections.keys()]) this.flushConnection(id);
    for (const deviceId of [...this.outboxes.keys()]) this.drainOutbox(deviceId, 0);
  }

  // ---- internals -----------------------------------------------------------------------------------

  private emitDelete(t: HubTwin): void {
    const ts = this.tick();
    this.emit(t.key, 'deviceLifecycleEvents', deleted({ ...this.common(t.key, ts), twin: this.renderTwin(t) }), `delete ${keyLabel(t.key)}`);
  }

  private flushTwin(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const t = this.twinsById.get(id);
    if (!t) return;
    const body: { version: number; tags?: Obj; desired?: Obj; reported?: Obj } = { version: t.version };
    if (p.sent.tags.length) body.tags = coalescedPatch(p.pre.tags, t.tags, p.sent.tags);
    for (const name of ['desired', 'reported'] as const) {
      if (!p.sent[name].length) continue;
      const s = t[name];
      const data = coalescedPatch(p.pre[name], s.data, p.sent[name]);
      body[name] = { ...data, $metadata: metaFor(data, s.meta), $version: s.version };
    }
    const label = p.labels.length === 1 ? p.labels[0] : `coalesced[${p.labels.join('; ')}]`;
    this.emit(t.key, 'twinChangeEvents', twinUpdate({ ...this.common(t.key, this.tick()), ...body }), label);
  }

  private flushConnection(id: string): void {
    const key = this.heldConnections.get(id);
    if (!key) return;
    this.heldConnections.delete(id);
    const t = this.twinsById.get(id);
    if (!t) return;
    const connected = t.connectionState === 'Connected';
    const seq = ++this.connectionCounter;
    this.emit(key, 'deviceConnectionStateEvents', connection({ ...this.common(key, this.tick()), connected, sequence: connectionSequence(seq) }), `${connected ? 'connected' : 'disconnected'} ${keyLabel(key)} #${seq}`);
  }

  private emit(key: TwinKey, route: Route, event: WireEvent, label: string): void {
    const opType = String(event.properties.opType);
    this.counts[opType] = (this.counts[opType] ?? 0) + 1;
    const e: Emitted = { event, route, ms: Date.parse(String(event.properties.operationTimestamp)), label };
    const window = this.options.reorderWindow ?? 0;
    if (window <= 0) return this.sink(e);
    let box = this.outboxes.get(key.deviceId);
    if (!box) this.outboxes.set(key.deviceId, (box = []));
    box.push(e);
    this.drainOutbox(key.deviceId, window);
  }

  /** Releases a device's held events down to `keep`, each time the head of a random route: per-route order holds. */
  private drainOutbox(deviceId: string, keep: number): void {
    const box = this.outboxes.get(deviceId);
    if (!box) return;
    while (box.length > keep) {
      const heads = new Map<Route, number>();
      box.forEach((e, i) => { if (!heads.has(e.route)) heads.set(e.route, i); });
      const i = this.rng.pick([...heads.values()]);
      this.sink(box.splice(i, 1)[0]);
    }
    if (box.length === 0) this.outboxes.delete(deviceId);
  }

  private common(key: TwinKey, ts: string) {
    return { deviceId: key.deviceId, moduleId: key.moduleId, ts, hubName: this.options.hubName ?? 'local-hub' };
  }

  /** Advances the hub's clock (strictly increasing, 100 ns resolution) and returns the operation timestamp. */
  private tick(): string {
    this.ticks += 1 + this.rng.int(0, 30_000);
    return opTimestamp(Math.floor(this.ticks / 10_000), this.ticks % 10_000);
  }

  private nextEtag(): string {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(++this.etagCounter));
    return b.toString('base64');
  }
}

/** Applies a merge patch to data (and its metadata, when given), stamping every object on the way. */
function applyData(data: Obj, meta: Obj | undefined, patch: Obj, stamp: (node: Obj) => void): void {
  for (const k of Object.keys(patch)) {
    const v = patch[k];
    if (v === null) {
      delete data[k];
      if (meta) delete meta[k];
    } else if (isObj(v)) {
      if (!isObj(data[k])) {
        data[k] = {};
        if (meta) meta[k] = {};
      }
      const childMeta = meta ? (meta[k] as Obj) : undefined;
      if (childMeta) stamp(childMeta);
      applyData(data[k] as Obj, childMeta, v, stamp);
    } else {
      data[k] = clone(v);
      if (meta) {
        meta[k] = {};
        stamp(meta[k] as Obj);
      }
    }
  }
}

/** `$metadata` for freshly written data (replace): every object and leaf stamped now. */
function buildMeta(data: Obj, ts: string, version: number): Obj {
  const node: Obj = { $lastUpdated: ts, $lastUpdatedVersion: version };
  for (const [k, v] of Object.entries(data)) node[k] = isObj(v) ? buildMeta(v, ts, version) : { $lastUpdated: ts, $lastUpdatedVersion: version };
  return node;
}

/** The `$metadata` a notification carries: the section's root entry and the entries of every key it sets. */
function metaFor(patch: Obj, meta: Obj): Obj {
  const out: Obj = { $lastUpdated: meta.$lastUpdated };
  if (meta.$lastUpdatedVersion !== undefined) out.$lastUpdatedVersion = meta.$lastUpdatedVersion;
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) continue;
    out[k] = isObj(v) ? metaFor(v, meta[k] as Obj) : clone(meta[k]);
  }
  return out;
}

/**
 * One merge patch that takes `pre` to `post` and names every key the callers sent (IoT Hub's patches
 * are not minimal diffs). Merge patches do not compose key by key ({a:null} then {a:{b:1}} is not
 * {a:{b:1}} when a had other keys), so the patch is the RFC 7396 diff of the states plus the sent keys.
 */
export function coalescedPatch(pre: Obj, post: Obj, sent: readonly Obj[]): Obj {
  const out = diffPatch(pre, post);
  for (const s of sent) addTouched(out, s, pre, post);
  return out;
}

function diffPatch(pre: Obj, post: Obj): Obj {
  const out: Obj = {};
  for (const k of Object.keys(pre)) if (!(k in post)) out[k] = null;
  for (const [k, v] of Object.entries(post)) {
    const before = pre[k];
    if (isObj(before) && isObj(v)) {
      const d = diffPatch(before, v);
      if (Object.keys(d).length) out[k] = d;
    } else if (!deepEqual(before, v)) {
      out[k] = clone(v);
    }
  }
  return out;
}

function addTouched(out: Obj, sent: Obj, pre: Obj | undefined, post: Obj): void {
  for (const [k, v] of Object.entries(sent)) {
    if (!(k in post)) {
      if (!(k in out)) out[k] = null;
    } else if (isObj(v) && isObj(post[k])) {
      if (!(k in out)) out[k] = {};
      const child = out[k];
      if (isObj(child)) addTouched(child, v, isObj(pre?.[k]) ? (pre![k] as Obj) : undefined, post[k] as Obj);
    } else if (!(k in out)) {
      out[k] = clone(post[k]);
    }
  }
}
