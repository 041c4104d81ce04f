import { describe, expect, it } from 'vitest';
import { applyEvent } from '../../functions/src/sync/rules';
import type { TwinDoc } from '../../functions/src/sync/types';

// Found by `npm run local`: IoT Hub's $metadata mirrors the data, so when a patch turns an object into a
// plain value, the metadata of the object's children goes with them. The replica kept them.
describe('twin $metadata when a patch replaces an object with a value', () => {
  const t1 = '2026-01-01T00:00:01.0000000Z';
  const t2 = '2026-01-01T00:00:02.0000000Z';
  const doc: TwinDoc = {
    id: 'd1', deviceId: 'd1', version: 3, tags: {},
    properties: {
      desired: { a: { b: 1 }, $metadata: { $lastUpdated: t1, $lastUpdatedVersion: 2, a: { $lastUpdated: t1, $lastUpdatedVersion: 2, b: { $lastUpdated: t1, $lastUpdatedVersion: 2 } } }, $version: 2 },
      reported: { $metadata: { $lastUpdated: t1 }, $version: 1 },
    },
    replica: { createdAt: t1, updatedAt: t1 },
  };

  it('drops the metadata of the replaced children, as the hub does', () => {
    const { doc: next, outcome } = applyEvent(doc, {
      kind: 'update', key: { deviceId: 'd1' }, ts: t2, version: 4,
      patch: { desired: { a: 5, $metadata: { $lastUpdated: t2, $lastUpdatedVersion: 3, a: { $lastUpdated: t2, $lastUpdatedVersion: 3 } }, $version: 3 } },
    });
    expect(outcome).toBe('applied');
    expect(next!.properties!.desired).toEqual({ a: 5, $metadata: { $lastUpdated: t2, $lastUpdatedVersion: 3, a: { $lastUpdated: t2, $lastUpdatedVersion: 3 } }, $version: 3 });
  });
});
