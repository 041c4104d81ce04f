import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { environments } from '../../infra/config';

const text = readFileSync('.github/workflows/deploy.yml', 'utf8');
const workflow = parse(text);
const scripts: Record<string, string> = JSON.parse(readFileSync('package.json', 'utf8')).scripts;
const stacks = environments.map((e) => e.name);

interface Step {
  run?: string;
  uses?: string;
  with?: Record<string, unknown>;
}
interface Job {
  if?: string;
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
    expect(workflow.permissions).toEqual({ contents: 'read', 'id-token': 'write' });
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

  it('every npm script it runs exists in package.json', () => {
    const used = commands().flatMap(({ command }) =>
      [...command.matchAll(/npm (?:run ([\w:-]+)|(test)\b)/g)].map((m) => m[1] ?? m[2]),
    );
    expect(used).toEqual(expect.arrayContaining(['test', 'synth', 'smoke']));
    for (const script of used) expect(scripts, script).toHaveProperty(script);
  });

  it('every stack it diffs, deploys or smoke-tests exists', () => {
    const named = commands().flatMap(({ command }) =>
      [...command.matchAll(/cdktf-cli@\S+ (?:diff|deploy) (\w+)|npm run smoke -- (\w+)/g)].map((m) => m[1] ?? m[2]),
    );
    expect(new Set(named)).toEqual(new Set(stacks));
    for (const stack of named) expect(stacks).toContain(stack);
  });

  it('pull requests: test + synth, then cdktf diff for every stack; no deploy', () => {
    const test = commands().filter((c) => c.job === 'test').map((c) => c.command);
    expect(test).toEqual(['npm ci', 'npm test', 'npm run synth']);
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
      expect(runs.slice(-2), job).toEqual([`npx --yes cdktf-cli@\${{ env.CDKTF_CLI_VERSION }} deploy ${stack} --auto-approve`, `npm run smoke -- ${stack}`]);
      expect(jobs[job].env).toMatchObject({ ARM_CLIENT_ID: '${{ vars.ARM_CLIENT_ID }}' });
    }
  });

  it('pins the tools it installs', () => {
    expect(workflow.env.CDKTF_CLI_VERSION).toBe('0.21.0');
    expect(workflow.env.TERRAFORM_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    expect(workflow.env.NODE_VERSION).toBe('22');
  });
});
