/**
 * infra/scripts/function-app.sh, run with bash as Terraform's local-exec runs it, against a fake
 * `az` (and a fake `curl` for the GitHub OIDC endpoint) on PATH. No network.
 *
 * The fake models what the Azure CLI prints and returns, as read in azure-cli
 * src/azure-cli/azure/cli/command_modules/appservice/custom.py (enable_zip_deploy_flex,
 * check_flex_app_after_deployment): "Waiting for sync triggers..." once the package is accepted,
 * then an uncounted health-check loop; errors raised with the HTTP status in the message.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FUNCTION_APP_SCRIPT } from '../../infra/constructs/function-app';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * The fake az: every call is appended to calls.log; `config-zip` answers from the scenario
 * list in $FAKE_DIR/zip-scenarios (one line per attempt, the last one repeats):
 *   ok | refused403 | conflict409 | hang-before-upload | unhealthy-hang | unhealthy-error | notfound
 */
const FAKE_AZ = `#!/usr/bin/env bash
echo "$*" >> "$FAKE_DIR/calls.log"
case "$*" in
  *"deployment source config-zip"*)
    n=$(( $(cat "$FAKE_DIR/zip-count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_DIR/zip-count"
    scenario=$(sed -n "\${n}p" "$FAKE_DIR/zip-scenarios"); [ -n "$scenario" ] || scenario=$(tail -n 1 "$FAKE_DIR/zip-scenarios")
    echo "Getting scm site credentials for zip deployment" >&2
    case "$scenario" in
      ok) echo "Deployment endpoint responded with status code 202" >&2; echo "Waiting for sync triggers..." >&2; echo '"Deployment was successful."'; exit 0 ;;
      refused403) echo "ERROR: An error occured during deployment. Status Code: 403, Details: AuthorizationPermissionMismatch" >&2; exit 1 ;;
      conflict409) echo "ERROR: There may be an ongoing deployment. Please track your deployment in https://x.scm/api/deployments/latest" >&2; exit 1 ;;
      hang-before-upload) sleep 300 & echo $! > "$FAKE_DIR/child.pid"; wait ;;
      unhealthy-hang) echo "Waiting for sync triggers..." >&2; echo "Checking the health of the function app" >&2; sleep 300 & echo $! > "$FAKE_DIR/child.pid"; wait ;;
      unhealthy-error) echo "Waiting for sync triggers..." >&2; echo "ERROR: Failed to fetch host key to check for function app status" >&2; exit 1 ;;
      notfound) echo "ERROR: (ResourceNotFound) The Resource 'Microsoft.Web/sites/func-x' was not found." >&2; exit 3 ;;
    esac ;;
  *"config appsettings delete"*) exit "\${FAKE_DELETE_EXIT:-0}" ;;
  *"rest --method post"*) exit 0 ;;
  "login "*) exit 0 ;;
  *) echo "fake az: unexpected call $*" >&2; exit 99 ;;
esac
`;

const FAKE_CURL = `#!/usr/bin/env bash
echo "curl $*" >> "$FAKE_DIR/calls.log"
n=$(( $(cat "$FAKE_DIR/token-count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_DIR/token-count"
printf '{"count":1,"value":"assertion-%s"}' "$n"
`;

interface Run {
  status: number | null;
  stderr: string;
  calls: string[];
  dir: string;
}

function run(command: string, opts: { scenarios?: string[]; env?: Record<string, string> } = {}): Run {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'twin-replica-fnapp-'));
  dirs.push(dir);
  for (const [name, body] of [
    ['az', FAKE_AZ],
    ['curl', FAKE_CURL],
  ]) {
    writeFileSync(path.join(dir, name), body);
    chmodSync(path.join(dir, name), 0o755);
  }
  writeFileSync(path.join(dir, 'zip-scenarios'), (opts.scenarios ?? ['ok']).join('\n') + '\n');
  writeFileSync(path.join(dir, 'package.zip'), 'zip');
  const env: Record<string, string> = {
    PATH: `${dir}:${process.env.PATH}`,
    HOME: dir,
    FAKE_DIR: dir,
    SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001',
    RESOURCE_GROUP: 'rg-twinrep-dev',
    FUNCTION_APP: 'func-twinrep-dev',
    FUNCTION_APP_ID: '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-twinrep-dev/providers/Microsoft.Web/sites/func-twinrep-dev',
    PACKAGE_ZIP: path.join(dir, 'package.zip'),
    TWIN_REPLICA_PUBLISH_RETRY_SECONDS: '0',
    ...opts.env,
  };
  // The spawn timeout only keeps a broken script from hanging the suite; nothing here is timed.
  const r = spawnSync('/bin/bash', ['-c', `bash "${FUNCTION_APP_SCRIPT}" ${command}`], { env, encoding: 'utf8', timeout: 60_000 });
  const log = path.join(dir, 'calls.log');
  return { status: r.status, stderr: r.stderr, calls: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [], dir };
}

const zipCalls = (r: Run) => r.calls.filter((c) => c.includes('config-zip'));

/** The fake's child (a `sleep 300`) must be gone (or a zombie awaiting its reaper): the bound killed the whole process group. */
function childGone(r: Run): boolean {
  const pid = Number(readFileSync(path.join(r.dir, 'child.pid'), 'utf8'));
  const stat = path.join('/proc', String(pid), 'stat');
  if (!existsSync(stat)) return true;
  return readFileSync(stat, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
}

describe('function-app.sh remove-storage-setting', () => {
  it('deletes AzureWebJobsStorage, and only it, from the app named by the environment', () => {
    const r = run('remove-storage-setting');
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls).toEqual([
      'functionapp config appsettings delete --subscription 00000000-0000-0000-0000-000000000001 --resource-group rg-twinrep-dev --name func-twinrep-dev --setting-names AzureWebJobsStorage --output none',
    ]);
    expect(r.stderr).toContain('removed AzureWebJobsStorage from func-twinrep-dev');
  });

  it('fails with the reason and the manual command when the CLI fails', () => {
    const r = run('remove-storage-setting', { env: { FAKE_DELETE_EXIT: '1' } });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('FAILED: could not remove the AzureWebJobsStorage app setting of func-twinrep-dev');
    expect(r.stderr).toContain('ignores AzureWebJobsStorage__accountName while AzureWebJobsStorage exists');
    expect(r.stderr).toContain('az functionapp config appsettings delete -g rg-twinrep-dev -n func-twinrep-dev --setting-names AzureWebJobsStorage');
  });

  it('refuses to run without its inputs', () => {
    const r = run('remove-storage-setting', { env: { FUNCTION_APP: '' } });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('FAILED: environment variable FUNCTION_APP is not set');
    expect(r.calls).toEqual([]);
  });
});

describe('function-app.sh publish', () => {
  it('deploys once and syncs triggers when the first attempt succeeds', () => {
    const r = run('publish');
    expect(r.status, r.stderr).toBe(0);
    expect(zipCalls(r)).toHaveLength(1);
    expect(zipCalls(r)[0]).toContain('--resource-group rg-twinrep-dev --name func-twinrep-dev --src ');
    expect(r.calls.at(-1)).toBe(
      'rest --method post --url https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-twinrep-dev/providers/Microsoft.Web/sites/func-twinrep-dev/syncfunctiontriggers?api-version=2024-04-01',
    );
  });

  it('retries uploads refused with 403 or 409 (role propagation, a running deployment), then succeeds', () => {
    const r = run('publish', { scenarios: ['refused403', 'conflict409', 'ok'] });
    expect(r.status, r.stderr).toBe(0);
    expect(zipCalls(r)).toHaveLength(3);
    expect(r.stderr).toContain('attempt 1 was refused; retrying in 0 s');
    expect(r.stderr).toContain('attempt 2 was refused; retrying in 0 s');
  });

  it('does not retry an error another attempt would not fix', () => {
    const r = run('publish', { scenarios: ['notfound', 'ok'] });
    expect(r.status, r.stderr).toBe(1);
    expect(zipCalls(r)).toHaveLength(1);
    expect(r.stderr).toContain('FAILED: OneDeploy of');
    expect(r.stderr).toContain('failed (exit 3) with an error that another attempt would not fix');
    expect(r.calls.some((c) => c.includes('syncfunctiontriggers'))).toBe(false);
  });

  it('stops retrying refusals when the total bound is spent, and says what to check', () => {
    const r = run('publish', {
      scenarios: ['refused403'],
      env: { TWIN_REPLICA_PUBLISH_TOTAL_SECONDS: '2', TWIN_REPLICA_PUBLISH_RETRY_SECONDS: '1' },
    });
    expect(r.status, r.stderr).toBe(1);
    expect(zipCalls(r).length).toBeGreaterThanOrEqual(1);
    expect(zipCalls(r).length).toBeLessThanOrEqual(3);
    expect(r.stderr).toMatch(/FAILED: OneDeploy of .* still failed after \d+ attempts in \d+ s/);
    expect(r.stderr).toContain('needs Storage Blob Data Owner on the host storage account');
  });

  it('bounds an attempt that hangs before the upload, kills the whole CLI process tree, and retries', () => {
    const r = run('publish', {
      scenarios: ['hang-before-upload', 'ok'],
      env: { TWIN_REPLICA_PUBLISH_ATTEMPT_SECONDS: '2' },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(zipCalls(r)).toHaveLength(2);
    expect(r.stderr).toContain('attempt 1 timed out; retrying');
    expect(childGone(r)).toBe(true);
  });

  it('an unhealthy host after the upload (the CLI health loop never ends) fails once, bounded, naming the checks', () => {
    const r = run('publish', {
      scenarios: ['unhealthy-hang', 'ok'],
      env: { TWIN_REPLICA_PUBLISH_ATTEMPT_SECONDS: '2' },
    });
    expect(r.status, r.stderr).toBe(1);
    expect(zipCalls(r)).toHaveLength(1);
    expect(r.stderr).toContain('FAILED: the package reached func-twinrep-dev but the Functions host did not report healthy within 2 s');
    expect(r.stderr).toContain('AzureWebJobsStorage must be absent from the app settings');
    expect(childGone(r)).toBe(true);
  });

  it('an unhealthy host reported by the CLI is not retried either', () => {
    const r = run('publish', { scenarios: ['unhealthy-error', 'ok'] });
    expect(r.status, r.stderr).toBe(1);
    expect(zipCalls(r)).toHaveLength(1);
    expect(r.stderr).toContain('did not report healthy');
  });

  it('fails before calling Azure when the package is missing', () => {
    const r = run('publish', { env: { PACKAGE_ZIP: '/nonexistent/archive.zip' } });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('FAILED: package /nonexistent/archive.zip does not exist');
    expect(r.calls).toEqual([]);
  });
});

describe('function-app.sh in GitHub Actions (finding 5: the OIDC assertion outlives no long deploy)', () => {
  const ci = {
    GITHUB_ACTIONS: 'true',
    ARM_USE_OIDC: 'true',
    ARM_CLIENT_ID: '11111111-1111-1111-1111-111111111111',
    ARM_TENANT_ID: '22222222-2222-2222-2222-222222222222',
    ACTIONS_ID_TOKEN_REQUEST_URL: 'https://token.example/?x=1',
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'request-token',
  };

  it('signs the CLI in again with a fresh assertion before every attempt and before removing the setting', () => {
    const r = run('publish', { scenarios: ['refused403', 'ok'], env: ci });
    expect(r.status, r.stderr).toBe(0);
    const kinds = r.calls.map((c) => (c.startsWith('curl') ? 'token' : c.startsWith('login') ? 'login' : c.split(' ').slice(0, 3).join(' ')));
    expect(kinds).toEqual(['token', 'login', 'functionapp deployment source', 'token', 'login', 'functionapp deployment source', 'rest --method post']);
    expect(r.calls.filter((c) => c.startsWith('login'))).toEqual([
      'login --service-principal --username 11111111-1111-1111-1111-111111111111 --tenant 22222222-2222-2222-2222-222222222222 --federated-token assertion-1 --allow-no-subscriptions --output none',
      'login --service-principal --username 11111111-1111-1111-1111-111111111111 --tenant 22222222-2222-2222-2222-222222222222 --federated-token assertion-2 --allow-no-subscriptions --output none',
    ]);
    expect(r.calls.find((c) => c.startsWith('curl'))).toContain('audience=api://AzureADTokenExchange');

    const removal = run('remove-storage-setting', { env: ci });
    expect(removal.status).toBe(0);
    expect(removal.calls.map((c) => c.split(' ')[0])).toEqual(['curl', 'login', 'functionapp']);
  });

  it('leaves the sign-in alone outside GitHub Actions', () => {
    const r = run('publish', { env: { ...ci, GITHUB_ACTIONS: '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.calls.some((c) => c.startsWith('curl') || c.startsWith('login'))).toBe(false);
  });
});

describe('function-app.sh stays runnable where cdktf runs', () => {
  const script = readFileSync(FUNCTION_APP_SCRIPT, 'utf8');

  it('parses with bash -n', () => {
    const r = spawnSync('/bin/bash', ['-n', FUNCTION_APP_SCRIPT], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('uses nothing newer than bash 3.2 (macOS /bin/bash) and no coreutils timeout', () => {
    const code = script
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n');
    for (const bash4 of [/\$BASHPID|\$\{BASHPID/, /\bdeclare -A\b|\blocal -A\b/, /\bmapfile\b|\breadarray\b/, /\$\{\w+(,,|\^\^)\}/, /\|&/, /\bcoproc\b/, /;;&|;&/]) {
      expect(code).not.toMatch(bash4);
    }
    expect(code).not.toMatch(/(^|\s)timeout\s+\d/m);
  });
});
