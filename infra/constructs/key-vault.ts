import { Construct } from 'constructs';
import { KeyVault } from '@cdktf/provider-azurerm/lib/key-vault';
import type { KeyVaultConfig } from '../config.js';
import type { StackContext } from './common.js';

export interface SecretsVaultProps extends StackContext {
  readonly config: KeyVaultConfig;
  readonly tenantId: string;
}

/**
 * Key Vault for any secret the system still needs. Today it holds none: every
 * connection (Event Hubs, Cosmos DB, Storage, IoT Hub, Application Insights ingestion)
 * uses the function's managed identity. The vault exists so a future secret has a
 * home with the right access model already in place.
 *
 * Secure defaults: Azure RBAC authorization (no access policies), soft delete, purge
 * protection where configured (prod), public network access allowed because the
 * function app has no VNet integration in this design.
 */
export class SecretsVault extends Construct {
  readonly vault: KeyVault;

  constructor(scope: Construct, id: string, props: SecretsVaultProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config, tenantId } = props;
    this.vault = new KeyVault(this, 'vault', {
      name: names.keyVault,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      tenantId,
      skuName: 'standard',
      rbacAuthorizationEnabled: true,
      softDeleteRetentionDays: config.softDeleteRetentionDays,
      purgeProtectionEnabled: config.purgeProtection,
      publicNetworkAccessEnabled: true,
      enabledForDeployment: false,
      enabledForDiskEncryption: false,
      enabledForTemplateDeployment: false,
      tags,
    });
  }
}
