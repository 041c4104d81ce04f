import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeTimestamp } from '../../functions/src/sync/timestamps';

describe('operation timestamps', () => {
  it('normalises every form IoT Hub and the host use to 7 fractional digits in UTC', () => {
    expect(normalizeTimestamp('2024-03-05T10:15:30.1234567Z')).toBe('2024-03-05T10:15:30.1234567Z');
    expect(normalizeTimestamp('2024-03-05T10:15:30.1234567+00:00')).toBe('2024-03-05T10:15:30.1234567Z');
    expect(normalizeTimestamp('2024-03-05T10:15:30.268')).toBe('2024-03-05T10:15:30.2680000Z');
    expect(normalizeTimestamp('2024-03-05T10:15:30Z')).toBe('2024-03-05T10:15:30.0000000Z');
    expect(normalizeTimestamp('2024-03-05T12:15:30.5+02:00')).toBe('2024-03-05T10:15:30.5000000Z');
    expect(normalizeTimestamp(Date.parse('2024-03-05T10:15:30.268Z'))).toBe('2024-03-05T10:15:30.2680000Z');
    expect(normalizeTimestamp('yesterday')).toBeUndefined();
    expect(normalizeTimestamp(undefined)).toBeUndefined();
  });

  it('orders as strings exactly as the instants they name, down to 100 ns', () => {
    const instant = fc.tuple(fc.integer({ min: Date.parse('2000-01-01'), max: Date.parse('2090-01-01') }), fc.integer({ min: 0, max: 9999 }));
    fc.assert(
      fc.property(instant, instant, ([ms1, f1], [ms2, f2]) => {
        const a = normalizeTimestamp(new Date(ms1).toISOString().slice(0, 23) + String(f1).padStart(4, '0') + '+00:00')!;
        const b = normalizeTimestamp(new Date(ms2).toISOString().slice(0, 23) + String(f2).padStart(4, '0') + 'Z')!;
        const byInstant = ms1 * 10_000 + f1 - (ms2 * 10_000 + f2);
        expect(Math.sign(a.localeCompare(b))).toBe(Math.sign(byInstant));
      }),
    );
  });
});
