import { Construct } from 'constructs';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import { CosmosdbSqlRoleAssignment } from '@cdktf/provider-azurerm/lib/cosmosdb-sql-role-assignment';
import { CosmosdbSqlRoleDefinition } from '@cdktf/provider-azurerm/lib/cosmosdb-sql-role-definition';
import { RoleDefinition } from '@cdktf/provider-azurerm/lib/role-definition';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import type { ITerraformDependable } from 'cdktf';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { FunctionStorage } from './storage.js';
import type { IotHubRouting } from './iot-hub.js';
import type { Telemetry } from './monitoring.js';
import { COSMOS_DATA_ROLES, ROLES } from './common.js';
import type { SmokeCheckAccess } from '../config.js';

export interface FunctionAccessProps {
  /** The function's user-assigned identity: it exists before the app, so these grants do too. */
  readonly identity: UserAssignedIdentity;
  readonly eventHubs: EventHubs;
  readonly storage: FunctionStorage;
  readonly cosmos: CosmosReplica;
  readonly iotHub: IotHubRouting;
  readonly telemetry: Telemetry;
  /** Subscription of the hub (azurerm_client_config.subscription_id): the twin-reader role is assignable in the hub's resource group. */
  readonly subscriptionId: string;
  /** Waited on before the Cosmos DB data-plane grant: Cosmos DB must find the new principal. */
  readonly principalPropagated: ITerraformDependable;
}

/**
 * What the function identity may do in the replica container: read, query, create and replace items
 * (the engine's point reads, verifyRepair's scans, bulk creates and ETag-guarded replaces). No delete
 * (a deleted twin is a tombstone that expires by TTL, never a delete call), no upsert, no stored
 * procedures, no change feed, no container or database management.
 * Data actions as listed in Microsoft Learn, "Configure role-based access control with Microsoft Entra ID
 * for your Azure Cosmos DB account" (cosmos-db/how-to-setup-rbac: permission model; readMetadata assigned
 * at container scope covers that container's metadata, physical partitions and addresses, which is all
 * the SDK asks for: nothing here lists databases or containers).
 */
export const REPLICA_WRITER_DATA_ACTIONS = [
  'Microsoft.DocumentDB/databaseAccounts/readMetadata',
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery',
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read',
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/create',
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/replace',
] as const;

/**
 * What verifyRepair needs from IoT Hub: the twin query (POST /devices/query) "requires
 * Microsoft.Devices/IotHubs/twins/read" (Microsoft Learn, "Control access to IoT Hub by using Microsoft
 * Entra ID", permissions table). IoT Hub Data Reader would add devices/read (identities), jobs/read,
 * statistics/read and configurations/read.
 */
export const TWIN_READER_DATA_ACTIONS = ['Microsoft.Devices/IotHubs/twins/read'] as const;

/**
 * Every grant the function identity needs, each on the narrowest scope that works.
 * The function app depends on `grants`, so its first start already has access.
 */
export class FunctionAccess extends Construct {
  readonly grants: ITerraformDependable[] = [];
  readonly cosmosReplicaWriterRole: CosmosdbSqlRoleDefinition;
  readonly cosmosReplicaWriter: CosmosdbSqlRoleAssignment;
  readonly twinReaderRole: RoleDefinition;

  constructor(scope: Construct, id: string, props: FunctionAccessProps) {
    super(scope, id);
    const { identity, eventHubs, storage, cosmos, iotHub, telemetry } = props;
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
    // Account scope on the host account: the Functions host creates its own containers there
    // (azure-webjobs-hosts, azure-webjobs-eventhub) and holds blob leases; it holds no device data.
    grant('host-storage-owner', ROLES.storageBlobDataOwner, storage.host.id, 'Functions host storage (checkpoints, leases) and Flex deployment container');
    // Container scope on the data account: nothing else in that account is the function's business.
    grant('deadletters-contributor', ROLES.storageBlobDataContributor, storage.deadLetterContainer.resourceManagerId, 'syncTwins writes dead letters');
    grant('reports-contributor', ROLES.storageBlobDataContributor, storage.reportsContainer.resourceManagerId, 'verifyRepair writes reports');
    grant('app-insights-publisher', ROLES.monitoringMetricsPublisher, telemetry.appInsights.id, 'Entra ID telemetry ingestion');

    // A custom role's assignable scopes are a resource group, subscription or management group (not a
    // single resource), so it is assignable in the hub's resource group and assigned on the hub alone.
    const hubResourceGroup = `/subscriptions/${props.subscriptionId}/resourceGroups/${iotHub.hub.resourceGroupName}`;
    this.twinReaderRole = new RoleDefinition(this, 'twin-reader-role', {
      // Role names are unique per tenant: the hub name makes it unique per environment.
      // Attach mode: several environments may attach to one hub, so the environment's endpoint name is added.
      name: `twin-replica twin reader (${iotHub.hub.name}${iotHub.attachedNames ? `, ${iotHub.attachedNames.endpoint}` : ''})`,
      scope: hubResourceGroup,
      assignableScopes: [hubResourceGroup],
      description: 'Reads device and module twins (twin query) and nothing else: no identities, no writes, no keys.',
      permissions: [{ actions: [], dataActions: [...TWIN_READER_DATA_ACTIONS] }],
    });
    const twinReader = new RoleAssignment(this, 'iot-hub-twin-reader', {
      scope: iotHub.hub.id,
      roleDefinitionId: this.twinReaderRole.roleDefinitionResourceId,
      principalId: identity.principalId,
      principalType: 'ServicePrincipal',
      description: 'verifyRepair reads twins with the twin query',
    });
    this.grants.push(twinReader);

    const containerScope = `${cosmos.account.id}/dbs/${cosmos.database.name}/colls/${cosmos.container.name}`;
    this.cosmosReplicaWriterRole = new CosmosdbSqlRoleDefinition(this, 'cosmos-replica-writer-role', {
      name: 'twin-replica replica writer',
      resourceGroupName: cosmos.account.resourceGroupName,
      accountName: cosmos.account.name,
      type: 'CustomRole',
      assignableScopes: [containerScope],
      permissions: [{ dataActions: [...REPLICA_WRITER_DATA_ACTIONS] }],
    });
    this.cosmosReplicaWriter = new CosmosdbSqlRoleAssignment(this, 'cosmos-replica-writer', {
      resourceGroupName: cosmos.account.resourceGroupName,
      accountName: cosmos.account.name,
      roleDefinitionId: this.cosmosReplicaWriterRole.id,
      principalId: identity.principalId,
      scope: containerScope,
      dependsOn: [props.principalPropagated],
    });
    this.grants.push(this.cosmosReplicaWriter);
  }
}

export interface SmokeCheckAccessProps {
  /** From the environment's configuration (`smokeCheckAccess`), never from the client running Terraform. */
  readonly access: SmokeCheckAccess;
  readonly cosmos: CosmosReplica;
  readonly iotHub: IotHubRouting;
}

/**
 * What `npm run smoke` needs, granted to the identity the configuration names: create and
 * delete a smoke device and update its twin (IoT Hub data plane), read the replica (Cosmos DB
 * Built-in Data Reader). The object id is configuration, not `azurerm_client_config.object_id`:
 * `principal_id` forces replacement, and a plan run by another identity (the pull-request
 * diff) would replace every grant. No grant when `smokeCheckAccess` is unset.
 */
export class SmokeCheckGrants extends Construct {
  constructor(scope: Construct, id: string, props: SmokeCheckAccessProps) {
    super(scope, id);
    const { access, cosmos, iotHub } = props;
    for (const [grantId, role, description] of [
      ['iot-hub-registry-contributor', ROLES.iotHubRegistryContributor, 'smoke check: create/delete its device'],
      ['iot-hub-twin-contributor', ROLES.iotHubTwinContributor, 'smoke check: update a twin tag'],
    ] as const) {
      new RoleAssignment(this, grantId, {
        scope: iotHub.hub.id,
        roleDefinitionName: role,
        principalId: access.principalId,
        principalType: access.principalType,
        description,
      });
    }
    new CosmosdbSqlRoleAssignment(this, 'cosmos-data-reader', {
      resourceGroupName: cosmos.account.resourceGroupName,
      accountName: cosmos.account.name,
      roleDefinitionId: `${cosmos.account.id}/sqlRoleDefinitions/${COSMOS_DATA_ROLES.reader}`,
      principalId: access.principalId,
      scope: `${cosmos.account.id}/dbs/${cosmos.database.name}`,
    });
  }
}
