import type { ResourceGroup } from '@cdktf/provider-azurerm/lib/resource-group';
import type { ResourceNames } from '../naming.js';

/** What every construct of a stack receives: the resource group object, names and tags. */
export interface StackContext {
  readonly resourceGroup: ResourceGroup;
  readonly names: ResourceNames;
  readonly tags: Readonly<Record<string, string>>;
}

/** Built-in Azure role names used by this project (Azure RBAC, control and data plane). */
export const ROLES = {
  eventHubsDataSender: 'Azure Event Hubs Data Sender',
  eventHubsDataReceiver: 'Azure Event Hubs Data Receiver',
  storageBlobDataOwner: 'Storage Blob Data Owner',
  storageBlobDataContributor: 'Storage Blob Data Contributor',
  iotHubTwinContributor: 'IoT Hub Twin Contributor',
  iotHubRegistryContributor: 'IoT Hub Registry Contributor',
  monitoringMetricsPublisher: 'Monitoring Metrics Publisher',
} as const;

/** Cosmos DB built-in data-plane role definitions (not Azure RBAC roles). */
export const COSMOS_DATA_ROLES = {
  reader: '00000000-0000-0000-0000-000000000001',
} as const;
