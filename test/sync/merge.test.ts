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
