import { dependable, TerraformOutput, TerraformStack } from 'cdktf';
import type { Construct } from 'constructs';
import { AzurermProvider } from '@cdktf/provider-azurerm/lib/provider';
import { DataAzurermClientConfig } from '@cdktf/provider-azurerm/lib/data-azurerm-client-config';
import { ResourceGroup } from '@cdktf/provider-azurerm/lib/resource-group';
import { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import { InvalidConfigError, iotHubMinTlsVersion, isAttached, tombstoneTtlSeconds, validateConfig, type EnvironmentConfig } from './config.js';
import { namingProblems, resourceNames, type ResourceNames } from './naming.js';
import { configureBackend, type BackendKind } from './backend.js';
import type { StackContext } from './constructs/common.js';
import { EventHubs } from './constructs/event-hubs.js';
import { IotHubRouting } from './constructs/iot-hub.js';
import { CosmosReplica } from './constructs/cosmos.js';
import { FunctionStorage } from './constructs/storage.js';
import { Alerts, Telemetry } from './constructs/monitoring.js';
import { FunctionAccess, SmokeCheckGrants } from './constructs/access.js';
import { FunctionCode, SyncFunctionApp } from './constructs/function-app.js';
import { PrivateNetwork } from './constructs/network.js';
import { AuditDiagnostics } from './constructs/diagnostics.js';
import { EnvironmentProtection } from './constructs/protection.js';
import { CustomerManagedKeys } from './constructs/encryption.js';
import { RolePropagation } from './constructs/propagation.js';
import { TimeProvider } from '@cdktf/provider-time/lib/provider';

export interface TwinReplicaStackProps {
  readonly config: EnvironmentConfig;
  /** Folder produced by buildFunctionsPackage; zipped and deployed by this stack. */
  readonly functionsPackageDir: string;
  /** @default 'azurerm' */
  readonly backend?: BackendKind;
}

/** One environment of twin-replica: everything from IoT Hub routing to the deployed functions. */
export class TwinReplicaStack extends TerraformStack {
  readonly names: ResourceNames;
  readonly eventHubs: EventHubs;
  readonly iotHub: IotHubRouting;
  readonly cosmos: CosmosReplica;
  readonly storage: FunctionStorage;
  readonly telemetry: Telemetry;
  readonly alerts: Alerts;
  readonly functionApp: SyncFunctionApp;
  readonly functionCode: FunctionCode;
  /** Only in private network mode. */
  readonly network?: PrivateNetwork;
  readonly audit: AuditDiagnostics;
  readonly protection: EnvironmentProtection;

  constructor(scope: Construct, props: TwinReplicaStackProps) {
    const config = validateConfig(props.config);
    const names = resourceNames(config);
    const nameProblems = namingProblems(names);
    if (nameProblems.length > 0) throw new InvalidConfigError(config.name, nameProblems);
    super(scope, config.name);
    this.names = names;

    configureBackend(this, config, props.backend ?? 'azurerm');
    const isPrivate = config.network.mode === 'private';
    new AzurermProvider(this, 'azurerm', {
      // When unset, ARM_SUBSCRIPTION_ID must name it (infra/deploy.ts checks before cdktf runs).
      subscriptionId: config.subscriptionId,
      // Shared keys are off on every storage account: data-plane calls use Entra ID.
      storageUseAzuread: true,
      features: [
        {
          // Not `disable_generated_rule = true`: with it the provider polls for the "Failure
          // Anomalies" rule until the 60-minute create timeout before recording the component
          // (application_insights_resource.go at v4.55.0; provider issue #18375).
          applicationInsights: [{ disableGeneratedRule: false }],
          // The resource group belongs to this stack. Azure adds resources Terraform does not
          // know (the smart-detection rule and action group of Application Insights); with the
          // 4.x default (true) they would make `cdktf destroy` fail (resource_group_resource.go).
          resourceGroup: [{ preventDeletionIfContainsResources: false }],
          // Private mode: the storage data plane is unreachable from the deploying machine, so the provider
          // must not wait for it or read queue/static-website properties there (storage_account_resource.go at
          // v4.55.0 skips that block when data_plane_available is false; this stack uses neither property).
          ...(isPrivate ? { storage: [{ dataPlaneAvailable: false }] } : {}),
        },
      ],
    });
    new TimeProvider(this, 'time');
    const client = new DataAzurermClientConfig(this, 'current', {});
    // Attach mode, hub in another subscription: its endpoint and routes go through a provider aliased to
    // that subscription (they read and write the hub in their provider's subscription).
    const hubProvider =
      isAttached(config.iotHub) && config.iotHub.subscriptionId !== undefined && config.iotHub.subscriptionId !== config.subscriptionId
        ? new AzurermProvider(this, 'azurerm-iothub', { alias: 'iothub', subscriptionId: config.iotHub.subscriptionId, features: [{}] })
        : undefined;

    const resourceGroup = new ResourceGroup(this, 'rg', {
      name: names.resourceGroup,
      location: config.location,
      tags: config.tags,
    });
    const ctx: StackContext = { resourceGroup, names, tags: config.tags };

    const identity = (id: string, name: string) =>
      new UserAssignedIdentity(this, id, {
        name,
        resourceGroupName: resourceGroup.name,
        location: resourceGroup.location,
        tags: config.tags,
      });
    const functionIdentity = identity('function-identity', names.functionIdentity);
    // Attach mode uses the existing hub's system-assigned identity (see IotHubRouting).
    const iotHubIdentity = isAttached(config.iotHub) ? undefined : identity('iothub-identity', names.iotHubIdentity);

    this.eventHubs = new EventHubs(this, 'event-hubs', { ...ctx, config: config.eventHubs, firewall: isPrivate });
    this.iotHub = new IotHubRouting(this, 'iot-hub', {
      ...ctx,
      config: config.iotHub,
      minTlsVersion: iotHubMinTlsVersion(config.location),
      identity: iotHubIdentity,
      eventHubs: this.eventHubs,
      hubProvider,
      eventHubsSubscriptionId: isAttached(config.iotHub) ? client.subscriptionId : undefined,
      environment: config.name,
    });
    const keys = config.customerManagedKeys ? new CustomerManagedKeys(this, 'customer-managed-keys', { ...ctx, config: config.customerManagedKeys }) : undefined;
    this.cosmos = new CosmosReplica(this, 'cosmos', { ...ctx, config: config.cosmos, publicNetworkAccess: !isPrivate, customerManagedKey: keys?.cosmos });
    this.storage = new FunctionStorage(this, 'storage', { ...ctx, config: config.storage, publicNetworkAccess: !isPrivate, customerManagedKey: keys?.storage });
    if (isPrivate) {
      this.network = new PrivateNetwork(this, 'network', {
        ...ctx,
        config: config.network,
        cosmos: this.cosmos,
        storage: this.storage,
        eventHubs: this.eventHubs,
        iotHub: this.iotHub,
      });
    }
    this.telemetry = new Telemetry(this, 'telemetry', { ...ctx, config: config.monitoring });
    this.alerts = new Alerts(this, 'alerts', {
      ...ctx,
      config: config.monitoring,
      telemetry: this.telemetry,
      eventHubs: this.eventHubs,
      cosmos: this.cosmos,
    });

    const propagation = new RolePropagation(this, 'role-propagation', {
      identities: iotHubIdentity ? [functionIdentity, iotHubIdentity] : [functionIdentity],
      // In private mode the endpoint sends with the hub's system identity (network.ts): wait on that role.
      iotHubSenderRole: this.network?.trustedSenderRole ?? this.iotHub.senderRole,
    });
    // The endpoint already waits for the sender role to exist; it must also wait until the
    // role is in effect (see PROPAGATION_WAITS.iotHubEndpointRole).
    this.iotHub.endpoint.dependsOn = [...(this.iotHub.endpoint.dependsOn ?? []), dependable(propagation.iotHubSenderRole)];

    const access = new FunctionAccess(this, 'function-access', {
      identity: functionIdentity,
      eventHubs: this.eventHubs,
      storage: this.storage,
      cosmos: this.cosmos,
      iotHub: this.iotHub,
      telemetry: this.telemetry,
      // The twin reader role is defined in the hub's resource group: an attached hub's subscription.
      subscriptionId: isAttached(config.iotHub) && config.iotHub.subscriptionId ? config.iotHub.subscriptionId : client.subscriptionId,
      principalPropagated: propagation.identities,
    });
    if (config.smokeCheckAccess) {
      new SmokeCheckGrants(this, 'smoke-check-access', { access: config.smokeCheckAccess, cosmos: this.cosmos, iotHub: this.iotHub });
    }

    this.functionApp = new SyncFunctionApp(this, 'function-app', {
      ...ctx,
      config: config.functionApp,
      identity: functionIdentity,
      storage: this.storage,
      eventHubs: this.eventHubs,
      cosmos: this.cosmos,
      iotHub: this.iotHub,
      telemetry: this.telemetry,
      tombstoneTtlSeconds: tombstoneTtlSeconds(config),
      // In private mode the host reaches its storage only through the private endpoints.
      dependsOn: [...access.grants, ...(this.network?.endpoints ?? [])],
      integrationSubnetId: this.network?.integrationSubnet.id,
    });
    this.functionCode = new FunctionCode(this, 'function-code', {
      functionApp: this.functionApp,
      packageDir: props.functionsPackageDir,
      subscriptionId: client.subscriptionId,
    });

    this.audit = new AuditDiagnostics(this, 'audit', {
      telemetry: this.telemetry,
      cosmos: this.cosmos,
      storage: this.storage,
      iotHub: this.iotHub,
      eventHubs: this.eventHubs,
    });
    this.protection = new EnvironmentProtection(this, 'protection', {
      ...ctx,
      config: config.protection,
      // Never a lock on an attached hub: it is not this stack's.
      lockTargets: { ...(this.iotHub.ownedHub ? { 'iot-hub': this.iotHub.ownedHub } : {}), cosmos: this.cosmos.account, 'data-storage': this.storage.data },
      keepTargets: [this.cosmos.database, this.cosmos.container],
    });

    const output = (id: string, value: string, description: string) =>
      new TerraformOutput(this, id, { value, description });
    output('resource_group_name', resourceGroup.name, 'Resource group of this environment');
    output('iot_hub_hostname', this.iotHub.hostName, 'IoT Hub host name');
    output('event_hubs_namespace', this.eventHubs.fullyQualifiedNamespace, 'Event Hubs namespace FQDN');
    output('event_hub_name', this.eventHubs.hub.name, 'Event Hub receiving twin/lifecycle/connection events');
    output('cosmos_endpoint', this.cosmos.account.endpoint, 'Cosmos DB account endpoint');
    output('cosmos_database', this.cosmos.database.name, 'Replica database');
    output('cosmos_container', this.cosmos.container.name, 'Replica container');
    output('function_app_name', this.functionApp.app.name, 'Function app running syncTwins and verifyRepair');
    output('function_identity_client_id', functionIdentity.clientId, 'Client id of the function identity');
    output('dead_letter_blob_endpoint', `https://${this.storage.data.name}.blob.core.windows.net`, 'Blob endpoint holding dead letters and reports');
    output('app_insights_name', this.telemetry.appInsights.name, 'Application Insights resource');
  }
}
