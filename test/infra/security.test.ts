import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configProblems, environments, findEnvironment, isAttached, stateSeparationProblems, type CreateIotHubConfig, type EnvironmentConfig } from '../../infra/config';
import { synthesize } from '../../infra/app';
import { AUDIT_LOG_CATEGORIES } from '../../infra/constructs/diagnostics';
import { DENY_LOCAL_AUTH_POLICIES } from '../../infra/constructs/protection';
import { PRIVATE_DNS_ZONES } from '../../infra/constructs/network';
import { REDRIVEN_PREFIX } from '../../tools/redrive';
import { addressOf, byPath, cleanup, ref, resources, single, synthFixture, tempDir, type StackJson, type Synthesized } from './helpers';

// Security controls of issue 15, each pinned on the synthesized Terraform JSON.
let synth: Synthesized;
let privateDev: StackJson;
let cmkDev: StackJson;
const dev = findEnvironment('dev');
const prod = findEnvironment('prod');
const privateConfig: EnvironmentConfig = { ...dev, network: { mode: 'private', addressSpace: '10.40.0.0/22' } };
const VAULT = '/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/kv-twinrep-keys';
const cmkConfig: EnvironmentConfig = { ...dev, customerManagedKeys: { keyVaultId: VAULT, cosmosKeyName: 'cosmos-cmk', storageKeyName: 'storage-cmk' } };

beforeAll(async () => {
  synth = await synthFixture();
  privateDev = (await synthFixture({ environments: [privateConfig] })).stacks.dev;
  cmkDev = (await synthFixture({ environments: [cmkConfig] })).stacks.dev;
});
afterAll(cleanup);

describe('state per environment', () => {
  it('each environment has its own state account; a shared one is refused before synth', async () => {
    expect(new Set(environments.map((e) => e.stateBackend.storageAccountName)).size).toBe(environments.length);
    expect(dev.stateBackend.storageAccountName).toBe('sttwinrepdevtfstate');
    expect(prod.stateBackend.storageAccountName).toBe('sttwinrepprodtfstate');
    expect(stateSeparationProblems(environments)).toEqual([]);
    const shared = [dev, { ...prod, stateBackend: dev.stateBackend }];
    expect(stateSeparationProblems(shared)).toEqual([
      'environments "dev" and "prod" share the state storage account "sttwinrepdevtfstate": each needs its own',
    ]);
    await expect(synthesize({ environments: shared, outdir: await tempDir(), functionsPackageDir: synth.packageDir })).rejects.toThrow(/share the state storage account/);
  });

  it('each stack writes its state to its own account, with Entra ID', () => {
    for (const env of environments) {
      expect(synth.stacks[env.name].terraform.backend.azurerm).toMatchObject({
        storage_account_name: env.stateBackend.storageAccountName,
        use_azuread_auth: true,
      });
    }
  });
});

describe.each(environments.map((e) => [e.name]))('stack %s', (envName) => {
  const cfg = findEnvironment(envName);
  let s: StackJson;
  beforeAll(() => {
    s = synth.stacks[envName];
  });

  it('the function app denies inbound by default; SCM stays reachable for OneDeploy (Entra ID only)', () => {
    const app = single(s, 'azurerm_function_app_flex_consumption');
    expect(app.site_config).toMatchObject({
      ip_restriction_default_action: 'Deny',
      scm_use_main_ip_restriction: false,
      scm_ip_restriction_default_action: 'Allow',
    });
    expect(app.site_config.ip_restriction ?? []).toEqual([]);
    expect(app.webdeploy_publish_basic_authentication_enabled).toBe(false);
  });

  it('lifecycle rules delete dead letters, redriven dead letters, reports and old versions after the configured days', () => {
    const policy = single(s, 'azurerm_storage_management_policy');
    expect(policy.storage_account_id).toBe(ref(s, 'azurerm_storage_account', 'storage/data', 'id'));
    const rules = Object.fromEntries(policy.rule.map((r: { name: string }) => [r.name, r]));
    const r = cfg.storage.retention;
    expect(rules.deadletters).toMatchObject({
      enabled: true,
      filters: { prefix_match: ['deadletters/'], blob_types: ['blockBlob'] },
      actions: { base_blob: { delete_after_days_since_modification_greater_than: r.deadLetterDays } },
    });
    expect(rules.redriven).toMatchObject({
      filters: { prefix_match: [`deadletters/${REDRIVEN_PREFIX}`] },
      actions: { base_blob: { delete_after_days_since_modification_greater_than: r.redrivenDays } },
    });
    expect(rules.reports).toMatchObject({
      filters: { prefix_match: ['reports/'] },
      actions: { base_blob: { delete_after_days_since_modification_greater_than: r.reportDays } },
    });
    expect(rules['previous-versions']).toMatchObject({ actions: { version: { delete_after_days_since_creation: r.previousVersionDays } } });
    expect(Object.keys(rules)).toHaveLength(4);
  });

  it('audit logs: Cosmos data plane, data-account blob reads/writes/deletes, IoT Hub, Event Hubs go to the workspace', () => {
    const workspace = ref(s, 'azurerm_log_analytics_workspace', 'telemetry/workspace', 'id');
    const targets = {
      cosmos: ref(s, 'azurerm_cosmosdb_account', 'cosmos/account', 'id'),
      dataBlobs: `${ref(s, 'azurerm_storage_account', 'storage/data', 'id')}/blobServices/default`,
      // An attached hub's logs stay where its owner sends them (attach.test.ts).
      ...(isAttached(cfg.iotHub) ? {} : { iotHub: ref(s, 'azurerm_iothub', 'iot-hub/hub', 'id') }),
      eventHubs: ref(s, 'azurerm_eventhub_namespace', '/namespace', 'id'),
    };
    for (const [key, target] of Object.entries(targets)) {
      const setting = byPath(s, 'azurerm_monitor_diagnostic_setting', `audit/${key}`);
      expect(setting, key).toMatchObject({ target_resource_id: target, log_analytics_workspace_id: workspace });
      expect(setting.enabled_log.map((l: { category: string }) => l.category), key).toEqual([...AUDIT_LOG_CATEGORIES[key as keyof typeof AUDIT_LOG_CATEGORIES]]);
      expect(setting.enabled_metric, key).toBeUndefined();
    }
    expect(AUDIT_LOG_CATEGORIES.cosmos).toContain('DataPlaneRequests');
    expect(AUDIT_LOG_CATEGORIES.dataBlobs).toEqual(['StorageRead', 'StorageWrite', 'StorageDelete']);
    // The metrics setting on the namespace carries no logs: no category is sent twice.
    expect(byPath(s, 'azurerm_monitor_diagnostic_setting', 'alerts/event-hubs-metrics').enabled_log).toBeUndefined();
  });

  it(`continuous backup keeps ${cfg.cosmos.backupTier}`, () => {
    expect(single(s, 'azurerm_cosmosdb_account').backup).toEqual({ type: 'Continuous', tier: envName === 'prod' ? 'Continuous30Days' : 'Continuous7Days' });
  });

  it(envName === 'prod' ? 'locks the hub, Cosmos and the data account, and Terraform refuses to destroy them' : 'has no locks (dev is disposable)', () => {
    const locks = resources(s, 'azurerm_management_lock');
    const protectedAddresses = [
      ...(isAttached(cfg.iotHub) ? [] : [addressOf(s, 'azurerm_iothub', 'iot-hub/hub')]),
      addressOf(s, 'azurerm_cosmosdb_account', 'cosmos/account'),
      addressOf(s, 'azurerm_storage_account', 'storage/data'),
      addressOf(s, 'azurerm_cosmosdb_sql_database', 'cosmos/database'),
      addressOf(s, 'azurerm_cosmosdb_sql_container', 'cosmos/twins'),
    ];
    const preventDestroy = (address: string) => {
      const [type, name] = address.split('.');
      return s.resource[type][name].lifecycle?.prevent_destroy === true;
    };
    if (envName === 'prod') {
      expect(locks.map((l) => [l.scope, l.lock_level]).sort()).toEqual(
        [
          [ref(s, 'azurerm_iothub', 'iot-hub/hub', 'id'), 'CanNotDelete'],
          [ref(s, 'azurerm_cosmosdb_account', 'cosmos/account', 'id'), 'CanNotDelete'],
          [ref(s, 'azurerm_storage_account', 'storage/data', 'id'), 'CanNotDelete'],
        ].sort(),
      );
      for (const address of protectedAddresses) expect(preventDestroy(address), address).toBe(true);
    } else {
      expect(locks).toEqual([]);
      for (const address of protectedAddresses) expect(preventDestroy(address), address).toBe(false);
    }
  });

  it(envName === 'prod' ? 'assigns the built-in Deny policies for local auth on the resource group' : 'assigns no deny policies', () => {
    const assignments = resources(s, 'azurerm_resource_group_policy_assignment');
    if (envName !== 'prod') {
      expect(assignments).toEqual([]);
      return;
    }
    expect(assignments.map((a) => a.policy_definition_id).sort()).toEqual(Object.values(DENY_LOCAL_AUTH_POLICIES).map((p) => p.id).sort());
    for (const a of assignments) {
      expect(a.resource_group_id).toBe('${azurerm_resource_group.rg.id}');
      expect(JSON.parse(a.parameters)).toEqual({ effect: { value: 'Deny' } });
      expect(a.enforce).toBe(true);
      expect(a.policy_definition_id).toMatch(/^\/providers\/Microsoft\.Authorization\/policyDefinitions\/[0-9a-f-]{36}$/);
    }
  });

  it('public network mode (both shipped environments): no VNet, no private endpoints, public endpoints with Entra ID only', () => {
    expect(cfg.network.mode).toBe('public');
    expect(s.resource.azurerm_virtual_network).toBeUndefined();
    expect(s.resource.azurerm_private_endpoint).toBeUndefined();
    expect(s.resource.azurerm_nat_gateway).toBeUndefined();
    expect(single(s, 'azurerm_function_app_flex_consumption').virtual_network_subnet_id).toBeUndefined();
    expect(single(s, 'azurerm_eventhub_namespace').network_rulesets).toBeUndefined();
  });
});

describe('private network mode', () => {
  const s = () => privateDev;

  it('the endpoint waits until the role of the identity it sends with (the hub\'s system identity) has propagated', () => {
    const trusted = addressOf(s(), 'azurerm_role_assignment', 'network/iot-hub-system-identity-sender');
    expect(byPath(s(), 'time_sleep', 'role-propagation/iot-hub-sender-role')).toMatchObject({
      triggers: { role_assignment_id: `\${${trusted}.id}` },
      depends_on: [trusted],
    });
    expect(single(s(), 'azurerm_iothub_endpoint_eventhub').depends_on).toContain(addressOf(s(), 'time_sleep', 'role-propagation/iot-hub-sender-role'));
  });

  it('a VNet with a Flex integration subnet (delegated to Microsoft.App/environments) and a private-endpoint subnet', () => {
    expect(single(s(), 'azurerm_virtual_network').address_space).toEqual(['10.40.0.0/22']);
    const functions = byPath(s(), 'azurerm_subnet', 'network/functions');
    expect(functions.address_prefixes).toEqual(['${cidrsubnet("10.40.0.0/22", 4, 0)}']);
    expect(functions.delegation).toEqual([
      { name: 'flex-consumption', service_delegation: { name: 'Microsoft.App/environments', actions: ['Microsoft.Network/virtualNetworks/subnets/join/action'] } },
    ]);
    expect(byPath(s(), 'azurerm_subnet', 'network/private-endpoints').address_prefixes).toEqual(['${cidrsubnet("10.40.0.0/22", 4, 1)}']);
  });

  it('the integration subnet leaves through a NAT gateway with one static public IP', () => {
    expect(single(s(), 'azurerm_public_ip')).toMatchObject({ allocation_method: 'Static', sku: 'Standard' });
    expect(single(s(), 'azurerm_nat_gateway').sku_name).toBe('Standard');
    expect(single(s(), 'azurerm_nat_gateway_public_ip_association')).toEqual(
      expect.objectContaining({ nat_gateway_id: ref(s(), 'azurerm_nat_gateway', 'network/egress', 'id'), public_ip_address_id: ref(s(), 'azurerm_public_ip', 'network/egress-ip', 'id') }),
    );
    expect(single(s(), 'azurerm_subnet_nat_gateway_association')).toEqual(
      expect.objectContaining({ subnet_id: ref(s(), 'azurerm_subnet', 'network/functions', 'id'), nat_gateway_id: ref(s(), 'azurerm_nat_gateway', 'network/egress', 'id') }),
    );
  });

  it('the function app routes all outbound traffic through the integration subnet and waits for the endpoints', () => {
    const app = single(s(), 'azurerm_function_app_flex_consumption');
    expect(app.virtual_network_subnet_id).toBe(ref(s(), 'azurerm_subnet', 'network/functions', 'id'));
    expect(app.site_config.vnet_route_all_enabled).toBe(true);
    expect(app.site_config.ip_restriction_default_action).toBe('Deny');
    const endpoints = Object.keys(s().resource.azurerm_private_endpoint).map((k) => `azurerm_private_endpoint.${k}`);
    expect(app.depends_on).toEqual(expect.arrayContaining(endpoints));
  });

  it('private endpoints with DNS zones for Cosmos, the host account (blob, queue, table), the data account and Event Hubs', () => {
    const endpoints = resources(s(), 'azurerm_private_endpoint').map((pe) => [pe.private_service_connection.private_connection_resource_id, pe.private_service_connection.subresource_names[0], pe.private_dns_zone_group.private_dns_zone_ids[0]]);
    const zone = (sub: string) => ref(s(), 'azurerm_private_dns_zone', `network/zone-${sub}`, 'id');
    const host = ref(s(), 'azurerm_storage_account', 'storage/host', 'id');
    expect(endpoints.sort()).toEqual(
      [
        [ref(s(), 'azurerm_cosmosdb_account', 'cosmos/account', 'id'), 'Sql', zone('Sql')],
        [host, 'blob', zone('blob')],
        [host, 'queue', zone('queue')],
        [host, 'table', zone('table')],
        [ref(s(), 'azurerm_storage_account', 'storage/data', 'id'), 'blob', zone('blob')],
        [ref(s(), 'azurerm_eventhub_namespace', '/namespace', 'id'), 'namespace', zone('namespace')],
      ].sort(),
    );
    expect(resources(s(), 'azurerm_private_dns_zone').map((z) => z.name).sort()).toEqual(Object.values(PRIVATE_DNS_ZONES).sort());
    for (const link of resources(s(), 'azurerm_private_dns_zone_virtual_network_link')) {
      expect(link).toMatchObject({ virtual_network_id: ref(s(), 'azurerm_virtual_network', 'network/vnet', 'id'), registration_enabled: false });
    }
  });

  it('public network access off on Cosmos (no Azure-services bypass) and both storage accounts', () => {
    expect(single(s(), 'azurerm_cosmosdb_account')).toMatchObject({ public_network_access_enabled: false, network_acl_bypass_for_azure_services: false });
    for (const account of resources(s(), 'azurerm_storage_account')) expect(account.public_network_access_enabled).toBe(false);
    // The deploying machine cannot reach the storage data plane any more: the provider must not wait for it.
    expect(s().provider.azurerm[0].features[0].storage).toEqual([{ data_plane_available: false }]);
  });

  it('Event Hubs: deny all networks but trusted Microsoft services, so IoT Hub routing still reaches it', () => {
    expect(single(s(), 'azurerm_eventhub_namespace').network_rulesets).toEqual([
      { default_action: 'Deny', public_network_access_enabled: true, trusted_service_access_enabled: true, ip_rule: [], virtual_network_rule: [] },
    ]);
  });

  it('IoT Hub routes through the firewall with its system-assigned identity, which may send to the hub first', () => {
    const hub = single(s(), 'azurerm_iothub');
    expect(hub.identity.type).toBe('SystemAssigned, UserAssigned');
    const sender = byPath(s(), 'azurerm_role_assignment', 'network/iot-hub-system-identity-sender');
    expect(sender).toMatchObject({
      scope: ref(s(), 'azurerm_eventhub', '/hub', 'id'),
      role_definition_name: 'Azure Event Hubs Data Sender',
      principal_id: ref(s(), 'azurerm_iothub', 'iot-hub/hub', 'identity[0].principal_id'),
    });
    const endpoint = single(s(), 'azurerm_iothub_endpoint_eventhub');
    expect(endpoint.authentication_type).toBe('identityBased');
    expect(endpoint.identity_id ?? null).toBeNull();
    expect(endpoint.depends_on).toContain(addressOf(s(), 'azurerm_role_assignment', 'network/iot-hub-system-identity-sender'));
  });

  it('public mode keeps routing with the user-assigned identity only', () => {
    const pub = synth.stacks.dev;
    expect(single(pub, 'azurerm_iothub').identity.type).toBe('UserAssigned');
    expect(single(pub, 'azurerm_iothub_endpoint_eventhub').identity_id).toBe(ref(pub, 'azurerm_user_assigned_identity', 'iothub-identity', 'id'));
  });

  it('what stays public: the IoT Hub (devices) and the SCM site (OneDeploy, Entra ID only)', () => {
    expect(single(s(), 'azurerm_iothub').public_network_access_enabled).toBe(true);
    expect(single(s(), 'azurerm_function_app_flex_consumption')).toMatchObject({
      public_network_access_enabled: true,
      webdeploy_publish_basic_authentication_enabled: false,
      site_config: { scm_ip_restriction_default_action: 'Allow', scm_use_main_ip_restriction: false },
    });
  });
});

describe('configuration of the controls', () => {
  it('refuses retention days out of range and redriven kept longer than waiting dead letters', () => {
    const bad = { ...dev, storage: { ...dev.storage, retention: { deadLetterDays: 30, redrivenDays: 60, reportDays: 0, previousVersionDays: 7 } } };
    expect(configProblems(bad)).toEqual([
      'storage.retention.reportDays must be an integer from 1 to 3650, got 0',
      'storage.retention.redrivenDays (60) must not exceed storage.retention.deadLetterDays (30): the dead-letter rule also covers redriven/',
    ]);
  });

  it('refuses an unknown network mode or a bad address space', () => {
    expect(configProblems({ ...dev, network: { mode: 'vpn' as 'public', addressSpace: '10.0.0.0/8' } })).toEqual([
      'network.mode must be one of "public", "private", got "vpn"',
      'network.addressSpace must be an IPv4 CIDR from /16 to /24 (two /26 subnets and room to grow), got "10.0.0.0/8"',
    ]);
  });

  it('refuses IoT Hub local auth while the deny policy is on', () => {
    expect(configProblems({ ...prod, iotHub: { ...(prod.iotHub as CreateIotHubConfig), localAuthenticationEnabled: true } })).toEqual([
      'iotHub.localAuthenticationEnabled cannot be true while protection.denyLocalAuthPolicies denies it',
    ]);
  });
});

describe('customer-managed keys (option, off in dev and prod)', () => {
  it('the shipped environments use Microsoft-managed keys', () => {
    for (const env of environments) {
      expect(env.customerManagedKeys).toBeUndefined();
      const stack = synth.stacks[env.name];
      expect(single(stack, 'azurerm_cosmosdb_account').key_vault_key_id).toBeUndefined();
      for (const account of resources(stack, 'azurerm_storage_account')) expect(account.customer_managed_key).toBeUndefined();
    }
  });

  it('one encryption identity, granted Crypto Service Encryption User on each key alone', () => {
    const identity = ref(cmkDev, 'azurerm_user_assigned_identity', 'customer-managed-keys/identity', 'principal_id');
    const grants = resources(cmkDev, 'azurerm_role_assignment').filter((r) => r.principal_id === identity);
    expect(grants.map((g) => [g.role_definition_name, g.scope]).sort()).toEqual(
      [
        ['Key Vault Crypto Service Encryption User', `${VAULT}/keys/cosmos-cmk`],
        ['Key Vault Crypto Service Encryption User', `${VAULT}/keys/storage-cmk`],
      ].sort(),
    );
    expect(cmkDev.resource.azurerm_key_vault).toBeUndefined();
    expect(cmkDev.resource.azurerm_key_vault_key).toBeUndefined();
  });

  it('Cosmos DB encrypts with the versionless key through that identity, after the grant exists', () => {
    const identityId = ref(cmkDev, 'azurerm_user_assigned_identity', 'customer-managed-keys/identity', 'id');
    const account = single(cmkDev, 'azurerm_cosmosdb_account');
    expect(account).toMatchObject({
      key_vault_key_id: 'https://kv-twinrep-keys.vault.azure.net/keys/cosmos-cmk',
      default_identity_type: `UserAssignedIdentity=${identityId}`,
      identity: { type: 'UserAssigned', identity_ids: [identityId] },
    });
    expect(account.depends_on).toContain(addressOf(cmkDev, 'azurerm_role_assignment', 'customer-managed-keys/cosmos-key-user'));
  });

  it('both storage accounts encrypt with the storage key through that identity', () => {
    const identityId = ref(cmkDev, 'azurerm_user_assigned_identity', 'customer-managed-keys/identity', 'id');
    for (const account of resources(cmkDev, 'azurerm_storage_account')) {
      expect(account).toMatchObject({
        identity: { type: 'UserAssigned', identity_ids: [identityId] },
        customer_managed_key: { key_vault_key_id: 'https://kv-twinrep-keys.vault.azure.net/keys/storage-cmk', user_assigned_identity_id: identityId },
      });
      expect(account.depends_on).toContain(addressOf(cmkDev, 'azurerm_role_assignment', 'customer-managed-keys/storage-key-user'));
    }
  });

  it('refuses a vault id or key name Azure would refuse', () => {
    expect(configProblems({ ...dev, customerManagedKeys: { keyVaultId: 'kv-twinrep-keys', cosmosKeyName: 'a b', storageKeyName: 'ok' } })).toEqual([
      'customerManagedKeys.keyVaultId must be a Key Vault resource id (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>), got "kv-twinrep-keys"',
      'customerManagedKeys.cosmosKeyName must be a Key Vault key name (1..127 letters, digits, hyphens), got "a b"',
    ]);
    expect(configProblems(cmkConfig)).toEqual([]);
  });
});
