import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { environments } from '../../infra/config';

const text = readFileSync('.github/workflows/deploy.yml', 'utf8');
const workflow = parse(text);
const scripts: Record<string, string> = JSON.parse(readFileSync('package.json', 'utf8')).scripts;
// The attach example (`existing`) is synthesized but never deployed by CI.
const stacks = environments.map((e) => e.name).filter((n) => n !== 'existing');

interface Step {
  run?: string;
  uses?: string;
  with?: Record<string, unknown>;
}
interface Job {
  if?: string;
  permissions?: Record<string, string>;
  needs?: string | string[];
  environment?: string;
  env?: Record<string, string>;
  strategy?: { matrix?: Record<string, unknown[]> };
  steps: Step[];
}
const jobs: Record<string, Job> = workflow.jobs;

/** Every run command, with ${{ matrix.x }} expanded over the job's matrix. */
function commands(): { job: string; command: string }[] {
  const out: { job: string; command: string }[] = [];
  for (const [job, body] of Object.entries(jobs)) {
    const matrix = body.strategy?.matrix ?? {};
    for (const step of body.steps) {
      if (!step.run) continue;
      let variants = [step.run];
      for (const [key, values] of Object.entries(matrix)) {
        variants = variants.flatMap((v) =>
          v.includes(`\${{ matrix.${key} }}`) ? values.map((val) => v.replaceAll(`\${{ matrix.${key} }}`, String(val))) : [v],
        );
      }
      out.push(...variants.map((command) => ({ job, command })));
    }
  }
  return out;
}

describe('.github/workflows/deploy.yml', () => {
  it('parses and runs on pull requests and on pushes to main', () => {
    expect(workflow.name).toBe('deploy');
    expect(workflow.on.pull_request.branches).toEqual(['main']);
    expect(workflow.on.push.branches).toEqual(['main']);
  });

  it('signs in with OIDC only: id-token permission, ARM_USE_OIDC, no secrets', () => {
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(workflow.env.ARM_USE_OIDC).toBe('true');
    expect(text).not.toMatch(/secrets\./);
    expect(text).not.toMatch(/ARM_CLIENT_SECRET|client-secret|creds:/);
    for (const job of ['deploy-dev', 'deploy-prod']) {
      const login = jobs[job].steps.find((s) => s.uses?.startsWith('azure/login@'));
      expect(login?.with, job).toEqual({
        'client-id': '${{ vars.ARM_CLIENT_ID }}',
        'tenant-id': '${{ vars.ARM_TENANT_ID }}',
        'subscription-id': '${{ vars.ARM_SUBSCRIPTION_ID }}',
      });
    }
  });

  it('finding 5: signs the Azure CLI in again right before every CLI step after the deploy', () => {
    for (const job of ['deploy-dev', 'deploy-prod']) {
      const steps = jobs[job].steps;
      const deploy = steps.findIndex((s) => s.run?.startsWith('npm run deploy'));
      expect(deploy, job).toBeGreaterThan(0);
      const after = steps.slice(deploy + 1);
      // Every run step after the deploy uses the CLI credential (smoke: DefaultAzureCredential -> Azure CLI).
      after.forEach((step, i) => {
        if (step.run) expect(after[i - 1]?.uses, `${job}: step before "${step.run}"`).toMatch(/^azure\/login@/);
      });
      expect(after.filter((s) => s.run).map((s) => s.run)).toEqual([expect.stringMatching(/^npm run smoke -- /)]);
      expect(after[after.length - 2].with).toEqual({
        'client-id': '${{ vars.SMOKE_ARM_CLIENT_ID || vars.ARM_CLIENT_ID }}',
        'tenant-id': '${{ vars.ARM_TENANT_ID }}',
        'subscription-id': '${{ vars.ARM_SUBSCRIPTION_ID }}',
      });
    }
    // Inside the deploy step, the CLI steps sign in again themselves (test/infra/function-app-script.test.ts).
    expect(text).toContain('infra/scripts/function-app.sh');
  });

  it('finding 6: the header names the exact custom role the pull-request plan identity needs', () => {
    const header = text.slice(0, text.indexOf('name: deploy'));
    const json = header
      .split('\n')
      .map((l) => l.replace(/^#\s{0,8}/, ''))
      .join('\n');
    const role = JSON.parse(json.slice(json.indexOf('{'), json.lastIndexOf('}') + 1));
    expect(role).toEqual({
      Name: 'twin-replica plan',
      Actions: [
        '*/read',
        'Microsoft.DocumentDB/databaseAccounts/listKeys/action',
        'Microsoft.DocumentDB/databaseAccounts/readonlykeys/action',
        'Microsoft.DocumentDB/databaseAccounts/listConnectionStrings/action',
        'Microsoft.Web/sites/config/list/action',
      ],
      NotActions: [],
      DataActions: [],
      NotDataActions: [],
      AssignableScopes: ['/subscriptions/<subscription id>'],
    });
    expect(header).toContain('Storage Blob Data Reader on the state containers');
    expect(jobs.diff.env).toMatchObject({ ARM_CLIENT_ID: '${{ vars.PLAN_ARM_CLIENT_ID }}' });
  });

  it('every npm script it runs exists in package.json', () => {
    const used = commands().flatMap(({ command }) =>
      [...command.matchAll(/npm (?:run ([\w:-]+)|(test)\b)/g)].map((m) => m[1] ?? m[2]),
    );
    expect(used).toEqual(expect.arrayContaining(['test', 'synth', 'smoke', 'diff', 'deploy']));
    for (const script of used) expect(scripts, script).toHaveProperty(script);
  });

  it('every stack it diffs, deploys or smoke-tests exists', () => {
    const named = commands().flatMap(({ command }) =>
      [...command.matchAll(/npm run (?:diff|deploy|smoke) -- (\w+)/g)].map((m) => m[1]),
    );
    expect(new Set(named)).toEqual(new Set(stacks));
    for (const stack of named) expect(stacks).toContain(stack);
  });

  it('pull requests: test + synth, then cdktf diff for every stack; no deploy', () => {
    const test = commands().filter((c) => c.job === 'test').map((c) => c.command);
    expect(test).toEqual([
      'npm ci',
      'npm audit signatures',
      'npm audit --omit=dev --audit-level=high',
      'npm audit --audit-level=critical',
      'npm test',
      'npm run synth',
    ]);
    expect(jobs.diff.if).toBe("github.event_name == 'pull_request'");
    expect(jobs.diff.strategy?.matrix?.stack).toEqual(stacks);
    expect(jobs['deploy-dev'].if).toContain("github.event_name != 'pull_request'");
    expect(jobs['deploy-dev'].if).toContain("github.ref == 'refs/heads/main'");
  });

  it('main: deploys dev, then prod behind the prod environment, each followed by the smoke check', () => {
    expect(jobs['deploy-dev']).toMatchObject({ needs: 'test', environment: 'dev' });
    expect(jobs['deploy-prod']).toMatchObject({ needs: 'deploy-dev', environment: 'prod' });
    for (const [job, stack] of [
      ['deploy-dev', 'dev'],
      ['deploy-prod', 'prod'],
    ]) {
      const runs = jobs[job].steps.filter((s) => s.run).map((s) => s.run);
      expect(runs.slice(-2), job).toEqual([`npm run deploy -- ${stack} --auto-approve`, `npm run smoke -- ${stack}`]);
      expect(jobs[job].env).toMatchObject({ ARM_CLIENT_ID: '${{ vars.ARM_CLIENT_ID }}' });
    }
  });

  it("pins the tools it installs; cdktf is the project's own (package.json), the same command users run", () => {
    expect(workflow.env.CDKTF_CLI_VERSION).toBeUndefined();
    expect(text).not.toMatch(/npx --yes|cdktf-cli@/);
    expect(JSON.parse(readFileSync('package.json', 'utf8')).devDependencies['cdktf-cli']).toBe('0.21.0');
    expect(workflow.env.TERRAFORM_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    expect(workflow.env.NODE_VERSION).toBe('22');
  });

  describe('hardening (docs/security.md, "CI")', () => {
    const steps = Object.entries(jobs).flatMap(([job, body]) => body.steps.map((step) => ({ job, step })));

    it('pins every action by a full commit SHA, with the release tag in a comment', () => {
      const uses = steps.filter(({ step }) => step.uses).map(({ step }) => step.uses!);
      expect(uses.length).toBeGreaterThan(0);
      for (const u of uses) expect(u, u).toMatch(/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/);
      const lines = text.split('\n').filter((l) => /^\s*- uses: /.test(l));
      for (const l of lines) expect(l, l).toMatch(/@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
      // One SHA per action everywhere, so Dependabot moves them together.
      const byAction = new Map<string, Set<string>>();
      for (const u of uses) {
        const [action, sha] = u.split('@');
        byAction.set(action, (byAction.get(action) ?? new Set()).add(sha));
      }
      for (const [action, shas] of byAction) expect(shas.size, action).toBe(1);
    });

    it('Dependabot keeps the pinned actions and npm packages current', () => {
      const dependabot = parse(readFileSync('.github/dependabot.yml', 'utf8'));
      expect(dependabot.version).toBe(2);
      const ecosystems = dependabot.updates.map((u: { 'package-ecosystem': string; directory: string }) => [u['package-ecosystem'], u.directory]);
      expect(ecosystems).toEqual(expect.arrayContaining([['github-actions', '/'], ['npm', '/']]));
    });

    it('id-token: write only on the jobs that sign in to Azure; the token only reads everywhere', () => {
      const signsIn = (body: Job) => Boolean(body.env?.ARM_CLIENT_ID) || body.steps.some((s) => s.uses?.startsWith('azure/login@'));
      for (const [job, body] of Object.entries(jobs)) {
        if (signsIn(body)) expect(body.permissions, job).toEqual({ contents: 'read', 'id-token': 'write' });
        else expect(body.permissions?.['id-token'], job).toBeUndefined();
      }
      expect(jobs.test.permissions).toBeUndefined();
      expect(Object.keys(jobs).filter((j) => signsIn(jobs[j])).sort()).toEqual(['deploy-dev', 'deploy-prod', 'diff']);
    });

    it('no checkout keeps the workflow token on disk', () => {
      const checkouts = steps.filter(({ step }) => step.uses?.startsWith('actions/checkout@'));
      expect(checkouts).toHaveLength(Object.keys(jobs).length);
      for (const { job, step } of checkouts) expect(step.with?.['persist-credentials'], job).toBe(false);
    });

    it('the pull-request diff never takes the state lock: its identity can read state but not write it', () => {
      expect(jobs.diff.env?.TF_CLI_ARGS_plan).toBe('-lock=false');
      expect(jobs.diff.env?.ARM_CLIENT_ID).toBe('${{ vars.PLAN_ARM_CLIENT_ID }}');
      expect(jobs.diff.environment).toBeUndefined();
    });

    it('audits dependencies before the tests run', () => {
      const test = commands().filter((c) => c.job === 'test').map((c) => c.command);
      expect(test.indexOf('npm audit signatures')).toBeLessThan(test.indexOf('npm test'));
      expect(test).toContain('npm audit --omit=dev --audit-level=high');
    });
  });
});
