import { Construct } from 'constructs';
import { Fn } from 'cdktf';
import { VirtualNetwork } from '@cdktf/provider-azurerm/lib/virtual-network';
import { Subnet } from '@cdktf/provider-azurerm/lib/subnet';
import { PrivateDnsZone } from '@cdktf/provider-azurerm/lib/private-dns-zone';
import { PrivateDnsZoneVirtualNetworkLink } from '@cdktf/provider-azurerm/lib/private-dns-zone-virtual-network-link';
import { PrivateEndpoint } from '@cdktf/provider-azurerm/lib/private-endpoint';
import { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import { PublicIp } from '@cdktf/provider-azurerm/lib/public-ip';
import { NatGateway } from '@cdktf/provider-azurerm/lib/nat-gateway';
import { NatGatewayPublicIpAssociation } from '@cdktf/provider-azurerm/lib/nat-gateway-public-ip-association';
import { SubnetNatGatewayAssociation } from '@cdktf/provider-azurerm/lib/subnet-nat-gateway-association';
import type { NetworkConfig } from '../config.js';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { FunctionStorage } from './storage.js';
import type { IotHubRouting } from './iot-hub.js';
import { ROLES, type StackContext } from './common.js';

/**
 * Private DNS zone per private-link sub-resource (Microsoft Learn, "Azure Private Endpoint private DNS zone
 * values", Azure public cloud).
 */
export const PRIVATE_DNS_ZONES = {
  Sql: 'privatelink.documents.azure.com',
  blob: 'privatelink.blob.core.windows.net',
  queue: 'privatelink.queue.core.windows.net',
  table: 'privatelink.table.core.windows.net',
  namespace: 'privatelink.servicebus.windows.net',
} as const;
type SubResource = keyof typeof PRIVATE_DNS_ZONES;

export interface PrivateNetworkProps extends StackContext {
  readonly config: NetworkConfig;
  readonly cosmos: CosmosReplica;
  readonly storage: FunctionStorage;
  readonly eventHubs: EventHubs;
  readonly iotHub: IotHubRouting;
}

/**
 * The private network mode of an environment: one VNet with two /26 subnets,
 *
 * - `functions`: the Flex Consumption app's VNet integration (delegated to Microsoft.App/environments, as
 *   Flex Consumption requires), through which all its outbound traffic goes; a NAT gateway with one static
 *   public IP gives it a defined way out to what stays public (the IoT Hub for verifyRepair, Application
 *   Insights), rather than relying on a VNet's default outbound access, which Azure is retiring;
 * - `private-endpoints`: one private endpoint per data-plane service the function talks to: Cosmos DB (Sql),
 *   the host account (blob, queue, table: what the Functions host may use), the data account (blob) and the
 *   Event Hubs namespace; each registered in its private DNS zone, linked to the VNet, so the app resolves
 *   the usual host names to private addresses.
 *
 * What stays public: the IoT Hub (devices connect over the internet), the function app's SCM site (OneDeploy
 * from CI, Entra ID only), Application Insights ingestion, and the management plane (Terraform). Event Hubs
 * keeps a public endpoint closed by its firewall to everything but trusted Microsoft services (IoT Hub
 * routing). See docs/security.md.
 *
 * Routing through that firewall: the trusted-services exception recognises the hub by its identity, and
 * Microsoft Learn ("IoT Hub support for managed identities", egress section) says "Use a system-assigned
 * managed identity to access private resources". So in this mode the hub also gets its system-assigned
 * identity, that identity gets Event Hubs Data Sender on the hub, and the routing endpoint authenticates
 * with it (`identity_id` unset: "If not specified ... System Assigned Managed Identity of the Iot Hub will be
 * used", iothub_endpoint_eventhub docs at v4.55.0). These are overrides on the IoT Hub construct's
 * resources, kept here so the public mode is untouched.
 */
export class PrivateNetwork extends Construct {
  readonly vnet: VirtualNetwork;
  readonly integrationSubnet: Subnet;
  readonly endpointSubnet: Subnet;
  readonly zones: Record<SubResource, PrivateDnsZone>;
  readonly endpoints: PrivateEndpoint[] = [];
  /** The function's egress address in private mode (allowlist it where a public endpoint filters by IP). */
  readonly egressIp: PublicIp;
  /**
   * Event Hubs Data Sender for the hub's system-assigned identity (routing through the firewall). Created
   * hub only: an attached hub's system identity has that role from IotHubRouting already.
   */
  readonly trustedSenderRole?: RoleAssignment;

  constructor(scope: Construct, id: string, props: PrivateNetworkProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config, cosmos, storage, eventHubs } = props;
    const prefixLength = Number(config.addressSpace.split('/')[1]);

    this.vnet = new VirtualNetwork(this, 'vnet', {
      name: names.virtualNetwork,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      addressSpace: [config.addressSpace],
      tags,
    });
    const subnet = (subnetId: string, index: number, extra: Partial<ConstructorParameters<typeof Subnet>[2]> = {}) =>
      new Subnet(this, subnetId, {
        name: subnetId,
        resourceGroupName: resourceGroup.name,
        virtualNetworkName: this.vnet.name,
        addressPrefixes: [Fn.cidrsubnet(config.addressSpace, 26 - prefixLength, index)],
        ...extra,
      });
    this.integrationSubnet = subnet('functions', 0, {
      delegation: [
        {
          name: 'flex-consumption',
          serviceDelegation: { name: 'Microsoft.App/environments', actions: ['Microsoft.Network/virtualNetworks/subnets/join/action'] },
        },
      ],
    });
    this.endpointSubnet = subnet('private-endpoints', 1);

    this.egressIp = new PublicIp(this, 'egress-ip', {
      name: `pip-${names.virtualNetwork}-egress`,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      allocationMethod: 'Static',
      sku: 'Standard',
      tags,
    });
    const nat = new NatGateway(this, 'egress', {
      name: `ng-${names.virtualNetwork}`,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      skuName: 'Standard',
      tags,
    });
    new NatGatewayPublicIpAssociation(this, 'egress-ip-association', { natGatewayId: nat.id, publicIpAddressId: this.egressIp.id });
    new SubnetNatGatewayAssociation(this, 'egress-subnet-association', { subnetId: this.integrationSubnet.id, natGatewayId: nat.id });

    this.zones = Object.fromEntries(
      (Object.entries(PRIVATE_DNS_ZONES) as [SubResource, string][]).map(([sub, zoneName]) => {
        const zone = new PrivateDnsZone(this, `zone-${sub}`, { name: zoneName, resourceGroupName: resourceGroup.name, tags });
        new PrivateDnsZoneVirtualNetworkLink(this, `zone-link-${sub}`, {
          name: `${names.virtualNetwork}-link`,
          resourceGroupName: resourceGroup.name,
          privateDnsZoneName: zone.name,
          virtualNetworkId: this.vnet.id,
          registrationEnabled: false,
          tags,
        });
        return [sub, zone];
      }),
    ) as Record<SubResource, PrivateDnsZone>;

    const endpoint = (endpointId: string, resourceName: string, resourceId: string, sub: SubResource) => {
      const pe = new PrivateEndpoint(this, `pe-${endpointId}`, {
        name: `pe-${resourceName}-${sub.toLowerCase()}`,
        resourceGroupName: resourceGroup.name,
        location: resourceGroup.location,
        subnetId: this.endpointSubnet.id,
        privateServiceConnection: {
          name: `${resourceName}-${sub.toLowerCase()}`,
          privateConnectionResourceId: resourceId,
          subresourceNames: [sub],
          isManualConnection: false,
        },
        privateDnsZoneGroup: { name: 'default', privateDnsZoneIds: [this.zones[sub].id] },
        tags,
      });
      this.endpoints.push(pe);
      return pe;
    };
    endpoint('cosmos', names.cosmosAccount, cosmos.account.id, 'Sql');
    for (const sub of ['blob', 'queue', 'table'] as const) endpoint(`host-${sub}`, names.hostStorage, storage.host.id, sub);
    endpoint('data-blob', names.dataStorage, storage.data.id, 'blob');
    endpoint('event-hubs', names.eventHubNamespace, eventHubs.namespace.id, 'namespace');

    const { ownedHub: hub, endpoint: routeEndpoint } = props.iotHub;
    // An attached hub already routes with its system-assigned identity (IotHubRouting): nothing to change.
    if (!hub) return;
    hub.addOverride('identity.type', 'SystemAssigned, UserAssigned');
    const trustedSenderRole = new RoleAssignment(this, 'iot-hub-system-identity-sender', {
      scope: eventHubs.hub.id,
      roleDefinitionName: ROLES.eventHubsDataSender,
      principalId: hub.identity.principalId,
      principalType: 'ServicePrincipal',
      description: 'IoT Hub routes through the Event Hubs firewall as a trusted service (system-assigned identity)',
    });
    this.trustedSenderRole = trustedSenderRole;
    routeEndpoint.addOverride('identity_id', null);
    // depends_on takes a plain address (the construct's `fqn` is a token that renders as an interpolation here).
    const senderAddress = `${trustedSenderRole.terraformResourceType}.${trustedSenderRole.friendlyUniqueId}`;
    routeEndpoint.dependsOn = [...(routeEndpoint.dependsOn ?? []), senderAddress];
  }
}
