/**
 * `npm run deploy|diff|destroy -- <env> [cdktf options]`: the project's pinned CDKTF CLI
 * (devDependency `cdktf-cli`, so a fresh clone needs no global install), after the checks
 * that would otherwise fail minutes into a run. CI runs the same commands.
 *
 * - azurerm 4.x plans nothing without a subscription: `subscriptionId` in infra/config.ts or
 *   ARM_SUBSCRIPTION_ID (an `az login` alone is not enough).
 * - `deploy` ships the code through the Azure CLI (infra/scripts/function-app.sh): `az` must be
 *   on PATH.
 *
 * Exit codes: cdktf's own, or 2 when a check fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { environments, findEnvironment } from './config.js';

export const COMMANDS = ['deploy', 'diff', 'destroy'] as const;
export type Command = (typeof COMMANDS)[number];

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CDKTF_BIN = path.join(PROJECT_ROOT, 'node_modules', '.bin', 'cdktf');

export interface DeployCheckInput {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Whether an executable is on PATH. */
  readonly onPath: (name: string) => boolean;
}

/** The cdktf argument list to run, or the problems that stop it (each a sentence with its fix). */
export function planCdktfRun(input: DeployCheckInput): { args: string[] } | { problems: string[] } {
  const known = environments.map((e) => e.name).join(', ');
  const usage = `usage: npm run ${COMMANDS.join('|')} -- <env> [cdktf options], <env> one of: ${known}`;
  if (!(COMMANDS as readonly string[]).includes(input.command)) return { problems: [usage] };
  const [envName, ...rest] = input.args;
  if (!envName || envName.startsWith('-')) return { problems: [`missing <env>; ${usage}`] };
  let subscriptionId: string | undefined;
  try {
    subscriptionId = findEnvironment(envName).subscriptionId;
  } catch (err) {
    return { problems: [(err as Error).message] };
  }
  const problems: string[] = [];
  if (!subscriptionId && !input.env.ARM_SUBSCRIPTION_ID) {
    problems.push(
      `the azurerm provider needs a subscription and "${envName}" names none: ` +
        'export ARM_SUBSCRIPTION_ID=$(az account show --query id -o tsv), ' +
        `or set subscriptionId for "${envName}" in infra/config.ts (an az login alone is not enough)`,
    );
  }
  if (input.command === 'deploy' && !input.onPath('az')) {
    problems.push('deploy ships the function code with the Azure CLI: install it and run az login (https://aka.ms/azcli)');
  }
  return problems.length > 0 ? { problems } : { args: [input.command, envName, ...rest] };
}

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, name)));
}

export function main(argv: readonly string[]): number {
  const [command = '', ...args] = argv;
  const plan = planCdktfRun({ command, args, env: process.env, onPath });
  if ('problems' in plan) {
    for (const p of plan.problems) console.error(`${command || 'deploy'}: ${p}`);
    return 2;
  }
  const run = spawnSync(CDKTF_BIN, plan.args, {
    cwd: PROJECT_ROOT,
    stdio: 'inherit',
    env: { CHECKPOINT_DISABLE: '1', ...process.env },
  });
  if (run.error) {
    console.error(`${command}: could not start ${CDKTF_BIN} (${run.error.message}); run npm ci first`);
    return 2;
  }
  return run.status ?? 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
