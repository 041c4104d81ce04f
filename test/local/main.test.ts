import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const tsx = ['node_modules/.bin/tsx', 'local/main.ts'];

describe('npm run local', () => {
  it('lists its flags', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--help']);
    for (const flag of ['--devices', '--events', '--partitions', '--seed', '--crash-rate', '--throttle-rate', '--duplicate-rate', '--outage-rate', '--reorder-window', '--keep']) expect(stdout).toContain(flag);
  });

  it('syncs a small fleet under faults and reports a full match with exit code 0', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--devices', '25', '--events', '1500', '--partitions', '2', '--crash-rate', '0.3', '--outage-rate', '0.05', '--no-progress'], { timeout: 90_000 });
    expect(stdout).toMatch(/replica matches hub: 25\/25 devices/);
    expect(stdout).toMatch(/accounting\s+received = applied/);
    expect(stdout).toMatch(/host crashes\s+[1-9]/);
    expect(stdout).toMatch(/requests \(at the server\)\s+\d+: .*(bulk|write) \d+/);
  }, 90_000);

  it('a worker-killing event: its batch is dead-lettered unprocessed after the policy\'s tries and the run ends', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--devices', '25', '--events', '1500', '--partitions', '1', '--worker-killers', '1', '--crash-rate', '0', '--duplicate-rate', '0', '--no-progress'], { timeout: 90_000 });
    expect(stdout).toMatch(/worker killers\s+1 event\(s\) published; [1-9]\d* event\(s\) dead-lettered unprocessed \(attempts-exhausted\)/);
    // One partition, so no other batch shares the dying host: six starts of the killer's batch die (the policy
    // allows six tries); the seventh records it.
    expect(stdout).toMatch(/host crashes\s+6 /);
    expect(stdout).not.toMatch(/MISMATCH/);
  }, 90_000);

  it('--repair: the timer\'s verify/repair pass after the stream closes what no event carries (the same run without it leaves it awaiting)', async () => {
    const args = [tsx[1], '--devices', '25', '--events', '1500', '--partitions', '2', '--seed', '2', '--no-progress'];
    const without = await run(tsx[0], args, { timeout: 90_000 });
    expect(without.stdout).toMatch(/awaiting verify\/repair: [1-9]\d* difference\(s\) no event carries/);
    const { stdout } = await run(tsx[0], [...args, '--repair'], { timeout: 90_000 });
    expect(stdout).toMatch(/verify --repair \(the timer's pass, after the stream\)/);
    expect(stdout).toMatch(/unrouted fields [1-9]\d*/);
    expect(stdout).toMatch(/remaining 0/);
    expect(stdout).not.toMatch(/awaiting verify\/repair|NOT REPAIRED|MISMATCH/);
    expect(stdout).toMatch(/replica matches hub: 25\/25 devices/);
  }, 180_000);

  it('exits non-zero when the replica does not match (negative control: documents changed behind its back)', async () => {
    const err = await run(tsx[0], [tsx[1], '--devices', '20', '--events', '4000', '--tamper', '2', '--no-progress', '--seed', '3'], { timeout: 90_000 }).then(() => undefined, (e) => e);
    expect(err?.code).toBe(1);
    expect(err.stdout).toMatch(/MISMATCH/);
  }, 90_000);
});
