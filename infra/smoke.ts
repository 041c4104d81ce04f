/**
 * `npm run smoke -- <env>`: proves a deployed environment end to end on a real subscription.
 *
 * 1. creates a throw-away device `smoke-<time>` in the environment's IoT Hub (Entra ID auth),
 * 2. writes a twin tag `twinReplicaSmoke = { runId, at }` through the hub,
 * 3. polls the replica container in Cosmos DB until the replica carries that runId, within a
 *    bound (default 120 s), and prints the observed latency,
 * 4. deletes the device (unless --keep-device).
 *
 * Endpoints come from the same configuration and naming as the stack, so nothing is read
 * from Terraform state. Credentials: DefaultAzureCredential (Azure CLI login locally,
 * azure/login OIDC in CI). The identity named by `smokeCheckAccess` in infra/config.ts gets
 * the needed roles from the stack. On a first deploy those grants are minutes old: answers
 * 401/403 are retried for a bounded time (--auth-wait-seconds) before the check fails.
 *
 * Exit codes: 0 passed, 1 failed, 2 bad arguments.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { findEnvironment, environments, type EnvironmentConfig } from './config.js';
import { resourceNames } from './naming.js';

export const USAGE = `Usage: npm run smoke -- <env> [options]

Updates a twin tag through the IoT Hub of <env> and waits until the Cosmos DB replica shows it.

Arguments:
  <env>                     one of: ${environments.map((e) => e.name).join(', ')}

Options:
  --timeout-seconds <n>     how long the replica may take, 5..900 (default 120)
  --poll-seconds <n>        delay between replica reads, 1..60 (default 2)
  --auth-wait-seconds <n>   how long 401/403 answers are retried while new role
                            assignments take effect, 0..1800 (default 600)
  --device-id <id>          use this existing device instead of creating smoke-<time>
  --keep-device             do not delete the smoke device afterwards
  --dry-run                 validate the arguments and print the plan; touch nothing
  -h, --help                show this help
`;

export class SmokeUsageError extends Error {
  override name = 'SmokeUsageError';
}

export interface SmokeOptions {
  readonly env: EnvironmentConfig;
  readonly timeoutSeconds: number;
  readonly pollSeconds: number;
  readonly authWaitSeconds: number;
  readonly deviceId?: string;
  readonly keepDevice: boolean;
  readonly dryRun: boolean;
}

export type ParsedSmokeArgs = { readonly help: true } | ({ readonly help: false } & SmokeOptions);

// IoT Hub device ids: up to 128 characters from this set.
const DEVICE_ID = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;

function intOption(raw: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new SmokeUsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parseSmokeArgs(argv: readonly string[]): ParsedSmokeArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        'timeout-seconds': { type: 'string' },
        'poll-seconds': { type: 'string' },
        'auth-wait-seconds': { type: 'string' },
        'device-id': { type: 'string' },
        'keep-device': { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new SmokeUsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  if (positionals.length !== 1) {
    throw new SmokeUsageError(
      positionals.length === 0 ? 'missing <env>' : `expected one <env>, got ${positionals.map((p) => JSON.stringify(p)).join(' ')}`,
    );
  }
  let env: EnvironmentConfig;
  try {
    env = findEnvironment(positionals[0]);
  } catch (err) {
    throw new SmokeUsageError((err as Error).message);
  }
  const deviceId = values['device-id'];
  if (deviceId !== undefined && !DEVICE_ID.test(deviceId)) {
    throw new SmokeUsageError(`--device-id ${JSON.stringify(deviceId)} is not a valid IoT Hub device id`);
  }
  const timeoutSeconds = intOption(values['timeout-seconds'], 'timeout-seconds', 5, 900, 120);
  const pollSeconds = intOption(values['poll-seconds'], 'poll-seconds', 1, 60, 2);
  const authWaitSeconds = intOption(values['auth-wait-seconds'], 'auth-wait-seconds', 0, 1800, 600);
  if (pollSeconds >= timeoutSeconds) {
    throw new SmokeUsageError(`--poll-seconds (${pollSeconds}) must be shorter than --timeout-seconds (${timeoutSeconds})`);
  }
  return {
    help: false,
    env,
    timeoutSeconds,
    pollSeconds,
    authWaitSeconds,
    deviceId,
    keepDevice: values['keep-device'] ?? false,
    dryRun: values['dry-run'] ?? false,
  };
}

export interface SmokePlan {
  readonly environment: string;
  readonly iotHubHostName: string;
  readonly cosmosEndpoint: string;
  readonly database: string;
  readonly container: string;
  readonly deviceId: string;
  readonly createDevice: boolean;
  readonly deleteDevice: boolean;
  readonly runId: string;
  readonly timeoutSeconds: number;
  readonly pollSeconds: number;
  readonly authWaitSeconds: number;
}

export function planSmoke(opts: SmokeOptions, now: Date = new Date()): SmokePlan {
  const names = resourceNames(opts.env);
  const stamp = now.toISOString().replace(/[-:.TZ]/g, '').slice(0, 14);
  const createDevice = opts.deviceId === undefined;
  return {
    environment: opts.env.name,
    iotHubHostName: `${names.iotHub}.azure-devices.net`,
    cosmosEndpoint: `https://${names.cosmosAccount}.documents.azure.com:443/`,
    database: names.cosmosDatabase,
    container: names.cosmosContainer,
    deviceId: opts.deviceId ?? `smoke-${stamp}`,
    createDevice,
    deleteDevice: createDevice && !opts.keepDevice,
    runId: `${stamp}-${now.getTime() % 100000}`,
    timeoutSeconds: opts.timeoutSeconds,
    pollSeconds: opts.pollSeconds,
    authWaitSeconds: opts.authWaitSeconds,
  };
}

/** The smoke tag as the replica stores it. */
export interface SmokeTag {
  runId: string;
  at: string;
}

export interface ReplicaReader {
  /** The device's replica document (no moduleId), or undefined while there is none. */
  readDevice(deviceId: string): Promise<{ tags?: Record<string, unknown> } | undefined>;
}

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: Clock = { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

/**
 * HTTP status carried by an SDK error: azure-iothub puts the response on `err.response`
 * (common-http/rest_api_client.js, translateError: 401 UnauthorizedError, 403
 * TooManyDevicesError whatever the cause); @azure/cosmos ErrorResponse has `code`/`statusCode`.
 */
export function httpStatusOf(err: unknown): number | undefined {
  const e = err as { statusCode?: unknown; code?: unknown; response?: { statusCode?: unknown } } | null;
  for (const v of [e?.response?.statusCode, e?.statusCode, e?.code]) if (typeof v === 'number') return v;
  return undefined;
}

const isAuthorizationError = (err: unknown) => [401, 403].includes(httpStatusOf(err) ?? 0);

/**
 * Runs `op`, retrying while it is refused with 401/403 (role assignments made by the same
 * deploy take minutes to apply), at most `waitSeconds`; any other error fails at once.
 */
export async function retryWhileUnauthorized<T>(
  what: string,
  op: () => Promise<T>,
  opts: { readonly waitSeconds: number; readonly pollSeconds: number; readonly environment: string },
  log: (line: string) => void,
  clock: Clock = realClock,
): Promise<T> {
  const deadline = clock.now() + opts.waitSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!isAuthorizationError(err)) throw err;
      if (clock.now() + opts.pollSeconds * 1000 > deadline) {
        throw new Error(
          `${what} was refused (${httpStatusOf(err)}) for ${opts.waitSeconds} s: ${(err as Error).message}. ` +
            `The identity running the smoke check needs IoT Hub Registry Contributor and IoT Hub Twin Contributor on the hub ` +
            `and Cosmos DB Built-in Data Reader on the replica: set smokeCheckAccess for "${opts.environment}" in infra/config.ts and deploy.`,
          { cause: err },
        );
      }
      if (attempt === 1) log(`${what} refused (${httpStatusOf(err)}); new role assignments can take minutes: retrying for up to ${opts.waitSeconds} s`);
      await clock.sleep(opts.pollSeconds * 1000);
    }
  }
}

/**
 * Polls until the replica shows the tag with this runId; resolves with the latency in ms,
 * rejects with what was last seen when the bound passes. Read errors (403 while a role
 * assignment propagates, 404 before the first event) are retried until the bound.
 */
export async function waitForReplica(
  reader: ReplicaReader,
  plan: Pick<SmokePlan, 'deviceId' | 'runId' | 'timeoutSeconds' | 'pollSeconds'>,
  startedAt: number,
  clock: Clock = realClock,
): Promise<number> {
  const deadline = startedAt + plan.timeoutSeconds * 1000;
  let lastSeen: string;
  for (;;) {
    try {
      const doc = await reader.readDevice(plan.deviceId);
      const tag = (doc?.tags as { twinReplicaSmoke?: SmokeTag } | undefined)?.twinReplicaSmoke;
      if (tag?.runId === plan.runId) return clock.now() - startedAt;
      lastSeen = doc ? `replica has twinReplicaSmoke=${JSON.stringify(tag ?? null)}` : 'no replica document';
    } catch (err) {
      lastSeen = `read failed: ${(err as Error).message}`;
    }
    if (clock.now() + plan.pollSeconds * 1000 > deadline) {
      throw new Error(
        `replica of ${plan.deviceId} did not show runId ${plan.runId} within ${plan.timeoutSeconds} s (last: ${lastSeen})`,
      );
    }
    await clock.sleep(plan.pollSeconds * 1000);
  }
}

async function runSmoke(plan: SmokePlan, log: (line: string) => void): Promise<void> {
  // Loaded here so --help and --dry-run work without touching the SDKs.
  const [{ DefaultAzureCredential }, { CosmosClient }, iothub] = await Promise.all([
    import('@azure/identity'),
    import('@azure/cosmos'),
    import('azure-iothub'),
  ]);
  const credential = new DefaultAzureCredential();
  const registry = iothub.Registry.fromTokenCredential(plan.iotHubHostName, credential);
  const container = new CosmosClient({ endpoint: plan.cosmosEndpoint, aadCredentials: credential })
    .database(plan.database)
    .container(plan.container);
  const reader: ReplicaReader = {
    async readDevice(deviceId) {
      const { resources } = await container.items
        .query<{ tags?: Record<string, unknown> }>(
          {
            query: 'SELECT * FROM c WHERE c.deviceId = @deviceId AND (NOT IS_DEFINED(c.moduleId) OR IS_NULL(c.moduleId))',
            parameters: [{ name: '@deviceId', value: deviceId }],
          },
          { partitionKey: deviceId },
        )
        .fetchAll();
      return resources[0];
    },
  };

  const authorized = <T>(what: string, op: () => Promise<T>) =>
    retryWhileUnauthorized(what, op, { waitSeconds: plan.authWaitSeconds, pollSeconds: 10, environment: plan.environment }, log);

  // Reading first proves the Cosmos DB grant before anything is created.
  await authorized('reading the replica', () => reader.readDevice(plan.deviceId));
  if (plan.createDevice) {
    await authorized('creating the smoke device', () => registry.create({ deviceId: plan.deviceId, status: 'enabled' }));
    log(`created device ${plan.deviceId}`);
  }
  try {
    const tag: SmokeTag = { runId: plan.runId, at: new Date().toISOString() };
    await authorized('updating the twin', () => registry.updateTwin(plan.deviceId, { tags: { twinReplicaSmoke: tag } }, '*'));
    const startedAt = Date.now();
    log(`updated twin tag twinReplicaSmoke.runId=${plan.runId}; waiting up to ${plan.timeoutSeconds} s for the replica`);
    const latency = await waitForReplica(reader, plan, startedAt);
    log(`PASS: replica of ${plan.deviceId} showed the tag after ${(latency / 1000).toFixed(1)} s (bound ${plan.timeoutSeconds} s)`);
  } finally {
    if (plan.deleteDevice) {
      await registry.delete(plan.deviceId).then(
        () => log(`deleted device ${plan.deviceId}`),
        (err: Error) => log(`warning: could not delete device ${plan.deviceId}: ${err.message}`),
      );
    }
  }
}

export interface SmokeIo {
  out(line: string): void;
  err(line: string): void;
}

/** Returns the exit code; never calls process.exit (tests call it directly). */
export async function main(argv: readonly string[], io: SmokeIo = { out: console.log, err: console.error }): Promise<number> {
  let args: ParsedSmokeArgs;
  try {
    args = parseSmokeArgs(argv);
  } catch (err) {
    if (!(err instanceof SmokeUsageError)) throw err;
    io.err(`smoke: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    io.out(USAGE);
    return 0;
  }
  const plan = planSmoke(args);
  io.out(`smoke ${plan.environment}: ${JSON.stringify(plan)}`);
  if (args.dryRun) {
    io.out('dry run: nothing was changed');
    return 0;
  }
  try {
    await runSmoke(plan, (line) => io.out(line));
    return 0;
  } catch (err) {
    io.err(`FAIL: ${(err as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
