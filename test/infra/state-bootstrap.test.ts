import { describe, expect, it } from 'vitest';
import { environments, findEnvironment } from '../../infra/config';
import { STATE_SOFT_DELETE_DAYS, stateBootstrapCommands } from '../../infra/state-bootstrap';

const SUB = '00000000-0000-0000-0000-0000000000aa';
const DEPLOYER = { dev: '11111111-1111-1111-1111-111111111111', prod: '33333333-3333-3333-3333-333333333333' } as const;
const PR = '22222222-2222-2222-2222-222222222222';
const commands = (env: 'dev' | 'prod', pr = true) =>
  stateBootstrapCommands(findEnvironment(env), { subscriptionId: SUB, deployerObjectId: DEPLOYER[env], prReaderObjectId: pr ? PR : undefined });
const flag = (argv: string[], name: string) => argv[argv.indexOf(name) + 1];
const find = (cmds: string[][], ...prefix: string[]) => cmds.filter((c) => prefix.every((p, i) => c[i] === p));

describe('state bootstrap (one state account per environment)', () => {
  it('creates the account config.ts names for the environment: no shared keys, no public blobs, TLS 1.2', () => {
    for (const env of ['dev', 'prod'] as const) {
      const [create] = find(commands(env), 'az', 'storage', 'account', 'create');
      expect(flag(create, '--name')).toBe(findEnvironment(env).stateBackend.storageAccountName);
      expect(flag(create, '--allow-shared-key-access')).toBe('false');
      expect(flag(create, '--allow-blob-public-access')).toBe('false');
      expect(flag(create, '--min-tls-version')).toBe('TLS1_2');
    }
    expect(new Set(environments.map((e) => e.stateBackend.storageAccountName)).size).toBe(environments.length);
  });

  it('turns on versioning and blob + container soft delete that cannot be purged early', () => {
    const [props] = find(commands('prod'), 'az', 'storage', 'account', 'blob-service-properties', 'update');
    expect(flag(props, '--enable-versioning')).toBe('true');
    expect(flag(props, '--enable-delete-retention')).toBe('true');
    expect(flag(props, '--delete-retention-days')).toBe(String(STATE_SOFT_DELETE_DAYS));
    expect(flag(props, '--enable-container-delete-retention')).toBe('true');
    expect(flag(props, '--container-delete-retention-days')).toBe(String(STATE_SOFT_DELETE_DAYS));
    expect(flag(props, '--set')).toBe('deleteRetentionPolicy.allowPermanentDelete=false');
  });

  it("the deployer may write its own environment's state container only; the PR identity only reads", () => {
    for (const env of ['dev', 'prod'] as const) {
      const grants = find(commands(env), 'az', 'role', 'assignment', 'create').map((c) => [flag(c, '--assignee-object-id'), flag(c, '--role'), flag(c, '--scope')]);
      const { storageAccountName, containerName } = findEnvironment(env).stateBackend;
      const scope = expect.stringMatching(new RegExp(`/storageAccounts/${storageAccountName}/blobServices/default/containers/${containerName}$`));
      expect(grants).toEqual([
        [DEPLOYER[env], 'Storage Blob Data Contributor', scope],
        [PR, 'Storage Blob Data Reader', scope],
      ]);
    }
    // dev's deployer appears nowhere in prod's commands.
    expect(commands('prod').flat()).not.toContain(DEPLOYER.dev);
    expect(find(commands('dev', false), 'az', 'role', 'assignment', 'create')).toHaveLength(1);
  });

  it('locks the state account against deletion and creates the container through ARM', () => {
    const cmds = commands('prod');
    const [lock] = find(cmds, 'az', 'lock', 'create');
    expect(flag(lock, '--lock-type')).toBe('CanNotDelete');
    expect(flag(lock, '--resource')).toBe('sttwinrepprodtfstate');
    expect(find(cmds, 'az', 'storage', 'container-rm', 'create')).toHaveLength(1);
    expect(find(cmds, 'az', 'storage', 'container', 'create')).toHaveLength(0);
  });

  it('refuses ids that are not GUIDs (they are passed as arguments, never through a shell)', () => {
    expect(() => stateBootstrapCommands(findEnvironment('dev'), { subscriptionId: SUB, deployerObjectId: 'x; rm -rf /' })).toThrow(/deployerObjectId must be a GUID/);
  });
});
