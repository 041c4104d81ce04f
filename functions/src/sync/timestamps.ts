/**
 * IoT Hub operation timestamps carry 7 fractional digits and end in `Z` or `+00:00`; the host's
 * `enqueuedTimeUtc` may have no zone at all (a .NET DateTime of unspecified kind, UTC in fact).
 * Normalising every form to `YYYY-MM-DDTHH:mm:ss.fffffffZ` makes plain string comparison
 * chronological, without losing the sub-millisecond digits that Date would drop.
 */
const ISO = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

export function normalizeTimestamp(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? undefined : d.toISOString().slice(0, 19) + '.' + String(d.getUTCMilliseconds()).padStart(3, '0') + '0000Z';
  }
  if (value instanceof Date) return normalizeTimestamp(value.getTime());
  if (typeof value !== 'string') return undefined;
  const m = ISO.exec(value.trim());
  if (!m) return undefined;
  const [, date, time, fraction = '', zone = 'Z'] = m;
  const frac = fraction.padEnd(7, '0').slice(0, 7);
  const offset = zone.toUpperCase() === 'Z' ? 0 : parseOffsetMinutes(zone);
  if (offset === 0) {
    const check = Date.parse(`${date}T${time}Z`);
    return Number.isNaN(check) ? undefined : `${date}T${time}.${frac}Z`;
  }
  const ms = Date.parse(`${date}T${time}Z`) - offset * 60_000;
  if (Number.isNaN(ms)) return undefined;
  return `${new Date(ms).toISOString().slice(0, 19)}.${frac}Z`;
}

function parseOffsetMinutes(zone: string): number {
  const sign = zone[0] === '-' ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
}

/** The later of two normalised timestamps (undefined counts as earliest). */
export function maxTimestamp(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a >= b ? a : b;
}
