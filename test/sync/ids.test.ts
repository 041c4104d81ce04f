import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeDocId, encodeDocId, invalidKeyReason, MAX_ID_LENGTH } from '../../functions/src/sync/ids';

const IOT_CHARS = "abcXYZ019-.+%_#*?!(),:=@$'";
const iotId = fc.string({ unit: fc.constantFrom(...IOT_CHARS.split('')), minLength: 1, maxLength: 128 });

describe('document ids', () => {
  it('round-trips any device and module id, and never contains a character Cosmos DB forbids', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1 }), fc.option(fc.string({ unit: 'binary', minLength: 1 }), { nil: undefined }), (deviceId, moduleId) => {
        const key = moduleId === undefined ? { deviceId } : { deviceId, moduleId };
        const id = encodeDocId(key);
        expect(id).not.toMatch(/[/\\?#]/);
        expect(decodeDocId(id)).toEqual(key);
      }),
      { numRuns: 500 },
    );
  });

  it('keeps ordinary ids readable and escapes the characters that break ids or URLs', () => {
    expect(encodeDocId({ deviceId: 'thermostat-042' })).toBe('thermostat-042');
    expect(encodeDocId({ deviceId: 'contoso-device-2', moduleId: 'module-1' })).toBe('contoso-device-2|module-1');
    expect(encodeDocId({ deviceId: "a/b\\c?d#e%f'g" })).toBe("a~2Fb~5Cc~3Fd~23e~25f'g");
    expect(encodeDocId({ deviceId: 'x|y' })).toBe('x~7Cy');
  });

  it('gives device and module documents distinct ids even when a device id contains the separator', () => {
    fc.assert(
      fc.property(iotId, iotId, (a, b) => {
        expect(encodeDocId({ deviceId: `${a}|${b}` })).not.toBe(encodeDocId({ deviceId: a, moduleId: b }));
      }),
    );
  });

  it('fits every id IoT Hub allows for a device within the 255-character limit', () => {
    fc.assert(fc.property(iotId.filter((s) => !/[?#%]/.test(s)), (deviceId) => invalidKeyReason({ deviceId }) === undefined));
    expect(invalidKeyReason({ deviceId: '#'.repeat(128) })).toMatch(/384 characters; Cosmos DB allows 255/);
    expect(invalidKeyReason({ deviceId: '' })).toBe('empty device id');
    expect(encodeDocId({ deviceId: 'd'.repeat(127), moduleId: 'm'.repeat(127) }).length).toBe(MAX_ID_LENGTH);
  });
});
