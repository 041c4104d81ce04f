import { Construct } from 'constructs';
import { Token, type TerraformProvider } from 'cdktf';
import { Iothub } from '@cdktf/provider-azurerm/lib/iothub';
import { DataAzurermIothub } from '@cdktf/provider-azurerm/lib/data-azurerm-iothub';
import { IothubEndpointEventhub } from '@cdktf/provider-azurerm/lib/iothub-endpoint-eventhub';
import { IothubRouteA } from '@cdktf/provider-azurerm/lib/iothub-route';
import { IothubFallbackRouteA } from '@cdktf/provider-azurerm/lib/iothub-fallback-route';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import { isAttached, type AttachIotHubConfig, type CreateIotHubConfig, type IotHubConfig } from '../config.js';
import type { EventHubs } from './event-hubs.js';
import { ROLES, type StackContext } from './common.js';

/** The IoT Hub route sources the replica needs, exactly as the routing API spells them. */
export const ROUTED_SOURCES = {
  'twin-changes': 'TwinChangeEvents',
  'device-lifecycle': 'DeviceLifecycleEvents',
  'connection-state': 'DeviceConnectionStateEvents',
} as const;

export interface IotHubRoutingProps extends StackContext {
  readonly config: IotHubConfig;
  /** '1.2' only where the region offers TLS 1.2 enforcement (config.ts, iotHubMinTlsVersion). */
  readonly minTlsVersion?: '1.2';
  /**
   * Create mode: the hub's user-assigned identity, which exists before the hub, so its role can be granted
   * first. Attach mode uses the existing hub's system-assigned identity instead and takes none.
   */
  readonly identity?: UserAssignedIdentity;
  readonly eventHubs: EventHubs;
  /** Attach mode, hub in another subscription: the azurerm provider aliased to that subscription. */
  readonly hubProvider?: TerraformProvider;
  /** Attach mode: the replica's subscription (the Event Hub's), recorded on the endpoint. */
  readonly eventHubsSubscriptionId?: string;
  /** Environment name: attach mode names its endpoint and routes after it (see attachedRoutingNames). */
  readonly environment: string;
}

/**
 * Names of what attach mode adds to a hub: prefixed `twin-replica-<env>` so they cannot be mistaken for
 * the hub's own, and two replicas (say dev and prod) can attach to one hub without colliding.
 */
export function attachedRoutingNames(environment: string) {
  const prefix = `twin-replica-${environment}`;
  return {
    endpoint: prefix,
    routes: Object.fromEntries(Object.keys(ROUTED_SOURCES).map((r) => [r, `${prefix}-${r}`])) as Record<keyof typeof ROUTED_SOURCES, string>,
  };
}

/** Plan-time check of the attach prerequisite; its message is what a user sees when it is missing. */
/** The one prerequisite command a user runs on an attached hub. */
export function assignSystemIdentityCommand(hub: Pick<AttachIotHubConfig, 'name' | 'resourceGroupName' | 'subscriptionId'>): string {
  const sub = hub.subscriptionId ? ` --subscription ${hub.subscriptionId}` : '';
  return `az iot hub identity assign --name ${hub.name} --resource-group ${hub.resourceGroupName}${sub} --system-assigned`;
}

export function missingSystemIdentityMessage(hub: Pick<AttachIotHubConfig, 'name' | 'resourceGroupName' | 'subscriptionId'>): string {
  return (
    `IoT Hub ${hub.name} has no system-assigned identity, which twin-replica's endpoint uses to send to its Event Hub ` +
    `(no keys). Turn it on once, then plan again: ${assignSystemIdentityCommand(hub)} ` +
    '(if another Terraform configuration manages this hub, add "SystemAssigned" to its identity block instead). See docs/attach.md.'
  );
}

/**
 * IoT Hub routing of twin, lifecycle and connection-state events to one Event Hubs endpoint (one
 * hub keeps a device's events in order in one partition), in one of two modes:
 *
 * - create (default): the stack creates the hub. Its user-assigned identity gets "Azure Event Hubs
 *   Data Sender" on the Event Hub; the endpoint is a separate resource that depends on that role
 *   assignment, the routes depend on the endpoint. Routes and endpoints are never declared inline on
 *   the hub (mixing both makes Terraform fight itself). Identity-based endpoint, hub-scoped SAS off,
 *   TLS 1.2. The fallback route stays on, so device telemetry keeps reaching the built-in `events`
 *   endpoint although custom routes exist.
 *
 * - attach: the hub exists and is only read (data source `azurerm_iothub`); this stack adds the
 *   endpoint and the three routes as separate resources bound to it, and grants the hub's
 *   system-assigned identity the sender role. Why these choices (docs/attach.md, provider v4.55.0
 *   internal/services/iothub/):
 *   - System-assigned, not a user-assigned identity of ours: attaching a user-assigned identity
 *     means changing the hub's `identity` after this stack created it (two deploys, a manual step in
 *     between); the system identity is one `az iot hub identity assign` before a single deploy, and
 *     the data source exposes its principal id (iothub_data_source.go: `identity`), so the grant and
 *     a plan-time postcondition need nothing else. The endpoint omits `identity_id`, which makes it
 *     use the system identity (iothub_endpoint_eventhub_resource.go sets `Identity` only with it).
 *   - The fallback route is NOT managed: azurerm_iothub_fallback_route is a singleton that takes over
 *     the hub's setting without import and, on destroy, removes the hub's fallback route
 *     (iothub_fallback_route_resource.go Delete sets `FallbackRoute = nil`). The three routes carry
 *     only twin, lifecycle and connection events, never DeviceMessages, so telemetry keeps going
 *     where the hub's own routes and fallback send it; `npm run attach-check` refuses a hub with no
 *     route at all and the fallback off, the one case where a first route would stop telemetry
 *     reaching the built-in endpoint.
 *   - Endpoint and routes use the provider of the hub's subscription: they read and PUT the hub
 *     with the provider's subscription, whatever the hub id says.
 */
export class IotHubRouting extends Construct {
  /** The created hub, or the attached hub read as data: both have `id` and `name`. */
  readonly hub: Iothub | DataAzurermIothub;
  /**
   * Create mode only: the hub this stack owns. Whatever changes the hub resource itself (identity
   * overrides, locks, diagnostic settings) uses this and leaves an attached hub alone.
   */
  readonly ownedHub?: Iothub;
  /** Attach mode only: the names of what this stack adds to the hub (attachedRoutingNames). */
  readonly attachedNames?: ReturnType<typeof attachedRoutingNames>;
  readonly endpoint: IothubEndpointEventhub;
  readonly routes: IothubRouteA[];
  /** Create mode only: in attach mode the hub's own fallback route is left as it is. */
  readonly fallbackRoute?: IothubFallbackRouteA;
  readonly senderRole: RoleAssignment;
  /**
   * The hub's tier and units for the verify timer's budgets: the created hub's own, or what an attach
   * configuration declares (undefined when it declares nothing: the timer then assumes S1 × 1).
   */
  readonly tier?: { readonly sku: string; readonly units: string };
  /** `<hub>.azure-devices.net`. */
  readonly hostName: string;

  constructor(scope: Construct, id: string, props: IotHubRoutingProps) {
    super(scope, id);
    const { config } = props;
    if (isAttached(config)) {
      this.attachedNames = attachedRoutingNames(props.environment);
      const attached = this.attach(config, props);
      this.hub = attached.hub;
      this.senderRole = attached.senderRole;
      this.endpoint = attached.endpoint;
      this.hostName = attached.hub.hostname;
      if (config.sku !== undefined) this.tier = { sku: config.sku, units: String(config.capacity ?? 1) };
      this.routes = this.addRoutes(attached.hub.name, config.resourceGroupName, attachedRoutingNames(props.environment).routes, props.hubProvider);
    } else {
      const created = this.create(config, props);
      this.hub = created.hub;
      this.ownedHub = created.hub;
      this.senderRole = created.senderRole;
      this.endpoint = created.endpoint;
      this.hostName = `${created.hub.name}.azure-devices.net`;
      this.tier = { sku: created.hub.sku.name, units: Token.asString(created.hub.sku.capacity) };
      this.routes = this.addRoutes(created.hub.name, props.resourceGroup.name);
      this.fallbackRoute = new IothubFallbackRouteA(this, 'fallback', {
        iothubName: created.hub.name,
        resourceGroupName: props.resourceGroup.name,
        source: 'DeviceMessages',
        condition: 'true',
        endpointNames: ['events'],
        enabled: true,
      });
    }
  }

  private create(config: CreateIotHubConfig, props: IotHubRoutingProps) {
    const { resourceGroup, names, tags, identity, eventHubs } = props;
    if (!identity) throw new Error('IotHubRouting: create mode needs the hub\'s user-assigned identity');
    const senderRole = new RoleAssignment(this, 'event-hubs-sender', {
      scope: eventHubs.hub.id,
      roleDefinitionName: ROLES.eventHubsDataSender,
      principalId: identity.principalId,
      principalType: 'ServicePrincipal',
      description: 'IoT Hub routes twin/lifecycle/connection events to this hub',
    });

    const hub = new Iothub(this, 'hub', {
      name: names.iotHub,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      sku: { name: config.sku, capacity: config.capacity },
      identity: { type: 'UserAssigned', identityIds: [identity.id] },
      localAuthenticationEnabled: config.localAuthenticationEnabled,
      minTlsVersion: props.minTlsVersion,
      publicNetworkAccessEnabled: true,
      tags,
    });

    const endpoint = new IothubEndpointEventhub(this, 'endpoint', {
      name: names.iotHubEndpoint,
      iothubId: hub.id,
      resourceGroupName: resourceGroup.name,
      authenticationType: 'identityBased',
      identityId: identity.id,
      endpointUri: `sb://${eventHubs.fullyQualifiedNamespace}`,
      entityPath: eventHubs.hub.name,
      dependsOn: [senderRole],
    });
    return { hub, senderRole, endpoint };
  }

  private attach(config: AttachIotHubConfig, props: IotHubRoutingProps) {
    const { resourceGroup, eventHubs, hubProvider } = props;
    const hub = new DataAzurermIothub(this, 'hub', {
      provider: hubProvider,
      name: config.name,
      resourceGroupName: config.resourceGroupName,
      lifecycle: {
        postcondition: [
          {
            // try(): Terraform evaluates both sides of && even when the left one is false.
            condition: '${can(regex("SystemAssigned", try(self.identity[0].type, ""))) && try(self.identity[0].principal_id, "") != ""}',
            errorMessage: missingSystemIdentityMessage(config),
          },
        ],
      },
    });
    const principalId = hub.identity.get(0).principalId;

    const senderRole = new RoleAssignment(this, 'event-hubs-sender', {
      scope: eventHubs.hub.id,
      roleDefinitionName: ROLES.eventHubsDataSender,
      principalId,
      principalType: 'ServicePrincipal',
      description: `IoT Hub ${config.name} (system-assigned identity) routes twin/lifecycle/connection events to this hub`,
    });

    const endpoint = new IothubEndpointEventhub(this, 'endpoint', {
      provider: hubProvider,
      name: attachedRoutingNames(props.environment).endpoint,
      iothubId: hub.id,
      // The Event Hub's resource group and subscription (the replica's), not the hub's.
      resourceGroupName: resourceGroup.name,
      subscriptionId: props.eventHubsSubscriptionId,
      authenticationType: 'identityBased',
      endpointUri: `sb://${eventHubs.fullyQualifiedNamespace}`,
      entityPath: eventHubs.hub.name,
      dependsOn: [senderRole],
    });
    return { hub, senderRole, endpoint };
  }

  private addRoutes(hubName: string, hubResourceGroup: string, routeNames?: Record<string, string>, provider?: TerraformProvider): IothubRouteA[] {
    return Object.entries(ROUTED_SOURCES).map(
      ([routeName, source]) =>
        new IothubRouteA(this, `route-${routeName}`, {
          provider,
          name: routeNames?.[routeName] ?? routeName,
          iothubName: hubName,
          resourceGroupName: hubResourceGroup,
          source,
          condition: 'true',
          endpointNames: [this.endpoint.name],
          enabled: true,
        }),
    );
  }
}
