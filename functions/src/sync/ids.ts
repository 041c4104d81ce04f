import type { DocKey } from './types';

/**
 * Reversible document ids. Cosmos DB forbids `/ \ ? #` in an item id and caps it at 255 characters;
 * `%` invites double-decoding in URL-building tools. Those characters, the escape `~`, the module
 * separator `|`, spaces, controls and non-ASCII are written as `~XX` (UTF-8 bytes, upper-case hex).
 * Every other character IoT Hub allows in an id stays readable. A module document's id is
 * `<device>|<module>`: a literal `|` is always escaped, so the first `|` is the separator.
 */
export const MAX_ID_LENGTH = 255;

const ESCAPED = /[^\x21-\x7e]|[/\\?#%|~]/;

function encodePart(value: string): string {
  if (!ESCAPED.test(value)) return value;
  let out = '';
  for (const ch of value) {
    if (ESCAPED.test(ch)) {
      for (const byte of Buffer.from(ch, 'utf8')) out += '~' + byte.toString(16).toUpperCase().padStart(2, '0');
    } else {
      out += ch;
    }
  }
  return out;
}

function decodePart(value: string): string {
  if (!value.includes('~')) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '~') {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw new Error(`not an encoded id: ${JSON.stringify(value)}`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(value.charCodeAt(i));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export function encodeDocId(key: DocKey): string {
  const device = encodePart(key.deviceId);
  return key.moduleId === undefined ? device : `${device}|${encodePart(key.moduleId)}`;
}

export function decodeDocId(id: string): DocKey {
  const bar = id.indexOf('|');
  if (bar < 0) return { deviceId: decodePart(id) };
  return { deviceId: decodePart(id.slice(0, bar)), moduleId: decodePart(id.slice(bar + 1)) };
}

/** Why a key cannot become a document id, or undefined when it can. */
export function invalidKeyReason(key: DocKey): string | undefined {
  if (key.deviceId.length === 0) return 'empty device id';
  if (key.moduleId !== undefined && key.moduleId.length === 0) return 'empty module id';
  const length = encodeDocId(key).length;
  if (length > MAX_ID_LENGTH) return `encoded id is ${length} characters; Cosmos DB allows ${MAX_ID_LENGTH}`;
  return undefined;
}
