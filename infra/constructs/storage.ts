import { Construct } from 'constructs';
import { StorageAccount, type StorageAccountConfig } from '@cdktf/provider-azurerm/lib/storage-account';
import { StorageContainer } from '@cdktf/provider-azurerm/lib/storage-container';
import { StorageManagementPolicy } from '@cdktf/provider-azurerm/lib/storage-management-policy';
import type { BlobRetentionConfig, StorageConfig } from '../config.js';
import { REDRIVEN_PREFIX } from '../../tools/redrive.js';
import type { StackContext } from './common.js';
import type { ServiceKey } from './encryption.js';

export interface FunctionStorageProps extends StackContext {
  readonly config: StorageConfig;
  /** false in private network mode: both accounts are reached through private endpoints only. @default true */
  readonly publicNetworkAccess?: boolean;
  /** Option `customerManagedKeys`: both accounts encrypt blobs with this key, reached with its identity. */
  readonly customerManagedKey?: ServiceKey;
}

/**
 * Lifecycle rules of the data account: raw device data is not kept forever. Prefixes are
 * `<container>/<blob prefix>`; a blob matched by two delete rules goes at the earlier date, which is
 * why config validation keeps redrivenDays <= deadLetterDays (the dead-letter rule also covers redriven/).
 */
export function retentionRules(names: { deadLetterContainer: string; reportsContainer: string }, retention: BlobRetentionConfig) {
  const deleteAfter = (name: string, prefix: string, days: number) => ({
    name,
    enabled: true,
    filters: { prefixMatch: [prefix], blobTypes: ['blockBlob'] },
    actions: { baseBlob: { deleteAfterDaysSinceModificationGreaterThan: days } },
  });
  return [
    deleteAfter('deadletters', `${names.deadLetterContainer}/`, retention.deadLetterDays),
    deleteAfter('redriven', `${names.deadLetterContainer}/${REDRIVEN_PREFIX}`, retention.redrivenDays),
    deleteAfter('reports', `${names.reportsContainer}/`, retention.reportDays),
    {
      // What an overwrite or a delete leaves behind while versioning is on.
      name: 'previous-versions',
      enabled: true,
      filters: { blobTypes: ['blockBlob'] },
      actions: { version: { deleteAfterDaysSinceCreation: retention.previousVersionDays } },
    },
  ];
}

/**
 * Two storage accounts, both without shared keys:
 *
 * - host (`st<prefix><env>fn`): the Functions host (AzureWebJobsStorage: Event Hubs
 *   checkpoints and ownership blobs, host locks) and the Flex Consumption deployment
 *   container `app-package`.
 * - data (`st<prefix><env>data`): `deadletters` and `reports`. Kept apart from the host
 *   account so the function identity's broad "Blob Data Owner" on the runtime account
 *   does not extend to business data, so dead letters get versioning and soft delete of
 *   their own, and so a clean-up of host state (e.g. resetting checkpoints) never
 *   touches dead letters.
 *
 * Secure defaults: shared key access off (Entra ID only; containers are created through
 * the management plane with `storage_account_id`), OAuth default in the portal, TLS 1.2,
 * HTTPS only, no public blob access, no cross-tenant replication, no local users/SFTP.
 */
export class FunctionStorage extends Construct {
  readonly host: StorageAccount;
  readonly deploymentContainer: StorageContainer;
  readonly data: StorageAccount;
  readonly deadLetterContainer: StorageContainer;
  readonly reportsContainer: StorageContainer;
  readonly retentionPolicy: StorageManagementPolicy;

  constructor(scope: Construct, id: string, props: FunctionStorageProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config } = props;
    const common: Omit<StorageAccountConfig, 'name'> = {
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      accountKind: 'StorageV2',
      accountTier: 'Standard',
      accountReplicationType: config.replication,
      sharedAccessKeyEnabled: false,
      defaultToOauthAuthentication: true,
      minTlsVersion: 'TLS1_2',
      httpsTrafficOnlyEnabled: true,
      allowNestedItemsToBePublic: false,
      crossTenantReplicationEnabled: false,
      localUserEnabled: false,
      sftpEnabled: false,
      publicNetworkAccessEnabled: props.publicNetworkAccess ?? true,
      tags,
      ...(props.customerManagedKey
        ? {
            identity: { type: 'UserAssigned', identityIds: [props.customerManagedKey.identity.id] },
            customerManagedKey: {
              keyVaultKeyId: props.customerManagedKey.keyUri,
              userAssignedIdentityId: props.customerManagedKey.identity.id,
            },
            dependsOn: [props.customerManagedKey.grant],
          }
        : {}),
    };

    this.host = new StorageAccount(this, 'host', { ...common, name: names.hostStorage });
    this.deploymentContainer = new StorageContainer(this, 'app-package', {
      name: names.deploymentContainer,
      storageAccountId: this.host.id,
      containerAccessType: 'private',
    });

    this.data = new StorageAccount(this, 'data', {
      ...common,
      name: names.dataStorage,
      blobProperties: {
        versioningEnabled: true,
        deleteRetentionPolicy: { days: config.blobSoftDeleteDays },
        containerDeleteRetentionPolicy: { days: config.blobSoftDeleteDays },
      },
    });
    this.deadLetterContainer = new StorageContainer(this, 'deadletters', {
      name: names.deadLetterContainer,
      storageAccountId: this.data.id,
      containerAccessType: 'private',
    });
    this.reportsContainer = new StorageContainer(this, 'reports', {
      name: names.reportsContainer,
      storageAccountId: this.data.id,
      containerAccessType: 'private',
    });

    this.retentionPolicy = new StorageManagementPolicy(this, 'retention', {
      storageAccountId: this.data.id,
      rule: retentionRules(names, config.retention),
    });
  }
}
