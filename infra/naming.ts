/**
 * Deterministic resource names: `<kind>-<prefix>-<env>` where the rule allows hyphens,
 * `st<prefix><env><role>` for storage accounts. No randomness, so a name never changes
 * between two synths, and the smoke check can derive endpoints from the configuration.
 */
import { isAttached, type EnvironmentConfig } from './config.js';

/** Fixed names shared with the function code (see the app settings in function-app.ts). */
export const FIXED_NAMES = {
  eventHub: 'iothub-events',
  consumerGroup: 'sync-twins',
  cosmosDatabase: 'twin-replica',
  cosmosContainer: 'twins',
  deploymentContainer: 'app-package',
  deadLetterContainer: 'deadletters',
  reportsContainer: 'reports',
  iotHubEndpoint: 'twin-events',
} as const;

export interface ResourceNames {
  readonly resourceGroup: string;
  readonly iotHub: string;
  readonly iotHubIdentity: string;
  readonly iotHubEndpoint: string;
  readonly eventHubNamespace: string;
  readonly eventHub: string;
  readonly consumerGroup: string;
  readonly cosmosAccount: string;
  readonly cosmosDatabase: string;
  readonly cosmosContainer: string;
  readonly virtualNetwork: string;
  readonly hostStorage: string;
  readonly dataStorage: string;
  readonly deploymentContainer: string;
  readonly deadLetterContainer: string;
  readonly reportsContainer: string;
  readonly servicePlan: string;
  readonly functionApp: string;
  readonly functionIdentity: string;
  readonly logAnalytics: string;
  readonly appInsights: string;
  readonly actionGroup: string;
  readonly actionGroupShortName: string;
}

export function resourceNames(cfg: Pick<EnvironmentConfig, 'namePrefix' | 'name'> & Partial<Pick<EnvironmentConfig, 'iotHub'>>): ResourceNames {
  const p = cfg.namePrefix;
  const e = cfg.name;
  return {
    resourceGroup: `rg-${p}-${e}`,
    // Attach mode: the existing hub's own name (the smoke check and outputs derive its host from it).
    iotHub: cfg.iotHub && isAttached(cfg.iotHub) ? cfg.iotHub.name : `iot-${p}-${e}`,
    iotHubIdentity: `id-${p}-${e}-iothub`,
    iotHubEndpoint: FIXED_NAMES.iotHubEndpoint,
    eventHubNamespace: `evhns-${p}-${e}`,
    eventHub: FIXED_NAMES.eventHub,
    consumerGroup: FIXED_NAMES.consumerGroup,
    cosmosAccount: `cosmos-${p}-${e}`,
    cosmosDatabase: FIXED_NAMES.cosmosDatabase,
    cosmosContainer: FIXED_NAMES.cosmosContainer,
    virtualNetwork: `vnet-${p}-${e}`,
    hostStorage: `st${p}${e}fn`,
    dataStorage: `st${p}${e}data`,
    deploymentContainer: FIXED_NAMES.deploymentContainer,
    deadLetterContainer: FIXED_NAMES.deadLetterContainer,
    reportsContainer: FIXED_NAMES.reportsContainer,
    servicePlan: `asp-${p}-${e}`,
    functionApp: `func-${p}-${e}`,
    functionIdentity: `id-${p}-${e}-func`,
    logAnalytics: `log-${p}-${e}`,
    appInsights: `appi-${p}-${e}`,
    actionGroup: `ag-${p}-${e}`,
    actionGroupShortName: `twin${e}`.slice(0, 12),
  };
}

interface NamingRule {
  readonly pattern: RegExp;
  readonly min: number;
  readonly max: number;
  readonly rule: string;
}

const alnumHyphen = (min: number, max: number, rule: string): NamingRule => ({
  pattern: /^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$/,
  min,
  max,
  rule,
});

/** Azure naming rules (Microsoft.* resource name restrictions) for every name above. */
export const NAMING_RULES: Record<keyof ResourceNames, NamingRule> = {
  resourceGroup: { pattern: /^[-\w.()]*[-\w()]$/, min: 1, max: 90, rule: 'letters, digits, - _ . ( ), not ending in .' },
  iotHub: alnumHyphen(3, 50, 'letters, digits, hyphens; no leading/trailing hyphen'),
  iotHubIdentity: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9_-]*$/, min: 3, max: 128, rule: 'letters, digits, - _; starts alphanumeric' },
  iotHubEndpoint: { pattern: /^[a-zA-Z0-9_.-]+$/, min: 1, max: 64, rule: 'letters, digits, - _ .; not "events" or "fileNotifications"' },
  eventHubNamespace: {
    pattern: /^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])$/,
    min: 6,
    max: 50,
    rule: 'letters, digits, hyphens; starts with a letter, ends alphanumeric',
  },
  eventHub: { pattern: /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$/, min: 1, max: 256, rule: 'letters, digits, . _ -' },
  consumerGroup: { pattern: /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$/, min: 1, max: 50, rule: 'letters, digits, . _ -' },
  cosmosAccount: { pattern: /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, min: 3, max: 44, rule: 'lowercase letters, digits, hyphens' },
  cosmosDatabase: { pattern: /^[^/\\#?]*[^/\\#? ]$/, min: 1, max: 255, rule: 'no / \\ # ?, no trailing space' },
  cosmosContainer: { pattern: /^[^/\\#?]*[^/\\#? ]$/, min: 1, max: 255, rule: 'no / \\ # ?, no trailing space' },
  virtualNetwork: { pattern: /^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9_])?$/, min: 2, max: 64, rule: 'letters, digits, . _ -; starts alphanumeric, ends alphanumeric or _' },
  hostStorage: { pattern: /^[a-z0-9]+$/, min: 3, max: 24, rule: 'lowercase letters and digits only' },
  dataStorage: { pattern: /^[a-z0-9]+$/, min: 3, max: 24, rule: 'lowercase letters and digits only' },
  deploymentContainer: { pattern: /^[a-z0-9](?!.*--)[a-z0-9-]*[a-z0-9]$/, min: 3, max: 63, rule: 'lowercase letters, digits, single hyphens' },
  deadLetterContainer: { pattern: /^[a-z0-9](?!.*--)[a-z0-9-]*[a-z0-9]$/, min: 3, max: 63, rule: 'lowercase letters, digits, single hyphens' },
  reportsContainer: { pattern: /^[a-z0-9](?!.*--)[a-z0-9-]*[a-z0-9]$/, min: 3, max: 63, rule: 'lowercase letters, digits, single hyphens' },
  servicePlan: alnumHyphen(1, 60, 'letters, digits, hyphens'),
  // Function app host ids are the first 32 characters of the name; keep it short enough to stay unique.
  functionApp: alnumHyphen(2, 32, 'letters, digits, hyphens; at most 32 so the host id stays unique'),
  functionIdentity: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9_-]*$/, min: 3, max: 128, rule: 'letters, digits, - _; starts alphanumeric' },
  logAnalytics: alnumHyphen(4, 63, 'letters, digits, hyphens; no leading/trailing hyphen'),
  appInsights: { pattern: /^[^%&\\?/]+$/, min: 1, max: 260, rule: 'no % & \\ ? /' },
  actionGroup: { pattern: /^[^%&\\?/]+$/, min: 1, max: 260, rule: 'no % & \\ ? /' },
  actionGroupShortName: { pattern: /^.+$/, min: 1, max: 12, rule: 'at most 12 characters' },
};

/** Names that break their Azure rule, with the rule; empty when all are valid. */
export function namingProblems(names: ResourceNames): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(NAMING_RULES) as (keyof ResourceNames)[]) {
    const { pattern, min, max, rule } = NAMING_RULES[key];
    const value = names[key];
    if (value.length < min || value.length > max || !pattern.test(value)) {
      problems.push(`${key} name ${JSON.stringify(value)} breaks the Azure rule: ${min}..${max} characters, ${rule}`);
    }
  }
  if (names.iotHubEndpoint === 'events' || names.iotHubEndpoint === 'fileNotifications') {
    problems.push(`iotHubEndpoint name ${JSON.stringify(names.iotHubEndpoint)} is reserved by IoT Hub`);
  }
  if (/-(sb|mgmt)$/.test(names.eventHubNamespace)) {
    problems.push(`eventHubNamespace name ${JSON.stringify(names.eventHubNamespace)} must not end in -sb or -mgmt`);
  }
  return problems;
}
