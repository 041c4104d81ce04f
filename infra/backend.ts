import { AzurermBackend, LocalBackend, type TerraformStack } from 'cdktf';
import type { EnvironmentConfig } from './config.js';

export type BackendKind = 'azurerm' | 'local';

/** Environment variable that switches every stack to local state for trying things out. */
export const BACKEND_ENV_VAR = 'TWIN_REPLICA_BACKEND';

export function backendKindFromEnv(env: NodeJS.ProcessEnv = process.env): BackendKind {
  const value = env[BACKEND_ENV_VAR] ?? 'azurerm';
  if (value !== 'azurerm' && value !== 'local') {
    throw new Error(`${BACKEND_ENV_VAR} must be "azurerm" or "local", got ${JSON.stringify(value)}`);
  }
  return value;
}

/** State key of a stack in the shared state container: one key per stack. */
export function stateKey(stackName: string): string {
  return `twin-replica/${stackName}.tfstate`;
}

/**
 * Relative to the stack's working directory (cdktf.out/stacks/<stack>), so the state
 * lands in infra/.state/ (git-ignored) and no absolute path of this machine is written.
 */
export function localStatePath(stackName: string): string {
  return `../../../infra/.state/${stackName}.tfstate`;
}

export function configureBackend(stack: TerraformStack, cfg: EnvironmentConfig, kind: BackendKind): void {
  if (kind === 'local') {
    new LocalBackend(stack, { path: localStatePath(cfg.name) });
    return;
  }
  new AzurermBackend(stack, {
    resourceGroupName: cfg.stateBackend.resourceGroupName,
    storageAccountName: cfg.stateBackend.storageAccountName,
    containerName: cfg.stateBackend.containerName,
    key: stateKey(cfg.name),
    // Entra ID for the state blob: no storage account key needed (works with ARM_USE_OIDC in CI).
    useAzureadAuth: true,
    subscriptionId: cfg.subscriptionId,
  });
}
