import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonEqual, mergePatch, mergeSection } from '../../functions/src/sync/merge';
import type { JsonObject } from '../../functions/src/sync/types';

describe('twin patch merge', () => {
  it('follows RFC 7396: objects merge recursively, null deletes, other values replace', () => {
    const target = { a: 'b', c: { d: 'e', f: 'g' }, keep: 1 };
    expect(mergePatch(target, { a: 'z', c: { f: null, n: { x: null, y: 2 } }, arr: [1] })).toEqual({ a: 'z', c: { d: 'e', n: { y: 2 } }, keep: 1, arr: [1] });
    expect(mergePatch({ a: { b: 1 } }, { a: 5 })).toEqual({ a: 5 });
    expect(mergePatch({ a: 5 }, { a: { b: 1, c: null } })).toEqual({ a: { b: 1 } });
  });

  it('never mutates its inputs', () => {
    const target = { a: { b: 1 } };
    const patch = { a: { b: null, c: 2 } };
    const before = JSON.stringify([target, patch]);
    mergePatch(target, patch);
    expect(JSON.stringify([target, patch])).toBe(before);
  });

  it('is idempotent: applying a patch twice equals applying it once', () => {
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, fc.integer(), fc.string(), fc.constant(null), tie('object')),
      object: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), tie('value'), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(json.object, json.object, (t, p) => {
        const once = mergePatch(t as JsonObject, p as JsonObject);
        expect(jsonEqual(mergePatch(once, p as JsonObject), once)).toBe(true);
      }),
    );
  });

  it('removes the $metadata of keys a patch deletes and merges the rest of $metadata as sent', () => {
    const desired = {
      telemetryConfig: { sendFrequency: '5m', mode: 'x' },
      $metadata: { $lastUpdated: 't1', telemetryConfig: { $lastUpdated: 't1', sendFrequency: { $lastUpdated: 't1' }, mode: { $lastUpdated: 't1' } } },
      $version: 2,
    };
    const patched = mergeSection(desired, {
      telemetryConfig: { sendFrequency: null },
      $metadata: { $lastUpdated: 't2', telemetryConfig: { $lastUpdated: 't2' } },
      $version: 3,
    });
    expect(patched).toEqual({
      telemetryConfig: { mode: 'x' },
      $metadata: { $lastUpdated: 't2', telemetryConfig: { $lastUpdated: 't2', mode: { $lastUpdated: 't1' } } },
      $version: 3,
    });
  });
});

describe('every twin key is data (IoT Hub accepts "__proto__", "constructor", "toString" as property names)', () => {
  // JSON.parse makes "__proto__" an own key, as the event body and the stored twin arrive.
  const parse = (text: string) => JSON.parse(text) as JsonObject;

  it('a reported "__proto__" key is kept, replaced, merged and deleted like any other', () => {
    const added = mergeSection(parse('{"$version":1}'), parse('{"__proto__":{"polluted":true},"$version":2}'));
    expect(Object.keys(added)).toContain('__proto__');
    expect(JSON.parse(JSON.stringify(added))).toEqual(parse('{"__proto__":{"polluted":true},"$version":2}'));
    expect(Object.getPrototypeOf(added)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    const merged = mergePatch(added, parse('{"__proto__":{"more":1}}'));
    expect(JSON.parse(JSON.stringify(merged))).toEqual(parse('{"__proto__":{"polluted":true,"more":1},"$version":2}'));
    const removed = mergePatch(merged, parse('{"__proto__":null}'));
    expect(JSON.stringify(removed)).toBe('{"$version":2}');
  });

  it('null on an inherited name ("constructor", "toString") deletes nothing and records no deletion', () => {
    const deleted: string[][] = [];
    expect(mergePatch({ a: 1 }, { constructor: null, toString: null }, deleted)).toEqual({ a: 1 });
    expect(deleted).toEqual([]);
    expect(mergePatch({}, { constructor: { x: 1 } })).toEqual(parse('{"constructor":{"x":1}}'));
  });

  it('jsonEqual tells a missing key from an inherited one', () => {
    // `"__proto__" in {a: 1}` is true and its value is Object.prototype, which has no own keys: {} would match.
    expect(jsonEqual(parse('{"__proto__":{}}'), parse('{"a":1}'))).toBe(false);
    expect(jsonEqual(parse('{"a":1}'), parse('{"constructor":1}'))).toBe(false);
    expect(jsonEqual(parse('{"__proto__":1}'), parse('{"__proto__":1}'))).toBe(true);
  });

  it('merging through JSON text matches RFC 7396 for any mix of special keys (property)', () => {
    const key = fc.constantFrom('__proto__', 'constructor', 'toString', 'a');
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, fc.integer(), fc.constant(null), tie('object')),
      object: fc.dictionary(key, tie('value'), { maxKeys: 4 }),
    }));
    // Reference merge on Maps: no prototype can get in the way.
    type Tree = Map<string, unknown>;
    const toTree = (o: unknown): unknown =>
      o !== null && typeof o === 'object' ? new Map(Object.entries(o).map(([k, v]) => [k, toTree(v)])) : o;
    const refMerge = (t: Tree | undefined, p: Tree): Tree => {
      const out = new Map(t ?? []);
      for (const [k, v] of p) {
        if (v === null) out.delete(k);
        else if (v instanceof Map) out.set(k, refMerge(out.get(k) instanceof Map ? (out.get(k) as Tree) : undefined, v));
        else out.set(k, v);
      }
      return out;
    };
    const sorted = (v: unknown): unknown => (v instanceof Map ? [...v.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sorted(x)]) : v);
    fc.assert(
      fc.property(json.object, json.object, (t, p) => {
        // Through JSON text, so "__proto__" is an own key as on the wire.
        const target = parse(JSON.stringify(t));
        const patch = parse(JSON.stringify(p));
        const ours = toTree(JSON.parse(JSON.stringify(mergePatch(target, patch))));
        expect(sorted(ours)).toEqual(sorted(refMerge(toTree(target) as Tree, toTree(patch) as Tree)));
      }),
    );
  });
});
