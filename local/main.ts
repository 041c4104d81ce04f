/**
 * `npm run local`: the whole pipeline on one machine. A simulated IoT Hub → a local Event Hub → a stand-in
 * for the Functions Event Hubs trigger → the real `syncTwins` (real InvocationContext, real engine built from
 * app settings) → a fault proxy → a local Cosmos-compatible server; dead letters in Azurite. Ends by
 * comparing every replica document with the hub's twins. Exit code 0 only when the replica matches.
 *
 * `--attach`: the first fill of an attached hub (docs/attach.md). The hub already has its fleet and has lived
 * `--pre-attach-ops` operations whose events went nowhere (no route yet); then the routes come on mid-stream
 * and the fill (the backfill the verify/repair timer runs) reads every twin while events keep flowing; once
 * the stream is drained, the timer's next run repairs what the fill could not settle. `--skip-fill` is the
 * negative control: attached without the fill, twins nobody touched since are missing and the verdict fails.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { numberOption } from '../tools/options';
import { CosmosReplicaIndex, CosmosTwinStore, SYNC_RETRY, buildSyncRuntime, createAttemptCounter, createCosmosClient, readSettings, stripSystemFields, type BackfillReport, type DeadLetter, type TwinDoc, type VerifyReport } from '../functions/src/public';
import { telemetry } from '../testkit/events';
import { CONTAINER, DATABASE, LOCAL_COSMOS_KEY, startAzurite, startLocalCosmos } from '../testkit/servers';
import { compareReplica } from './compare';
import { EventHubTrigger, LocalEventHub, sleep, type InvocationRecord } from './eventHub';
import { FaultProxy } from './faultProxy';
import { FaultyDeadLetters, FaultyStore, LocalHost } from './host';
import { SimulatedHub } from './hub';
import { exampleQueryCommands } from './queryExample';
import { Rng } from './random';
import { Workload } from './workload';
import { runFirstFill, runTimerPass } from './attach';

const int = (min: number) => numberOption({ integer: true, min });
/** A probability. */
const rate = numberOption({ min: 0, max: 1 });
const nonNegative = numberOption({ min: 0 });

const program = new Command()
  .name('npm run local --')
  .description('Runs the twin replica end to end on this machine (simulated IoT Hub, local Event Hubs trigger, local Cosmos DB, Azurite) with injected faults, then checks that the replica matches the hub.')
  .option('--devices <n>', 'devices in the simulated hub', int(1), 300)
  .option('--module-share <p>', 'share of devices with two modules each', rate, 0.25)
  .option('--events <n>', 'events the hub emits (twin changes, lifecycle, connection, replays)', int(1), 20_000)
  .option('--partitions <n>', 'Event Hub partitions', int(1), 4)
  .option('--batch-size <n>', 'maxEventBatchSize of the trigger', int(1), 100)
  .option('--seed <n>', 'seed of the hub, the workload and the faults', int(0), 1)
  .option('--telemetry-rate <p>', 'share of device telemetry on the same Event Hub (not twin events: skipped)', rate, 0.03)
  .option('--coalesce-rate <p>', 'probability that a twin change is coalesced with the next one', rate, 0.2)
  .option('--duplicate-rate <p>', 'probability, per event, that IoT Hub replays the last few events of its partition', rate, 0.01)
  .option('--iot-hub-quirks', 'the hub also does what IoT Hub may: disconnects reported after deletion, modules without lifecycle events, coalesced notifications merged key by key, tags bumping desired $version silently (docs/local.md)', false)
  .option('--reorder-window <n>', 'reorder one device\'s events across routes within this many events (0: in order)', int(0), 0)
  .option('--crash-rate <p>', 'probability, per invocation, that the host dies during it', rate, 0.02)
  .option('--worker-killers <n>', 'events whose processing kills the host every time (out of memory, say): their batches must be dead-lettered unprocessed after the policy\'s tries, and the run must still end', int(0), 0)
  .option('--throttle-rate <p>', 'probability, per Cosmos request, of a 429 with x-ms-retry-after-ms', rate, 0.02)
  .option('--bulk-throttle-rate <p>', 'probability, per operation inside a bulk call, of a 429 for that operation alone', rate, 0.02)
  .option('--retry-after-ms <ms>', 'x-ms-retry-after-ms on injected 429s', int(0), 5)
  .option('--outage-rate <p>', 'probability, per invocation, that the Cosmos endpoint goes away for --outage-ms', rate, 0.01)
  .option('--outage-ms <ms>', 'how long an outage lasts', int(0), 300)
  .option('--slow-ms <ms>', 'latency added to every Cosmos request', int(0), 0)
  .option('--time-scale <f>', 'multiplies the retry policy\'s intervals (5 s … 5 min)', nonNegative, 0.01)
  .option('--concurrency <n>', 'SYNC_CONCURRENCY: point reads (and single writes, where no bulk) at once per invocation', int(1), 16)
  .option('--keep', 'leave the local Cosmos server running and print its endpoint and key', false)
  .option('--attach', 'start from a hub that already has devices and twins, attach mid-stream and run the first fill while events flow', false)
  .option('--pre-attach-ops <n>', 'with --attach: operations the fleet lives before the routes exist (their events go nowhere)', int(0), 3000)
  .option('--fill-page-size <n>', 'with --attach: twins per twin query page of the fill', int(1), 10)
  .addOption(new Option('--fill <kind>', 'with --attach: the fill is a backfill (reads every twin once), or a verify/repair run (what the timer runs today)').choices(['backfill', 'verify']).default('backfill'))
  .option('--repair', 'after the stream drains, run the verify/repair timer\'s pass against the hub (reads by id before any write); the verdict then also needs no difference left awaiting repair', false)
  .option('--skip-fill', 'with --attach, negative control: attach without the fill (the verdict must then fail)', false)
  .option('--tamper <n>', 'negative control: change n live replica documents behind the engine\'s back before the comparison (the verdict must then fail)', int(0), 0)
  .option('--no-progress', 'no progress bar (for logs)');

interface Totals {
  received: number; applied: number; stale: number; skipped: number; deadLettered: number; retrying: number;
  writes: number; reads: number; conflicts: number; queries: number; deadLetterReasons: Record<string, number>;
}

async function main(): Promise<number> {
  program.parse();
  const o = program.opts<{
    devices: number; moduleShare: number; events: number; partitions: number; batchSize: number; seed: number;
    coalesceRate: number; telemetryRate: number; duplicateRate: number; reorderWindow: number; crashRate: number; workerKillers: number; throttleRate: number; bulkThrottleRate: number;
    retryAfterMs: number; outageRate: number; outageMs: number; slowMs: number; timeScale: number; concurrency: number;
    keep: boolean; progress: boolean; tamper: number; attach: boolean; preAttachOps: number; fillPageSize: number; repair: boolean; skipFill: boolean; fill: 'backfill' | 'verify'; iotHubQuirks: boolean;
  }>();
  const started = performance.now();
  // Separate streams: the hub's events depend on the seed alone; fault timing also depends on scheduling.
  const rng = new Rng(o.seed * 7919 + 17);
  const faultRng = new Rng(o.seed * 104_729 + 3);

  // 1. Local servers, created as the infra creates them (database, container partitioned by /deviceId, dead-letter container).
  const cosmos = await startLocalCosmos();
  const blob = await startAzurite();
  await BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters').createIfNotExists();
  const proxy = await new FaultProxy({ upstream: cosmos.endpoint, throttleRate: o.throttleRate, bulkOpThrottleRate: o.bulkThrottleRate, retryAfterMs: o.retryAfterMs, delayMs: o.slowMs, seed: o.seed }).start();

  // 2. The function's app settings, as the infra would set them, pointed at the local servers (through the proxy).
  const appSettings = {
    COSMOS_ENDPOINT: proxy.endpoint,
    COSMOS_DATABASE: DATABASE,
    COSMOS_CONTAINER: CONTAINER,
    COSMOS_KEY: LOCAL_COSMOS_KEY,
    DEADLETTER_CONNECTION_STRING: blob.connectionString,
    DEADLETTER_CONTAINER: 'deadletters',
    TOMBSTONE_TTL_SECONDS: String(8 * 86_400),
    SYNC_CONCURRENCY: String(o.concurrency),
  };
  const settings = readSettings(appSettings);
  // The durable count of batch starts, in Azurite as in the host's storage account in Azure: it outlives the hosts.
  const attempts = createAttemptCounter(settings);
  const host = new LocalHost(
    // Each host process gets its own clients, as a restarted Functions host would.
    (faults) => buildSyncRuntime(settings, {
      cosmosClient: createCosmosClient(settings),
      wrapStore: (store) => new FaultyStore(store, faults),
      wrapDeadLetters: (sink) => new FaultyDeadLetters(sink, faults),
      attempts: null,
    }).engine,
    (engine) => ((engine.store as FaultyStore as unknown as { inner: CosmosTwinStore }).inner.container.database.client.dispose()),
    attempts,
  );

  // 3. Hub → Event Hub, with replays.
  const eventHub = new LocalEventHub(o.partitions);
  let replays = 0;
  let telemetryCount = 0;
  // Worker killers: twin events picked at random positions of the stream (replays of them kill too).
  const killerAt = new Set(Array.from({ length: o.workerKillers }, () => rng.int(0, Math.max(0, o.events - 1))));
  const KILLER = ' [worker-killer]';
  let published = 0;
  // Attach mode: until the routes exist, the hub's events go nowhere.
  let routed = !o.attach;
  let unrouted = 0;
  const hub = new SimulatedHub((e) => {
    if (!routed) {
      unrouted++;
      return;
    }
    const p = eventHub.publish(e.event, e.ms, killerAt.has(published++) ? e.label + KILLER : e.label);
    if (o.duplicateRate > 0 && rng.chance(o.duplicateRate)) replays += eventHub.replay(p, rng.int(1, 5));
  }, { seed: o.seed, reorderWindow: o.reorderWindow, ...(o.iotHubQuirks ? { lateDisconnectRate: 0.5, silentModuleCreateRate: 0.1, coalesce: 'keyByKey' as const, tagsBumpDesired: 'silent' as const } : {}) });
  const workload = new Workload(hub, { devices: o.devices, moduleShare: o.moduleShare, coalesceRate: o.coalesceRate, seed: o.seed + 1 });

  // 4. The trigger, with the function's own retry policy (intervals scaled) and the host's faults.
  const totals: Totals = { received: 0, applied: 0, stale: 0, skipped: 0, deadLettered: 0, retrying: 0, writes: 0, reads: 0, conflicts: 0, queries: 0, deadLetterReasons: {} };
  const accountingErrors: string[] = [];
  let outageTimer: NodeJS.Timeout | undefined;
  let outages = 0;
  const trigger = new EventHubTrigger({
    hub: eventHub,
    handler: host.handler,
    maxEventBatchSize: o.batchSize,
    retry: { maxRetryCount: SYNC_RETRY.maxRetryCount, minimumIntervalMs: SYNC_RETRY.minimumInterval.seconds * 1000, maximumIntervalMs: SYNC_RETRY.maximumInterval.minutes * 60_000 },
    timeScale: o.timeScale,
    host,
    beforeAttempt: async ({ events }) => {
      host.faults.poisoned = o.workerKillers > 0 && events.some((e) => e.label.endsWith(KILLER));
      if (o.crashRate > 0 && !host.faults.armed && faultRng.chance(o.crashRate)) host.faults.armCrash(faultRng.int(1, 40));
      if (o.outageRate > 0 && proxy.isUp && faultRng.chance(o.outageRate)) {
        await proxy.goDown();
        outages++;
        outageTimer = setTimeout(() => void proxy.comeBack(), o.outageMs);
      }
    },
    onInvocation: (r: InvocationRecord) => {
      const s = r.summary as Partial<Totals> | undefined;
      if (!s) return;
      for (const k of ['received', 'applied', 'stale', 'skipped', 'deadLettered', 'retrying', 'writes', 'reads', 'conflicts', 'queries'] as const) totals[k] += Number(s[k] ?? 0);
      for (const [reason, n] of Object.entries(s.deadLetterReasons ?? {})) totals.deadLetterReasons[reason] = (totals.deadLetterReasons[reason] ?? 0) + Number(n);
      const sum = Number(s.applied) + Number(s.stale) + Number(s.skipped) + Number(s.deadLettered) + Number(s.retrying);
      if (sum !== Number(s.received)) accountingErrors.push(`partition ${r.partition} #${r.firstSequence} attempt ${r.attempt}: received ${s.received} ≠ ${sum}`);
    },
  });

  // 5. Produce and consume concurrently; show events, events/s and lag.
  const bar = o.progress ? new cliProgress.SingleBar({
    format: 'syncing |{bar}| {value}/{total} events | {rate} ev/s | lag {lag} | tries {tries} | crashes {crashes} | 429s {throttled}',
    hideCursor: true,
  }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(o.events, 0, { rate: 0, lag: 0, tries: 0, crashes: 0, throttled: 0 });
  const processed = () => trigger.checkpoints.reduce((a, b) => a + b, 0);
  const ticker = setInterval(() => {
    const secs = (performance.now() - started) / 1000;
    bar?.setTotal(Math.max(o.events, eventHub.total));
    bar?.update(processed(), { rate: Math.round(processed() / secs), lag: trigger.lag(), tries: trigger.stats.invocations, crashes: trigger.stats.crashes, throttled: proxy.stats.throttled + proxy.stats.throttledOps });
  }, 250);

  let producing = true;
  let fill: Promise<BackfillReport | VerifyReport | undefined> = Promise.resolve(undefined);
  const fillEvents = { atStart: 0, atEnd: 0, syncedAtStart: 0, syncedAtEnd: 0 };
  // The fill writes as the tools do: an engine of its own from the same settings, no attempt counter.
  const fillOptions = () => ({ hub, engine: buildSyncRuntime(settings, { attempts: null }).engine, hubNow: () => hub.clockMs(), pageSize: o.fillPageSize });
  const producer = (async () => {
    workload.provision();
    if (o.attach) {
      for (let i = 0; i < o.preAttachOps; i++) workload.step();
      routed = true; // cdktf deploy: the endpoint and routes now exist
      if (!o.skipFill) {
        fillEvents.atStart = eventHub.total;
        fillEvents.syncedAtStart = processed();
        const run = o.fill === 'verify' ? runTimerPass({ ...fillOptions(), replica: new CosmosReplicaIndex(cosmos.container) }) : runFirstFill(fillOptions());
        fill = run.then((r) => {
          fillEvents.atEnd = eventHub.total;
          fillEvents.syncedAtEnd = processed();
          return r;
        });
      }
    }
    while (eventHub.total < o.events) {
      for (let i = 0; i < 100 && eventHub.total < o.events; i++) {
        workload.step();
        if (o.telemetryRate > 0 && rng.chance(o.telemetryRate)) {
          const deviceId = rng.pick(hub.deviceIds());
          eventHub.publish(telemetry(deviceId, { temperature: rng.int(150, 300) / 10 }), Date.now(), `telemetry ${deviceId}`);
          telemetryCount++;
        }
      }
      await sleep(0);
    }
    hub.flush();
    producing = false;
  })();
  const consumers = eventHub.partitions.map(async (_, p) => {
    for (;;) {
      if (await trigger.runOnce(p)) continue;
      if (!producing && trigger.lag(p) === 0) return;
      await sleep(5);
    }
  });
  await producer;
  await Promise.all(consumers);
  const fillReport = await fill;
  clearInterval(ticker);
  if (outageTimer) clearTimeout(outageTimer);
  await proxy.comeBack();
  bar?.update(processed(), { lag: 0 });
  bar?.stop();
  const syncSeconds = (performance.now() - started) / 1000;
  // The timer's next run, once the stream is drained: repairs twins whose event raced their read.
  let timerPass: VerifyReport | undefined;
  if (fillReport || o.repair) timerPass = await runTimerPass({ ...fillOptions(), replica: new CosmosReplicaIndex(cosmos.container) });

  // 6. Compare every document with the hub (read directly from the server, not through the fault proxy).
  const { resources } = await cosmos.container.items.readAll<TwinDoc>().fetchAll();
  const docs = resources.map((d) => stripSystemFields(d));
  // Negative control: documents changed behind the engine's back must show up as mismatches.
  for (const doc of docs.filter((d) => !d.deleted && d.tags).slice(0, o.tamper)) doc.tags = { ...doc.tags, tampered: true };
  const cmp = compareReplica(hub, docs);

  // Batches recorded unprocessed (attempts-exhausted) leave their devices behind until a repair from the hub
  // (verify --repair): their mismatches are expected, listed apart, and every other device must match.
  const unprocessed: DeadLetter[] = [];
  const letters = BlobServiceClient.fromConnectionString(blob.connectionString).getContainerClient('deadletters');
  for await (const b of letters.listBlobsFlat()) {
    if (b.name.endsWith('-attempts-exhausted.json')) unprocessed.push(JSON.parse((await letters.getBlobClient(b.name).downloadToBuffer()).toString('utf8')) as DeadLetter);
  }
  const awaitingRepair = new Set(unprocessed.map((d) => d.deviceId).filter((d): d is string => d !== undefined));
  // A mismatch starts with its twin's label: "<deviceId>: …" or "<deviceId>/<moduleId>: …".
  const ofRepaired = (m: string) => [...awaitingRepair].some((d) => m.startsWith(`${d}: `) || m.startsWith(`${d}/`));
  const expected = cmp.mismatches.filter(ofRepaired);
  const unexpected = cmp.mismatches.filter((m) => !ofRepaired(m));
  const killersPublished = eventHub.partitions.flat().filter((e) => e.label.endsWith(KILLER)).length;

  const line = (k: string, v: string) => console.log(`  ${k.padEnd(26)} ${v}`);
  console.log('\nevents');
  line('published', `${eventHub.total} in ${o.partitions} partitions (${replays} replays by the hub)`);
  line('by kind', Object.entries({ ...hub.counts, telemetry: telemetryCount }).sort().map(([k, n]) => `${k} ${n}`).join(', '));
  line('delivered to syncTwins', `${totals.received} (with retries and redeliveries) in ${trigger.stats.invocations} invocations`);
  console.log('sync');
  line('applied / stale / skipped', `${totals.applied} / ${totals.stale} / ${totals.skipped}`);
  line('dead-lettered', `${totals.deadLettered}${totals.deadLettered ? ' ' + JSON.stringify(totals.deadLetterReasons) : ''}`);
  line('retried batches', `${trigger.stats.retries} (${trigger.stats.exhausted} gave up after ${SYNC_RETRY.maxRetryCount} retries)`);
  line('host crashes', `${trigger.stats.crashes} (batches redelivered from the checkpoint)`);
  if (o.workerKillers > 0) line('worker killers', `${killersPublished} event(s) published; ${unprocessed.length} event(s) dead-lettered unprocessed (attempts-exhausted), ${awaitingRepair.size} device(s) await a repair from the hub`);
  line('accounting', accountingErrors.length ? `BROKEN: ${accountingErrors.slice(0, 3).join('; ')}` : 'received = applied + stale + skipped + dead-lettered + retrying in every invocation');
  console.log('cosmos');
  line('requests (at the server)', `${cosmos.requests.total}: ${Object.entries(cosmos.requests.byKind).sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  line('engine writes / reads', `${totals.writes} / ${totals.reads} (ETag conflicts ${totals.conflicts}, module queries ${totals.queries})`);
  line('injected faults', `${proxy.stats.throttled} × 429 (retry-after ${o.retryAfterMs} ms), ${proxy.stats.throttledOps} bulk operations 429, ${outages} outage(s) of ${o.outageMs} ms, ${trigger.stats.crashes} host crash(es)`);
  line('documents', `${cmp.documents} (${cmp.liveTwins} live twins in the hub)`);
  line('time', `${syncSeconds.toFixed(1)} s, ${Math.round(eventHub.total / syncSeconds)} events/s`);
  if (o.attach) {
    console.log('attach');
    line('before the routes', `${o.preAttachOps} operations on ${o.devices} devices, ${unrouted} events routed nowhere`);
    if (fillReport && 'pages' in fillReport) {
      line('first fill', `${fillReport.twins.devices} device + ${fillReport.twins.modules} module twins in ${fillReport.pages} pages: applied ${fillReport.replica.applied}, stale ${fillReport.replica.stale} (an event was ahead), dead-lettered ${fillReport.replica.deadLettered}`);
    } else if (fillReport) {
      line('first fill (verify)', `${fillReport.hubTwins.devices} device + ${fillReport.hubTwins.modules} module twins: missing ${fillReport.missing.count}, stale ${fillReport.stale.count}, partial ${fillReport.partial.count}, changed during the scan ${fillReport.changedDuringScan}; repaired ${fillReport.repaired?.applied ?? 0}, skipped ${fillReport.repaired?.skipped ?? 0} (an event was ahead)`);
    }
    if (fillReport) {
      line('events during the fill', `${fillEvents.atEnd - fillEvents.atStart} published and ${fillEvents.syncedAtEnd - fillEvents.syncedAtStart} synced by syncTwins while it read the hub`);
    } else line('first fill', 'skipped (negative control)');
    if (timerPass) {
      line('next timer run', `missing ${timerPass.missing.count}, stale ${timerPass.stale.count}, partial ${timerPass.partial.count}, extra ${timerPass.extra.count}; repaired ${timerPass.repaired?.applied ?? 0}, remaining ${timerPass.remaining}`);
    }
  }
  if (o.repair && !o.attach && timerPass) {
    console.log('verify --repair (the timer\'s pass, after the stream)');
    line('found', `missing ${timerPass.missing.count}, stale ${timerPass.stale.count}, partial ${timerPass.partial.count}, extra ${timerPass.extra.count}, unrouted fields ${timerPass.unrouted.count}, ahead of the hub ${timerPass.aheadOfHub.count}`);
    line('repaired', `${timerPass.repaired?.applied ?? 0} (skipped ${timerPass.repaired?.skipped ?? 0}), remaining ${timerPass.remaining}`);
  }
  for (const m of unexpected.slice(0, 10)) console.log(`  MISMATCH ${m}`);
  if (unexpected.length > 10) console.log(`  … and ${unexpected.length - 10} more`);
  if (expected.length) console.log(`  ${expected.length} difference(s) on ${awaitingRepair.size} device(s) whose events were dead-lettered unprocessed: repaired from the hub by verify --repair`);
  if (o.repair) for (const m of expected.slice(0, 10)) console.log(`  NOT REPAIRED ${m}`);
  if (cmp.awaitingRepair.length) console.log(`  awaiting verify/repair: ${cmp.awaitingRepair.length} difference(s) no event carries (e.g. ${cmp.awaitingRepair[0]})`);
  console.log(`replica matches hub: ${cmp.matchedDevices}/${cmp.devices} devices${awaitingRepair.size ? ` (others await repair: dead-lettered unprocessed)` : ''}`);
  // A worker killer that was published must have ended in an attempts-exhausted dead letter, not a stuck partition.
  const killersRecorded = killersPublished === 0 || unprocessed.length > 0;
  // With --repair the timer's pass must have closed what events alone could not.
  const repairedAll = !o.repair || (cmp.awaitingRepair.length === 0 && expected.length === 0);
  const ok = unexpected.length === 0 && accountingErrors.length === 0 && killersRecorded && repairedAll;

  host.stop();
  await proxy.close();
  await blob.close();
  if (o.keep) {
    console.log(`\nlocal Cosmos DB left running (Ctrl-C to stop):\n  endpoint  ${cosmos.endpoint}\n  key       ${LOCAL_COSMOS_KEY}\n  database  ${DATABASE}, container ${CONTAINER} (partition key /deviceId)\n  self-signed certificate: NODE_TLS_REJECT_UNAUTHORIZED=0 or an https.Agent({ rejectUnauthorized: false }) for this loopback endpoint only`);
    console.log(`query it in IoT Hub's language (from another shell, in this folder):\n${exampleQueryCommands({ endpoint: cosmos.endpoint, key: LOCAL_COSMOS_KEY, database: DATABASE, container: CONTAINER }).map((c) => `  ${c}`).join('\n')}`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
  await cosmos.close();
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
