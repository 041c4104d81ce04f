import type { TwinDoc } from '../functions/src/sync/types';
import { deepEqual, IDENTITY_FIELDS, isObj, keyId, keyLabel, renderSection, type HubTwin, type SimulatedHub } from './hub';

/**
 * Compares every replica document with the simulated hub, independently of the engine's rules:
 * - a live twin must have a live, complete document with the same version, tags, desired and reported
 *   sections (data, `$metadata` and `$version` exactly as IoT Hub shows them), connection state and
 *   identity fields; an ETag, when the document has one, must be the twin's current ETag;
 * - an identity that no longer exists may only be absent or a tombstone;
 * - a live document for an identity the hub never had is a mismatch.
 * A device matches when its own twin and every module twin under it match.
 */
export interface Comparison {
  devices: number;
  matchedDevices: number;
  documents: number;
  liveTwins: number;
  mismatches: string[];
}

export function differences(t: HubTwin, doc: TwinDoc | undefined, hub: SimulatedHub): string[] {
  const where = keyLabel(t.key);
  if (!doc) return [`${where}: live in the hub (v${t.version}), no replica document`];
  if (doc.deleted) return [`${where}: live in the hub (v${t.version}), tombstone in the replica`];
  const out: string[] = [];
  const expect = (what: string, actual: unknown, expected: unknown) => {
    if (deepEqual(actual, expected)) return;
    const d = firstDifference(actual, expected, what);
    out.push(`${where}: ${d.path} is ${show(d.actual)}, hub has ${show(d.expected)}`);
  };
  expect('version', doc.version, t.version);
  expect('tags', doc.tags, t.tags);
  expect('properties.desired', doc.properties?.desired, renderSection(t.desired));
  expect('properties.reported', doc.properties?.reported, renderSection(t.reported));
  expect('connectionState', doc.connectionState, t.connectionState);
  expect('moduleId', doc.moduleId, t.key.moduleId);
  expect('deviceId', doc.deviceId, t.key.deviceId);
  if (doc.etag !== undefined) expect('etag', doc.etag, t.etag);
  if (doc.replica?.partial) out.push(`${where}: replica document is still partial`);
  const full = hub.renderTwin(t);
  for (const f of IDENTITY_FIELDS) expect(f, doc[f], full[f]);
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
  const byId = new Map(docs.map((d) => [d.id, d]));
  const mismatches: string[] = [];
  const badDevices = new Set<string>();
  const live = new Set<string>();
  for (const t of hub.twins()) {
    const id = keyId(t.key);
    live.add(id);
    const diff = differences(t, byId.get(id), hub);
    if (diff.length) {
      mismatches.push(...diff);
      badDevices.add(t.key.deviceId);
    }
  }
  for (const d of docs) {
    if (live.has(d.id) || d.deleted) continue;
    const known = hub.everKnown.get(d.id);
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
  };
}
