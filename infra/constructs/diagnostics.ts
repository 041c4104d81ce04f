import { Construct } from 'constructs';
import { MonitorDiagnosticSetting } from '@cdktf/provider-azurerm/lib/monitor-diagnostic-setting';
import type { CosmosReplica } from './cosmos.js';
import type { EventHubs } from './event-hubs.js';
import type { FunctionStorage } from './storage.js';
import type { IotHubRouting } from './iot-hub.js';
import type { Telemetry } from './monitoring.js';

/**
 * Resource-log categories sent to the workspace, per resource: who read or changed data, and who
 * changed access. Category names as listed in Azure Monitor "Supported logs" for each resource type
 * (Microsoft.DocumentDB/databaseAccounts, Microsoft.Storage/storageAccounts/blobServices,
 * Microsoft.Devices/IotHubs, Microsoft.EventHub/namespaces).
 */
export const AUDIT_LOG_CATEGORIES = {
  // Every data-plane request (with the caller's AAD principal) and every control-plane change.
  cosmos: ['DataPlaneRequests', 'ControlPlaneRequests'],
  // Reads (dead letters hold raw device data), writes and deletes on the data account's blobs.
  dataBlobs: ['StorageRead', 'StorageWrite', 'StorageDelete'],
  // Service-API access to the registry and twins, routing failures, connections, jobs, methods.
  iotHub: ['DeviceIdentityOperations', 'TwinQueries', 'C2DTwinOperations', 'Routes', 'Connections', 'JobsOperations', 'DirectMethods', 'Configurations'],
  // Management operations, data-plane access audit, and connections refused by the firewall.
  eventHubs: ['OperationalLogs', 'RuntimeAuditLogs', 'EventHubVNetConnectionEvent'],
} as const;

export interface AuditDiagnosticsProps {
  readonly telemetry: Telemetry;
  readonly cosmos: CosmosReplica;
  readonly storage: FunctionStorage;
  readonly iotHub: IotHubRouting;
  readonly eventHubs: EventHubs;
}

/**
 * Diagnostic settings that make data access auditable in the environment's Log Analytics workspace
 * (kept for monitoring.logRetentionDays). A resource may have several settings, but one category goes
 * to one workspace once: these carry logs only, the Event Hubs metrics setting in monitoring.ts carries
 * metrics, so the two never overlap.
 */
export class AuditDiagnostics extends Construct {
  /** `iotHub` only for a hub the stack creates: an attached hub's logs stay where its owner sends them. */
  readonly settings: Record<Exclude<keyof typeof AUDIT_LOG_CATEGORIES, 'iotHub'>, MonitorDiagnosticSetting> & { iotHub?: MonitorDiagnosticSetting };

  constructor(scope: Construct, id: string, props: AuditDiagnosticsProps) {
    super(scope, id);
    const { telemetry, cosmos, storage, iotHub, eventHubs } = props;
    const setting = (key: keyof typeof AUDIT_LOG_CATEGORIES, targetResourceId: string, dedicated = false) =>
      new MonitorDiagnosticSetting(this, key, {
        name: 'audit-to-log-analytics',
        targetResourceId,
        logAnalyticsWorkspaceId: telemetry.workspace.id,
        // Resource-specific tables (CDBDataPlaneRequests...) where the service offers them.
        logAnalyticsDestinationType: dedicated ? 'Dedicated' : undefined,
        enabledLog: AUDIT_LOG_CATEGORIES[key].map((category) => ({ category })),
      });
    this.settings = {
      cosmos: setting('cosmos', cosmos.account.id, true),
      // Blob logs are settings on the blob service, not on the account.
      dataBlobs: setting('dataBlobs', `${storage.data.id}/blobServices/default`),
      ...(iotHub.ownedHub ? { iotHub: setting('iotHub', iotHub.ownedHub.id) } : {}),
      eventHubs: setting('eventHubs', eventHubs.namespace.id),
    };
  }
}
