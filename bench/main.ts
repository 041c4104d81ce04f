/**
 * `npm run bench`: prints figures, writes bench/results.json. Never a timed test.
 * `npm run bench -- --help` for the flags; `--quick` for a smoke run (results in bench/out/).
 */
import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { numberOption } from '../tools/options';
import { render } from './report';
import { runBench } from './run';
import { DEFAULT_WORKLOAD, WORKLOADS, type WorkloadOptions } from './workload';

const here = path.dirname(fileURLToPath(import.meta.url));

function int(name: string, min = 0) {
  return numberOption({ integer: true, min, underscores: true }, name);
}

const sizeInKb = numberOption({ above: 0 }, 'a size in KB');
function kb(v: string): number {
  return Math.round(sizeInKb(v) * 1024);
}

function list(v: string): number[] {
  return v.split(',').map((x) => int('device count', 1)(x.trim()));
}

const program = new Command('bench')
  .description('Throughput, Cosmos requests and RU per event of syncTwins vs a per-event read-merge-replace strategy, on one seeded workload against a local Cosmos-compatible server.')
  .option('--workload <name>', `a named workload: ${Object.keys(WORKLOADS).join(', ')} (flags override its values)`, 'bursty')
  .option('--deletes <rate>', 'share of events that delete a device (and its modules); its next event re-creates it', numberOption({ min: 0, max: 1 }, 'deletes'))
  .option('--modules <share>', 'share of devices with two modules (documents of their own)', numberOption({ min: 0, max: 1 }, 'modules'))
  .option('--replays <rate>', 'share of events that are IoT Hub re-sending a recent event', numberOption({ min: 0, max: 1 }, 'replays'))
  .option('--devices <n>', 'devices in the workload', int('devices', 1), DEFAULT_WORKLOAD.devices)
  .option('--events <n>', 'events in the workload', int('events', 1), DEFAULT_WORKLOAD.events)
  .option('--partitions <n>', 'Event Hubs partitions (run concurrently)', int('partitions', 1), DEFAULT_WORKLOAD.partitions)
  .option('--batch <n>', 'events per invocation (maxEventBatchSize)', int('batch', 1), DEFAULT_WORKLOAD.batchSize)
  .option('--burst <n>', 'mean events per device burst (uniform 1..2n-1); 0 or 1 = no bursts', int('burst', 0), DEFAULT_WORKLOAD.burst)
  .option('--interleave <n>', 'device bursts in flight at once per partition', int('interleave', 1), DEFAULT_WORKLOAD.interleave)
  .option('--min-kb <kb>', 'smallest twin document', kb, DEFAULT_WORKLOAD.minDocBytes)
  .option('--max-kb <kb>', 'largest twin document (sizes are log-uniform in between)', kb, DEFAULT_WORKLOAD.maxDocBytes)
  .option('--poison <rate>', 'share of events whose body is not JSON (dead-lettered)', numberOption({ min: 0, max: 1 }, 'poison'), DEFAULT_WORKLOAD.poisonRate)
  .option('--seed <n>', 'workload seed', int('seed'), DEFAULT_WORKLOAD.seed)
  .option('--warmup <share>', 'share of the workload run first (other devices, unmeasured) through each strategy', numberOption({ min: 0, max: 1 }, 'warmup'), 0.2)
  .option('--rounds <n>', 'interleave the server-bound strategies in this many rounds (evens out load changes on a shared machine)', int('rounds', 1), 4)
  .option('--rtt <ms>', 'network round trip the server adds to every Cosmos response (loopback has none; same-region Cosmos ~1-5 ms)', numberOption({ min: 0 }, 'rtt'), 0)
  .option('--memory-devices <list>', 'device counts of the memory runs (fresh process each)', list, [1_000, 10_000])
  .option('--memory-events <n>', 'events per memory run', int('memory-events', 1), 50_000)
  .option('--no-memory', 'skip the memory runs')
  .option('--no-artifacts', 'skip bundle size and module-load time')
  .option('--synth', 'time npm run synth (default on, off with --quick)')
  .option('--no-synth', 'skip npm run synth')
  .option('--in-process', 'run the local servers in this process (default: a child process, so CPU and RSS figures are the client\'s)')
  .option('--quick', 'smoke run: 100 devices, 4,000 events, memory runs of 200/2,000 devices, no synth; writes bench/out/results.quick.json')
  .option('--out <file>', 'results file (default bench/results.json; bench/out/results.quick.json with --quick)')
  .parse();

const o = program.opts<{
  devices: number; events: number; partitions: number; batch: number; burst: number; interleave: number; minKb: number; maxKb: number;
  poison: number; seed: number; warmup: number; rtt: number; rounds: number; memoryDevices: number[]; memoryEvents: number; memory: boolean; artifacts: boolean; synth?: boolean;
  inProcess?: boolean; quick?: boolean; out?: string; workload: string; deletes?: number; modules?: number; replays?: number;
}>();
const preset = WORKLOADS[o.workload];
if (!preset) program.error(`unknown workload ${o.workload}: ${Object.keys(WORKLOADS).join(', ')}`);
const explicit = (name: string) => program.getOptionValueSource(name) === 'cli';
/** A flag given on the command line wins over the preset, the preset over the default. */
const pick = <K extends keyof WorkloadOptions>(flag: string, key: K, value: WorkloadOptions[K]): WorkloadOptions[K] =>
  explicit(flag) || preset[key] === undefined ? value : (preset[key]);

const workload: WorkloadOptions & { name: string } = {
  name: o.workload,
  devices: o.quick && !explicit('devices') ? 100 : pick('devices', 'devices', o.devices),
  events: o.quick && !explicit('events') ? 4_000 : pick('events', 'events', o.events),
  partitions: o.partitions,
  batchSize: o.batch,
  burst: pick('burst', 'burst', o.burst),
  interleave: o.interleave,
  minDocBytes: pick('minKb', 'minDocBytes', o.minKb),
  maxDocBytes: pick('maxKb', 'maxDocBytes', o.maxKb),
  seed: o.seed,
  poisonRate: o.poison,
  deleteRate: o.deletes ?? preset.deleteRate ?? 0,
  moduleShare: o.modules ?? preset.moduleShare ?? 0,
  replayRate: o.replays ?? preset.replayRate ?? 0,
};
const memory = o.memory
  ? { devices: o.quick && !explicit('memoryDevices') ? [200, 2_000] : o.memoryDevices, events: o.quick && !explicit('memoryEvents') ? 4_000 : o.memoryEvents }
  : undefined;
const outFile = path.resolve(o.out ?? (o.quick ? path.join(here, 'out', 'results.quick.json') : path.join(here, o.workload === 'bursty' ? 'results.json' : `results.${o.workload}.json`)));
const command = `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;

const results = await runBench(
  { workload, servers: o.inProcess ? 'in-process' : 'child', memory, warmup: o.warmup, rttMs: o.rtt, rounds: o.rounds, artifacts: o.artifacts, synth: o.synth ?? !o.quick, log: (l) => console.error(`· ${l}`) },
  command,
);
await mkdir(path.dirname(outFile), { recursive: true });
await writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
console.log(render(results));
console.log(`\nwritten: ${path.relative(process.cwd(), outFile)}`);
