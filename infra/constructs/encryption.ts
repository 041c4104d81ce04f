import { Construct } from 'constructs';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import type { CustomerManagedKeysConfig } from '../config.js';
import type { StackContext } from './common.js';

/** Built-in role that lets a service wrap and unwrap its data-encryption key with a vault key (get, wrap, unwrap). */
export const KEY_ENCRYPTION_ROLE = 'Key Vault Crypto Service Encryption User';

export interface CustomerManagedKeysProps extends StackContext {
  readonly config: CustomerManagedKeysConfig;
}

/** What a service needs to encrypt with a customer-managed key. */
export interface ServiceKey {
  /** Versionless key URI (`https://<vault>.vault.azure.net/keys/<name>`): the services follow rotations themselves. */
  readonly keyUri: string;
  readonly identity: UserAssignedIdentity;
  /** The grant the service's create must wait for. */
  readonly grant: RoleAssignment;
}

/**
 * Customer-managed keys (option `customerManagedKeys`): one user-assigned identity that Cosmos DB and the
 * storage accounts use to reach their keys, granted Key Vault Crypto Service Encryption User on each key
 * alone (scope `<vault id>/keys/<name>`), nothing on the vault's secrets or other keys. The keys and the
 * vault are the operator's (config.ts says why); this construct only references them.
 */
export class CustomerManagedKeys extends Construct {
  readonly identity: UserAssignedIdentity;
  readonly cosmos: ServiceKey;
  readonly storage: ServiceKey;

  constructor(scope: Construct, id: string, props: CustomerManagedKeysProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config } = props;
    const vaultName = config.keyVaultId.split('/').pop()!;
    this.identity = new UserAssignedIdentity(this, 'identity', {
      name: `id-${names.resourceGroup.replace(/^rg-/, '')}-cmk`,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      tags,
    });
    const serviceKey = (service: string, keyName: string): ServiceKey => ({
      keyUri: `https://${vaultName}.vault.azure.net/keys/${keyName}`,
      identity: this.identity,
      grant: new RoleAssignment(this, `${service}-key-user`, {
        scope: `${config.keyVaultId}/keys/${keyName}`,
        roleDefinitionName: KEY_ENCRYPTION_ROLE,
        principalId: this.identity.principalId,
        principalType: 'ServicePrincipal',
        description: `${service} encrypts with this customer-managed key`,
      }),
    });
    this.cosmos = serviceKey('cosmos', config.cosmosKeyName);
    this.storage = serviceKey('storage', config.storageKeyName);
  }
}
