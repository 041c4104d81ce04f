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
 *
 * What IoT Hub may also do and the replica must survive (each off by default, see HubOptions): report a
 * disconnect after the deletion (connection state comes from a 60-second poll: Microsoft Learn, "Monitor
 * device connection state"); create modules without a lifecycle event (IoT Edge modules: Microsoft Learn,
 * "Understand the identity registry"); compose a coalesced notification key by key instead of as an exact
 * diff; bump desired `$version` on a tags change (MicrosoftDocs/azure-docs issue 36255), with or without
 * saying so in the notification; change identity fields (`status`, `capabilities`, ...) with no routed
 * event at all (`drift`). The hub records, per incarnation, what no event could tell the replica
 * (`unsettled`), so the oracle can say which differences only verify/repair can close.
 *
 * Keys are the hub's own (`keyId`): the simulation shares no id encoding with the engine.
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
  /** Counts this identity's creations (1 for the first). */
  incarnation: number;
  /** Identity fields that change without events (REFRESHED_FIELDS, VOLATILE_FIELDS). */
  identity: Obj;
}

export interface Emitted {
  event: WireEvent;
  route: Route;
  /** Operation time in ms (the hub's clock), used as the enqueued time. */
  ms: number;
  /** For readable traces: what happened. */
  label: string;
  /** The identity and incarnation the event belongs to (for the reordering bookkeeping only). */
  key?: TwinKey;
  incarnation?: number;
  /** Emission order (before any reordering). */
  order?: number;
}

export interface HubOptions {
  seed?: number;
  /** Events of one device held back and released in a random cross-route order (0: in order). */
  reorderWindow?: number;
  /** A device deletion also emits a delete for each of its modules (default: only the device's own event). */
  moduleDeleteEvents?: boolean;
  /** Probability that a connected identity's disconnect is reported after its deletion (the 60 s poll). @default 0 */
  lateDisconnectRate?: number;
  /** Probability that a module is created without a lifecycle event (an IoT Edge module). @default 0 */
  silentModuleCreateRate?: number;
  /** How a held (coalesced) notification is composed: the exact diff, or the sent patches merged key by key. @default 'exact' */
  coalesce?: 'exact' | 'keyByKey';
  /** A tags change bumps desired `$version`: not at all, saying so in the notification, or silently. @default 'no' */
  tagsBumpDesired?: 'no' | 'notified' | 'silent';
  hubName?: string;
}

/** Why the replica cannot reach the hub's state from events alone (verify/repair closes each). */
export type Unsettled = 'silent-create' | 'lossy-merge' | 'silent-desired-version' | 'recreation-overtaken';

/**
 * Identity fields a full twin carries besides the twin content. `REFRESHED_FIELDS` change with no routed
 * event (`drift`): the replica refreshes them by verify/repair (docs/replica.md). `VOLATILE_FIELDS` are out of
 * the replica's promises and never compared. The rest are constant in this model.
 */
export const REFRESHED_FIELDS = ['status', 'statusReason', 'statusUpdateTime', 'capabilities', 'deviceScope'] as const;
export const VOLATILE_FIELDS = ['lastActivityTime', 'cloudToDeviceMessageCount'] as const;
export const IDENTITY_FIELDS = ['authenticationType', 'x509Thumbprint', 'modelId'] as const;
const EPOCH = '0001-01-01T00:00:00Z';

/** The hub's own key for an identity (deliberately not the replica's document id encoding). */
export function keyId(key: TwinKey): string {
  return JSON.stringify([key.deviceId, key.moduleId ?? null]);
}

/** One state an identity passed through, in hub order (`step`), for judging "no going back". */
export interface HistoryEntry {
  step: number;
  deleted: boolean;
  version?: number;
  etag?: string;
  tags?: Obj;
  desired?: Obj;
  reported?: Obj;
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
  /** The notification carries desired `$version` though no desired key changed (tags bumped it). */
  desiredVersionOnly?: boolean;
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
  private stepCounter = 0;
  private emitted = 0;
  private readonly incarnations = new Map<string, number>();
  /** What no event told the replica, per identity and incarnation. */
  private readonly unsettledBy = new Map<string, Map<number, Set<Unsettled>>>();
  /** Every state each identity passed through. */
  readonly history = new Map<string, HistoryEntry[]>();
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
      ...clone(t.identity),
      connectionState: t.connectionState,
      authenticationType: 'sas',
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      modelId: '',
      version: t.version,
      tags: clone(t.tags),
      properties: { desired: renderSection(t.desired), reported: renderSection(t.reported) },
    });
    return twin;
  }

  /** Why the identity's current incarnation cannot be settled from events alone (empty: it can). */
  unsettled(key: TwinKey): Set<Unsettled> {
    const id = keyId(key);
    return this.unsettledBy.get(id)?.get(this.incarnations.get(id) ?? 0) ?? new Set();
  }

  private markUnsettled(key: TwinKey, reason: Unsettled, incarnation = this.incarnations.get(keyId(key)) ?? 0): void {
    const id = keyId(key);
    let byInc = this.unsettledBy.get(id);
    if (!byInc) this.unsettledBy.set(id, (byInc = new Map<number, Set<Unsettled>>()));
    let set = byInc.get(incarnation);
    if (!set) byInc.set(incarnation, (set = new Set()));
    set.add(reason);
  }

  private record(t: HubTwin | undefined, key: TwinKey): void {
    const id = keyId(key);
    let h = this.history.get(id);
    if (!h) this.history.set(id, (h = []));
    const step = ++this.stepCounter;
    if (!t) h.push({ step, deleted: true });
    else h.push({ step, deleted: false, version: t.version, etag: t.etag, tags: clone(t.tags), desired: renderSection(t.desired), reported: renderSection(t.reported) });
  }

  /**
   * Identity fields change with no routed event (Microsoft Learn, IoT Hub non-telemetry event schema: no
   * event carries `status`, `capabilities`, `deviceScope`, `lastActivityTime`, ...): e.g. an operator
   * disables the device, or the device sends telemetry.
   */
  drift(key: TwinKey, change: 'status' | 'activity' | 'scope'): boolean {
    const t = this.twin(key);
    if (!t) return false;
    const ts = this.tick();
    if (change === 'status') {
      const disabled = t.identity.status === 'enabled';
      Object.assign(t.identity, { status: disabled ? 'disabled' : 'enabled', statusReason: disabled ? 'maintenance' : null, statusUpdateTime: ts.slice(0, 23) + 'Z' });
    } else if (change === 'scope') {
      if (key.moduleId !== undefined) return false;
      const edge = isObj(t.identity.capabilities) && t.identity.capabilities.iotEdge === true;
      t.identity.capabilities = { iotEdge: !edge };
      t.identity.deviceScope = edge ? null : `ms-azure-iot-edge://${key.deviceId}-${this.stepCounter}`;
    } else {
      t.identity.lastActivityTime = ts.slice(0, 23) + 'Z';
      t.identity.cloudToDeviceMessageCount = Number(t.identity.cloudToDeviceMessageCount ?? 0) + 1;
    }
    return true;
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
    const incarnation = (this.incarnations.get(id) ?? 0) + 1;
    this.incarnations.set(id, incarnation);
    const identity: Obj = { status: 'enabled', statusReason: null, statusUpdateTime: EPOCH, lastActivityTime: EPOCH, cloudToDeviceMessageCount: 0 };
    if (key.moduleId === undefined) Object.assign(identity, { capabilities: { iotEdge: false }, deviceScope: null });
    const t: HubTwin = { key, version: 2, etag: this.nextEtag(), tags: clone(initialTags ?? {}), desired: emptySection(), reported: emptySection(), connectionState: 'Disconnected', incarnation, identity };
    this.twinsById.set(id, t);
    this.everKnown.set(id, key);
    this.record(t, key);
    if (key.moduleId !== undefined && this.rng.chance(this.options.silentModuleCreateRate ?? 0)) {
      // An IoT Edge module created while its device is offline: no createDeviceIdentity is routed.
      this.markUnsettled(key, 'silent-create');
      this.counts.silentModuleCreate = (this.counts.silentModuleCreate ?? 0) + 1;
      return true;
    }
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
      // MicrosoftDocs/azure-docs issue 36255: a tags update was seen to bump desired `$version`.
      const bump = this.options.tagsBumpDesired ?? 'no';
      if (bump !== 'no' && !patch.desired) {
        t.desired.version++;
        if (bump === 'notified') p.desiredVersionOnly = true;
        else this.markUnsettled(key, 'silent-desired-version');
      }
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
    this.record(t, key);
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
    this.record(t, key);
    this.emit(key, 'twinChangeEvents', twinReplace({ ...this.common(key, ts), twin: this.renderTwin(t) }), `replace ${keyLabel(key)} v${t.version} ${JSON.stringify(next)}`);
    return true;
  }

  /** Deletes an identity; a device takes its modules with it (IoT Hub deletes them together). */
  delete(key: TwinKey): boolean {
    const t = this.twin(key);
    if (!t) return false;
    const victims = key.moduleId === undefined ? [...this.modulesOf(key.deviceId), t] : [t];
    const late: HubTwin[] = [];
    for (const v of victims) {
      this.flushTwin(keyId(v.key));
      this.flushConnection(keyId(v.key));
      if (v.connectionState !== 'Connected') continue;
      // A connected identity is disconnected when it goes; the 60 s poll may report that after the delete.
      if (this.rng.chance(this.options.lateDisconnectRate ?? 0)) late.push(v);
      else this.setConnection(v.key, false, {});
    }
    if (key.moduleId === undefined && this.options.moduleDeleteEvents) {
      for (const m of victims.slice(0, -1)) this.emitDelete(m);
    }
    for (const m of victims.slice(0, -1)) {
      this.twinsById.delete(keyId(m.key));
      this.record(undefined, m.key);
    }
    this.emitDelete(t);
    this.twinsById.delete(keyId(key));
    this.record(undefined, key);
    for (const v of late) {
      const seq = ++this.connectionCounter;
      this.counts.lateDisconnect = (this.counts.lateDisconnect ?? 0) + 1;
      this.emit(v.key, 'deviceConnectionStateEvents', connection({ ...this.common(v.key, this.tick()), connected: false, sequence: connectionSequence(seq) }), `disconnected ${keyLabel(v.key)} #${seq} (reported after its deletion)`, v.incarnation);
    }
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
    this.emit(t.key, 'deviceLifecycleEvents', deleted({ ...this.common(t.key, ts), twin: this.renderTwin(t) }), `delete ${keyLabel(t.key)}`, t.incarnation);
  }

  private flushTwin(id: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const t = this.twinsById.get(id);
    if (!t) return;
    const body: { version: number; tags?: Obj; desired?: Obj; reported?: Obj } = { version: t.version };
    const keyByKey = this.options.coalesce === 'keyByKey' && p.labels.length > 1;
    const compose = (pre: Obj, post: Obj, sent: Obj[]): Obj => {
      if (!keyByKey) return coalescedPatch(pre, post, sent);
      // The sent patches merged key by key: not a merge patch that takes pre to post when a later patch
      // sets a key an earlier one deleted (or replaced) inside. Then no event says what the hub holds.
      const merged = composeKeyByKey(sent);
      if (!deepEqual(applyToCopy(pre, merged), post)) this.markUnsettled(t.key, 'lossy-merge');
      return merged;
    };
    if (p.sent.tags.length) body.tags = compose(p.pre.tags, t.tags, p.sent.tags);
    for (const name of ['desired', 'reported'] as const) {
      if (!p.sent[name].length) continue;
      const s = t[name];
      const data = compose(p.pre[name], s.data, p.sent[name]);
      body[name] = { ...data, $metadata: metaFor(data, s.meta), $version: s.version };
    }
    if (p.desiredVersionOnly && !body.desired) body.desired = { $version: t.desired.version };
    const label = p.labels.length === 1 ? p.labels[0] : `coalesced[${p.labels.join('; ')}]`;
    this.emit(t.key, 'twinChangeEvents', twinUpdate({ ...this.common(t.key, this.tick()), ...body }), label);
    if (keyByKey) this.counts.keyByKeyMerge = (this.counts.keyByKeyMerge ?? 0) + 1;
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

  private emit(key: TwinKey, route: Route, event: WireEvent, label: string, incarnation = this.incarnations.get(keyId(key)) ?? 0): void {
    const opType = String(event.properties.opType);
    this.counts[opType] = (this.counts[opType] ?? 0) + 1;
    const e: Emitted = { event, route, ms: Date.parse(String(event.properties.operationTimestamp)), label, key, incarnation, order: ++this.emitted };
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
      const e = box.splice(i, 1)[0];
      this.noteOvertaking(e, box);
      this.sink(e);
    }
    if (box.length === 0) this.outboxes.delete(deviceId);
  }

  /**
   * A twin change of a later incarnation released while a lifecycle event of an earlier one is still held
   * back: the replica meets a change of a re-created twin before learning of the re-creation. The rules
   * take it for a re-creation only on a lower version (rules.ts, `restarted`), so this incarnation may
   * need verify/repair.
   */
  private noteOvertaking(e: Emitted, held: readonly Emitted[]): void {
    if (e.key === undefined || e.incarnation === undefined || e.route !== 'twinChangeEvents') return;
    const id = keyId(e.key);
    const overtaken = held.some((h) => h.route === 'deviceLifecycleEvents' && h.key !== undefined && (
      (keyId(h.key) === id && (h.incarnation ?? 0) < e.incarnation!)
      // a module's change ahead of its device's earlier lifecycle event (module and device count incarnations apart)
      || (e.key!.moduleId !== undefined && h.key.moduleId === undefined && h.key.deviceId === e.key!.deviceId && (h.order ?? 0) < (e.order ?? 0))));
    if (overtaken) this.markUnsettled(e.key, 'recreation-overtaken', e.incarnation);
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
      applyData(data[k], childMeta, v, stamp);
    } else {
      data[k] = clone(v);
      if (meta) {
        meta[k] = {};
        stamp(meta[k]);
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
      if (isObj(child)) addTouched(child, v, isObj(pre?.[k]) ? (pre[k]) : undefined, post[k]);
    } else if (!(k in out)) {
      out[k] = clone(post[k]);
    }
  }
}

/** The sent patches merged key by key (a later value replaces an earlier one, objects merge, nulls kept). */
export function composeKeyByKey(sent: readonly Obj[]): Obj {
  const out: Obj = {};
  const merge = (into: Obj, patch: Obj) => {
    for (const [k, v] of Object.entries(patch)) {
      if (isObj(v) && isObj(into[k])) merge(into[k], v);
      else into[k] = clone(v);
    }
  };
  for (const s of sent) merge(out, s);
  return out;
}

function applyToCopy(pre: Obj, patch: Obj): Obj {
  const copy = clone(pre);
  applyData(copy, undefined, patch, () => {});
  return copy;
}
