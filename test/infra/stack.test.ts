import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environments, findEnvironment, isAttached, type CreateIotHubConfig } from '../../infra/config';
import { resourceNames } from '../../infra/naming';
import { REPLICA_INDEXING_POLICY } from '../../infra/constructs/cosmos';
import { addressOf, byPath, cleanup, ref, resources, single, synthFixture, type StackJson, type Synthesized } from './helpers';

let synth: Synthesized;
beforeAll(async () => {
  synth = await synthFixture();
});
afterAll(cleanup);

const role = (stack: StackJson, suffix: string) => byPath(stack, 'azurerm_role_assignment', suffix);

describe('app', () => {
  it('writes one stack per configured environment', () => {
    expect(Object.keys(synth.stacks).sort()).toEqual(environments.map((e) => e.name).sort());
    expect(Object.keys(synth.stacks)).toEqual(expect.arrayContaining(['dev', 'prod']));
  });
});

// Stacks that create their hub; the attach example has its own tests (attach.test.ts).
describe.each(environments.filter((e) => !isAttached(e.iotHub)).map((e) => [e.name]))('stack %s', (envName) => {
  const cfg = findEnvironment(envName);
  const names = resourceNames(cfg);
  let s: StackJson;
  beforeAll(() => {
    s = synth.stacks[envName];
  });

  it('pins the azurerm provider and uses Entra ID for storage data plane', () => {
    expect(s.terraform.required_providers.azurerm.version).toBe('4.55.0');
    const provider = s.provider.azurerm[0];
    expect(provider.storage_use_azuread).toBe(true);
    // No Key Vault any more (it held nothing): no key_vault feature block either.
    expect(provider.features[0].key_vault).toBeUndefined();
  });

  it('stores state in an azurerm backend with Entra ID auth and one key per stack', () => {
    expect(s.terraform.backend).toEqual({
      azurerm: {
        resource_group_name: cfg.stateBackend.resourceGroupName,
        storage_account_name: cfg.stateBackend.storageAccountName,
        container_name: cfg.stateBackend.containerName,
        key: `twin-replica/${envName}.tfstate`,
        use_azuread_auth: true,
      },
    });
  });

  it('creates the resource group in the configured region', () => {
    expect(single(s, 'azurerm_resource_group')).toMatchObject({ name: names.resourceGroup, location: cfg.location, tags: cfg.tags });
  });

  it('creates two user-assigned identities: one for the function, one for IoT Hub', () => {
    const ids = resources(s, 'azurerm_user_assigned_identity').map((i) => i.name).sort();
    expect(ids).toEqual([names.functionIdentity, names.iotHubIdentity].sort());
  });

  describe('Event Hubs', () => {
    it('namespace is Standard, SAS off, TLS 1.2, capacity from config', () => {
      const ns = single(s, 'azurerm_eventhub_namespace');
      expect(ns).toMatchObject({
        name: names.eventHubNamespace,
        sku: 'Standard',
        capacity: cfg.eventHubs.capacity,
        local_authentication_enabled: false,
        minimum_tls_version: '1.2',
        auto_inflate_enabled: cfg.eventHubs.autoInflateMaxThroughputUnits > 0,
      });
      if (cfg.eventHubs.autoInflateMaxThroughputUnits > 0) {
        expect(ns.maximum_throughput_units).toBe(cfg.eventHubs.autoInflateMaxThroughputUnits);
      } else {
        expect(ns.maximum_throughput_units).toBeUndefined();
      }
    });

    it('hub has the configured partitions and retention (>= 1 day, 7 in prod)', () => {
      const hub = single(s, 'azurerm_eventhub');
      expect(hub).toMatchObject({
        name: 'iothub-events',
        partition_count: cfg.eventHubs.partitionCount,
        message_retention: cfg.eventHubs.retentionDays,
        namespace_id: ref(s, 'azurerm_eventhub_namespace', '/namespace', 'id'),
      });
      expect(hub.message_retention).toBeGreaterThanOrEqual(1);
      if (envName === 'prod') expect(hub.message_retention).toBe(7);
    });

    it('has a dedicated consumer group for syncTwins', () => {
      expect(single(s, 'azurerm_eventhub_consumer_group')).toMatchObject({
        name: 'sync-twins',
        eventhub_name: ref(s, 'azurerm_eventhub', '/hub', 'name'),
        namespace_name: ref(s, 'azurerm_eventhub_namespace', '/namespace', 'name'),
      });
    });
  });

  describe('IoT Hub and routing', () => {
    it('hub uses the configured SKU, the user-assigned identity, no hub SAS, and no inline routing', () => {
      const hub = single(s, 'azurerm_iothub');
      expect(hub).toMatchObject({
        name: names.iotHub,
        sku: { name: (cfg.iotHub as CreateIotHubConfig).sku, capacity: (cfg.iotHub as CreateIotHubConfig).capacity },
        identity: { type: 'UserAssigned', identity_ids: ['${azurerm_user_assigned_identity.iothub-identity.id}'] },
        local_authentication_enabled: false,
      });
      expect(hub.sku.name).toBe('S1');
      expect(hub.endpoint).toBeUndefined();
      expect(hub.route).toBeUndefined();
      expect(hub.fallback_route).toBeUndefined();
    });

    it('grants the hub identity Event Hubs Data Sender on the hub before the endpoint exists', () => {
      const sender = role(s, 'iot-hub/event-hubs-sender');
      expect(sender).toMatchObject({
        role_definition_name: 'Azure Event Hubs Data Sender',
        scope: ref(s, 'azurerm_eventhub', '/hub', 'id'),
        principal_id: '${azurerm_user_assigned_identity.iothub-identity.principal_id}',
      });
      const endpoint = single(s, 'azurerm_iothub_endpoint_eventhub');
      expect(endpoint.depends_on).toContain(addressOf(s, 'azurerm_role_assignment', 'iot-hub/event-hubs-sender'));
    });

    it('endpoint is identity-based on the Event Hubs namespace and hub', () => {
      expect(single(s, 'azurerm_iothub_endpoint_eventhub')).toMatchObject({
        name: 'twin-events',
        authentication_type: 'identityBased',
        identity_id: '${azurerm_user_assigned_identity.iothub-identity.id}',
        endpoint_uri: `sb://${ref(s, 'azurerm_eventhub_namespace', '/namespace', 'name')}.servicebus.windows.net`,
        entity_path: ref(s, 'azurerm_eventhub', '/hub', 'name'),
        iothub_id: ref(s, 'azurerm_iothub', 'iot-hub/hub', 'id'),
      });
      expect(single(s, 'azurerm_iothub_endpoint_eventhub').connection_string).toBeUndefined();
    });

    it('routes exactly TwinChangeEvents, DeviceLifecycleEvents and DeviceConnectionStateEvents to that endpoint', () => {
      const routes = resources(s, 'azurerm_iothub_route');
      expect(routes.map((r) => r.source).sort()).toEqual(
        ['DeviceConnectionStateEvents', 'DeviceLifecycleEvents', 'TwinChangeEvents'].sort(),
      );
      for (const r of routes) {
        expect(r).toMatchObject({
          enabled: true,
          condition: 'true',
          endpoint_names: [ref(s, 'azurerm_iothub_endpoint_eventhub', 'iot-hub/endpoint', 'name')],
          iothub_name: ref(s, 'azurerm_iothub', 'iot-hub/hub', 'name'),
        });
      }
    });

    it('keeps the fallback route on, to the built-in events endpoint', () => {
      expect(single(s, 'azurerm_iothub_fallback_route')).toMatchObject({
        enabled: true,
        source: 'DeviceMessages',
        condition: 'true',
        endpoint_names: ['events'],
      });
    });
  });

  describe('Cosmos DB', () => {
    it('account disables keys and metadata writes, TLS 1.2, Session consistency, continuous backup', () => {
      const account = single(s, 'azurerm_cosmosdb_account');
      expect(account).toMatchObject({
        name: names.cosmosAccount,
        offer_type: 'Standard',
        kind: 'GlobalDocumentDB',
        local_authentication_disabled: true,
        access_key_metadata_writes_enabled: false,
        minimal_tls_version: 'Tls12',
        consistency_policy: { consistency_level: 'Session' },
        geo_location: [{ location: '${azurerm_resource_group.rg.location}', failover_priority: 0, zone_redundant: cfg.cosmos.zoneRedundant }],
        backup: { type: 'Continuous', tier: cfg.cosmos.backupTier },
      });
    });

    it(`throughput mode is ${cfg.cosmos.throughput.mode}`, () => {
      const account = single(s, 'azurerm_cosmosdb_account');
      const container = single(s, 'azurerm_cosmosdb_sql_container');
      if (cfg.cosmos.throughput.mode === 'serverless') {
        expect(account.capabilities).toEqual([{ name: 'EnableServerless' }]);
        expect(container.autoscale_settings).toBeUndefined();
        expect(container.throughput).toBeUndefined();
      } else {
        expect(account.capabilities).toBeUndefined();
        expect(container.autoscale_settings).toEqual({ max_throughput: cfg.cosmos.throughput.maxThroughput });
      }
    });

    it('database twin-replica and container twins partitioned by /deviceId (hash v2) with TTL on, no default expiry', () => {
      expect(single(s, 'azurerm_cosmosdb_sql_database').name).toBe('twin-replica');
      expect(single(s, 'azurerm_cosmosdb_sql_container')).toMatchObject({
        name: 'twins',
        database_name: ref(s, 'azurerm_cosmosdb_sql_database', 'cosmos/database', 'name'),
        partition_key_paths: ['/deviceId'],
        partition_key_kind: 'Hash',
        partition_key_version: 2,
        default_ttl: -1,
      });
    });

    it('indexes what readers query and excludes $metadata, replica bookkeeping and the rest', () => {
      const policy = single(s, 'azurerm_cosmosdb_sql_container').indexing_policy;
      expect(policy.indexing_mode).toBe('consistent');
      const included = policy.included_path.map((p: { path: string }) => p.path);
      const excluded = policy.excluded_path.map((p: { path: string }) => p.path);
      expect(included).toEqual([...REPLICA_INDEXING_POLICY.includedPath]);
      expect(included).toEqual(
        expect.arrayContaining(['/deviceId/?', '/moduleId/?', '/tags/*', '/properties/desired/*', '/properties/reported/*', '/connectionState/?', '/deleted/?']),
      );
      expect(excluded).toEqual(
        expect.arrayContaining(['/*', '/properties/desired/"$metadata"/*', '/properties/reported/"$metadata"/*', '/replica/*']),
      );
    });

    it('grants the function identity a custom data role on the replica container: read, query, create, replace; no delete', () => {
      const assignments = resources(s, 'azurerm_cosmosdb_sql_role_assignment');
      const fn = assignments.find((a) => a.principal_id === '${azurerm_user_assigned_identity.function-identity.principal_id}');
      const container = `${ref(s, 'azurerm_cosmosdb_account', 'cosmos/account', 'id')}/dbs/${ref(s, 'azurerm_cosmosdb_sql_database', 'cosmos/database', 'name')}/colls/${ref(s, 'azurerm_cosmosdb_sql_container', 'cosmos/twins', 'name')}`;
      expect(fn).toMatchObject({
        role_definition_id: ref(s, 'azurerm_cosmosdb_sql_role_definition', 'function-access/cosmos-replica-writer-role', 'id'),
        scope: container,
      });
      const definition = single(s, 'azurerm_cosmosdb_sql_role_definition');
      expect(definition).toMatchObject({ type: 'CustomRole', assignable_scopes: [container] });
      const actions: string[] = definition.permissions.flatMap((p: { data_actions: string[] }) => p.data_actions);
      expect(actions.sort()).toEqual(
        [
          'Microsoft.DocumentDB/databaseAccounts/readMetadata',
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery',
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/create',
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read',
          'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/replace',
        ].sort(),
      );
      expect(actions.some((a) => /delete|\*|upsert/.test(a))).toBe(false);
    });
  });

  it('has no Key Vault: nothing needs a secret, so no vault and no vault grant', () => {
    expect(s.resource.azurerm_key_vault).toBeUndefined();
    expect(resources(s, 'azurerm_role_assignment').filter((r) => /Key Vault/.test(r.role_definition_name ?? ''))).toEqual([]);
  });

  describe('storage', () => {
    it('both accounts have shared keys off, TLS 1.2, HTTPS only, no public blobs', () => {
      const accounts = resources(s, 'azurerm_storage_account');
      expect(accounts.map((a) => a.name).sort()).toEqual([names.dataStorage, names.hostStorage].sort());
      for (const a of accounts) {
        expect(a).toMatchObject({
          account_kind: 'StorageV2',
          account_replication_type: cfg.storage.replication,
          shared_access_key_enabled: false,
          default_to_oauth_authentication: true,
          min_tls_version: 'TLS1_2',
          https_traffic_only_enabled: true,
          allow_nested_items_to_be_public: false,
          cross_tenant_replication_enabled: false,
        });
      }
    });

    it('data account keeps versions and soft-deleted blobs', () => {
      expect(byPath(s, 'azurerm_storage_account', 'storage/data').blob_properties).toEqual({
        versioning_enabled: true,
        delete_retention_policy: { days: cfg.storage.blobSoftDeleteDays },
        container_delete_retention_policy: { days: cfg.storage.blobSoftDeleteDays },
      });
    });

    it('containers: app-package on host; deadletters and reports on data; all private, created via ARM', () => {
      const host = ref(s, 'azurerm_storage_account', 'storage/host', 'id');
      const data = ref(s, 'azurerm_storage_account', 'storage/data', 'id');
      const containers = resources(s, 'azurerm_storage_container').map((c) => [c.name, c.storage_account_id, c.container_access_type]);
      expect(containers.sort()).toEqual(
        [
          ['app-package', host, 'private'],
          ['deadletters', data, 'private'],
          ['reports', data, 'private'],
        ].sort(),
      );
    });
  });

  describe('function app', () => {
    it('runs on a Flex Consumption (FC1, Linux) plan', () => {
      expect(single(s, 'azurerm_service_plan')).toMatchObject({ name: names.servicePlan, sku_name: 'FC1', os_type: 'Linux' });
    });

    it('is Node 22, user-assigned identity, HTTPS only, TLS 1.2, basic-auth publishing off', () => {
      const app = single(s, 'azurerm_function_app_flex_consumption');
      expect(app).toMatchObject({
        name: names.functionApp,
        runtime_name: 'node',
        runtime_version: '22',
        https_only: true,
        webdeploy_publish_basic_authentication_enabled: false,
        identity: { type: 'UserAssigned', identity_ids: ['${azurerm_user_assigned_identity.function-identity.id}'] },
        maximum_instance_count: cfg.functionApp.maximumInstanceCount,
        instance_memory_in_mb: cfg.functionApp.instanceMemoryMb,
        site_config: { minimum_tls_version: '1.2', scm_minimum_tls_version: '1.2', remote_debugging_enabled: false },
      });
      expect(app.zip_deploy_file).toBeUndefined();
      expect(app.storage_access_key).toBeUndefined();
    });

    it('deployment storage is the app-package container, reached with the user-assigned identity', () => {
      expect(single(s, 'azurerm_function_app_flex_consumption')).toMatchObject({
        storage_container_type: 'blobContainer',
        storage_container_endpoint: `${ref(s, 'azurerm_storage_account', 'storage/host', 'primary_blob_endpoint')}${ref(s, 'azurerm_storage_container', 'storage/app-package', 'name')}`,
        storage_authentication_type: 'UserAssignedIdentity',
        storage_user_assigned_identity_id: '${azurerm_user_assigned_identity.function-identity.id}',
      });
    });

    it('sets exactly the app settings the function code reads, all identity-based', () => {
      const clientId = '${azurerm_user_assigned_identity.function-identity.client_id}';
      expect(single(s, 'azurerm_function_app_flex_consumption').app_settings).toEqual({
        AZURE_CLIENT_ID: clientId,
        COSMOS_ENDPOINT: ref(s, 'azurerm_cosmosdb_account', 'cosmos/account', 'endpoint'),
        COSMOS_DATABASE: ref(s, 'azurerm_cosmosdb_sql_database', 'cosmos/database', 'name'),
        COSMOS_CONTAINER: ref(s, 'azurerm_cosmosdb_sql_container', 'cosmos/twins', 'name'),
        IOTHUB_EVENTS__fullyQualifiedNamespace: `${ref(s, 'azurerm_eventhub_namespace', '/namespace', 'name')}.servicebus.windows.net`,
        IOTHUB_EVENTS__credential: 'managedidentity',
        IOTHUB_EVENTS__clientId: clientId,
        EVENTHUB_NAME: ref(s, 'azurerm_eventhub', '/hub', 'name'),
        EVENTHUB_CONSUMER_GROUP: ref(s, 'azurerm_eventhub_consumer_group', '/sync-twins', 'name'),
        DEADLETTER_BLOB_ENDPOINT: `https://${ref(s, 'azurerm_storage_account', 'storage/data', 'name')}.blob.core.windows.net`,
        DEADLETTER_CONTAINER: ref(s, 'azurerm_storage_container', 'storage/deadletters', 'name'),
        REPORTS_CONTAINER: ref(s, 'azurerm_storage_container', 'storage/reports', 'name'),
        TOMBSTONE_TTL_SECONDS: String((cfg.eventHubs.retentionDays + 1) * 86400),
        SYNC_ATTEMPTS_BLOB_ENDPOINT: `https://${ref(s, 'azurerm_storage_account', 'storage/host', 'name')}.blob.core.windows.net`,
        SYNC_ATTEMPTS_CONTAINER: 'sync-attempts',
        IOTHUB_HOSTNAME: `${ref(s, 'azurerm_iothub', 'iot-hub/hub', 'name')}.azure-devices.net`,
        IOTHUB_SKU: ref(s, 'azurerm_iothub', 'iot-hub/hub', 'sku[0].name'),
        IOTHUB_UNITS: ref(s, 'azurerm_iothub', 'iot-hub/hub', 'sku[0].capacity'),
        VERIFY_SCHEDULE: cfg.functionApp.verifySchedule,
        AzureWebJobsStorage__accountName: ref(s, 'azurerm_storage_account', 'storage/host', 'name'),
        AzureWebJobsStorage__credential: 'managedidentity',
        AzureWebJobsStorage__clientId: clientId,
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `Authorization=AAD;ClientId=${clientId}`,
      });
    });

    it('tombstone TTL is (retention + 1) days: 172800 s in dev, 691200 s in prod', () => {
      const ttl = single(s, 'azurerm_function_app_flex_consumption').app_settings.TOMBSTONE_TTL_SECONDS;
      expect(ttl).toBe(envName === 'prod' ? '691200' : '172800');
    });

    it('waits for every role grant of its identity before it is created', () => {
      const deps: string[] = single(s, 'azurerm_function_app_flex_consumption').depends_on;
      const grants = [
        ...Object.keys(s.resource.azurerm_role_assignment)
          .filter((k) => k.startsWith('function-access_'))
          .map((k) => `azurerm_role_assignment.${k}`),
        ...Object.keys(s.resource.azurerm_cosmosdb_sql_role_assignment)
          .filter((k) => k.startsWith('function-access_'))
          .map((k) => `azurerm_cosmosdb_sql_role_assignment.${k}`),
      ];
      expect(grants).toHaveLength(7);
      expect([...deps].sort()).toEqual(grants.sort());
    });

    it('function identity roles: Event Hubs receiver, blob owner (host), blob contributor on two data containers, twin reader, metrics publisher', () => {
      const fn = '${azurerm_user_assigned_identity.function-identity.principal_id}';
      const grants = resources(s, 'azurerm_role_assignment')
        .filter((r) => r.principal_id === fn)
        .map((r) => [r.role_definition_name ?? r.role_definition_id, r.scope]);
      expect(grants.sort()).toEqual(
        [
          ['Azure Event Hubs Data Receiver', ref(s, 'azurerm_eventhub', '/hub', 'id')],
          ['Storage Blob Data Owner', ref(s, 'azurerm_storage_account', 'storage/host', 'id')],
          ['Storage Blob Data Contributor', ref(s, 'azurerm_storage_container', 'storage/deadletters', 'resource_manager_id')],
          ['Storage Blob Data Contributor', ref(s, 'azurerm_storage_container', 'storage/reports', 'resource_manager_id')],
          [ref(s, 'azurerm_role_definition', 'function-access/twin-reader-role', 'role_definition_resource_id'), ref(s, 'azurerm_iothub', 'iot-hub/hub', 'id')],
          ['Monitoring Metrics Publisher', ref(s, 'azurerm_application_insights', 'telemetry/app-insights', 'id')],
        ].sort(),
      );
      // Nothing at account scope on the data account, no IoT Hub built-in data role.
      expect(grants.map(([, scope]) => scope)).not.toContain(ref(s, 'azurerm_storage_account', 'storage/data', 'id'));
      expect(grants.map(([name]) => name)).not.toContain('IoT Hub Data Reader');
    });

    it('the twin reader is a custom role with twins/read only, assignable in the hub\'s resource group', () => {
      const definition = single(s, 'azurerm_role_definition');
      const hubRg = `/subscriptions/\${data.azurerm_client_config.current.subscription_id}/resourceGroups/${ref(s, 'azurerm_iothub', 'iot-hub/hub', 'resource_group_name')}`;
      expect(definition).toMatchObject({
        name: `twin-replica twin reader (${ref(s, 'azurerm_iothub', 'iot-hub/hub', 'name')})`,
        scope: hubRg,
        assignable_scopes: [hubRg],
        permissions: [{ actions: [], data_actions: ['Microsoft.Devices/IotHubs/twins/read'] }],
      });
    });

  });

  describe('code delivery', () => {
    it('zips the functions package as an asset and publishes it when its hash or the app changes', () => {
      const deploy = byPath(s, 'terraform_data', 'function-code/onedeploy');
      const app = addressOf(s, 'azurerm_function_app_flex_consumption', 'function-app/app');
      expect(deploy.depends_on).toEqual([app, addressOf(s, 'terraform_data', 'function-code/remove-storage-setting')]);
      expect(deploy.triggers_replace).toEqual({ package_hash: expect.stringMatching(/^[0-9A-F]{32}$/), function_app_id: `\${${app}.id}` });
      const exec = deploy.provisioner[0]['local-exec'];
      expect(exec.interpreter).toEqual(['/bin/bash', '-c']);
      expect(exec.command).toMatch(/^bash "assets\/[^/]+\/[0-9A-F]{32}\/function-app\.sh" publish$/);
      expect(exec.command).not.toContain('${');
      expect(exec.environment).toEqual({
        FUNCTION_APP: `\${${app}.name}`,
        FUNCTION_APP_ID: `\${${app}.id}`,
        RESOURCE_GROUP: `\${${app}.resource_group_name}`,
        SUBSCRIPTION_ID: '${data.azurerm_client_config.current.subscription_id}',
        PACKAGE_ZIP: expect.stringMatching(/^assets\/[^/]+\/[0-9A-F]{32}\/archive\.zip$/),
      });
      expect(exec.environment.PACKAGE_ZIP).toContain(deploy.triggers_replace.package_hash);
    });
  });

  describe('monitoring', () => {
    it('workspace-based Application Insights without local auth', () => {
      expect(single(s, 'azurerm_log_analytics_workspace')).toMatchObject({
        name: names.logAnalytics,
        retention_in_days: cfg.monitoring.logRetentionDays,
        local_authentication_enabled: false,
      });
      expect(single(s, 'azurerm_application_insights')).toMatchObject({
        name: names.appInsights,
        application_type: 'web',
        local_authentication_disabled: true,
        workspace_id: ref(s, 'azurerm_log_analytics_workspace', 'telemetry/workspace', 'id'),
      });
    });

    it('action group mails the configured recipients', () => {
      const ag = single(s, 'azurerm_monitor_action_group');
      expect(ag.short_name.length).toBeLessThanOrEqual(12);
      expect((ag.email_receiver ?? []).map((r: { email_address: string }) => r.email_address)).toEqual([...cfg.monitoring.alertEmails]);
    });

    it('exports Event Hubs metrics to the workspace for the lag alert', () => {
      expect(byPath(s, 'azurerm_monitor_diagnostic_setting', 'alerts/event-hubs-metrics')).toMatchObject({
        target_resource_id: ref(s, 'azurerm_eventhub_namespace', '/namespace', 'id'),
        log_analytics_workspace_id: ref(s, 'azurerm_log_analytics_workspace', 'telemetry/workspace', 'id'),
        enabled_metric: [{ category: 'AllMetrics' }],
      });
    });

    it('log alerts: function failures, dead letters, consumer lag', () => {
      const alerts = resources(s, 'azurerm_monitor_scheduled_query_rules_alert_v2');
      expect(alerts).toHaveLength(3);
      const byName = Object.fromEntries(alerts.map((a) => [a.name.replace(`${names.functionApp}-`, ''), a]));
      expect(Object.keys(byName).sort()).toEqual(['consumer-lag', 'dead-letters', 'function-failures']);
      for (const a of alerts) {
        expect(a.scopes).toEqual([ref(s, 'azurerm_log_analytics_workspace', 'telemetry/workspace', 'id')]);
        expect(a.action.action_groups).toEqual([ref(s, 'azurerm_monitor_action_group', 'alerts/action-group', 'id')]);
        expect(a.skip_query_validation).toBe(true);
        expect(a.criteria[0].operator).toBe('GreaterThan');
      }
      const deadLetters = byName['dead-letters'].criteria[0];
      expect(deadLetters.query).toContain('AppTraces');
      expect(deadLetters.query).toContain('| where Message startswith "syncTwins summary "');
      // Only the final try's line counts (the evaluated intent is in alertQueries.test.ts).
      expect(deadLetters.query).toContain('| where tobool(summary.final)');
      expect(deadLetters.query).toContain('sum(tolong(summary.deadLettered) + tolong(summary.lastResort))');
      expect(deadLetters).toMatchObject({ metric_measure_column: 'deadLettered', time_aggregation_method: 'Total', threshold: 0 });

      const failures = byName['function-failures'].criteria[0];
      expect(failures.query).toContain('AppRequests');
      expect(failures.query).toContain('Success == false');
      expect(failures.threshold).toBe(cfg.monitoring.thresholds.functionFailures);

      const lag = byName['consumer-lag'].criteria[0];
      expect(lag.query).toContain('MetricName == "IncomingMessages"');
      expect(lag.query).toContain('summary.received');
      expect(lag.query).toContain('| where tobool(summary.final)');
      expect(lag).toMatchObject({ metric_measure_column: 'lag', threshold: cfg.monitoring.thresholds.consumerLagEvents });
      expect(byName['consumer-lag'].depends_on).toEqual([addressOf(s, 'azurerm_monitor_diagnostic_setting', 'event-hubs-metrics')]);
    });

    it('metric alert on Cosmos DB 429 responses', () => {
      const alert = single(s, 'azurerm_monitor_metric_alert');
      expect(alert.scopes).toEqual([ref(s, 'azurerm_cosmosdb_account', 'cosmos/account', 'id')]);
      expect(alert.criteria).toEqual([
        {
          metric_namespace: 'Microsoft.DocumentDB/databaseAccounts',
          metric_name: 'TotalRequests',
          aggregation: 'Count',
          operator: 'GreaterThan',
          threshold: cfg.monitoring.thresholds.cosmosThrottledRequests,
          dimension: [{ name: 'StatusCode', operator: 'Include', values: ['429'] }],
        },
      ]);
    });
  });

  it('outputs only names, endpoints and the identity client id', () => {
    expect(Object.keys(s.output ?? {}).sort()).toEqual(
      [
        'app_insights_name',
        'cosmos_container',
        'cosmos_database',
        'cosmos_endpoint',
        'dead_letter_blob_endpoint',
        'event_hub_name',
        'event_hubs_namespace',
        'function_app_name',
        'function_identity_client_id',
        'iot_hub_hostname',
        'resource_group_name',
      ].sort(),
    );
  });
});
