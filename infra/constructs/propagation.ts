import { Construct } from 'constructs';
import { Sleep } from '@cdktf/provider-time/lib/sleep';
import type { RoleAssignment } from '@cdktf/provider-azurerm/lib/role-assignment';
import type { UserAssignedIdentity } from '@cdktf/provider-azurerm/lib/user-assigned-identity';

/**
 * How long a first apply waits for Entra ID and Azure RBAC to catch up. Each wait runs once,
 * when what it follows is created (or replaced), never on later applies.
 */
export const PROPAGATION_WAITS = {
  /**
   * After the user-assigned identities are created, before their Cosmos DB data-plane role
   * assignments: Cosmos DB looks the principal up in Entra ID and refuses one it cannot find
   * yet ("The provided principal ID ... was not found"), and the provider does not retry
   * (cosmosdb_sql_role_assignment_resource.go at v4.55.0; provider issue #28070). ARM role
   * assignments need no wait: the provider retries PrincipalNotFound itself
   * (role_assignment_resource.go, retryRoleAssignmentsClient).
   */
  identities: '90s',
  /**
   * After the IoT Hub identity is granted Event Hubs Data Sender, before the identity-based
   * endpoint is added: IoT Hub checks the endpoint when it is created, and Microsoft Learn asks
   * to "wait a few minutes for the role assignment to propagate" before adding it ("IoT Hub
   * support for managed identities", https://learn.microsoft.com/azure/iot-hub/iot-hub-managed-identity).
   * The wait runs while the hub itself is being created, so it costs little extra time.
   */
  iotHubEndpointRole: '300s',
} as const;

export interface RolePropagationProps {
  /** Identities created by this stack whose principals Cosmos DB must find. */
  readonly identities: readonly UserAssignedIdentity[];
  /** The IoT Hub identity's sender role on the event hub. */
  readonly iotHubSenderRole: RoleAssignment;
}

/** `time_sleep` resources that later resources depend on, so a first apply succeeds in one run. */
export class RolePropagation extends Construct {
  readonly identities: Sleep;
  readonly iotHubSenderRole: Sleep;

  constructor(scope: Construct, id: string, props: RolePropagationProps) {
    super(scope, id);
    this.identities = new Sleep(this, 'identities', {
      createDuration: PROPAGATION_WAITS.identities,
      triggers: Object.fromEntries(props.identities.map((identity, i) => [`principal_${i}`, identity.principalId])),
      dependsOn: [...props.identities],
    });
    this.iotHubSenderRole = new Sleep(this, 'iot-hub-sender-role', {
      createDuration: PROPAGATION_WAITS.iotHubEndpointRole,
      triggers: { role_assignment_id: props.iotHubSenderRole.id },
      dependsOn: [props.iotHubSenderRole],
    });
  }
}
