import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEAD_LETTER_REASONS, DEFAULT_QUERY_LAG_MS, ReplicaReader, buildSyncRuntime, createCosmosClient, createDeadLetterContainer, createTwinQuery, explain, hubHostName, processCredential, processEnv, readReplicaSettings, readSettings, type DeadLetterReason, type Env } from '../functions/src/public';
import { defaultStatePath } from './backfillState';
import { backfillCommand, queryCommand, redriveCommand, showCommand, verifyCommand, type ScanFlags } from './commands';
import { createProgress } from './progress';
import { numberOption } from './options';
import { BlobDeadLetterStore } from './redrive';

/** The engine every writing command goes through, built by the function app's own factory. */
function engineFor(env: Env) {
  return buildSyncRuntime(readSettings(env), { attempts: null }).engine;
}

/** The replica container alone (show / query need nothing else); the caller disposes the client. */
function replicaContainer(env: Env) {
  const settings = readReplicaSettings(env);
  const client = createCosmosClient(settings);
  return { client, container: client.database(settings.cosmosDatabase).container(settings.cosmosContainer) };
}

/** The hub token's credential: the same chain as the function app's (AZURE_CLIENT_ID picks an identity). */
function toolCredential(env: Env) {
  return processCredential(readReplicaSettings(env).clientId);
}

/** Exit codes: 0 done and consistent; 1 failed; 2 done, but discrepancies or dead letters remain; 130 interrupted. */
export const EXIT = { ok: 0, failed: 1, remaining: 2, interrupted: 130 } as const;

const positiveInt = numberOption({ integer: true, min: 1 });
const positiveNumber = numberOption({ above: 0 });
const nonNegative = numberOption({ min: 0 });
function isoTime(value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError('expected an ISO 8601 time, e.g. 2026-01-31T12:00Z');
  return d;
}
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function scanOptions(cmd: Command): Command {
  return cmd
    .option('--hub <hostName>', 'IoT hub host name, <name>.azure-devices.net (default: $IOTHUB_HOSTNAME)')
    .option('--page-size <n>', 'twins per query page (x-ms-max-item-count)', positiveInt, 100)
    .option('--tier <sku>', 'IoT Hub tier (F1, B1-B3, S1-S3): with --units sets the throttle budgets (queries 20/min/unit, 1,000 on S3; twin reads 100/s, 500/s/unit on S3); 3/4 of them is used', 'S1')
    .option('--units <n>', 'IoT Hub units', positiveInt, 1)
    .option('--rate <perMinute>', 'page requests per minute (overrides --tier/--units)', positiveNumber)
    .option('--read-rate <perSecond>', 'twin reads by id per second (overrides --tier/--units)', positiveNumber)
    .option('--query-lag <seconds>', 'backfill: allowance for twin query results lagging the hub (a snapshot is dated page request time minus it)', nonNegative, DEFAULT_QUERY_LAG_MS / 1000);
}

function scanFlags(o: Record<string, unknown>): ScanFlags {
  return { pageSize: o.pageSize as number, tier: o.tier as string, units: o.units as number, rate: o.rate as number | undefined, readRate: o.readRate as number | undefined, queryLagSeconds: o.queryLag as number };
}

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Env;
  progress: boolean;
}

function emit(io: Io, json: boolean, value: unknown, human: () => string): void {
  io.out(json ? JSON.stringify(value, null, 2) : human());
}

function samples(list: { deviceId: string; moduleId?: string }[]): string {
  return list.length ? ` e.g. ${list.slice(0, 5).map((s) => (s.moduleId !== undefined ? `${s.deviceId}/${s.moduleId}` : s.deviceId)).join(', ')}` : '';
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('twin-replica')
    .description('Operations on the Cosmos DB replica of an IoT hub\'s device and module twins.\nSettings come from the environment, as for the function app: COSMOS_ENDPOINT, COSMOS_DATABASE, COSMOS_CONTAINER, DEADLETTER_BLOB_ENDPOINT (+ DEADLETTER_CONTAINER), IOTHUB_HOSTNAME, AZURE_CLIENT_ID. Entra ID (DefaultAzureCredential) everywhere.')
    .option('--json', 'print the result as JSON on stdout', false)
    .option('--no-progress', 'no progress bar (it is shown only when stderr is a terminal)')
    .showHelpAfterError()
    .exitOverride();
  const globals = (cmd: Command) => cmd.optsWithGlobals<{ json: boolean; progress: boolean }>();
  const progressFor = (cmd: Command) => createProgress(io.progress && globals(cmd).progress && !globals(cmd).json);

  scanOptions(program.command('backfill').description('Read every device and module twin from the hub (IoT Hub twin query) and write it through the replica\'s version-guarded path. Resumable: an interrupted run continues from its last continuation token.'))
    .option('--state <file>', 'progress file (default: .twin-replica/backfill-<hub>.json)')
    .option('--restart', 'ignore an interrupted run\'s progress and start over', false)
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const hub = hubHostName(o.hub as string | undefined, io.env);
      const controller = new AbortController();
      const onSignal = () => controller.abort(new Error('interrupted'));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const stateFile = path.resolve((o.state as string | undefined) ?? defaultStatePath(hub));
      try {
        const report = await backfillCommand({ ...scanFlags(o), restart: o.restart as boolean }, {
          engine: engineFor(io.env), twinQuery: createTwinQuery({ hostName: hub, credential: toolCredential(io.env) }),
          hub, stateFile, progress: progressFor(cmd), signal: controller.signal,
        });
        emit(io, globals(cmd).json, report, () => [
          `backfill ${hub}: ${report.twins.devices} device twins, ${report.twins.modules} module twins in ${report.pages} pages${report.resumed ? ' (resumed)' : ''}`,
          `replica: ${report.replica.applied} written, ${report.replica.stale} already current, ${report.replica.deadLettered} dead-lettered; ${report.unusable} unusable items`,
          `hub queries: ${report.query.requests} requests, ${report.query.throttled} throttled, ${Math.round(report.query.waitedMs / 1000)} s paced; ${(report.durationMs / 1000).toFixed(1)} s`,
        ].join('\n'));
        setExit(report.replica.deadLettered > 0 ? EXIT.remaining : EXIT.ok);
      } catch (err) {
        if (controller.signal.aborted) {
          io.err(`backfill interrupted; progress is in ${stateFile}: run the same command again to resume`);
          setExit(EXIT.interrupted);
          return;
        }
        throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });

  scanOptions(program.command('verify').description('Compare the hub with the replica: the twin query (ids and versions only) nominates differences, a read of each twin by id confirms them: missing, extra (404 on the hub), stale, ahead of the hub (an earlier incarnation), partial, unrouted fields (status, capabilities...).'))
    .option('--repair', 'fix what a read by id confirmed, through the same guards (a twin changed after that read is left alone)', false)
    .option('--samples <n>', 'samples per kind of discrepancy', positiveInt, 10)
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const hub = hubHostName(o.hub as string | undefined, io.env);
      const engine = engineFor(io.env);
      const { container } = replicaContainer(io.env);
      // Ctrl-C aborts the request in flight; the report (stoppedBy: interrupted) is still printed.
      const controller = new AbortController();
      const onSignal = () => controller.abort(new Error('interrupted'));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const report = await verifyCommand({ ...scanFlags(o), repair: o.repair as boolean, samples: o.samples as number }, {
        engine, twinQuery: createTwinQuery({ hostName: hub, credential: toolCredential(io.env) }), replica: container, hub, progress: progressFor(cmd), signal: controller.signal,
      }).finally(() => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      });
      emit(io, globals(cmd).json, report, () => [
        `verify ${hub}: hub ${report.hubTwins.devices} device + ${report.hubTwins.modules} module twins; replica ${report.replicaDocuments.live} live + ${report.replicaDocuments.tombstones} tombstones`,
        `missing ${report.missing.count}${samples(report.missing.samples)}`,
        `extra ${report.extra.count}${samples(report.extra.samples)}`,
        `stale ${report.stale.count}${samples(report.stale.samples)}`,
        `ahead of the hub (earlier incarnation) ${report.aheadOfHub.count}${samples(report.aheadOfHub.samples)}`,
        `partial ${report.partial.count}${samples(report.partial.samples)}`,
        `unrouted fields (status, capabilities...) ${report.unrouted.count}${samples(report.unrouted.samples)}`,
        `not confirmed by the read by id: ${report.lagging} lagging rows, ${report.ghostRows} rows of deleted twins`,
        ...(report.repaired ? [`repaired ${report.repaired.applied}, left alone (changed during the scan) ${report.repaired.skipped}, dead-lettered ${report.repaired.deadLettered}`] : []),
        `remaining ${report.remaining}; hub queries ${report.query.requests}, twin reads ${report.query.twinReads} (${report.query.throttled} throttled); ${(report.durationMs / 1000).toFixed(1)} s`,
        ...(report.error ? [`stopped by an error: ${report.error}`] : report.stoppedBy ? [`stopped (${report.stoppedBy}) before the end of the hub: replica documents the scan did not list were not judged`] : []),
      ].join('\n'));
      setExit(report.stoppedBy === 'interrupted' ? EXIT.interrupted : report.stoppedBy ? EXIT.failed : report.remaining > 0 ? EXIT.remaining : EXIT.ok);
    });

  program.command('redrive')
    .description('Re-apply dead-lettered events (all, or by reason / time range). Landed ones move under redriven/; those that fail again stay.')
    .addOption(new Option('--reason <reason...>', 'only these reasons').choices([...DEAD_LETTER_REASONS]))
    .option('--since <time>', 'only events enqueued at or after this time (ISO 8601)', isoTime)
    .option('--until <time>', 'only events enqueued before this time (ISO 8601)', isoTime)
    .option('--batch-size <n>', 'dead letters per engine batch', positiveInt, 100)
    .option('--dry-run', 'list what would be redriven, change nothing', false)
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const report = await redriveCommand(
        { reasons: o.reason as DeadLetterReason[] | undefined, since: o.since as Date | undefined, until: o.until as Date | undefined, dryRun: o.dryRun as boolean, batchSize: o.batchSize as number },
        { engine: engineFor(io.env), store: new BlobDeadLetterStore(createDeadLetterContainer(readSettings(io.env))), progress: progressFor(cmd) },
      );
      emit(io, globals(cmd).json, report, () => [
        `redrive${report.dryRun ? ' (dry run)' : ''}: ${report.selected} dead letters selected`,
        `landed ${report.landed.applied + report.landed.stale + report.landed.skipped} (applied ${report.landed.applied}, already current ${report.landed.stale}, not for the replica ${report.landed.skipped})`,
        `failed again ${report.failedAgain.count} ${JSON.stringify(report.failedAgain.byReason)}${report.failedAgain.reasonChanged ? `, ${report.failedAgain.reasonChanged} with a new reason` : ''}`,
      ].join('\n'));
      setExit(report.failedAgain.count > 0 ? EXIT.remaining : EXIT.ok);
    });

  program.command('show')
    .description('Print one replica document as JSON (tombstones included, marked "deleted": true).')
    .argument('<deviceId>')
    .argument('[moduleId]')
    .action(async (deviceId: string, moduleId: string | undefined) => {
      const { client, container } = replicaContainer(io.env);
      try {
        const doc = await showCommand(moduleId === undefined ? { deviceId } : { deviceId, moduleId }, container);
        if (!doc) {
          io.err(`not in the replica: ${moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`}`);
          setExit(EXIT.failed);
          return;
        }
        io.out(JSON.stringify(doc, null, 2));
      } finally {
        client.dispose();
      }
    });

  program.command('query')
    .description('Run an IoT Hub twin query (IoT Hub\'s query language: SELECT … FROM devices | devices.modules [WHERE …] [GROUP BY …]) on the replica: live twins only, devices and modules apart, results shaped as IoT Hub\'s, no hub throttle. A query outside the language is refused (exit 1) before any request. --sql runs Cosmos DB SQL instead.')
    .argument('<query>', 'e.g. "SELECT * FROM devices WHERE tags.location.region = \'US\'" (with --sql: "SELECT * FROM c WHERE c.tags.site = @site AND NOT IS_DEFINED(c.deleted)")')
    .option('--page-size <n>', 'items per page; prints {"items": [...], "continuationToken": ...}', positiveInt)
    .option('--continuation <token>', 'continue a paged query where its last page ended')
    .option('--explain', 'print the Cosmos DB SQL and parameters the query translates to, and send nothing', false)
    .addOption(new Option('--group-by <mode>', 'GROUP BY: client (counted by the CLI, works everywhere) or native (Cosmos DB GROUP BY; not on the local server)').choices(['client', 'native']).default('client'))
    .option('--sql', 'the query is Cosmos DB SQL on the replica container (raw documents, tombstones included unless filtered)', false)
    .option('--param <name=value>', 'with --sql: query parameter (repeatable); the value is read as JSON when it parses, else as a string', collect, [])
    .option('--max <n>', 'with --sql: stop after n results', positiveInt)
    .action(async (text: string, o: Record<string, unknown>) => {
      if (o.sql) {
        const { client, container } = replicaContainer(io.env);
        try {
          const { items, truncated } = await queryCommand(text, o.param as string[], container, o.max as number | undefined);
          io.out(JSON.stringify(items, null, 2));
          if (truncated) io.err(`stopped after ${items.length} results (--max)`);
        } finally {
          client.dispose();
        }
        return;
      }
      const groupBy = o.groupBy === 'native' ? 'native' : 'client';
      // Translation first: a refused query sends nothing.
      const explained = explain(text, { groupBy });
      if (o.explain) {
        io.out(JSON.stringify(explained, null, 2));
        return;
      }
      const { client, container } = replicaContainer(io.env);
      try {
        const page = await new ReplicaReader({ container }).query(text, { pageSize: o.pageSize as number | undefined, continuationToken: o.continuation as string | undefined, groupBy });
        if (o.pageSize === undefined) io.out(JSON.stringify(page.items, null, 2));
        else {
          io.out(JSON.stringify(page, null, 2));
          if (page.continuationToken && !globals(program).json) io.err(`more results: add --continuation ${page.continuationToken}`);
        }
      } finally {
        client.dispose();
      }
    });

  return program;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[] = process.argv, env: Env = processEnv()): Promise<number> {
  let code: number = EXIT.ok;
  const io: Io = { out: (t) => process.stdout.write(t + '\n'), err: (t) => process.stderr.write(t + '\n'), env, progress: process.stderr.isTTY === true };
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? EXIT.failed;
    io.err(`twin-replica: ${e.message ?? String(err)}`);
    return EXIT.failed;
  }
  return code;
}

const entry = process.argv[1] ? path.resolve(process.argv[1]) : '';
if (entry === fileURLToPath(import.meta.url)) {
  // Clients keep sockets alive (keep-alive agents): exit explicitly once the command is done.
  void main().then((code) => process.exit(code));
}
