import { Construct } from 'constructs';
import { Iothub } from '@cdktf/provider-azurerm/lib/iothub';
import { IothubEndpointEventhub } from '@cdktf/provider-azurerm/lib/iothub-endpoint-eventhub';
import { IothubRouteA } from '@cdktf/provider-azurerm/lib/iothub-route';
import { IothubFallbackRouteA } from '@cdktf/provider-azurerm/lib/iothub-fallback-route';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';
import type { IotHubConfig } from '../config.js';
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
  /** User-assigned identity of the hub: it exists before the hub, so its role can be granted first. */
  readonly identity: UserAssignedIdentity;
  readonly eventHubs: EventHubs;
}

/**
 * IoT Hub plus routing of twin, lifecycle and connection-state events to one Event Hubs
 * endpoint (one hub keeps a device's events in order in one partition).
 *
 * First-apply ordering: the hub's user-assigned identity gets "Azure Event Hubs Data Sender"
 * on the hub; the endpoint is a separate resource that depends on that role assignment,
 * and the routes depend on the endpoint. Routes and endpoints are never declared inline
 * on the hub (mixing both makes Terraform fight itself).
 *
 * Secure defaults: identity-based endpoint (no connection string), hub-scoped SAS off,
 * TLS 1.2. The fallback route stays on, so device telemetry keeps reaching the built-in
 * `events` endpoint although custom routes exist.
 */
export class IotHubRouting extends Construct {
  readonly hub: Iothub;
  readonly endpoint: IothubEndpointEventhub;
  readonly routes: IothubRouteA[];
  readonly fallbackRoute: IothubFallbackRouteA;
  readonly senderRole: RoleAssignment;
  /** `<hub>.azure-devices.net`. */
  readonly hostName: string;

  constructor(scope: Construct, id: string, props: IotHubRoutingProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config, identity, eventHubs } = props;

    this.senderRole = new RoleAssignment(this, 'event-hubs-sender', {
      scope: eventHubs.hub.id,
      roleDefinitionName: ROLES.eventHubsDataSender,
      principalId: identity.principalId,
      principalType: 'ServicePrincipal',
      description: 'IoT Hub routes twin/lifecycle/connection events to this hub',
    });

    this.hub = new Iothub(this, 'hub', {
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

    this.endpoint = new IothubEndpointEventhub(this, 'endpoint', {
      name: names.iotHubEndpoint,
      iothubId: this.hub.id,
      resourceGroupName: resourceGroup.name,
      authenticationType: 'identityBased',
      identityId: identity.id,
      endpointUri: `sb://${eventHubs.fullyQualifiedNamespace}`,
      entityPath: eventHubs.hub.name,
      dependsOn: [this.senderRole],
    });

    this.routes = Object.entries(ROUTED_SOURCES).map(
      ([routeName, source]) =>
        new IothubRouteA(this, `route-${routeName}`, {
          name: routeName,
          iothubName: this.hub.name,
          resourceGroupName: resourceGroup.name,
          source,
          condition: 'true',
          endpointNames: [this.endpoint.name],
          enabled: true,
        }),
    );

    this.fallbackRoute = new IothubFallbackRouteA(this, 'fallback', {
      iothubName: this.hub.name,
      resourceGroupName: resourceGroup.name,
      source: 'DeviceMessages',
      condition: 'true',
      endpointNames: ['events'],
      enabled: true,
    });

    this.hostName = `${this.hub.name}.azure-devices.net`;
  }
}
