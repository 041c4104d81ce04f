import { fileURLToPath } from 'node:url';
import { Construct } from 'constructs';
import { AssetType, DataResource, TerraformAsset, type ITerraformDependable } from 'cdktf';
import { ServicePlan } from '@cdktf/provider-azurerm/lib/service-plan';
import { FunctionAppFlexConsumption } from '@cdktf/provider-azurerm/lib/function-app-flex-consumption';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import type { FunctionAppConfig } from '../config.js';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { FunctionStorage } from './storage.js';
import type { IotHubRouting } from './iot-hub.js';
import type { Telemetry } from './monitoring.js';
import type { StackContext } from './common.js';
import { EVENT_HUBS_CONNECTION, type InfraAppSetting } from '../../functions/src/runtime/contracts.js';

export interface SyncFunctionAppProps extends StackContext {
  readonly config: FunctionAppConfig;
  readonly identity: UserAssignedIdentity;
  readonly storage: FunctionStorage;
  readonly eventHubs: EventHubs;
  readonly cosmos: CosmosReplica;
  readonly iotHub: IotHubRouting;
  readonly telemetry: Telemetry;
  /** Seconds a deleted-device tombstone lives: (Event Hubs retention days + 1) x 86400. */
  readonly tombstoneTtlSeconds: number;
  /** Grants the identity needs before the host starts. */
  readonly dependsOn: ITerraformDependable[];
  /** Private network mode: the subnet (delegated to Microsoft.App/environments) the app's outbound traffic uses. */
  readonly integrationSubnetId?: string;
}

/**
 * Flex Consumption plan and function app (Linux, Node 22) running as a user-assigned
 * identity. Every connection is identity-based; no key or connection string is in the
 * app settings.
 *
 * Secure defaults: HTTPS only, TLS 1.2 (site and SCM), basic-auth publishing off,
 * remote debugging off. Inbound to the app itself is denied (`ip_restriction_default_action =
 * Deny`, no allow rule): it has no HTTP trigger, and the Event Hubs trigger and timer are pulled
 * by the host, not called in. The SCM (Kudu) site keeps its own rules (`scm_use_main_ip_restriction
 * = false`, default Allow) because OneDeploy from the CI runner goes there; it accepts Entra ID
 * tokens only, since basic-auth publishing is off. In private network mode the app's outbound
 * traffic (all of it: `vnet_route_all_enabled`) goes through the integration subnet.
 *
 * Provider gaps worked around (azurerm 4.55.0):
 * - `AzureWebJobsStorage` is NOT an app setting here. The WebJobs SDK reads any non-null value,
 *   even "", as a connection string and then ignores `AzureWebJobsStorage__accountName`
 *   (azure-webjobs-sdk StorageClientProvider.IsConnectionStringPresent). The provider itself
 *   writes a key-less `AzureWebJobsStorage` on every create and update of a Flex app
 *   (function_app_flex_consumption_resource.go, StorageStringFmt in Create and Update) and its
 *   Read never reports it, so declaring it would only make every plan show a change.
 *   `FunctionCode` removes what the provider wrote, after every change of the app.
 * - #28928: no `key_vault_reference_identity_id`, so Key Vault references would resolve
 *   with a system identity this app does not have. The app uses none.
 */
export class SyncFunctionApp extends Construct {
  readonly plan: ServicePlan;
  readonly app: FunctionAppFlexConsumption;
  readonly appSettings: Record<string, string>;

  constructor(scope: Construct, id: string, props: SyncFunctionAppProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config, identity, storage, eventHubs, cosmos, iotHub, telemetry } = props;

    this.plan = new ServicePlan(this, 'plan', {
      name: names.servicePlan,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      osType: 'Linux',
      skuName: 'FC1',
      tags,
    });

    this.appSettings = {
      AZURE_CLIENT_ID: identity.clientId,

      COSMOS_ENDPOINT: cosmos.account.endpoint,
      COSMOS_DATABASE: cosmos.database.name,
      COSMOS_CONTAINER: cosmos.container.name,

      [`${EVENT_HUBS_CONNECTION}__fullyQualifiedNamespace`]: eventHubs.fullyQualifiedNamespace,
      [`${EVENT_HUBS_CONNECTION}__credential`]: 'managedidentity',
      [`${EVENT_HUBS_CONNECTION}__clientId`]: identity.clientId,
      EVENTHUB_NAME: eventHubs.hub.name,
      EVENTHUB_CONSUMER_GROUP: eventHubs.consumerGroup.name,

      DEADLETTER_BLOB_ENDPOINT: `https://${storage.data.name}.blob.core.windows.net`,
      DEADLETTER_CONTAINER: storage.deadLetterContainer.name,
      REPORTS_CONTAINER: storage.reportsContainer.name,
      TOMBSTONE_TTL_SECONDS: String(props.tombstoneTtlSeconds),
      // syncTwins' durable count of batch starts (functions/src/adapters/attemptCounter.ts): in the host
      // account beside the Event Hubs checkpoints (no blob versioning there; the identity owns its blobs).
      SYNC_ATTEMPTS_BLOB_ENDPOINT: `https://${storage.host.name}.blob.core.windows.net`,
      SYNC_ATTEMPTS_CONTAINER: 'sync-attempts',

      IOTHUB_HOSTNAME: iotHub.hostName,
      // The verify timer's throttle budgets follow the hub's tier and units (queries 20/min/unit, S3 1,000).
      ...(iotHub.tier ? { IOTHUB_SKU: iotHub.tier.sku, IOTHUB_UNITS: iotHub.tier.units } : {}),
      VERIFY_SCHEDULE: config.verifySchedule,

      AzureWebJobsStorage__accountName: storage.host.name,
      AzureWebJobsStorage__credential: 'managedidentity',
      AzureWebJobsStorage__clientId: identity.clientId,

      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `Authorization=AAD;ClientId=${identity.clientId}`,
      // Every setting the function code expects from the infrastructure (runtime/contracts.ts) must be here.
    } satisfies Record<InfraAppSetting, string> & Record<string, string>;

    this.app = new FunctionAppFlexConsumption(this, 'app', {
      name: names.functionApp,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      servicePlanId: this.plan.id,
      runtimeName: 'node',
      runtimeVersion: '22',
      instanceMemoryInMb: config.instanceMemoryMb,
      maximumInstanceCount: config.maximumInstanceCount,
      storageContainerType: 'blobContainer',
      storageContainerEndpoint: `${storage.host.primaryBlobEndpoint}${storage.deploymentContainer.name}`,
      storageAuthenticationType: 'UserAssignedIdentity',
      storageUserAssignedIdentityId: identity.id,
      identity: { type: 'UserAssigned', identityIds: [identity.id] },
      httpsOnly: true,
      // Stays true: false would close the SCM site too (the provider sends one publicNetworkAccess for the
      // site: function_app_flex_consumption_resource.go at v4.55.0), and with it OneDeploy from CI.
      publicNetworkAccessEnabled: true,
      virtualNetworkSubnetId: props.integrationSubnetId,
      webdeployPublishBasicAuthenticationEnabled: false,
      clientCertificateEnabled: false,
      siteConfig: {
        minimumTlsVersion: '1.2',
        scmMinimumTlsVersion: '1.2',
        remoteDebuggingEnabled: false,
        http2Enabled: true,
        ipRestrictionDefaultAction: 'Deny',
        scmUseMainIpRestriction: false,
        scmIpRestrictionDefaultAction: 'Allow',
        vnetRouteAllEnabled: props.integrationSubnetId !== undefined,
        // Not a credential: with local authentication off on Application Insights the
        // key inside only identifies the resource; ingestion needs the Entra ID token
        // configured by APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
        applicationInsightsConnectionString: telemetry.appInsights.connectionString,
      },
      appSettings: this.appSettings,
      tags,
      dependsOn: props.dependsOn,
    });
  }
}

export interface FunctionCodeProps {
  readonly functionApp: SyncFunctionApp;
  /** Folder built by buildFunctionsPackage (host.json, package.json, dist/). */
  readonly packageDir: string;
  readonly subscriptionId: string;
}

/** The post-apply steps, run with bash by local-exec (see the script's header). */
export const FUNCTION_APP_SCRIPT = fileURLToPath(new URL('../scripts/function-app.sh', import.meta.url));

/**
 * Ships the code with `cdktf deploy`, in two `terraform_data` steps that run
 * infra/scripts/function-app.sh with the Azure CLI:
 *
 * 1. `remove-storage-setting` deletes the `AzureWebJobsStorage` setting the provider writes on
 *    every create and update of the app. It is replaced (so it runs again) whenever any
 *    attribute of the app changes: its trigger is the whole app object. One case it cannot see:
 *    an update that only puts back values changed outside Terraform (the app object then equals
 *    the last one recorded); `docs/infrastructure.md` says how to re-run it.
 * 2. `publish` runs OneDeploy (`az functionapp deployment source config-zip`, the Flex
 *    deployment API), bounded per attempt and in total, retrying only refusals (401/403 while
 *    the identity's role on the deployment container propagates, 409 while a deployment runs),
 *    then syncs triggers. Replaced when the package hash or the app changes; it runs after
 *    step 1 so the host it health-checks starts on identity-based storage.
 *
 * Why not the provider's `zip_deploy_file`: on Flex Consumption it calls the zipdeploy
 * endpoint, which Flex does not have (provider issue #29630). Why not a resource that manages
 * the app settings: the provider re-writes the setting on each of its own updates anyway.
 */
export class FunctionCode extends Construct {
  readonly asset: TerraformAsset;
  readonly script: TerraformAsset;
  readonly storageSetting: DataResource;
  readonly deployment: DataResource;

  constructor(scope: Construct, id: string, props: FunctionCodeProps) {
    super(scope, id);
    const { app } = props.functionApp;
    this.asset = new TerraformAsset(this, 'package', { path: props.packageDir, type: AssetType.ARCHIVE });
    this.script = new TerraformAsset(this, 'script', { path: FUNCTION_APP_SCRIPT, type: AssetType.FILE });
    const environment = {
      SUBSCRIPTION_ID: props.subscriptionId,
      RESOURCE_GROUP: app.resourceGroupName,
      FUNCTION_APP: app.name,
    };
    const step = (command: string, env: Record<string, string>) => ({
      type: 'local-exec' as const,
      interpreter: ['/bin/bash', '-c'],
      // Inputs arrive as environment variables, never interpolated into the command.
      command: `bash "${this.script.path}" ${command}`,
      environment: env,
    });

    this.storageSetting = new DataResource(this, 'remove-storage-setting', {
      // The whole app object: a change of any argument means the provider updated the app (and
      // wrote the setting again). An attribute Azure changes on its own (outbound IP addresses)
      // re-runs the step too, which is harmless: it is idempotent.
      triggersReplace: { function_app: `\${${app.terraformResourceType}.${app.friendlyUniqueId}}` },
      dependsOn: [app],
      provisioners: [step('remove-storage-setting', environment)],
    });
    this.deployment = new DataResource(this, 'onedeploy', {
      triggersReplace: { package_hash: this.asset.assetHash, function_app_id: app.id },
      dependsOn: [app, this.storageSetting],
      provisioners: [step('publish', { ...environment, FUNCTION_APP_ID: app.id, PACKAGE_ZIP: this.asset.path })],
    });
  }
}
