import { encodeDocId } from './ids';
import { isObject, mergePatch, mergeSection } from './merge';
import { maxTimestamp } from './timestamps';
import type { DocKey, JsonObject, TwinDoc, TwinEvent } from './types';

export type Outcome = 'applied' | 'stale';

export interface RuleOptions {
  /** Seconds a tombstone lives (Cosmos per-item TTL); undefined leaves tombstones forever. */
  tombstoneTtlSeconds?: number;
}

/** What else the engine knows when it applies an event. */
export interface FoldContext {
  /**
   * The device's stored document, for a module event that finds no module document: a device tombstone
   * newer than the event means the module went with its device (IoT Hub documents no module delete event
   * for a device deletion, and Edge modules may have no lifecycle events at all).
   */
  device?: TwinDoc;
}

/** Top-level names the replica owns: a full twin's own fields with these names are not copied. */
const OWN_FIELDS = new Set(['id', 'deviceId', 'moduleId', 'version', 'etag', 'tags', 'properties', 'connectionState',
  'connectionStateSequenceNumber', 'connectionStateUpdatedTime', 'deleted', 'ttl', 'replica']);

function baseDoc(key: DocKey): TwinDoc {
  const doc: TwinDoc = { id: encodeDocId(key), deviceId: key.deviceId, replica: {} };
  if (key.moduleId !== undefined) doc.moduleId = key.moduleId;
  return doc;
}

/** Compares two hex sequence numbers numerically (IoT Hub sends 64 digits; larger is newer). */
export function compareSequence(a: string, b: string): number {
  const x = a.replace(/^0+/, '');
  const y = b.replace(/^0+/, '');
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Builds a live document from a full twin (create, replace, backfill snapshot). */
function fromFullTwin(key: DocKey, twin: JsonObject, version: number | undefined, previous: TwinDoc | undefined): TwinDoc {
  const doc = baseDoc(key);
  for (const field of Object.keys(twin)) {
    if (!OWN_FIELDS.has(field) && !field.startsWith('_')) doc[field] = twin[field];
  }
  const v = version ?? (typeof twin.version === 'number' ? twin.version : undefined);
  if (v !== undefined) doc.version = v;
  if (typeof twin.etag === 'string') doc.etag = twin.etag;
  const properties = isObject(twin.properties) ? twin.properties : {};
  doc.tags = isObject(twin.tags) ? twin.tags : {};
  doc.properties = {
    desired: isObject(properties.desired) ? properties.desired : {},
    reported: isObject(properties.reported) ? properties.reported : {},
  };
  // Connection state ordered by sequence numbers outranks the unordered value inside a full twin.
  if (previous?.connectionStateSequenceNumber !== undefined) {
    copyConnection(previous, doc);
  } else if (typeof twin.connectionState === 'string') {
    doc.connectionState = twin.connectionState;
  }
  return doc;
}

function copyConnection(from: TwinDoc, to: TwinDoc): void {
  if (from.connectionState !== undefined) to.connectionState = from.connectionState;
  if (from.connectionStateSequenceNumber !== undefined) to.connectionStateSequenceNumber = from.connectionStateSequenceNumber;
  if (from.connectionStateUpdatedTime !== undefined) to.connectionStateUpdatedTime = from.connectionStateUpdatedTime;
}

function tombstone(key: DocKey, ts: string | undefined, version: number | undefined, options: RuleOptions, previous?: TwinDoc): TwinDoc {
  const doc = baseDoc(key);
  doc.deleted = true;
  // A connection state newer than the deletion belongs to a re-created identity (its event overtook the
  // delete on another route): keep it for the incarnation to come.
  const carried = carriedConnection(previous, ts);
  if (carried) copyConnection(carried, doc);
  if (version !== undefined) doc.version = version;
  if (ts !== undefined) doc.replica.deletedAt = ts;
  if (options.tombstoneTtlSeconds !== undefined) doc.ttl = options.tombstoneTtlSeconds;
  return doc;
}

/**
 * The newest twin operation (create, update, replace) this live document reflects. Connection state is
 * left out: it travels on its own route and says nothing about which incarnation the twin content is.
 */
function newestTwinChange(doc: TwinDoc): string | undefined {
  return maxTimestamp(maxTimestamp(doc.replica.createdAt, doc.replica.updatedAt), doc.replica.snapshotAt);
}

/** The previous document when its connection state is newer than `ts` (so a new incarnation keeps it). */
function carriedConnection(previous: TwinDoc | undefined, ts: string | undefined): TwinDoc | undefined {
  if (previous?.connectionStateSequenceNumber === undefined) return undefined;
  // A placeholder (connection state only, no deletion seen) belongs to whichever incarnation comes first.
  if (isPlaceholder(previous)) return previous;
  return (previous.connectionStateUpdatedTime ?? '') > (ts ?? '') ? previous : undefined;
}

/** A live document for an identity whose earlier history is unknown (first seen, or re-created unseen). */
function startIncarnation(event: TwinEvent, previous: TwinDoc | undefined, options: RuleOptions): TwinDoc {
  const { key, ts } = event;
  switch (event.kind) {
    case 'create': {
      const doc = fromFullTwin(key, event.twin, event.version, carriedConnection(previous, ts));
      doc.replica = { createdAt: ts, updatedAt: ts, versionAt: ts };
      return prune(doc);
    }
    case 'replace': {
      const doc = fromFullTwin(key, event.twin, event.version, carriedConnection(previous, ts));
      doc.replica = { updatedAt: ts, versionAt: ts };
      return prune(doc);
    }
    case 'snapshot': {
      // The tools date a snapshot before the read (query lag / clock-skew allowance subtracted), so a hub
      // delete made after the read stays newer than `snapshotAt`.
      const doc = fromFullTwin(key, event.twin, event.version, carriedConnection(previous, ts));
      if (ts !== undefined) doc.replica = { snapshotAt: ts };
      return doc;
    }
    case 'update': {
      const doc = baseDoc(key);
      doc.version = event.version;
      doc.tags = mergePatch(undefined, event.patch.tags ?? {});
      doc.properties = { desired: mergeSection(undefined, event.patch.desired ?? {}), reported: mergeSection(undefined, event.patch.reported ?? {}) };
      const carried = carriedConnection(previous, ts);
      if (carried) copyConnection(carried, doc);
      doc.replica = { updatedAt: ts, versionAt: ts, partial: true };
      return prune(doc);
    }
    case 'connection': {
      // Connection state is published from a 60-second poll (Microsoft Learn, "Monitor device connection
      // state"): a device deleted while connected may be reported disconnected after its deletion. So a
      // connection event proves nothing about existence: it is kept on a document that is not live (a
      // placeholder: deleted, no deletion time) for the incarnation that a create, patch or snapshot starts.
      const doc = baseDoc(key);
      doc.deleted = true;
      doc.connectionState = event.state;
      doc.connectionStateSequenceNumber = event.sequenceNumber;
      if (ts !== undefined) doc.connectionStateUpdatedTime = ts;
      if (options.tombstoneTtlSeconds !== undefined) doc.ttl = options.tombstoneTtlSeconds;
      return doc;
    }
    case 'delete':
      return tombstone(key, ts, event.version, options, previous);
  }
}

/** A not-live document holding only connection state (no deletion was seen). */
function isPlaceholder(doc: TwinDoc): boolean {
  return doc.deleted === true && doc.replica.deletedAt === undefined && doc.version === undefined;
}

/** A connection event on a document that is not live: recorded (ordered by sequence number), never a resurrection. */
function connectionOnTombstone(doc: TwinDoc, event: TwinEvent & { kind: 'connection' }): { doc: TwinDoc; outcome: Outcome } {
  const kept = doc.connectionStateSequenceNumber;
  if (kept !== undefined && compareSequence(event.sequenceNumber, kept) <= 0) return { doc, outcome: 'stale' };
  // Older than the deletion: the deleted incarnation's, of no use to the next one.
  const deletedAt = doc.replica.deletedAt;
  if (deletedAt !== undefined && (event.ts === undefined || event.ts <= deletedAt)) return { doc, outcome: 'stale' };
  const next: TwinDoc = { ...doc, connectionState: event.state, connectionStateSequenceNumber: event.sequenceNumber };
  if (event.ts !== undefined) next.connectionStateUpdatedTime = event.ts;
  else delete next.connectionStateUpdatedTime;
  return { doc: next, outcome: 'applied' };
}

/**
 * A module event with no module document, whose device the replica holds as deleted at or after the event's
 * time: the module went with the device. Recorded as a module tombstone at the device's deletion time, so
 * that no later event of that incarnation makes a live ghost either.
 */
function orphanedModule(event: TwinEvent, device: TwinDoc | undefined, options: RuleOptions): { doc: TwinDoc; outcome: Outcome } | undefined {
  if (event.key.moduleId === undefined || !device?.deleted) return undefined;
  const deletedAt = device.replica.deletedAt;
  if (deletedAt === undefined || (event.ts !== undefined && event.ts > deletedAt)) return undefined;
  return { doc: tombstone(event.key, deletedAt, undefined, options), outcome: 'stale' };
}

/** Drops undefined bookkeeping fields so documents compare and serialise canonically. */
function prune(doc: TwinDoc): TwinDoc {
  const r = doc.replica;
  for (const k of Object.keys(r) as (keyof typeof r)[]) if (r[k] === undefined) delete r[k];
  return doc;
}

/**
 * Applies one event to the current document (undefined: none stored). Pure: never mutates `doc`.
 * Returns the new document, or `stale` with the document unchanged. The rules:
 * - twin versions order changes within one incarnation of an identity: a version not newer than
 *   the stored one changes nothing (idempotence, monotonicity);
 * - operation timestamps separate incarnations: an event older than the current incarnation's
 *   create, or not newer than a tombstone's delete, changes nothing (delete safety); an event newer
 *   than a tombstone starts a new incarnation (re-created identity, versions start again);
 * - connection state is ordered by its own sequence numbers, and never makes a document live;
 * - a first-seen module of a device deleted at or after the event's time is a tombstone (`context.device`).
 */
export function applyEvent(doc: TwinDoc | undefined, event: TwinEvent, options: RuleOptions = {}, context: FoldContext = {}): { doc: TwinDoc | undefined; outcome: Outcome } {
  const stale = { doc, outcome: 'stale' as const };
  const applied = (next: TwinDoc) => ({ doc: next, outcome: 'applied' as const });
  const { ts } = event;

  if (doc === undefined) return orphanedModule(event, context.device, options) ?? applied(startIncarnation(event, undefined, options));

  if (doc.deleted) {
    if (event.kind === 'connection') return connectionOnTombstone(doc, event);
    const deletedAt = doc.replica.deletedAt;
    if (ts === undefined || (deletedAt !== undefined && ts <= deletedAt)) return stale;
    // An enqueued time standing in for operationTimestamp is newer on every re-send: after a deletion it
    // cannot tell a re-creation from the deleted incarnation's create re-sent (repair settles the former).
    if (event.enqueuedTs && deletedAt !== undefined) return stale;
    return applied(startIncarnation(event, doc, options));
  }

  const createdAt = doc.replica.createdAt;
  if (ts !== undefined && createdAt !== undefined && ts < createdAt) return stale; // from an earlier incarnation
  // The document holds the hub's state at `snapshotAt`: a twin change from then or before is already in it
  // (or belongs to an earlier incarnation), so it cannot roll the document back.
  const snapshotAt = doc.replica.snapshotAt;
  if (event.kind !== 'connection' && ts !== undefined && snapshotAt !== undefined && ts <= snapshotAt) return stale;

  switch (event.kind) {
    case 'connection': {
      const current = doc.connectionStateSequenceNumber;
      if (current !== undefined && compareSequence(event.sequenceNumber, current) <= 0) return stale;
      const next: TwinDoc = { ...doc, connectionState: event.state, connectionStateSequenceNumber: event.sequenceNumber };
      if (ts !== undefined) next.connectionStateUpdatedTime = ts;
      return applied(next);
    }
    case 'delete': {
      // A delete older than something this document already reflects belongs to an earlier incarnation.
      const newest = newestTwinChange(doc);
      if (ts !== undefined && newest !== undefined && ts < newest) return stale;
      return applied(tombstone(event.key, ts, event.version, options, doc));
    }
    case 'create': {
      if (ts !== undefined && createdAt !== undefined && ts <= createdAt) return stale; // the same create, replayed
      const newest = newestTwinChange(doc);
      // Every change of an incarnation comes after its create: a create newer than all we hold means
      // the identity was deleted and re-created (its delete not seen here), unless its time is only the
      // enqueued time of a re-send.
      if (ts !== undefined && !event.enqueuedTs && (newest === undefined || ts > newest)) return applied(startIncarnation(event, doc, options));
      if (event.version !== undefined && (doc.version === undefined || event.version > doc.version)) {
        return applied(withContent(doc, fromFullTwin(event.key, event.twin, event.version, doc), ts, { createdAt: ts }));
      }
      // The create of this very incarnation, arriving after some of its changes (routes are not ordered
      // with each other): the document holds only those changes, so lay them over the created twin.
      if (doc.replica.partial && createdAt === undefined) return applied(underlay(doc, event.twin, event.version, ts));
      return stale;
    }
    case 'update': {
      if (doc.version !== undefined && event.version <= doc.version) return restarted(doc, event, options) ?? stale;
      const next: TwinDoc = { ...doc, version: event.version };
      delete next.etag; // the new twin's etag is not in a patch notification
      const { tags, desired, reported } = event.patch;
      if (tags !== undefined) next.tags = tags === null ? {} : mergePatch(doc.tags, tags);
      if (desired !== undefined || reported !== undefined) {
        const props = doc.properties ?? {};
        next.properties = {
          desired: desired === undefined ? props.desired ?? {} : desired === null ? {} : mergeSection(props.desired, desired),
          reported: reported === undefined ? props.reported ?? {} : reported === null ? {} : mergeSection(props.reported, reported),
        };
      }
      next.replica = { ...doc.replica, versionAt: ts };
      const updatedAt = maxTimestamp(doc.replica.updatedAt, ts);
      if (updatedAt !== undefined) next.replica.updatedAt = updatedAt;
      return applied(prune(next));
    }
    case 'replace':
      if (doc.version !== undefined && event.version <= doc.version) return restarted(doc, event, options) ?? stale;
      return applied(withContent(doc, fromFullTwin(event.key, event.twin, event.version, doc), ts, {}));
    case 'snapshot': {
      if (event.confirmed) {
        // Read by id, the latest state at `ts`: it replaces a document that reflects nothing newer.
        const newest = maxTimestamp(newestTwinChange(doc), doc.replica.versionAt);
        if (ts === undefined || (newest !== undefined && newest > ts)) return stale;
        // A lower version than ours: the hub's twin is a newer incarnation (versions never fall within one).
        if (doc.version !== undefined && event.version < doc.version) return applied(startIncarnation(event, doc, options));
      } else {
        const fills = doc.replica.partial === true && doc.version !== undefined && event.version === doc.version;
        if (doc.version !== undefined && event.version <= doc.version && !fills) return stale;
      }
      const next = withContent(doc, fromFullTwin(event.key, event.twin, event.version, doc), undefined, {});
      const at = maxTimestamp(doc.replica.snapshotAt, ts);
      if (at !== undefined) next.replica.snapshotAt = at;
      return applied(next);
    }
  }
}

/**
 * The created twin as the base, with the partial document's content laid over it. Exact unless one of the
 * later patches deleted a key the created twin had (a partial document no longer knows about deletions).
 */
function underlay(doc: TwinDoc, twin: JsonObject, version: number | undefined, ts: string | undefined): TwinDoc {
  const base = fromFullTwin(doc, twin, version, doc);
  const next: TwinDoc = { ...base, version: doc.version ?? base.version };
  if (doc.version !== undefined && (version === undefined || doc.version > version)) delete next.etag;
  next.tags = mergePatch(base.tags, doc.tags ?? {});
  next.properties = {
    desired: mergePatch(base.properties?.desired, doc.properties?.desired ?? {}),
    reported: mergePatch(base.properties?.reported, doc.properties?.reported ?? {}),
  };
  const { partial: _partial, ...replica } = doc.replica;
  next.replica = { ...replica, createdAt: ts, versionAt: doc.version !== undefined ? doc.replica.versionAt : ts };
  return prune(next);
}

/**
 * Within one incarnation, twin versions and operation times rise together. A change whose version is
 * lower than the stored one but whose operation time is later than every twin operation the document
 * reflects comes from a newer incarnation: the identity was deleted and re-created and this change overtook
 * the delete and the create on another route. It starts that incarnation (a patch as a partial document;
 * the delete and create that follow are then stale or laid under it).
 * Only that is evidence. A version that does not fall is a re-sent or merged notification of the same
 * change (the two `version` 3 patches), and a time that is only the enqueued time standing in for
 * `operationTimestamp` is newer on every re-send: neither starts an incarnation. A re-created twin whose
 * first change overtakes its create with a version not below the old one is therefore not recognised from
 * events alone; verify/repair brings it back (docs/replica.md, "What events alone cannot settle").
 */
function restarted(doc: TwinDoc, event: TwinEvent & { kind: 'update' | 'replace' }, options: RuleOptions): { doc: TwinDoc; outcome: 'applied' } | undefined {
  // Only when the time of the stored version is known: after a backfill snapshot it is not, and an old
  // replay must then stay stale rather than look like a newer incarnation.
  const versionAt = doc.replica.versionAt;
  if (event.ts === undefined || event.enqueuedTs || versionAt === undefined) return undefined;
  if (doc.version === undefined || event.version >= doc.version) return undefined;
  if (event.ts <= (maxTimestamp(versionAt, newestTwinChange(doc)) ?? versionAt)) return undefined;
  return { doc: startIncarnation(event, doc, options), outcome: 'applied' };
}

/** A document with new full content, keeping the incarnation's bookkeeping; no longer partial. */
function withContent(previous: TwinDoc, next: TwinDoc, ts: string | undefined, extra: { createdAt?: string }): TwinDoc {
  const { partial: _partial, ...replica } = previous.replica;
  // `versionAt` is the time of the change that set the new version: unknown (removed) for a snapshot.
  next.replica = { ...replica, ...extra, updatedAt: maxTimestamp(previous.replica.updatedAt, ts), versionAt: ts };
  if (extra.createdAt === undefined && previous.replica.createdAt !== undefined) next.replica.createdAt = previous.replica.createdAt;
  return prune(next);
}
