import { afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { backendKindFromEnv, localStatePath, stateKey } from '../../infra/backend';
import { environments } from '../../infra/config';
import { cleanup, synthFixture } from './helpers';

afterAll(cleanup);

describe('state backend switch', () => {
  it('defaults to azurerm and accepts local', () => {
    expect(backendKindFromEnv({})).toBe('azurerm');
    expect(backendKindFromEnv({ TWIN_REPLICA_BACKEND: 'local' })).toBe('local');
    expect(() => backendKindFromEnv({ TWIN_REPLICA_BACKEND: 's3' })).toThrow('TWIN_REPLICA_BACKEND must be "azurerm" or "local", got "s3"');
  });

  it('state keys are one per stack', () => {
    const keys = environments.map((e) => stateKey(e.name));
    expect(new Set(keys).size).toBe(environments.length);
  });

  it('local backend writes a relative path under infra/.state, one file per stack', async () => {
    const synth = await synthFixture({ backend: 'local' });
    for (const env of ['dev', 'prod']) {
      const backend = synth.stacks[env].terraform.backend;
      expect(backend).toEqual({ local: { path: localStatePath(env) } });
      expect(path.isAbsolute(backend.local.path)).toBe(false);
      // cdktf.out/stacks/<env> + ../../../ = project root
      expect(path.posix.normalize(path.posix.join('cdktf.out/stacks', env, backend.local.path))).toBe(`infra/.state/${env}.tfstate`);
    }
  });
});
