import { Construct } from 'constructs';
import type { TerraformResource } from 'cdktf';
import { ManagementLock } from '@cdktf/provider-azurerm/lib/management-lock';
import { ResourceGroupPolicyAssignment } from '@cdktf/provider-azurerm/lib/resource-group-policy-assignment';
import type { ProtectionConfig } from '../config.js';
import type { StackContext } from './common.js';

/**
 * Built-in policy definitions that deny re-enabling keys, one per service this stack deploys (ids and
 * display names from Azure/azure-policy, built-in-policies/policyDefinitions/...; each takes an `effect`
 * parameter with Audit, Deny or Disabled).
 */
export const DENY_LOCAL_AUTH_POLICIES = {
  'deny-cosmos-local-auth': {
    id: '/providers/Microsoft.Authorization/policyDefinitions/5450f5bd-9c72-4390-a9c4-a7aba4edfdd2',
    displayName: 'Cosmos DB database accounts should have local authentication methods disabled',
  },
  'deny-event-hubs-local-auth': {
    id: '/providers/Microsoft.Authorization/policyDefinitions/5d4e3c65-4873-47be-94f3-6f8b953a3598',
    displayName: 'Azure Event Hub namespaces should have local authentication methods disabled',
  },
  'deny-iot-hub-local-auth': {
    id: '/providers/Microsoft.Authorization/policyDefinitions/672d56b3-23a7-4a3c-a233-b77ed7777518',
    displayName: 'Azure IoT Hub should have local authentication methods disabled for Service Apis',
  },
  'deny-storage-shared-key': {
    id: '/providers/Microsoft.Authorization/policyDefinitions/8c6a50c6-9ffd-4ae7-986f-5fa6111f9a54',
    displayName: 'Storage accounts should prevent shared key access',
  },
  'deny-app-insights-local-auth': {
    id: '/providers/Microsoft.Authorization/policyDefinitions/199d5677-e4d9-4264-9465-efe1839c06bd',
    displayName: 'Application Insights components should block non-Azure Active Directory based ingestion.',
  },
} as const;

export interface EnvironmentProtectionProps extends StackContext {
  readonly config: ProtectionConfig;
  /** Resources that hold the replica's data or feed it: the IoT Hub, the Cosmos DB account, the data account. */
  readonly lockTargets: Record<string, TerraformResource & { readonly id: string }>;
  /** Further resources Terraform must never destroy or replace (e.g. the replica container). */
  readonly keepTargets?: TerraformResource[];
}

/**
 * Guards on an environment (both on in prod):
 *
 * - `CanNotDelete` locks on the resources whose loss loses data: a portal, CLI or API delete (by anyone,
 *   Owner included) fails until someone removes the lock first (Microsoft.Authorization/locks/delete:
 *   Owner or User Access Administrator), so a deletion is always two deliberate steps. A lock does not
 *   block data-plane calls or configuration changes, but it does block deleting child resources through
 *   ARM (e.g. a Cosmos SQL role assignment being replaced): lift it for such a change.
 * - `lifecycle.prevent_destroy` on the same resources (and the replica container): a lock alone would not
 *   stop Terraform, which destroys the lock first when a plan destroys or replaces its target; with
 *   prevent_destroy such a plan fails instead.
 * - Deny policies for local authentication on the stack's resource group: a Contributor who tries to
 *   turn keys back on (or create a keyed resource) is refused by Azure Policy.
 */
export class EnvironmentProtection extends Construct {
  readonly locks: ManagementLock[] = [];
  readonly policies: ResourceGroupPolicyAssignment[] = [];

  constructor(scope: Construct, id: string, props: EnvironmentProtectionProps) {
    super(scope, id);
    const { resourceGroup, config, lockTargets } = props;
    if (config.deleteLocks) {
      for (const resource of [...Object.values(lockTargets), ...(props.keepTargets ?? [])]) {
        resource.addOverride('lifecycle.prevent_destroy', true);
      }
      for (const [target, resource] of Object.entries(lockTargets)) {
        this.locks.push(
          new ManagementLock(this, `lock-${target}`, {
            name: 'twin-replica-do-not-delete',
            scope: resource.id,
            lockLevel: 'CanNotDelete',
            notes: 'Holds or feeds the twin replica. Remove this lock deliberately before deleting (docs/security.md).',
          }),
        );
      }
    }
    if (config.denyLocalAuthPolicies) {
      for (const [name, policy] of Object.entries(DENY_LOCAL_AUTH_POLICIES)) {
        this.policies.push(
          new ResourceGroupPolicyAssignment(this, name, {
            name,
            displayName: `twin-replica: ${policy.displayName}`,
            resourceGroupId: resourceGroup.id,
            policyDefinitionId: policy.id,
            parameters: JSON.stringify({ effect: { value: 'Deny' } }),
            enforce: true,
          }),
        );
      }
    }
  }
}
