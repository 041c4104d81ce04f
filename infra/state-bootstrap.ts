/**
 * `npm run state:bootstrap -- <env> --subscription <id> --deployer <object id> [--pr-reader <object id>] [--run]`
 *
 * Creates (or prints the Azure CLI commands that create) one environment's Terraform state account, the
 * account config.ts names for it (stateBackend), before the first `cdktf deploy` of that environment:
 *
 * - its own storage account per environment, so a grant on dev state never reaches prod state;
 * - blob versioning plus blob and container soft delete (30 days): an overwritten or deleted state
 *   can be restored; shared keys off (the backend uses Entra ID), TLS 1.2, no public blobs;
 * - the environment's deployer: Storage Blob Data Contributor on the `tfstate` container only (it
 *   reads, writes and leases the state blob); nothing on any other environment's account;
 * - the pull-request identity: Storage Blob Data Reader on the container (a plan reads state; the
 *   workflow plans with -lock=false, so it never needs a lease, which is a write);
 * - a CanNotDelete lock on the account.
 *
 * Run it as someone who may create resource groups and assign roles (Owner or User Access
 * Administrator + Contributor on the subscription); the identities it grants never get those rights.
 * Without --run it only prints the commands, for review.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { findEnvironment, GUID, type EnvironmentConfig } from './config.js';

/** Soft-delete window of state blobs and containers, and how long versions of state are worth keeping. */
export const STATE_SOFT_DELETE_DAYS = 30;

export interface StateBootstrapOptions {
  readonly subscriptionId: string;
  /** Object id of the service principal that runs `cdktf deploy <env>`. */
  readonly deployerObjectId: string;
  /** Object id of the pull-request (plan) identity; it may read every environment's state. */
  readonly prReaderObjectId?: string;
}


/** The az commands, as argument vectors (never a shell string): the values are not re-parsed by a shell. */
export function stateBootstrapCommands(env: EnvironmentConfig, opts: StateBootstrapOptions): string[][] {
  for (const [name, value] of Object.entries(opts) as [string, string | undefined][]) {
    if (value !== undefined && !GUID.test(value)) throw new Error(`${name} must be a GUID, got ${JSON.stringify(value)}`);
  }
  const { resourceGroupName: rg, storageAccountName: account, containerName: container } = env.stateBackend;
  const sub = ['--subscription', opts.subscriptionId];
  const accountId = `/subscriptions/${opts.subscriptionId}/resourceGroups/${rg}/providers/Microsoft.Storage/storageAccounts/${account}`;
  const containerScope = `${accountId}/blobServices/default/containers/${container}`;
  const grant = (objectId: string, role: string) => [
    'az', 'role', 'assignment', 'create', ...sub,
    '--assignee-object-id', objectId, '--assignee-principal-type', 'ServicePrincipal',
    '--role', role, '--scope', containerScope,
  ];
  const commands = [
    ['az', 'group', 'create', ...sub, '--name', rg, '--location', env.location, '--tags', 'app=twin-replica', 'purpose=terraform-state'],
    [
      'az', 'storage', 'account', 'create', ...sub, '--resource-group', rg, '--name', account, '--location', env.location,
      '--kind', 'StorageV2', '--sku', 'Standard_ZRS', '--min-tls-version', 'TLS1_2', '--https-only', 'true',
      '--allow-blob-public-access', 'false', '--allow-shared-key-access', 'false',
      '--tags', 'app=twin-replica', `env=${env.name}`, 'purpose=terraform-state',
    ],
    [
      'az', 'storage', 'account', 'blob-service-properties', 'update', ...sub, '--resource-group', rg, '--account-name', account,
      '--enable-versioning', 'true',
      '--enable-delete-retention', 'true', '--delete-retention-days', String(STATE_SOFT_DELETE_DAYS),
      '--enable-container-delete-retention', 'true', '--container-delete-retention-days', String(STATE_SOFT_DELETE_DAYS),
      // Soft-deleted state cannot be purged early, not even by someone with blob delete rights.
      '--set', 'deleteRetentionPolicy.allowPermanentDelete=false',
    ],
    // Through ARM (container-rm), like the stack's own containers: shared keys are off.
    ['az', 'storage', 'container-rm', 'create', ...sub, '--resource-group', rg, '--storage-account', account, '--name', container, '--public-access', 'off'],
    grant(opts.deployerObjectId, 'Storage Blob Data Contributor'),
    ...(opts.prReaderObjectId ? [grant(opts.prReaderObjectId, 'Storage Blob Data Reader')] : []),
    [
      'az', 'lock', 'create', ...sub, '--name', 'tfstate-do-not-delete', '--lock-type', 'CanNotDelete',
      '--resource-group', rg, '--resource', account, '--resource-type', 'Microsoft.Storage/storageAccounts',
      '--notes', `Terraform state of twin-replica ${env.name}`,
    ],
  ];
  return commands;
}

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`);

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const program = new Command('state-bootstrap')
    .argument('<env>', 'environment from infra/config.ts')
    .requiredOption('--subscription <id>', 'subscription of the state account')
    .requiredOption('--deployer <objectId>', "object id of this environment's deploying service principal")
    .option('--pr-reader <objectId>', 'object id of the pull-request (plan) identity: read-only on state')
    .option('--run', 'run the commands (default: print them)')
    .action((envName: string, o: { subscription: string; deployer: string; prReader?: string; run?: boolean }) => {
      const commands = stateBootstrapCommands(findEnvironment(envName), {
        subscriptionId: o.subscription,
        deployerObjectId: o.deployer,
        prReaderObjectId: o.prReader,
      });
      for (const [cmd, ...args] of commands) {
        console.log([cmd, ...args].map(quote).join(' '));
        if (o.run) execFileSync(cmd, args, { stdio: 'inherit' });
      }
    });
  program.parse();
}
