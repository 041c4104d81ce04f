import { Construct } from 'constructs';
import { CosmosdbAccount } from '@cdktf/provider-azurerm/lib/cosmosdb-account';
import { CosmosdbSqlDatabase } from '@cdktf/provider-azurerm/lib/cosmosdb-sql-database';
import { CosmosdbSqlContainer } from '@cdktf/provider-azurerm/lib/cosmosdb-sql-container';
import type { CosmosConfig } from '../config.js';
import type { StackContext } from './common.js';
import type { ServiceKey } from './encryption.js';

/**
 * Indexing policy of the replica container (docs/query.md, "Indexing", says which query uses which path).
 *
 * Included, because the IoT Hub queries the replica answers filter on them (Microsoft Learn's examples and
 * the live-twin predicate every translated query carries):
 * - `/deleted/?`, `/moduleId/?`: `NOT IS_DEFINED(c.deleted) AND [NOT] IS_DEFINED(c.moduleId)` on every query
 *   (live twins, devices vs modules); `/deviceId/?` (`deviceId IN [...]`, also the partition key);
 * - `/tags/*`, `/properties/desired/*`, `/properties/reported/*` (with their `$version`): arbitrary user
 *   paths such as `tags.location.region`, `properties.reported.telemetryConfig.status` (GROUP BY);
 * - `/status/?`, `/connectionState/?` (`WHERE status = 'enabled' AND connectionState = 'Disconnected'`),
 *   `/version/?`, `/capabilities/iotEdge/?` (edge devices, as `az iot hub device-twin list --edge-enabled`
 *   queries them), `/modelId/?` (IoT Plug and Play models), `/connectionStateUpdatedTime/?`.
 * Excluded: everything else, notably the `$metadata` subtrees (a timestamp per property, as large as the
 * twin, rarely queried: a query on them is served by scanning the candidates the other filters leave) and
 * the `replica` bookkeeping, which would only cost RU on every write. Point reads need no index.
 */
export const REPLICA_INDEXING_POLICY = {
  indexingMode: 'consistent',
  includedPath: [
    '/deviceId/?',
    '/moduleId/?',
    '/version/?',
    '/status/?',
    '/modelId/?',
    '/capabilities/iotEdge/?',
    '/tags/*',
    '/properties/desired/*',
    '/properties/reported/*',
    '/connectionState/?',
    '/connectionStateUpdatedTime/?',
    '/deleted/?',
  ],
  excludedPath: [
    '/*',
    '/properties/desired/"$metadata"/*',
    '/properties/reported/"$metadata"/*',
    '/replica/*',
    '/"_etag"/?',
  ],
} as const;

export interface CosmosReplicaProps extends StackContext {
  readonly config: CosmosConfig;
  /** false in private network mode: only the private endpoint reaches the data plane. @default true */
  readonly publicNetworkAccess?: boolean;
  /** Option `customerManagedKeys`: encrypt with this key, reached with its identity. Set at creation only. */
  readonly customerManagedKey?: ServiceKey;
}

/**
 * Cosmos DB account, the `twin-replica` database and the `twins` container, partitioned
 * by `/deviceId` (hash v2: device ids can be 128 characters, beyond v1's 100-byte hash).
 *
 * TTL is on with no default (`default_ttl = -1`): only items carrying their own `ttl`
 * (deleted-device tombstones) expire.
 *
 * Secure defaults: keys disabled for data access (`local_authentication_disabled`), so
 * only Entra ID identities with a data-plane role read or write; key metadata writes
 * (creating databases/containers through the SDK) off; TLS 1.2; continuous backup
 * (point-in-time restore: 7 days, 30 in prod); public network access off in private mode,
 * with no Azure-services bypass (nothing but the function writes here).
 */
export class CosmosReplica extends Construct {
  readonly account: CosmosdbAccount;
  readonly database: CosmosdbSqlDatabase;
  readonly container: CosmosdbSqlContainer;

  constructor(scope: Construct, id: string, props: CosmosReplicaProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config } = props;
    const serverless = config.throughput.mode === 'serverless';

    this.account = new CosmosdbAccount(this, 'account', {
      name: names.cosmosAccount,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      offerType: 'Standard',
      kind: 'GlobalDocumentDB',
      consistencyPolicy: { consistencyLevel: 'Session' },
      geoLocation: [{ location: resourceGroup.location, failoverPriority: 0, zoneRedundant: config.zoneRedundant }],
      capabilities: serverless ? [{ name: 'EnableServerless' }] : undefined,
      localAuthenticationDisabled: true,
      accessKeyMetadataWritesEnabled: false,
      minimalTlsVersion: 'Tls12',
      publicNetworkAccessEnabled: props.publicNetworkAccess ?? true,
      networkAclBypassForAzureServices: false,
      automaticFailoverEnabled: false,
      backup: { type: 'Continuous', tier: config.backupTier },
      ...(props.customerManagedKey
        ? {
            keyVaultKeyId: props.customerManagedKey.keyUri,
            identity: { type: 'UserAssigned', identityIds: [props.customerManagedKey.identity.id] },
            defaultIdentityType: `UserAssignedIdentity=${props.customerManagedKey.identity.id}`,
            dependsOn: [props.customerManagedKey.grant],
          }
        : {}),
      tags,
    });

    this.database = new CosmosdbSqlDatabase(this, 'database', {
      name: names.cosmosDatabase,
      accountName: this.account.name,
      resourceGroupName: resourceGroup.name,
    });

    this.container = new CosmosdbSqlContainer(this, 'twins', {
      name: names.cosmosContainer,
      accountName: this.account.name,
      databaseName: this.database.name,
      resourceGroupName: resourceGroup.name,
      partitionKeyPaths: ['/deviceId'],
      partitionKeyKind: 'Hash',
      partitionKeyVersion: 2,
      defaultTtl: -1,
      autoscaleSettings:
        config.throughput.mode === 'autoscale' ? { maxThroughput: config.throughput.maxThroughput } : undefined,
      indexingPolicy: {
        indexingMode: REPLICA_INDEXING_POLICY.indexingMode,
        includedPath: REPLICA_INDEXING_POLICY.includedPath.map((path) => ({ path })),
        excludedPath: REPLICA_INDEXING_POLICY.excludedPath.map((path) => ({ path })),
      },
    });
  }
}
