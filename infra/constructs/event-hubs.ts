import { Construct } from 'constructs';
import { EventhubNamespace } from '@cdktf/provider-azurerm/lib/eventhub-namespace';
import { Eventhub } from '@cdktf/provider-azurerm/lib/eventhub';
import { EventhubConsumerGroup } from '@cdktf/provider-azurerm/lib/eventhub-consumer-group';
import type { EventHubsConfig } from '../config.js';
import type { StackContext } from './common.js';

export interface EventHubsProps extends StackContext {
  readonly config: EventHubsConfig;
  /**
   * Private network mode: deny every network except trusted Microsoft services (IoT Hub routing,
   * with a managed identity) and the private endpoint the function reads through. @default false
   */
  readonly firewall?: boolean;
}

/**
 * The Event Hubs namespace and the one hub IoT Hub routes twin, lifecycle and connection
 * events to, plus the consumer group only `syncTwins` reads with.
 *
 * Secure defaults: local (SAS) authentication off, so only Entra ID identities send and
 * receive; TLS 1.2 minimum.
 */
export class EventHubs extends Construct {
  readonly namespace: EventhubNamespace;
  readonly hub: Eventhub;
  readonly consumerGroup: EventhubConsumerGroup;
  /** `<namespace>.servicebus.windows.net`, the value of `IOTHUB_EVENTS__fullyQualifiedNamespace`. */
  readonly fullyQualifiedNamespace: string;

  constructor(scope: Construct, id: string, props: EventHubsProps) {
    super(scope, id);
    const { resourceGroup, names, tags, config } = props;
    const autoInflate = config.autoInflateMaxThroughputUnits > 0;

    this.namespace = new EventhubNamespace(this, 'namespace', {
      name: names.eventHubNamespace,
      resourceGroupName: resourceGroup.name,
      location: resourceGroup.location,
      sku: config.sku,
      capacity: config.capacity,
      autoInflateEnabled: autoInflate,
      maximumThroughputUnits: autoInflate ? config.autoInflateMaxThroughputUnits : undefined,
      localAuthenticationEnabled: false,
      minimumTlsVersion: '1.2',
      // "Selected networks" with no IP or VNet rule plus the trusted-services exception: the setting Microsoft
      // Learn gives for IoT Hub routing to an Event Hub behind a firewall (IoT Hub "virtual network support").
      // Public access stays enabled at namespace level because that exception applies to selected networks.
      publicNetworkAccessEnabled: true,
      networkRulesets: props.firewall
        ? [{ defaultAction: 'Deny', publicNetworkAccessEnabled: true, trustedServiceAccessEnabled: true, ipRule: [], virtualNetworkRule: [] }]
        : undefined,
      tags,
    });

    this.hub = new Eventhub(this, 'hub', {
      name: names.eventHub,
      namespaceId: this.namespace.id,
      partitionCount: config.partitionCount,
      messageRetention: config.retentionDays,
    });

    this.consumerGroup = new EventhubConsumerGroup(this, 'sync-twins', {
      name: names.consumerGroup,
      namespaceName: this.namespace.name,
      eventhubName: this.hub.name,
      resourceGroupName: resourceGroup.name,
      userMetadata: 'syncTwins function (twin-replica); no other reader',
    });

    this.fullyQualifiedNamespace = `${this.namespace.name}.servicebus.windows.net`;
  }
}
