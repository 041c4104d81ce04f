import { Construct } from 'constructs';
import { AssetType, DataResource, TerraformAsset, Token, type ITerraformDependable } from 'cdktf';
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

/** Connection prefix of the Event Hubs trigger (`connection: 'IOTHUB_EVENTS'` in the function code). */
export const EVENT_HUBS_CONNECTION = 'IOTHUB_EVENTS';

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
 * Provider gaps worked around (azurerm 4.55):
 * - #29149 / #29693: the provider may write an `AzureWebJobsStorage` connection-string
 *   setting next to the identity-based `AzureWebJobsStorage__*` ones. We set it to the
 *   empty string explicitly, so the host uses the identity settings and Terraform sees
 *   no drift.
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
      IOTHUB_SKU: iotHub.hub.sku.name,
      IOTHUB_UNITS: Token.asString(iotHub.hub.sku.capacity),
      VERIFY_SCHEDULE: config.verifySchedule,

      AzureWebJobsStorage: '',
      AzureWebJobsStorage__accountName: storage.host.name,
      AzureWebJobsStorage__credential: 'managedidentity',
      AzureWebJobsStorage__clientId: identity.clientId,

      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `Authorization=AAD;ClientId=${identity.clientId}`,
    };

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

/** Shell run by the deploy step; inputs arrive as environment variables, never interpolated. */
export const DEPLOY_SCRIPT = [
  'set -euo pipefail',
  // No "${" anywhere: Terraform would read it as interpolation.
  // OneDeploy (/api/publish) is the Flex Consumption deployment API (this CLI command uses it
  // for Flex apps); the platform writes the package to the deployment container with the
  // app's identity and syncs triggers. A new role assignment for that identity can take up to
  // ~20 minutes to apply on a first deploy: retry meanwhile.
  'for attempt in $(seq 1 40); do',
  '  if az functionapp deployment source config-zip --subscription "$SUBSCRIPTION_ID" --resource-group "$RESOURCE_GROUP" --name "$FUNCTION_APP" --src "$PACKAGE_ZIP"; then break; fi',
  '  if [ "$attempt" = 40 ]; then echo "deploying $PACKAGE_ZIP to $FUNCTION_APP failed 40 times" >&2; exit 1; fi',
  '  echo "deploy attempt $attempt failed; retrying in 30 s" >&2; sleep 30',
  'done',
  'az rest --method post --url "https://management.azure.com$FUNCTION_APP_ID/syncfunctiontriggers?api-version=2024-04-01"',
].join('\n');

/**
 * Ships the code with `cdktf deploy`: the package folder is zipped as a TerraformAsset
 * (its hash follows the file contents), and a `terraform_data` resource, replaced
 * whenever that hash or the app changes, runs OneDeploy through the Azure CLI.
 *
 * Why not `zip_deploy_file`: on Flex Consumption it calls the zipdeploy endpoint, which
 * Flex does not have (provider issue #29630).
 */
export class FunctionCode extends Construct {
  readonly asset: TerraformAsset;
  readonly deployment: DataResource;

  constructor(scope: Construct, id: string, props: FunctionCodeProps) {
    super(scope, id);
    const { app } = props.functionApp;
    this.asset = new TerraformAsset(this, 'package', { path: props.packageDir, type: AssetType.ARCHIVE });
    this.deployment = new DataResource(this, 'onedeploy', {
      triggersReplace: { package_hash: this.asset.assetHash, function_app_id: app.id },
      dependsOn: [app],
      provisioners: [
        {
          type: 'local-exec',
          interpreter: ['/bin/bash', '-c'],
          command: DEPLOY_SCRIPT,
          environment: {
            SUBSCRIPTION_ID: props.subscriptionId,
            RESOURCE_GROUP: app.resourceGroupName,
            FUNCTION_APP: app.name,
            FUNCTION_APP_ID: app.id,
            PACKAGE_ZIP: this.asset.path,
          },
        },
      ],
    });
  }
}
