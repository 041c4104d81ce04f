import type { Json, JsonObject } from './types';

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Every twin key is data, including `__proto__`, `constructor` and `toString` (IoT Hub accepts
 * them as property names). Plain assignment `obj['__proto__'] = v` would set the prototype and
 * drop the key, and `key in obj` sees inherited members: so keys are read with Object.hasOwn and
 * written with defineProperty (an own, enumerable data property, as JSON.parse makes it).
 */
function setKey(obj: JsonObject, key: string, value: Json): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * JSON merge patch (RFC 7396), as IoT Hub applies twin patches: objects merge recursively, `null`
 * deletes a key, anything else replaces. Never mutates its inputs; unchanged subtrees are shared.
 * `deleted` collects the paths that a `null` removed (used to prune `$metadata`).
 */
export function mergePatch(target: JsonObject | undefined, patch: JsonObject, deleted?: string[][], path: string[] = []): JsonObject {
  const out: JsonObject = target ? { ...target } : {};
  for (const key of Object.keys(patch)) {
    const value = patch[key];
    if (value === null) {
      if (Object.hasOwn(out, key)) {
        delete out[key];
        deleted?.push([...path, key]);
      }
    } else if (isObject(value)) {
      const current = Object.hasOwn(out, key) ? out[key] : undefined;
      setKey(out, key, mergePatch(isObject(current) ? current : undefined, value, deleted, [...path, key]));
    } else {
      setKey(out, key, value);
    }
  }
  return out;
}

/**
 * Merges a desired/reported patch: the data keys merge, `$metadata` merges as sent, `$version`
 * replaces; then the `$metadata` entries of keys the patch deleted are removed too, so the section's
 * metadata keeps mirroring its data as it does in the hub's twin.
 */
export function mergeSection(target: JsonObject | undefined, patch: JsonObject): JsonObject {
  const deleted: string[][] = [];
  const merged = mergePatch(target, patch, deleted);
  // A key set to a plain value (it may have been an object) keeps no metadata of children it no longer has.
  const values: string[][] = [];
  collectValuePaths(patch, [], values);
  if ((deleted.length === 0 && values.length === 0) || !isObject(merged.$metadata)) return merged;
  let metadata: JsonObject = merged.$metadata;
  for (const path of deleted) {
    if (path[0] === '$metadata' || path[0] === '$version') continue;
    metadata = removePath(metadata, path);
  }
  for (const path of values) metadata = removeChildren(metadata, path);
  return { ...merged, $metadata: metadata };
}

function collectValuePaths(patch: JsonObject, path: string[], out: string[][]): void {
  for (const key of Object.keys(patch)) {
    if (path.length === 0 && (key === '$metadata' || key === '$version')) continue;
    const value = patch[key];
    if (isObject(value)) collectValuePaths(value, [...path, key], out);
    else if (value !== null) out.push([...path, key]);
  }
}

/** Removes the entries of children (keys not starting with `$`) under the metadata node at `path`. */
function removeChildren(obj: JsonObject, path: string[]): JsonObject {
  const [head, ...rest] = path;
  const child = Object.hasOwn(obj, head) ? obj[head] : undefined;
  if (!isObject(child)) return obj;
  if (rest.length > 0) {
    const next = removeChildren(child, rest);
    return next === child ? obj : { ...obj, [head]: next };
  }
  const kept = Object.keys(child).filter((k) => k.startsWith('$'));
  if (kept.length === Object.keys(child).length) return obj;
  return { ...obj, [head]: Object.fromEntries(kept.map((k) => [k, child[k]])) };
}

function removePath(obj: JsonObject, path: string[]): JsonObject {
  const [head, ...rest] = path;
  if (!Object.hasOwn(obj, head)) return obj;
  const copy = { ...obj };
  if (rest.length === 0) {
    delete copy[head];
  } else {
    const child = copy[head];
    if (!isObject(child)) return obj;
    setKey(copy, head, removePath(child, rest));
  }
  return copy;
}

/** Deep structural equality for JSON values (key order ignored). */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || a === undefined || b === undefined) return false;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (typeof a !== 'object' || Array.isArray(b)) return false;
  const ak = Object.keys(a);
  const bo = b as JsonObject;
  if (ak.length !== Object.keys(bo).length) return false;
  return ak.every((k) => Object.hasOwn(bo, k) && jsonEqual(a[k], bo[k]));
}
