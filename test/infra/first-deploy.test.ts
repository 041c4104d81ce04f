/**
 * Issue 9, "first deploy works": one test per finding, on the synthesized Terraform JSON.
 * Each Azure or provider behaviour behind a test is in docs/azure-behaviours.md ("Deployment").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environments, iotHubMinTlsVersion, IOT_HUB_TLS12_ENFORCEMENT_REGIONS, stateBackendFor, type EnvironmentConfig } from '../../infra/config';
import { PROPAGATION_WAITS } from '../../infra/constructs/propagation';
import { addressOf, byPath, cleanup, resources, single, synthFixture, type StackJson, type Synthesized } from './helpers';

const dev = environments.find((e) => e.name === 'dev')!;
const SMOKE_PRINCIPAL = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
/** Two extra environments: one in a region that offers TLS 1.2 enforcement, one granting smoke access. */
const extra: EnvironmentConfig[] = [
  { ...dev, name: 'us', location: 'eastus', namePrefix: 'twinus', stateBackend: stateBackendFor('twinus', 'us') },
  {
    ...dev,
    name: 'smk',
    namePrefix: 'twinsmk',
    stateBackend: stateBackendFor('twinsmk', 'smk'),
    smokeCheckAccess: { principalId: SMOKE_PRINCIPAL, principalType: 'ServicePrincipal' },
  },
];

let synth: Synthesized;
let custom: Synthesized;
beforeAll(async () => {
  synth = await synthFixture();
  custom = await synthFixture({ environments: extra });
});
afterAll(cleanup);

const stacks = () => Object.entries<StackJson>(synth.stacks);
/** Stacks that create their hub (and its identity); the attach example is covered by attach.test.ts. */
const hubStacks = () => stacks().filter(([, s]) => s.resource.azurerm_iothub !== undefined);

describe('finding 1: the function host reaches its storage through its identity', () => {
  it('AzureWebJobsStorage is not an app setting (any value, even "", hides the identity settings)', () => {
    for (const [env, s] of stacks()) {
      const settings = single(s, 'azurerm_function_app_flex_consumption').app_settings;
      expect(Object.keys(settings), env).not.toContain('AzureWebJobsStorage');
      expect(settings, env).toMatchObject({ AzureWebJobsStorage__credential: 'managedidentity' });
    }
  });

  it('a step removes what the provider writes, re-run whenever any attribute of the app changes', () => {
    for (const [env, s] of stacks()) {
      const app = addressOf(s, 'azurerm_function_app_flex_consumption', 'function-app/app');
      const step = byPath(s, 'terraform_data', 'function-code/remove-storage-setting');
      expect(step.triggers_replace, env).toEqual({ function_app: `\${${app}}` });
      expect(step.depends_on, env).toEqual([app]);
      const exec = step.provisioner[0]['local-exec'];
      expect(exec.command, env).toMatch(/function-app\.sh" remove-storage-setting$/);
      expect(exec.environment, env).toEqual({
        FUNCTION_APP: `\${${app}.name}`,
        RESOURCE_GROUP: `\${${app}.resource_group_name}`,
        SUBSCRIPTION_ID: '${data.azurerm_client_config.current.subscription_id}',
      });
    }
  });
});

describe('finding 2: code delivery is bounded and runs after the setting is gone', () => {
  it('publish waits for the removal step, so the host it health-checks is on identity-based storage', () => {
    for (const [env, s] of stacks()) {
      const publish = byPath(s, 'terraform_data', 'function-code/onedeploy');
      expect(publish.depends_on, env).toContain(addressOf(s, 'terraform_data', 'function-code/remove-storage-setting'));
      expect(publish.provisioner[0]['local-exec'].command, env).toMatch(/function-app\.sh" publish$/);
    }
  });
});

describe('finding 3: IoT Hub TLS 1.2 enforcement only where the region offers it', () => {
  it('westeurope (the default location) gets no min_tls_version, so the hub can be created', () => {
    for (const [env, s] of hubStacks()) expect(single(s, 'azurerm_iothub').min_tls_version, env).toBeUndefined();
  });

  it('eastus gets min_tls_version 1.2', () => {
    expect(single(custom.stacks.us, 'azurerm_iothub').min_tls_version).toBe('1.2');
  });

  it('the region list is exactly the one Microsoft Learn gives', () => {
    expect([...IOT_HUB_TLS12_ENFORCEMENT_REGIONS]).toEqual(['eastus', 'southcentralus', 'westus2', 'usgovarizona', 'usgovvirginia']);
    for (const region of IOT_HUB_TLS12_ENFORCEMENT_REGIONS) expect(iotHubMinTlsVersion(region)).toBe('1.2');
    for (const region of ['westeurope', 'northeurope', 'eastus2', 'westus', 'westus3']) expect(iotHubMinTlsVersion(region)).toBeUndefined();
  });
});

describe('finding 4: App Insights creates in minutes and destroy removes everything', () => {
  it('the provider does not poll for the generated "Failure Anomalies" rule', () => {
    for (const [env, s] of stacks()) {
      expect(s.provider.azurerm[0].features[0].application_insights[0].disable_generated_rule, env).toBe(false);
    }
  });

  it('destroy deletes the stack-owned resource group with what Azure added to it', () => {
    for (const [env, s] of stacks()) {
      expect(s.provider.azurerm[0].features[0].resource_group[0].prevent_deletion_if_contains_resources, env).toBe(false);
    }
  });
});

describe('finding 7: smoke-check grants do not depend on who runs the plan', () => {
  const deployer = '${data.azurerm_client_config.current.object_id}';

  it('no resource uses the object id of whoever runs Terraform', () => {
    for (const [env, raw] of Object.entries({ ...synth.raw, ...custom.raw })) expect(raw, env).not.toContain('current.object_id');
    for (const [env, s] of stacks()) {
      for (const r of [...resources(s, 'azurerm_role_assignment'), ...resources(s, 'azurerm_cosmosdb_sql_role_assignment')]) {
        expect(r.principal_id, env).not.toBe(deployer);
      }
    }
  });

  it('no smoke grant when the environment names no smoke identity (dev and prod by default)', () => {
    for (const [env, s] of stacks()) {
      const roles = resources(s, 'azurerm_role_assignment').map((r) => r.role_definition_name);
      expect(roles, env).not.toContain('IoT Hub Registry Contributor');
      expect(roles, env).not.toContain('IoT Hub Twin Contributor');
      expect(resources(s, 'azurerm_cosmosdb_sql_role_assignment'), env).toHaveLength(1);
    }
  });

  it('the configured identity gets exactly the three smoke grants, with its principal type', () => {
    const s = custom.stacks.smk;
    const grants = resources(s, 'azurerm_role_assignment').filter((r) => r.principal_id === SMOKE_PRINCIPAL);
    expect(grants.map((g) => [g.role_definition_name, g.principal_type, g.scope]).sort()).toEqual(
      [
        ['IoT Hub Registry Contributor', 'ServicePrincipal', `\${${addressOf(s, 'azurerm_iothub', 'iot-hub/hub')}.id}`],
        ['IoT Hub Twin Contributor', 'ServicePrincipal', `\${${addressOf(s, 'azurerm_iothub', 'iot-hub/hub')}.id}`],
      ].sort(),
    );
    const reader = resources(s, 'azurerm_cosmosdb_sql_role_assignment').filter((r) => r.principal_id === SMOKE_PRINCIPAL);
    expect(reader).toHaveLength(1);
    expect(reader[0].role_definition_id).toMatch(/\/sqlRoleDefinitions\/00000000-0000-0000-0000-000000000001$/);
  });
});

describe('finding 8: a first apply waits for Entra ID and RBAC to catch up', () => {
  it('declares the time provider next to azurerm', () => {
    for (const [env, s] of stacks()) {
      expect(s.terraform.required_providers.time, env).toEqual({ source: 'hashicorp/time', version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    }
  });

  it('the function identity Cosmos DB grant waits for both new identities to replicate', () => {
    for (const [env, s] of hubStacks()) {
      const wait = byPath(s, 'time_sleep', 'role-propagation/identities');
      expect(wait.create_duration, env).toBe(PROPAGATION_WAITS.identities);
      expect(Object.values(wait.triggers).sort(), env).toEqual([
        '${azurerm_user_assigned_identity.function-identity.principal_id}',
        '${azurerm_user_assigned_identity.iothub-identity.principal_id}',
      ]);
      const grant = resources(s, 'azurerm_cosmosdb_sql_role_assignment').find(
        (r) => r.principal_id === '${azurerm_user_assigned_identity.function-identity.principal_id}',
      );
      expect(grant.depends_on, env).toEqual([addressOf(s, 'time_sleep', 'role-propagation/identities')]);
    }
  });

  it('the identity-based IoT Hub endpoint waits until the sender role has propagated', () => {
    for (const [env, s] of stacks()) {
      const wait = byPath(s, 'time_sleep', 'role-propagation/iot-hub-sender-role');
      const sender = addressOf(s, 'azurerm_role_assignment', 'iot-hub/event-hubs-sender');
      expect(wait, env).toMatchObject({
        create_duration: PROPAGATION_WAITS.iotHubEndpointRole,
        triggers: { role_assignment_id: `\${${sender}.id}` },
        depends_on: [sender],
      });
      expect(single(s, 'azurerm_iothub_endpoint_eventhub').depends_on, env).toEqual([
        sender,
        addressOf(s, 'time_sleep', 'role-propagation/iot-hub-sender-role'),
      ]);
    }
  });
});

describe('finding 10: the subscription', () => {
  it('the provider takes subscription_id from the environment config when set, else leaves it to ARM_SUBSCRIPTION_ID', async () => {
    for (const [env, s] of stacks()) expect(s.provider.azurerm[0].subscription_id, env).toBeUndefined();
    const withSub = await synthFixture({ environments: [{ ...dev, subscriptionId: '00000000-0000-0000-0000-0000000000aa' }] });
    expect(withSub.stacks.dev.provider.azurerm[0].subscription_id).toBe('00000000-0000-0000-0000-0000000000aa');
  });
});
