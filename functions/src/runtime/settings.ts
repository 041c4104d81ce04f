import { assertTokenAudience, EndpointError, isLoopback, parseHubHost } from '../adapters/endpoints';
import type { AppSettingName } from './contracts';
import { DEFAULT_VERIFY_MAX_MINUTES, FUNCTION_TIMEOUT_MINUTES, VERIFY_MARGIN_MINUTES } from './contracts';

/**
 * Every setting of the function app and of the CLI is read here and nowhere else: the one place that
 * touches `process.env` is {@link processEnv}. Parsing is pure (an env object in, typed settings out) and
 * validates everything before reporting: a ConfigError lists every problem at once, as infra/config.ts does
 * for the stacks.
 *
 * App settings:
 * - COSMOS_ENDPOINT, COSMOS_DATABASE, COSMOS_CONTAINER: the replica container (created by the infra, never here).
 * - AZURE_CLIENT_ID: client id of the user-assigned managed identity (managed identity is the default auth).
 * - COSMOS_KEY: only for a local Cosmos-compatible server on a loopback address; refused for any other endpoint.
 * - DEADLETTER_BLOB_ENDPOINT + DEADLETTER_CONTAINER: dead letters in Blob Storage, with the managed identity
 *   (an `https://<account>.blob.core.windows.net` endpoint, or loopback: see AZURE_HOST_SUFFIXES).
 * - DEADLETTER_CONNECTION_STRING: instead of the endpoint, for Azurite on loopback only.
 * - TOMBSTONE_TTL_SECONDS: per-item TTL of tombstones (Event Hub retention + 1 day); unset keeps them.
 * - SYNC_CONCURRENCY: point reads at once per invocation (default 16); a batch's writes go in one bulk call.
 * - SYNC_ATTEMPTS_BLOB_ENDPOINT + SYNC_ATTEMPTS_CONTAINER (default sync-attempts): where syncTwins counts the
 *   starts of each batch durably (the Functions host's storage account, with the managed identity); without
 *   the endpoint, Azurite's DEADLETTER_CONNECTION_STRING on loopback; with neither, no durable count.
 * - verifyRepair and the CLI's hub commands: IOTHUB_HOSTNAME, IOTHUB_SKU + IOTHUB_UNITS (throttle budgets),
 *   REPORTS_CONTAINER (default reports), VERIFY_MAX_MINUTES (default 25), VERIFY_QUERIES_PER_MINUTE,
 *   VERIFY_TWIN_READS_PER_SECOND (override the tier's budgets), VERIFY_PAGE_SIZE (default 100).
 */
export type Env = Readonly<Record<string, string | undefined>>;

/** The process's environment: the one read of `process.env` in the function app and the CLI. */
export function processEnv(): Env {
  return process.env;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly problems: readonly string[] | string) {
    super(typeof problems === 'string' ? problems : problems.join('; '));
  }
}

/** A storage connection string (Azurite's form): account, key and the Blob endpoint. */
export function parseStorageConnectionString(connectionString: string): { accountName: string; accountKey: string; blobEndpoint: string } {
  const parts = Object.fromEntries(connectionString.split(';').filter(Boolean).map((p) => {
    const i = p.indexOf('=');
    return [p.slice(0, i), p.slice(i + 1)];
  })) as Record<string, string | undefined>;
  const accountName = parts.AccountName;
  const accountKey = parts.AccountKey;
  // @azure/storage-blob reads a string without DefaultEndpointsProtocol as a SAS connection string.
  if (!accountName || !accountKey || !parts.DefaultEndpointsProtocol) throw new ConfigError('DEADLETTER_CONNECTION_STRING needs DefaultEndpointsProtocol, AccountName and AccountKey (Azurite\'s form)');
  const blobEndpoint = parts.BlobEndpoint ?? `${parts.DefaultEndpointsProtocol ?? 'https'}://${accountName}.blob.${parts.EndpointSuffix ?? 'core.windows.net'}`;
  return { accountName, accountKey, blobEndpoint: blobEndpoint.replace(/\/$/, '') };
}

/** What a number must be: whole or not, and its bounds (`min` inclusive unless `above` is set). */
export interface NumberSpec {
  integer?: boolean;
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound. */
  above?: number;
  /** Inclusive upper bound. */
  max?: number;
  /** Accepts `100_000` as 100000 (bench sizes). */
  underscores?: boolean;
}

/**
 * A number from its text, checked against `spec`. The one number parser of the app settings and of the
 * command lines (twin-replica, npm run local, npm run bench: tools/options.ts): it answers the problem in
 * words instead of throwing, so each caller reports it its own way (a list of setting problems,
 * commander's InvalidArgumentError).
 */
export function parseNumber(raw: string, spec: NumberSpec = {}): { value: number } | { problem: string } {
  const text = spec.underscores ? raw.replace(/_/g, '') : raw;
  const n = text.trim() === '' ? NaN : Number(text);
  const kind = spec.integer ? 'an integer' : 'a number';
  const bounds = [
    spec.above !== undefined ? `> ${spec.above}` : spec.min !== undefined ? `≥ ${spec.min}` : undefined,
    spec.max !== undefined ? `≤ ${spec.max}` : undefined,
  ].filter(Boolean).join(' and ');
  const ok = (spec.integer ? Number.isSafeInteger(n) : Number.isFinite(n))
    && (spec.above === undefined || n > spec.above)
    && (spec.min === undefined || n >= spec.min)
    && (spec.max === undefined || n <= spec.max);
  const positive = spec.max === undefined && ((spec.integer && spec.min === 1 && spec.above === undefined) || (!spec.integer && spec.above === 0));
  const what = positive ? `a positive ${spec.integer ? 'integer' : 'number'}` : `${kind}${bounds ? ` ${bounds}` : ''}`;
  return ok ? { value: n } : { problem: `must be ${what}, got ${JSON.stringify(raw)}` };
}

/** Reads settings by name and collects every problem; `done` throws them together. */
class SettingsReader {
  private readonly missing: string[] = [];
  private readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  text(name: AppSettingName): string | undefined {
    const v = this.env[name];
    return v === undefined || v === '' ? undefined : v;
  }
  required(name: AppSettingName): string {
    const v = this.text(name);
    if (v === undefined) this.missing.push(name);
    return v ?? '';
  }
  markMissing(name: AppSettingName): void {
    this.missing.push(name);
  }
  positive(name: AppSettingName, opts: { fractional?: boolean } = {}): number | undefined {
    const raw = this.text(name);
    if (raw === undefined) return undefined;
    const r = parseNumber(raw, opts.fractional ? { above: 0 } : { integer: true, min: 1 });
    if ('problem' in r) {
      this.problems.push(`${name} ${r.problem}`);
      return undefined;
    }
    return r.value;
  }
  /** Runs a check that throws ConfigError or EndpointError and records its message instead. */
  check(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof ConfigError) && !(err instanceof EndpointError)) throw err;
      this.problems.push(err.message);
    }
  }
  problem(message: string): void {
    this.problems.push(message);
  }
  done(): void {
    const all = [...(this.missing.length ? [`missing app settings: ${this.missing.join(', ')}`] : []), ...this.problems];
    if (all.length) throw new ConfigError(all);
  }
}

/** The replica container alone (the CLI's show / query need nothing else). */
export interface ReplicaSettings {
  cosmosEndpoint: string;
  cosmosDatabase: string;
  cosmosContainer: string;
  cosmosKey?: string;
  clientId?: string;
}

/** What syncTwins (and every tool that writes through the engine) needs. */
export interface SyncSettings extends ReplicaSettings {
  deadLetterEndpoint?: string;
  deadLetterConnectionString?: string;
  deadLetterContainer: string;
  tombstoneTtlSeconds?: number;
  concurrency?: number;
  attemptsEndpoint?: string;
  attemptsContainer: string;
}

/** What verifyRepair needs on top of the sync settings. */
export interface VerifySettings extends SyncSettings {
  hub: string;
  hubSku: string;
  hubUnits: number;
  reportsContainer: string;
  maxMinutes: number;
  /** Overrides of the tier's budgets (runtime/build.ts derives the defaults from IOTHUB_SKU and IOTHUB_UNITS). */
  queriesPerMinute?: number;
  twinReadsPerSecond?: number;
  pageSize: number;
}

function replica(r: SettingsReader): ReplicaSettings {
  const settings: ReplicaSettings = {
    cosmosEndpoint: r.required('COSMOS_ENDPOINT'),
    cosmosDatabase: r.required('COSMOS_DATABASE'),
    cosmosContainer: r.required('COSMOS_CONTAINER'),
    cosmosKey: r.text('COSMOS_KEY'),
    clientId: r.text('AZURE_CLIENT_ID'),
  };
  if (settings.cosmosKey && settings.cosmosEndpoint && !isLoopback(settings.cosmosEndpoint)) {
    r.problem('COSMOS_KEY is accepted only for a local server on a loopback endpoint; use the managed identity for Azure');
  }
  return settings;
}

function sync(r: SettingsReader): SyncSettings {
  const base = replica(r);
  const settings: SyncSettings = {
    ...base,
    deadLetterEndpoint: r.text('DEADLETTER_BLOB_ENDPOINT'),
    deadLetterConnectionString: r.text('DEADLETTER_CONNECTION_STRING'),
    deadLetterContainer: r.text('DEADLETTER_CONTAINER') ?? 'deadletters',
    tombstoneTtlSeconds: r.positive('TOMBSTONE_TTL_SECONDS'),
    concurrency: r.positive('SYNC_CONCURRENCY'),
    attemptsEndpoint: r.text('SYNC_ATTEMPTS_BLOB_ENDPOINT'),
    attemptsContainer: r.text('SYNC_ATTEMPTS_CONTAINER') ?? 'sync-attempts',
  };
  if (!settings.deadLetterEndpoint && !settings.deadLetterConnectionString) r.markMissing('DEADLETTER_BLOB_ENDPOINT');
  if (settings.deadLetterEndpoint) r.check(() => assertTokenAudience('blob', settings.deadLetterEndpoint!, 'DEADLETTER_BLOB_ENDPOINT'));
  if (settings.attemptsEndpoint) r.check(() => assertTokenAudience('blob', settings.attemptsEndpoint!, 'SYNC_ATTEMPTS_BLOB_ENDPOINT'));
  if (!settings.deadLetterEndpoint && settings.deadLetterConnectionString) {
    r.check(() => {
      if (!isLoopback(parseStorageConnectionString(settings.deadLetterConnectionString!).blobEndpoint)) {
        throw new ConfigError('DEADLETTER_CONNECTION_STRING is accepted only for Azurite on loopback; use DEADLETTER_BLOB_ENDPOINT');
      }
    });
  }
  return settings;
}

export function readReplicaSettings(env: Env): ReplicaSettings {
  const r = new SettingsReader(env);
  const settings = replica(r);
  r.done();
  return settings;
}

export function readSettings(env: Env): SyncSettings {
  const r = new SettingsReader(env);
  const settings = sync(r);
  r.done();
  return settings;
}

export function readVerifySettings(env: Env): VerifySettings {
  const r = new SettingsReader(env);
  const base = sync(r);
  const hub = r.required('IOTHUB_HOSTNAME');
  if (hub) r.check(() => parseHubHost(hub));
  const maxMinutes = r.positive('VERIFY_MAX_MINUTES', { fractional: true }) ?? DEFAULT_VERIFY_MAX_MINUTES;
  if (maxMinutes > FUNCTION_TIMEOUT_MINUTES - VERIFY_MARGIN_MINUTES) {
    r.problem(`VERIFY_MAX_MINUTES must leave ${VERIFY_MARGIN_MINUTES} minutes before the host's ${FUNCTION_TIMEOUT_MINUTES}-minute functionTimeout, got ${maxMinutes}`);
  }
  const settings: VerifySettings = {
    ...base,
    hub,
    hubSku: r.text('IOTHUB_SKU') ?? 'S1',
    hubUnits: r.positive('IOTHUB_UNITS') ?? 1,
    reportsContainer: r.text('REPORTS_CONTAINER') ?? 'reports',
    maxMinutes,
    queriesPerMinute: r.positive('VERIFY_QUERIES_PER_MINUTE', { fractional: true }),
    twinReadsPerSecond: r.positive('VERIFY_TWIN_READS_PER_SECOND', { fractional: true }),
    pageSize: r.positive('VERIFY_PAGE_SIZE') ?? 100,
  };
  r.done();
  return settings;
}

/** The CLI's hub: `--hub` or IOTHUB_HOSTNAME, checked before any token is fetched. */
export function hubHostName(flag: string | undefined, env: Env): string {
  const host = flag ?? env.IOTHUB_HOSTNAME;
  if (!host) throw new ConfigError('the hub is unknown: pass --hub <name>.azure-devices.net or set IOTHUB_HOSTNAME');
  // The hub token is only ever sent to <name>.azure-devices.net or loopback.
  parseHubHost(host);
  return host;
}
