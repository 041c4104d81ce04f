import { Construct } from 'constructs';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import { CosmosdbSqlRoleAssignment } from '@cdktf/provider-azurerm/lib/cosmosdb-sql-role-assignment';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import type { ITerraformDependable } from 'cdktf';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { FunctionStorage } from './storage.js';
import type { SecretsVault } from './key-vault.js';
import type { IotHubRouting } from './iot-hub.js';
import type { Telemetry } from './monitoring.js';
import { COSMOS_DATA_ROLES, ROLES } from './common.js';

export interface FunctionAccessProps {
  /** The function's user-assigned identity: it exists before the app, so these grants do too. */
  readonly identity: UserAssignedIdentity;
  readonly eventHubs: EventHubs;
  readonly storage: FunctionStorage;
  readonly cosmos: CosmosReplica;
  readonly vault: SecretsVault;
  readonly iotHub: IotHubRouting;
  readonly telemetry: Telemetry;
}

/**
 * Every grant the function identity needs, each on the narrowest scope that works.
 * The function app depends on `grants`, so its first start already has access.
 */
export class FunctionAccess extends Construct {
  readonly grants: ITerraformDependable[] = [];
  readonly cosmosDataContributor: CosmosdbSqlRoleAssignment;

  constructor(scope: Construct, id: string, props: FunctionAccessProps) {
    super(scope, id);
    const { identity, eventHubs, storage, cosmos, vault, iotHub, telemetry } = props;
    const grant = (grantId: string, role: string, resourceScope: string, description: string) => {
      const assignment = new RoleAssignment(this, grantId, {
        scope: resourceScope,
        roleDefinitionName: role,
        principalId: identity.principalId,
        principalType: 'ServicePrincipal',
        description,
      });
      this.grants.push(assignment);
      return assignment;
    };

    grant('event-hubs-receiver', ROLES.eventHubsDataReceiver, eventHubs.hub.id, 'syncTwins Event Hubs trigger');
    grant('host-storage-owner', ROLES.storageBlobDataOwner, storage.host.id, 'Functions host storage (checkpoints, leases) and Flex deployment container');
    grant('data-storage-contributor', ROLES.storageBlobDataContributor, storage.data.id, 'dead letters and verify reports');
    grant('key-vault-secrets-user', ROLES.keyVaultSecretsUser, vault.vault.id, 'read secrets, should any be added');
    grant('iot-hub-data-reader', ROLES.iotHubDataReader, iotHub.hub.id, 'verifyRepair only reads twins (twin query): least privilege');
    grant('app-insights-publisher', ROLES.monitoringMetricsPublisher, telemetry.appInsights.id, 'Entra ID telemetry ingestion');

    this.cosmosDataContributor = new CosmosdbSqlRoleAssignment(this, 'cosmos-data-contributor', {
      resourceGroupName: cosmos.account.resourceGroupName,
      accountName: cosmos.account.name,
      roleDefinitionId: `${cosmos.account.id}/sqlRoleDefinitions/${COSMOS_DATA_ROLES.contributor}`,
      principalId: identity.principalId,
      scope: `${cosmos.account.id}/dbs/${cosmos.database.name}`,
    });
    this.grants.push(this.cosmosDataContributor);
  }
}

export interface DeployerAccessProps {
  /** Object id of whoever runs `cdktf deploy` (azurerm_client_config.object_id). */
  readonly principalId: string;
  readonly cosmos: CosmosReplica;
  readonly iotHub: IotHubRouting;
}

/**
 * What `npm run smoke` needs, granted to the deploying identity: create and delete a
 * smoke device and update its twin (IoT Hub data plane), read the replica (Cosmos DB
 * Built-in Data Reader). Off with `grantDeployerSmokeAccess: false`.
 */
export class DeployerSmokeAccess extends Construct {
  constructor(scope: Construct, id: string, props: DeployerAccessProps) {
    super(scope, id);
    const { principalId, cosmos, iotHub } = props;
    new RoleAssignment(this, 'iot-hub-registry-contributor', {
      scope: iotHub.hub.id,
      roleDefinitionName: ROLES.iotHubRegistryContributor,
      principalId,
      description: 'smoke check: create/delete its device',
    });
    new RoleAssignment(this, 'iot-hub-twin-contributor', {
      scope: iotHub.hub.id,
      roleDefinitionName: ROLES.iotHubTwinContributor,
      principalId,
      description: 'smoke check: update a twin tag',
    });
    new CosmosdbSqlRoleAssignment(this, 'cosmos-data-reader', {
      resourceGroupName: cosmos.account.resourceGroupName,
      accountName: cosmos.account.name,
      roleDefinitionId: `${cosmos.account.id}/sqlRoleDefinitions/${COSMOS_DATA_ROLES.reader}`,
      principalId,
      scope: `${cosmos.account.id}/dbs/${cosmos.database.name}`,
    });
  }
}
