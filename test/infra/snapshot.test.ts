import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, synthFixture, type Synthesized } from './helpers';

let synth: Synthesized;
beforeAll(async () => {
  synth = await synthFixture();
});
afterAll(cleanup);

/** Asset hashes follow the bundle's bytes (and zips carry timestamps): replace them before comparing. */
export function scrubAssetHashes(json: string): string {
  return json.replace(/\b[0-9A-F]{32}\b/g, '<asset-hash>');
}

describe('regression snapshot', () => {
  it('scrubbing replaces the asset hash everywhere it appears', () => {
    const scrubbed = scrubAssetHashes(synth.raw.dev);
    expect(synth.raw.dev).toMatch(/[0-9A-F]{32}/);
    expect(scrubbed).not.toMatch(/[0-9A-F]{32}/);
    expect(scrubbed.match(/<asset-hash>/g)?.length).toBeGreaterThanOrEqual(2);
  });

  it.each(['dev', 'prod'])('stack %s matches its snapshot', (env) => {
    expect(JSON.parse(scrubAssetHashes(synth.raw[env]))).toMatchSnapshot();
  });
});
