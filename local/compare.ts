import type { TwinDoc } from '../functions/src/public';
import { deepEqual, IDENTITY_FIELDS, isObj, keyId, keyLabel, REFRESHED_FIELDS, renderSection, type HubTwin, type SimulatedHub } from './hub';

/**
 * Compares every replica document with the simulated hub, independently of the engine's rules (documents
 * are matched by their `deviceId`/`moduleId`, never by the engine's id encoding or `replica.*` fields):
 * - a live twin must have a live document with the same version, tags, desired and reported sections
 *   (data, `$metadata` and `$version` exactly as IoT Hub shows them), connection state and identity
 *   fields; an ETag, when the document has one, must be the twin's current ETag;
 * - an identity that no longer exists may only be absent or a tombstone (never excused);
 * - a live document for an identity the hub never had is a mismatch.
 * Differences no event could settle are not mismatches but `awaitingRepair` (verify/repair closes them,
 * docs/replica.md): the fields that change without events (REFRESHED_FIELDS), and whatever the hub
 * recorded as unsettled for the identity's incarnation (a module created without a lifecycle event, a
 * lossy key-by-key merged notification, a desired `$version` bumped silently, a change of a re-created
 * twin that overtook the re-creation). Volatile fields (lastActivityTime, cloudToDeviceMessageCount) are
 * out of the replica's promises and not compared.
 * A device matches when its own twin and every module twin under it match.
 */
export interface Comparison {
  devices: number;
  matchedDevices: number;
  documents: number;
  liveTwins: number;
  mismatches: string[];
  /** Differences that only verify/repair can close, each with why. */
  awaitingRepair: string[];
}

export function differences(t: HubTwin, doc: TwinDoc | undefined, hub: SimulatedHub): { mismatches: string[]; awaitingRepair: string[] } {
  const where = keyLabel(t.key);
  const unsettled = hub.unsettled(t.key);
  const excusedWholly = [...unsettled].filter((r) => r !== 'silent-desired-version');
  const out = { mismatches: [] as string[], awaitingRepair: [] as string[] };
  const report = (text: string, path: string) => {
    if (excusedWholly.length) out.awaitingRepair.push(`${text} (${excusedWholly.join(', ')})`);
    else if (unsettled.has('silent-desired-version') && path === 'properties.desired.$version') out.awaitingRepair.push(`${text} (silent-desired-version)`);
    else out.mismatches.push(text);
  };
  if (!doc) {
    report(`${where}: live in the hub (v${t.version}), no replica document`, '');
    return out;
  }
  if (doc.deleted) {
    report(`${where}: live in the hub (v${t.version}), tombstone in the replica`, '');
    return out;
  }
  const expect = (what: string, actual: unknown, expected: unknown, refreshed = false) => {
    if (deepEqual(actual, expected)) return;
    const d = firstDifference(actual, expected, what);
    const text = `${where}: ${d.path} is ${show(d.actual)}, hub has ${show(d.expected)}`;
    if (refreshed) out.awaitingRepair.push(`${text} (no event carries it: refreshed by verify/repair)`);
    else report(text, d.path);
  };
  expect('version', doc.version, t.version);
  expect('tags', doc.tags, t.tags);
  expect('properties.desired', doc.properties?.desired, renderSection(t.desired));
  expect('properties.reported', doc.properties?.reported, renderSection(t.reported));
  expect('connectionState', doc.connectionState, t.connectionState);
  expect('moduleId', doc.moduleId, t.key.moduleId);
  expect('deviceId', doc.deviceId, t.key.deviceId);
  if (doc.etag !== undefined) expect('etag', doc.etag, t.etag);
  const full = hub.renderTwin(t);
  for (const f of IDENTITY_FIELDS) expect(f, doc[f], full[f]);
  for (const f of REFRESHED_FIELDS) expect(f, doc[f], full[f], true);
  return out;
}

function show(v: unknown): string {
  if (v === undefined) return 'absent';
  const s = JSON.stringify(v);
  return s.length > 200 ? s.slice(0, 200) + '…' : s;
}

/** The first path at which two JSON values differ (for a readable mismatch). */
export function firstDifference(actual: unknown, expected: unknown, path: string): { path: string; actual: unknown; expected: unknown } {
  if (isObj(actual) && isObj(expected)) {
    for (const k of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
      if (!deepEqual(actual[k], expected[k])) return firstDifference(actual[k], expected[k], `${path}.${k}`);
    }
  }
  return { path, actual, expected };
}

export function compareReplica(hub: SimulatedHub, docs: readonly TwinDoc[]): Comparison {
  const docKey = (d: TwinDoc) => keyId({ deviceId: d.deviceId, moduleId: d.moduleId });
  const byKey = new Map(docs.map((d) => [docKey(d), d]));
  const mismatches: string[] = [];
  const awaitingRepair: string[] = [];
  const badDevices = new Set<string>();
  const live = new Set<string>();
  for (const t of hub.twins()) {
    const id = keyId(t.key);
    live.add(id);
    const diff = differences(t, byKey.get(id), hub);
    awaitingRepair.push(...diff.awaitingRepair);
    if (diff.mismatches.length) {
      mismatches.push(...diff.mismatches);
      badDevices.add(t.key.deviceId);
    }
  }
  for (const d of docs) {
    const id = docKey(d);
    if (live.has(id) || d.deleted) continue;
    const known = hub.everKnown.get(id);
    mismatches.push(`${known ? keyLabel(known) : d.id}: ${known ? 'deleted in the hub' : 'never in the hub'}, live in the replica (v${d.version})`);
    badDevices.add(d.deviceId);
  }
  const devices = hub.deviceIds();
  return {
    devices: devices.length,
    matchedDevices: devices.filter((id) => !badDevices.has(id)).length,
    documents: docs.length,
    liveTwins: live.size,
    mismatches,
    awaitingRepair,
  };
}
