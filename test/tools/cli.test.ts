import { runProcess, type ProcessRun } from '../../testkit/process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackfillState } from '../../functions/src/scan/backfill';
import { startToolEnv, type ToolEnv } from './env';

/**
 * The command line as a user runs it: `node bin/twin-replica.mjs <command>` in a child process, settings
 * from the environment, DefaultAzureCredential for the hub (here restricted to AzureCliCredential with an
 * `az` stand-in on PATH that prints a token), and the stand-in's certificate trusted via NODE_EXTRA_CA_CERTS.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(root, 'bin', 'twin-replica.mjs');
let env: ToolEnv;
let dir: string;
let childEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  env = await startToolEnv();
  dir = mkdtempSync(path.join(tmpdir(), 'cli-'));
  const fakeBin = path.join(dir, 'bin');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(fakeBin);
  // `az account get-access-token --output json --resource https://iothubs.azure.net` → a token the stand-in accepts.
  writeFileSync(path.join(fakeBin, 'az'), `#!/bin/sh\necho "$@" >> "${path.join(dir, 'az-calls.log')}"\ncase "$*" in *iothubs.azure.net*) ;; *) echo "unexpected resource" >&2; exit 1;; esac\necho '{"accessToken":"${env.hub!.token}","expiresOn":"2099-01-01 00:00:00.000000","expires_on":4070908800,"tokenType":"Bearer"}'\n`);
  chmodSync(path.join(fakeBin, 'az'), 0o755);
  childEnv = {
    PATH: `${fakeBin}:${process.env.PATH}`,
    HOME: dir,
    AZURE_TOKEN_CREDENTIALS: 'AzureCliCredential',
    NODE_EXTRA_CA_CERTS: env.hub!.cert.certFile,
    ...env.settings,
  };
});
afterAll(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[], opts: { killWhen?: () => boolean } = {}): Promise<ProcessRun> {
  return runProcess(process.execPath, [BIN, ...args], { cwd: dir, env: childEnv, killWhen: opts.killWhen });
}

describe('twin-replica CLI', () => {
  it('prints help for every command and fails on a bad flag', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['backfill', 'verify', 'redrive', 'show', 'query']) expect(help.stdout).toContain(c);
    const bad = await cli(['backfill', '--page-size', 'zero']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/positive integer/);
  });

  it('backfill killed mid-run resumes from its state file; show and query then read the replica', async () => {
    for (let i = 1; i <= 8; i++) env.hub!.addDevice(`cli-${i}`, { tags: { site: i % 2 ? 'north' : 'south', 'it\'s': 1 }, modules: i === 1 ? ['edgeAgent'] : [] });
    const stateFile = path.join(dir, 'backfill-state.json');
    const args = ['backfill', '--page-size', '2', '--rate', '240', '--state', stateFile];
    const pages = () => (existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as BackfillState).queries.devices.pages : 0);
    const killed = await cli(args, { killWhen: () => pages() >= 2 });
    expect(killed.signal).toBe('SIGKILL');
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as BackfillState;
    expect(saved.queries.devices.done).toBe(false);
    const before = env.hub!.requests.length;

    const resumed = await cli(['--json', ...args]);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    const report = JSON.parse(resumed.stdout);
    expect(report).toMatchObject({ resumed: true, twins: { devices: 8, modules: 1 } });
    expect(env.hub!.requests[before]).toMatchObject({ continuation: saved.queries.devices.continuation, status: 200 });
    expect(existsSync(stateFile)).toBe(false);
    expect(readFileSync(path.join(dir, 'az-calls.log'), 'utf8')).toContain('--resource https://iothubs.azure.net');

    const show = await cli(['show', 'cli-3']);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: 'cli-3', deviceId: 'cli-3', version: 1, tags: { site: 'north' } });
    expect(JSON.parse(show.stdout)._etag).toBeUndefined();
    expect(JSON.parse((await cli(['show', 'cli-1', 'edgeAgent'])).stdout)).toMatchObject({ deviceId: 'cli-1', moduleId: 'edgeAgent' });
    const missing = await cli(['show', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not in the replica: nope/);

    const query = await cli(['query', '--sql', 'SELECT c.deviceId FROM c WHERE c.tags.site = @site AND NOT IS_DEFINED(c.moduleId) AND NOT IS_DEFINED(c.deleted) ORDER BY c.deviceId', '--param', 'site=south']);
    expect(query.code).toBe(0);
    expect(JSON.parse(query.stdout)).toEqual([{ deviceId: 'cli-2' }, { deviceId: 'cli-4' }, { deviceId: 'cli-6' }, { deviceId: 'cli-8' }]);
    const typed = await cli(['query', '--sql', 'SELECT VALUE c.deviceId FROM c WHERE c.version = @v AND c.deviceId = @id', '--param', '@v=1', '--param', "id=cli-5"]);
    expect(JSON.parse(typed.stdout)).toEqual(['cli-5']);

    // verify: exit 2 while discrepancies remain, 0 once --repair has fixed them.
    env.hub!.deleteDevice('cli-8'); // its delete event never reached the replica
    const check = await cli(['--json', 'verify', '--rate', '600']);
    expect(check.code).toBe(2);
    expect(JSON.parse(check.stdout)).toMatchObject({ complete: true, extra: { count: 1, samples: [{ deviceId: 'cli-8' }] }, missing: { count: 0 }, remaining: 1 });
    const repair = await cli(['verify', '--repair', '--rate', '600']);
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/^extra 1 e\.g\. cli-8$/m);
    expect(repair.stdout).toMatch(/^repaired 1,/m);
    expect(JSON.parse((await cli(['show', 'cli-8'])).stdout)).toMatchObject({ deleted: true });
  });
});
