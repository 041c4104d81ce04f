import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CDKTF_BIN, planCdktfRun } from '../../infra/deploy';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const withAz = (name: string) => name === 'az';
const noAz = () => false;

describe('npm run deploy|diff|destroy: one command from a fresh clone', () => {
  it('runs the CDKTF CLI the project pins, not a global install', () => {
    expect(pkg.devDependencies['cdktf-cli']).toBe('0.21.0');
    expect(pkg.scripts).toMatchObject({
      deploy: 'tsx infra/deploy.ts deploy',
      diff: 'tsx infra/deploy.ts diff',
      destroy: 'tsx infra/deploy.ts destroy',
    });
    expect(existsSync(CDKTF_BIN)).toBe(true);
    const version = spawnSync(CDKTF_BIN, ['--version'], { encoding: 'utf8', env: { ...process.env, CHECKPOINT_DISABLE: '1' } });
    expect(version.stdout.trim().split('\n')[0]).toBe('0.21.0');
  });

  it('passes the environment and any cdktf options through', () => {
    expect(planCdktfRun({ command: 'deploy', args: ['dev', '--auto-approve'], env: { ARM_SUBSCRIPTION_ID: 'x' }, onPath: withAz })).toEqual({
      args: ['deploy', 'dev', '--auto-approve'],
    });
    expect(planCdktfRun({ command: 'destroy', args: ['prod'], env: { ARM_SUBSCRIPTION_ID: 'x' }, onPath: noAz })).toEqual({ args: ['destroy', 'prod'] });
  });

  it('finding 10: stops before cdktf when no subscription is named, saying both ways to name it', () => {
    const plan = planCdktfRun({ command: 'diff', args: ['dev'], env: {}, onPath: withAz });
    expect(plan).toEqual({
      problems: [
        'the azurerm provider needs a subscription and "dev" names none: export ARM_SUBSCRIPTION_ID=$(az account show --query id -o tsv), ' +
          'or set subscriptionId for "dev" in infra/config.ts (an az login alone is not enough)',
      ],
    });
  });

  it('deploy needs the Azure CLI (the code is shipped with it); diff and destroy do not', () => {
    const env = { ARM_SUBSCRIPTION_ID: 'x' };
    expect(planCdktfRun({ command: 'deploy', args: ['dev'], env, onPath: noAz })).toEqual({
      problems: ['deploy ships the function code with the Azure CLI: install it and run az login (https://aka.ms/azcli)'],
    });
    expect(planCdktfRun({ command: 'diff', args: ['dev'], env, onPath: noAz })).toEqual({ args: ['diff', 'dev'] });
  });

  it('rejects a missing or unknown environment with the known ones', () => {
    const env = { ARM_SUBSCRIPTION_ID: 'x' };
    expect(planCdktfRun({ command: 'deploy', args: [], env, onPath: withAz })).toEqual({
      problems: ['missing <env>; usage: npm run deploy|diff|destroy -- <env> [cdktf options], <env> one of: dev, prod, existing'],
    });
    expect(planCdktfRun({ command: 'deploy', args: ['staging'], env, onPath: withAz })).toEqual({
      problems: ['Unknown environment "staging"; known: dev, prod, existing'],
    });
  });

  it('exits 2 with the message before starting cdktf (as npm runs it)', () => {
    const env = { ...process.env, ARM_SUBSCRIPTION_ID: '' };
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'infra/deploy.ts', 'diff', 'dev'], { encoding: 'utf8', env });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('diff: the azurerm provider needs a subscription and "dev" names none');
  });
});
