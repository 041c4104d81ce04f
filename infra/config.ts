/**
 * Typed, validated configuration: one entry per environment, one stack per entry.
 *
 * Everything that differs between environments lives here; constructs take their
 * settings from these objects and never read process.env themselves (the one
 * exception is the backend switch in backend.ts, which is about where state lives,
 * not about what is deployed).
 */

/** Cosmos DB capacity mode. */
export type CosmosThroughput =
  | { readonly mode: 'serverless' }
  | {
      readonly mode: 'autoscale';
      /** Autoscale ceiling in RU/s on the replica container (scales between 10 % and 100 %). Multiple of 1000, 1000..1000000. */
      readonly maxThroughput: number;
    };

export const IOT_HUB_SKUS = ['S1', 'S2', 'S3'] as const;
export const EVENT_HUBS_SKUS = ['Standard'] as const;
export const STORAGE_REPLICATIONS = ['LRS', 'ZRS', 'GRS', 'GZRS'] as const;
export const FLEX_INSTANCE_MEMORY_MB = [512, 2048, 4096] as const;

/** Create a new, empty IoT Hub in the stack's resource group (the default for a new project). */
export interface CreateIotHubConfig {
  /** @default 'create' */
  readonly mode?: 'create';
  /** @default 'S1' */
  readonly sku: (typeof IOT_HUB_SKUS)[number];
  /** Number of IoT Hub units. @default 1 */
  readonly capacity: number;
  /**
   * Allow hub-scoped shared access policies (connection strings) for service clients.
   * Device-scoped keys and X.509 keep working either way; this project's own clients
   * (function, smoke check) use Entra ID.
   * @default false
   */
  readonly localAuthenticationEnabled: boolean;
}

/**
 * Attach to an IoT Hub that already exists (with its devices, routes and consumers). The stack
 * reads the hub and adds one endpoint, three routes and role assignments; it never manages the
 * hub resource itself. Prerequisite: the hub's system-assigned identity is on; `npm run attach-check`
 * reads the hub and says whether it is ready (docs/attach.md).
 */
export interface AttachIotHubConfig {
  readonly mode: 'attach';
  /** The hub's name (`<name>.azure-devices.net`). */
  readonly name: string;
  readonly resourceGroupName: string;
  /** Subscription of the hub when it differs from the replica's; read through a second azurerm provider. */
  readonly subscriptionId?: string;
  /**
   * The hub's tier and units as they are (the data source does not expose them): they only set the verify
   * timer's throttle budgets (IOTHUB_SKU, IOTHUB_UNITS) and are never written to the hub. `npm run
   * attach-check` compares them with the hub. When omitted the timer assumes the smallest budget, S1 × 1.
   */
  readonly sku?: (typeof IOT_HUB_SKUS)[number];
  readonly capacity?: number;
}

export type IotHubConfig = CreateIotHubConfig | AttachIotHubConfig;

export function isAttached(cfg: IotHubConfig): cfg is AttachIotHubConfig {
  return cfg.mode === 'attach';
}


export interface EventHubsConfig {
  /** Only Standard: Basic has no consumer groups beyond $Default and 1-day retention. @default 'Standard' */
  readonly sku: (typeof EVENT_HUBS_SKUS)[number];
  /** Throughput units. @default 1 */
  readonly capacity: number;
  /** Auto-inflate ceiling in throughput units; 0 disables auto-inflate. @default 0 */
  readonly autoInflateMaxThroughputUnits: number;
  /** Partitions of the hub the IoT Hub routes to (fixed after creation on Standard). @default 4 */
  readonly partitionCount: number;
  /** Days events are kept: the window in which the replica can be rebuilt from events (1..7 on Standard). @default 1 */
  readonly retentionDays: number;
}

export const COSMOS_BACKUP_TIERS = ['Continuous7Days', 'Continuous30Days'] as const;

export interface CosmosConfig {
  /** @default { mode: 'serverless' } */
  readonly throughput: CosmosThroughput;
  /** Zone redundancy for the single write region (not available for serverless accounts). @default false */
  readonly zoneRedundant: boolean;
  /** Point-in-time restore window of the continuous backup. @default 'Continuous7Days' ('Continuous30Days' in prod) */
  readonly backupTier: (typeof COSMOS_BACKUP_TIERS)[number];
}

export interface StorageConfig {
  /** Replication of both storage accounts. @default 'LRS' ('ZRS' in prod) */
  readonly replication: (typeof STORAGE_REPLICATIONS)[number];
  /** Soft-delete retention for dead-letter and report blobs, 1..365 days. @default 7 (30 in prod) */
  readonly blobSoftDeleteDays: number;
  /** How long raw device data is kept in the data account (lifecycle management deletes it after). */
  readonly retention: BlobRetentionConfig;
}

/** Days after which the data account's lifecycle policy deletes blobs (1..3650 each). */
export interface BlobRetentionConfig {
  /** Dead letters still waiting for a redrive, counted from when they were written. @default 90 (365 in prod) */
  readonly deadLetterDays: number;
  /** Dead letters already redriven (kept under `deadletters/redriven/` as an audit trail). At most deadLetterDays. @default 30 (90 in prod) */
  readonly redrivenDays: number;
  /** verifyRepair reports. @default 30 (90 in prod) */
  readonly reportDays: number;
  /** Previous blob versions (what an overwrite or delete leaves behind with versioning on). @default 7 (30 in prod) */
  readonly previousVersionDays: number;
}

export const NETWORK_MODES = ['public', 'private'] as const;

/**
 * Network exposure of the data plane. 'public': every service keeps its public endpoint, protected by
 * Entra ID only (no keys). 'private': a VNet, Flex VNet integration, private endpoints and private DNS
 * for Cosmos DB, both storage accounts and Event Hubs, public network access off on Cosmos DB and storage,
 * Event Hubs closed to everything but trusted Microsoft services (IoT Hub routing). See docs/security.md.
 */
export interface NetworkConfig {
  /** @default 'public' (dev and prod: see docs/security.md for why prod is not private yet) */
  readonly mode: (typeof NETWORK_MODES)[number];
  /** Address space of the VNet in private mode, a /16../24 IPv4 CIDR. @default '10.40.0.0/22' */
  readonly addressSpace: string;
}

/**
 * Customer-managed keys for Cosmos DB and both storage accounts, in a Key Vault the operator owns (created
 * outside this stack: purge protection on, RBAC authorization, its firewall allowing trusted Microsoft
 * services). The stack only references the keys and grants its encryption identity access to them: it
 * never creates keys, which would need the vault's data plane from the deploying machine.
 * Cosmos DB takes a key only when the account is created (changing it replaces the account).
 */
export interface CustomerManagedKeysConfig {
  /** ARM id of the vault: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>. */
  readonly keyVaultId: string;
  readonly cosmosKeyName: string;
  readonly storageKeyName: string;
}

/** Guards against deleting or weakening an environment. */
export interface ProtectionConfig {
  /** CanNotDelete resource locks on the IoT Hub, the Cosmos DB account and the data storage account. @default false (true in prod) */
  readonly deleteLocks: boolean;
  /**
   * Assign the built-in Deny policies "local authentication methods disabled" (Cosmos DB, Event Hubs, IoT Hub
   * service APIs, Application Insights) and "prevent shared key access" (storage) on the stack's resource group,
   * so no Contributor can switch keys back on. @default false (true in prod)
   */
  readonly denyLocalAuthPolicies: boolean;
}

export interface FunctionAppConfig {
  /** Flex Consumption scale-out ceiling, 40..1000. @default 40 */
  readonly maximumInstanceCount: number;
  /** Flex Consumption instance size. @default 2048 */
  readonly instanceMemoryMb: (typeof FLEX_INSTANCE_MEMORY_MB)[number];
  /** NCRONTAB (six fields) for the verify/repair timer. @default '0 30 3 * * *' (daily 03:30 UTC) */
  readonly verifySchedule: string;
}

export interface AlertThresholds {
  /** Failed function executions in 15 minutes that raise an alert. @default 0 (any failure) */
  readonly functionFailures: number;
  /** Events received by the hub but not yet processed by syncTwins (15-minute window). @default 5000 */
  readonly consumerLagEvents: number;
  /** Cosmos DB requests answered 429 in 5 minutes. @default 100 */
  readonly cosmosThrottledRequests: number;
}

export interface MonitoringConfig {
  /** Log Analytics retention, 30..730 days. @default 30 (90 in prod) */
  readonly logRetentionDays: number;
  /** E-mail recipients of every alert. Empty is allowed in dev only. @default [] */
  readonly alertEmails: readonly string[];
  readonly thresholds: AlertThresholds;
}

/**
 * Remote state: an azurerm backend per environment, authenticated with Entra ID. Each environment has its
 * own state storage account (created by infra/bootstrap-state.sh), so access to prod state is granted on
 * prod's account alone: dev's deployer has no role on it, and the pull-request identity only reads.
 */
export interface StateBackendConfig {
  /** @default 'rg-<prefix>-tfstate' */
  readonly resourceGroupName: string;
  /** One account per environment. @default 'st<prefix><env>tfstate' */
  readonly storageAccountName: string;
  /** @default 'tfstate' */
  readonly containerName: string;
}

export const PRINCIPAL_TYPES = ['User', 'Group', 'ServicePrincipal'] as const;

export interface SmokeCheckAccess {
  /** Entra ID object id (`az ad signed-in-user show --query id -o tsv`, or the service principal's object id). */
  readonly principalId: string;
  /** Stated so Azure need not look the principal up (avoids replication errors for new principals). */
  readonly principalType: (typeof PRINCIPAL_TYPES)[number];
}

export interface EnvironmentConfig {
  /** Environment and stack name (`cdktf deploy <name>`); 2..8 lowercase letters/digits. */
  readonly name: string;
  /** Azure region that offers Flex Consumption, e.g. 'westeurope'. */
  readonly location: string;
  /**
   * Prefix of every resource name: 3..10 lowercase letters/digits, starting with a letter.
   * Several names are global (IoT Hub, Event Hubs, Cosmos DB, Key Vault, storage, function
   * app): pick a prefix nobody else uses.
   */
  readonly namePrefix: string;
  /**
   * Subscription to deploy to. azurerm 4.x refuses to plan without one: when omitted here,
   * `npm run deploy|diff|destroy` require ARM_SUBSCRIPTION_ID (an `az login` alone is not enough).
   */
  readonly subscriptionId?: string;
  readonly iotHub: IotHubConfig;
  readonly eventHubs: EventHubsConfig;
  readonly cosmos: CosmosConfig;
  readonly storage: StorageConfig;
  readonly network: NetworkConfig;
  readonly protection: ProtectionConfig;
  /** Omit for Microsoft-managed keys (the default in every shipped environment). */
  readonly customerManagedKeys?: CustomerManagedKeysConfig;
  readonly functionApp: FunctionAppConfig;
  readonly monitoring: MonitoringConfig;
  readonly stateBackend: StateBackendConfig;
  /**
   * The identity that runs `npm run smoke` (a person, or a CI identity of its own), granted
   * IoT Hub Registry + Twin Contributor on the hub and Cosmos DB Built-in Data Reader on the
   * replica database. Named by object id here, never taken from whoever runs the deploy: a
   * plan under another identity (the pull-request diff) would otherwise replace the grants.
   * @default undefined (no grant; set it per environment, preferably to a smoke-only identity in prod)
   */
  readonly smokeCheckAccess?: SmokeCheckAccess;
  /** Tags on every taggable resource. */
  readonly tags: Readonly<Record<string, string>>;
}

const baseDefaults = {
  location: 'westeurope',
  namePrefix: 'twinrep',
  iotHub: { sku: 'S1', capacity: 1, localAuthenticationEnabled: false },
  eventHubs: { sku: 'Standard', capacity: 1, autoInflateMaxThroughputUnits: 0, partitionCount: 4, retentionDays: 1 },
  cosmos: { throughput: { mode: 'serverless' }, zoneRedundant: false, backupTier: 'Continuous7Days' },
  storage: {
    replication: 'LRS',
    blobSoftDeleteDays: 7,
    retention: { deadLetterDays: 90, redrivenDays: 30, reportDays: 30, previousVersionDays: 7 },
  },
  network: { mode: 'public', addressSpace: '10.40.0.0/22' },
  protection: { deleteLocks: false, denyLocalAuthPolicies: false },
  functionApp: { maximumInstanceCount: 40, instanceMemoryMb: 2048, verifySchedule: '0 30 3 * * *' },
  monitoring: {
    logRetentionDays: 30,
    alertEmails: [],
    thresholds: { functionFailures: 0, consumerLagEvents: 5000, cosmosThrottledRequests: 100 },
  },
} as const satisfies Partial<EnvironmentConfig>;

/** The state backend of one environment: its own account in the shared state resource group. */
export function stateBackendFor(namePrefix: string, env: string): StateBackendConfig {
  return { resourceGroupName: `rg-${namePrefix}-tfstate`, storageAccountName: `st${namePrefix}${env}tfstate`, containerName: 'tfstate' };
}

/** The environments `npm run synth` builds, one stack each. */
export const environments: readonly EnvironmentConfig[] = [
  {
    ...baseDefaults,
    name: 'dev',
    stateBackend: stateBackendFor(baseDefaults.namePrefix, 'dev'),
    tags: { app: 'twin-replica', env: 'dev' },
  },
  {
    ...baseDefaults,
    name: 'prod',
    eventHubs: { ...baseDefaults.eventHubs, partitionCount: 8, retentionDays: 7, autoInflateMaxThroughputUnits: 4 },
    cosmos: { throughput: { mode: 'autoscale', maxThroughput: 4000 }, zoneRedundant: false, backupTier: 'Continuous30Days' },
    storage: {
      replication: 'ZRS',
      blobSoftDeleteDays: 30,
      retention: { deadLetterDays: 365, redrivenDays: 90, reportDays: 90, previousVersionDays: 30 },
    },
    protection: { deleteLocks: true, denyLocalAuthPolicies: true },
    stateBackend: stateBackendFor(baseDefaults.namePrefix, 'prod'),
    functionApp: { ...baseDefaults.functionApp, maximumInstanceCount: 100 },
    monitoring: {
      ...baseDefaults.monitoring,
      logRetentionDays: 90,
      alertEmails: ['twin-replica-oncall@example.com'],
    },
    tags: { app: 'twin-replica', env: 'prod' },
  },
  {
    // Example of attach mode (docs/attach.md): synthesized by `npm run synth` so anyone can read what
    // it adds to a hub, never deployed by CI (.github/workflows/deploy.yml deploys dev and prod only).
    ...baseDefaults,
    name: 'existing',
    iotHub: {
      mode: 'attach',
      name: 'iot-contoso-fleet',
      resourceGroupName: 'rg-contoso-iot',
      subscriptionId: '00000000-0000-0000-0000-000000000001',
      // What the hub is (for the verify timer's budgets), checked against the hub by `npm run attach-check`.
      sku: 'S2',
      capacity: 2,
    },
    stateBackend: stateBackendFor(baseDefaults.namePrefix, 'existing'),
    // The fill: verify/repair every hour until it has seen every twin, instead of once a day.
    functionApp: { ...baseDefaults.functionApp, verifySchedule: '0 15 * * * *' },
    tags: { app: 'twin-replica', env: 'existing' },
  },
];

/** Thrown when a configuration cannot produce a valid deployment; synth stops with its message. */
export class InvalidConfigError extends Error {
  constructor(
    readonly environment: string,
    readonly problems: readonly string[],
  ) {
    super(`Invalid configuration for environment "${environment}":\n  - ${problems.join('\n  - ')}`);
    this.name = 'InvalidConfigError';
  }
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const show = (v: unknown) => JSON.stringify(v);

function intIn(problems: string[], path: string, v: unknown, min: number, max: number, why = '') {
  if (!isInt(v) || v < min || v > max) {
    problems.push(`${path} must be an integer from ${min} to ${max}${why}, got ${show(v)}`);
  }
}

function oneOf<T>(problems: string[], path: string, v: unknown, allowed: readonly T[]) {
  if (!allowed.includes(v as T)) {
    problems.push(`${path} must be one of ${allowed.map((a) => show(a)).join(', ')}, got ${show(v)}`);
  }
}

// Six-field NCRONTAB: second minute hour day month day-of-week.
const NCRONTAB = /^(\S+\s+){5}\S+$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const LOCATION = /^[a-z]+[a-z0-9]*$/;
/** An Entra ID object id or a subscription id. */
export const GUID = /^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i;

/** Returns every problem found; an empty list means the configuration is usable. */
export function configProblems(cfg: EnvironmentConfig): string[] {
  const p: string[] = [];
  // `st` + prefix (<= 10) + name (<= 8) + `data` = 24, the storage account maximum.
  if (!/^[a-z][a-z0-9]{1,7}$/.test(cfg.name ?? '')) {
    p.push(`name must be 2..8 lowercase letters/digits starting with a letter (it becomes part of storage account names), got ${show(cfg.name)}`);
  }
  if (!/^[a-z][a-z0-9]{2,9}$/.test(cfg.namePrefix ?? '')) {
    p.push(
      `namePrefix must be 3..10 lowercase letters/digits starting with a letter (storage account names allow only [a-z0-9], at most 24 characters), got ${show(cfg.namePrefix)}`,
    );
  }
  if (!LOCATION.test(cfg.location ?? '')) {
    p.push(`location must be an Azure region name such as "westeurope" (lowercase, no spaces), got ${show(cfg.location)}`);
  }
  if (cfg.subscriptionId !== undefined && !GUID.test(cfg.subscriptionId)) {
    p.push(`subscriptionId must be a GUID, got ${show(cfg.subscriptionId)}`);
  }
  if (cfg.smokeCheckAccess !== undefined) {
    if (!GUID.test(cfg.smokeCheckAccess.principalId ?? '')) {
      p.push(`smokeCheckAccess.principalId must be an Entra ID object id (a GUID), got ${show(cfg.smokeCheckAccess.principalId)}`);
    }
    oneOf(p, 'smokeCheckAccess.principalType', cfg.smokeCheckAccess.principalType, PRINCIPAL_TYPES);
  }

  const hub = cfg.iotHub;
  if (hub !== undefined && isAttached(hub)) {
    p.push(...attachProblems(hub, cfg));
  } else if (hub?.mode !== undefined && hub.mode !== 'create') {
    p.push(`iotHub.mode must be "create" or "attach", got ${show((hub as { mode?: unknown }).mode)}`);
  } else {
    oneOf(p, 'iotHub.sku', hub?.sku, IOT_HUB_SKUS);
    intIn(p, 'iotHub.capacity', hub?.capacity, 1, 200);
  }

  const eh = cfg.eventHubs;
  oneOf(p, 'eventHubs.sku', eh?.sku, EVENT_HUBS_SKUS);
  intIn(p, 'eventHubs.capacity', eh?.capacity, 1, 40);
  intIn(p, 'eventHubs.partitionCount', eh?.partitionCount, 1, 32, ' (Standard tier)');
  intIn(p, 'eventHubs.retentionDays', eh?.retentionDays, 1, 7, ' (Standard tier)');
  if (cfg.name === 'prod' && isInt(eh?.retentionDays) && eh.retentionDays < 7) {
    p.push(`eventHubs.retentionDays must be 7 in prod (the replay window after an outage), got ${eh.retentionDays}`);
  }
  if (!isInt(eh?.autoInflateMaxThroughputUnits) || (eh.autoInflateMaxThroughputUnits !== 0 && (eh.autoInflateMaxThroughputUnits < eh.capacity || eh.autoInflateMaxThroughputUnits > 40))) {
    p.push(`eventHubs.autoInflateMaxThroughputUnits must be 0 (off) or from eventHubs.capacity to 40, got ${show(eh?.autoInflateMaxThroughputUnits)}`);
  }

  const tp = cfg.cosmos?.throughput;
  if (tp?.mode === 'autoscale') {
    if (!isInt(tp.maxThroughput) || tp.maxThroughput < 1000 || tp.maxThroughput > 1_000_000 || tp.maxThroughput % 1000 !== 0) {
      p.push(`cosmos.throughput.maxThroughput must be a multiple of 1000 from 1000 to 1000000, got ${show(tp.maxThroughput)}`);
    }
  } else if (tp?.mode !== 'serverless') {
    p.push(`cosmos.throughput.mode must be "serverless" or "autoscale", got ${show((tp as { mode?: unknown } | undefined)?.mode)}`);
  }
  if (tp?.mode === 'serverless' && cfg.cosmos.zoneRedundant) {
    p.push('cosmos.zoneRedundant cannot be true for a serverless account');
  }

  oneOf(p, 'cosmos.backupTier', cfg.cosmos?.backupTier, COSMOS_BACKUP_TIERS);
  if (cfg.name === 'prod' && cfg.cosmos?.backupTier !== 'Continuous30Days') {
    p.push(`cosmos.backupTier must be "Continuous30Days" in prod (30 days of point-in-time restore), got ${show(cfg.cosmos?.backupTier)}`);
  }

  oneOf(p, 'storage.replication', cfg.storage?.replication, STORAGE_REPLICATIONS);
  intIn(p, 'storage.blobSoftDeleteDays', cfg.storage?.blobSoftDeleteDays, 1, 365);
  const ret = cfg.storage?.retention;
  for (const key of ['deadLetterDays', 'redrivenDays', 'reportDays', 'previousVersionDays'] as const) {
    intIn(p, `storage.retention.${key}`, ret?.[key], 1, 3650);
  }
  if (isInt(ret?.redrivenDays) && isInt(ret?.deadLetterDays) && ret.redrivenDays > ret.deadLetterDays) {
    // Both rules match deadletters/redriven/ (lifecycle rules cannot exclude a prefix) and the earlier delete wins.
    p.push(`storage.retention.redrivenDays (${ret.redrivenDays}) must not exceed storage.retention.deadLetterDays (${ret.deadLetterDays}): the dead-letter rule also covers redriven/`);
  }

  oneOf(p, 'network.mode', cfg.network?.mode, NETWORK_MODES);
  const cidr = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cfg.network?.addressSpace ?? '');
  if (!cidr || cidr.slice(1, 5).some((o) => Number(o) > 255) || Number(cidr[5]) < 16 || Number(cidr[5]) > 24) {
    p.push(`network.addressSpace must be an IPv4 CIDR from /16 to /24 (two /26 subnets and room to grow), got ${show(cfg.network?.addressSpace)}`);
  }
  if (typeof cfg.protection?.deleteLocks !== 'boolean' || typeof cfg.protection?.denyLocalAuthPolicies !== 'boolean') {
    p.push('protection.deleteLocks and protection.denyLocalAuthPolicies must be true or false');
  }
  if (cfg.name === 'prod' && (cfg.protection?.deleteLocks !== true || cfg.protection?.denyLocalAuthPolicies !== true)) {
    p.push('protection.deleteLocks and protection.denyLocalAuthPolicies must be true in prod');
  }
  const cmk = cfg.customerManagedKeys;
  if (cmk !== undefined) {
    if (!/^\/subscriptions\/[0-9a-f-]{36}\/resourceGroups\/[-\w.()]+\/providers\/Microsoft\.KeyVault\/vaults\/[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/i.test(cmk.keyVaultId ?? '')) {
      p.push(`customerManagedKeys.keyVaultId must be a Key Vault resource id (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>), got ${show(cmk.keyVaultId)}`);
    }
    for (const key of ['cosmosKeyName', 'storageKeyName'] as const) {
      if (!/^[0-9a-zA-Z-]{1,127}$/.test(cmk[key] ?? '')) p.push(`customerManagedKeys.${key} must be a Key Vault key name (1..127 letters, digits, hyphens), got ${show(cmk[key])}`);
    }
  }
  if (cfg.protection?.denyLocalAuthPolicies === true && cfg.iotHub !== undefined && !isAttached(cfg.iotHub) && cfg.iotHub.localAuthenticationEnabled === true) {
    p.push('iotHub.localAuthenticationEnabled cannot be true while protection.denyLocalAuthPolicies denies it');
  }

  intIn(p, 'functionApp.maximumInstanceCount', cfg.functionApp?.maximumInstanceCount, 40, 1000);
  oneOf(p, 'functionApp.instanceMemoryMb', cfg.functionApp?.instanceMemoryMb, FLEX_INSTANCE_MEMORY_MB);
  if (!NCRONTAB.test(cfg.functionApp?.verifySchedule ?? '')) {
    p.push(`functionApp.verifySchedule must be a six-field NCRONTAB expression such as "0 30 3 * * *", got ${show(cfg.functionApp?.verifySchedule)}`);
  }

  const mon = cfg.monitoring;
  intIn(p, 'monitoring.logRetentionDays', mon?.logRetentionDays, 30, 730);
  for (const email of mon?.alertEmails ?? []) {
    if (!EMAIL.test(email)) p.push(`monitoring.alertEmails contains an invalid address ${show(email)}`);
  }
  if (cfg.name === 'prod' && (mon?.alertEmails?.length ?? 0) === 0) {
    p.push('monitoring.alertEmails must name at least one recipient in prod');
  }
  intIn(p, 'monitoring.thresholds.functionFailures', mon?.thresholds?.functionFailures, 0, 1_000_000);
  intIn(p, 'monitoring.thresholds.consumerLagEvents', mon?.thresholds?.consumerLagEvents, 1, 100_000_000);
  intIn(p, 'monitoring.thresholds.cosmosThrottledRequests', mon?.thresholds?.cosmosThrottledRequests, 1, 100_000_000);

  const be = cfg.stateBackend;
  if (!/^[a-z0-9]{3,24}$/.test(be?.storageAccountName ?? '')) {
    p.push(`stateBackend.storageAccountName must be 3..24 lowercase letters/digits, got ${show(be?.storageAccountName)}`);
  }
  if (!/^[-\w.()]{1,89}[-\w()]$/.test(be?.resourceGroupName ?? '')) {
    p.push(`stateBackend.resourceGroupName is not a valid resource group name, got ${show(be?.resourceGroupName)}`);
  }
  if (!/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(be?.containerName ?? '')) {
    p.push(`stateBackend.containerName must be 3..63 lowercase letters/digits/single hyphens, got ${show(be?.containerName)}`);
  }
  for (const [k, v] of Object.entries(cfg.tags ?? {})) {
    if (k.length > 512 || v.length > 256 || /[<>%&\\?/]/.test(k)) p.push(`tags.${k} is not a valid Azure tag`);
  }
  return p;
}

/**
 * Problems across environments: two environments sharing a state account would put prod state where
 * dev's deployer can write it.
 */
export function stateSeparationProblems(all: readonly EnvironmentConfig[]): string[] {
  const p: string[] = [];
  const seen = new Map<string, string>();
  for (const env of all) {
    const account = env.stateBackend?.storageAccountName;
    const other = seen.get(account);
    if (other !== undefined) p.push(`environments ${show(other)} and ${show(env.name)} share the state storage account ${show(account)}: each needs its own`);
    else seen.set(account, env.name);
  }
  return p;
}

const RESOURCE_GROUP = /^[-\w.()]{0,89}[-\w()]$/;

function attachProblems(hub: AttachIotHubConfig, cfg: EnvironmentConfig): string[] {
  const p: string[] = [];
  // Microsoft.Devices/IotHubs name rule: 3..50 letters, digits, hyphens; no leading or trailing hyphen.
  if (!/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{1,48})[a-zA-Z0-9]$/.test(hub.name ?? '')) {
    p.push(`iotHub.name must be the existing hub's name (3..50 letters, digits, hyphens), got ${show(hub.name)}`);
  }
  if (!RESOURCE_GROUP.test(hub.resourceGroupName ?? '')) {
    p.push(`iotHub.resourceGroupName must be the existing hub's resource group, got ${show(hub.resourceGroupName)}`);
  }
  if (hub.subscriptionId !== undefined && !GUID.test(hub.subscriptionId)) {
    p.push(`iotHub.subscriptionId must be a GUID, got ${show(hub.subscriptionId)}`);
  }
  if ('localAuthenticationEnabled' in hub) p.push("iotHub.localAuthenticationEnabled cannot be set in attach mode: the stack never changes the hub's own settings");
  if (hub.sku !== undefined) oneOf(p, 'iotHub.sku', hub.sku, IOT_HUB_SKUS);
  if (hub.capacity !== undefined) intIn(p, 'iotHub.capacity', hub.capacity, 1, 200);
  if (cfg.smokeCheckAccess !== undefined) {
    p.push('smokeCheckAccess cannot be set in attach mode: `npm run smoke` creates and deletes a device, which does not belong on a fleet\'s hub');
  }
  return p;
}

/** Throws InvalidConfigError listing every problem; returns the configuration unchanged otherwise. */
export function validateConfig(cfg: EnvironmentConfig): EnvironmentConfig {
  const problems = configProblems(cfg);
  if (problems.length > 0) throw new InvalidConfigError(String(cfg?.name ?? '?'), problems);
  return cfg;
}

/**
 * Regions where IoT Hub offers TLS 1.2 enforcement (`min_tls_version = "1.2"`), per Microsoft
 * Learn, "Transport Layer Security (TLS) support in IoT Hub"
 * (https://learn.microsoft.com/azure/iot-hub/iot-hub-tls-support). Elsewhere a hub created with
 * it fails, and the provider forces a new hub when it changes (iothub_resource.go: ForceNew).
 * TLS 1.0/1.1 support ended for every hub on 31 August 2025 (same page), so leaving it unset
 * elsewhere does not admit them.
 */
export const IOT_HUB_TLS12_ENFORCEMENT_REGIONS = ['eastus', 'southcentralus', 'westus2', 'usgovarizona', 'usgovvirginia'] as const;

/** `min_tls_version` for the hub: '1.2' where the region offers it, unset elsewhere. */
export function iotHubMinTlsVersion(location: string): '1.2' | undefined {
  return (IOT_HUB_TLS12_ENFORCEMENT_REGIONS as readonly string[]).includes(location) ? '1.2' : undefined;
}

/** Event Hubs retention plus one day: deleted-device tombstones must outlive every replayable event. */
export function tombstoneTtlSeconds(cfg: EnvironmentConfig): number {
  return (cfg.eventHubs.retentionDays + 1) * 86_400;
}

export function findEnvironment(name: string, all: readonly EnvironmentConfig[] = environments): EnvironmentConfig {
  const found = all.find((e) => e.name === name);
  if (!found) {
    throw new Error(`Unknown environment ${show(name)}; known: ${all.map((e) => e.name).join(', ')}`);
  }
  return found;
}
