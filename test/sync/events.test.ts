import { describe, expect, it } from 'vitest';
import { classify } from '../../functions/src/sync/events';
import { connection, created, deleted, telemetry, twinReplace, twinUpdate, fullTwin } from '../../testkit/events';
import { fixtureNames, loadFixture } from '../fixtures';

const ts = '2026-01-01T00:00:00.0000001Z';

describe('classifying IoT Hub events', () => {
  it('understands every shared sample event', () => {
    expect(fixtureNames()).toHaveLength(5);
    const kinds = Object.fromEntries(fixtureNames().map((name) => {
      const c = classify(loadFixture(name));
      if (c.type !== 'event') throw new Error(`${name}: ${JSON.stringify(c)}`);
      return [name, { kind: c.event.kind, key: c.event.key, ts: c.event.ts }];
    }));
    expect(kinds).toEqual({
      'connection-deviceDisconnected.json': { kind: 'connection', key: { deviceId: 'contoso-device-1' }, ts: '2022-06-01T18:43:04.5561024Z' },
      'lifecycle-createDeviceIdentity-module.json': { kind: 'create', key: { deviceId: 'contoso-device-2', moduleId: 'module-1' }, ts: '2022-05-27T18:49:38.4904785Z' },
      'lifecycle-createDeviceIdentity.json': { kind: 'create', key: { deviceId: expect.any(String) }, ts: expect.any(String) },
      'twin-updateTwin-desired.json': { kind: 'update', key: { deviceId: 'thermostat-042' }, ts: '2024-03-05T10:15:30.1234567Z' },
      'twin-updateTwin-module.json': { kind: 'update', key: { deviceId: expect.any(String), moduleId: expect.any(String) }, ts: expect.any(String) },
    });
  });

  it('parses bodies handed over as strings (dataType string) or bytes, as the host may', () => {
    const e = loadFixture('twin-updateTwin-desired');
    const asString = classify({ ...e, body: JSON.stringify(e.body) });
    const asBytes = classify({ ...e, body: new TextEncoder().encode(JSON.stringify(e.body)) });
    expect(asString).toEqual(classify(e));
    expect(asBytes).toEqual(classify(e));
    expect(asString.type === 'event' && asString.event.kind === 'update' && asString.event.patch.desired).toMatchObject({ telemetryConfig: { sendFrequency: '5m' }, $version: 2 });
  });

  it('keeps a tags-only change as a tags-only patch', () => {
    const c = classify(twinUpdate({ deviceId: 'd', ts, version: 4, tags: { site: 'x' } }));
    expect(c.type === 'event' && c.event.kind === 'update' && c.event.patch).toEqual({ tags: { site: 'x' } });
  });

  it('accepts both spellings of module lifecycle events', () => {
    for (const spelling of ['device', 'module'] as const) {
      const c = classify(created({ deviceId: 'd', moduleId: 'm', ts, twin: fullTwin({ deviceId: 'd', moduleId: 'm', version: 1 }), moduleSpelling: spelling }));
      expect(c).toMatchObject({ type: 'event', event: { kind: 'create', key: { deviceId: 'd', moduleId: 'm' } } });
      const d = classify(deleted({ deviceId: 'd', moduleId: 'm', ts, moduleSpelling: spelling }));
      expect(d).toMatchObject({ type: 'event', event: { kind: 'delete', key: { deviceId: 'd', moduleId: 'm' } } });
    }
  });

  it('skips events that are not ours, naming their source', () => {
    expect(classify(telemetry('d'))).toEqual({ type: 'skip', reason: 'Telemetry' });
    const dt = twinUpdate({ deviceId: 'd', ts, version: 1 });
    expect(classify({ ...dt, systemProperties: { ...dt.systemProperties, 'iothub-message-source': 'digitalTwinChangeEvents' } })).toEqual({ type: 'skip', reason: 'digitalTwinChangeEvents' });
    expect(classify({ body: { jobId: 'j' }, properties: {}, systemProperties: {} })).toEqual({ type: 'skip', reason: 'no-source' });
  });

  it('infers the source from a known opType when the source annotation is missing', () => {
    const e = twinUpdate({ deviceId: 'd', ts, version: 2, tags: { a: 1 } });
    expect(classify({ ...e, systemProperties: {} })).toMatchObject({ type: 'event', event: { kind: 'update' } });
  });

  it('names the reason for each kind of poison', () => {
    const base = twinUpdate({ deviceId: 'd', ts, version: 2 });
    const cases: [unknown, string][] = [
      [{ ...base, body: '{"version": 2,' }, 'malformed-body'],
      [{ ...base, body: '[1,2]' }, 'body-not-object'],
      [{ ...base, body: 'null' }, 'body-not-object'],
      [{ ...base, properties: { ...base.properties, opType: 'teleportTwin' } }, 'unknown-op-type'],
      [{ ...base, properties: { ...base.properties, deviceId: undefined }, systemProperties: { ...base.systemProperties, 'iothub-connection-device-id': undefined } }, 'missing-device-id'],
      [{ ...base, properties: { ...base.properties, deviceId: '#'.repeat(128) } }, 'invalid-id'],
      [{ ...base, body: { properties: { desired: {} } } }, 'invalid-event'],
      [{ ...base, body: { version: 3, tags: 'not-an-object' } }, 'invalid-event'],
      [connection({ deviceId: 'd', ts, connected: true, sequence: 'zz-not-hex' }), 'invalid-event'],
      [{ ...deleted({ deviceId: 'd', ts }), properties: { deviceId: 'd', opType: 'deleteDeviceIdentity' }, systemProperties: { 'iothub-message-source': 'deviceLifecycleEvents' } }, 'missing-timestamp'],
    ];
    for (const [event, reason] of cases) {
      expect(classify(event as never), reason).toMatchObject({ type: 'poison', reason });
    }
  });

  it('reads the device and module ids case-sensitively and keeps odd characters', () => {
    const c = classify(twinReplace({ deviceId: "Dev'%#?(1)", moduleId: 'Mod:=@$', ts, twin: fullTwin({ deviceId: "Dev'%#?(1)", version: 3 }) }));
    expect(c).toMatchObject({ type: 'event', event: { kind: 'replace', key: { deviceId: "Dev'%#?(1)", moduleId: 'Mod:=@$' }, version: 3 } });
  });
});
