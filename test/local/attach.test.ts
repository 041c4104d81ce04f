import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SimulatedTwinQuery } from '../../local/attach';
import { keyId, SimulatedHub } from '../../local/hub';
import { Workload } from '../../local/workload';

const run = promisify(execFile);
const tsx = ['node_modules/.bin/tsx', 'local/main.ts'];

/**
 * The first fill of an attached hub, end to end (`npm run local -- --attach`): the real syncTwins and the real
 * runBackfill / runVerify against the local Cosmos server, the twin query answered by the simulated hub
 * (local/attach.ts says what that models).
 */
describe('npm run local -- --attach', () => {
  it('starts from a lived-in hub, attaches mid-stream, fills while events flow, and ends with the replica matching the hub', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--attach', '--devices', '30', '--events', '2500', '--pre-attach-ops', '1500', '--fill-page-size', '3', '--partitions', '2', '--seed', '4', '--no-progress'], { timeout: 120_000 });
    // The fleet lived before the routes existed: those events reached no one.
    expect(stdout).toMatch(/before the routes\s+1500 operations on 30 devices, [1-9]\d* events routed nowhere/);
    // The fill read every twin and found some an event had already brought further (the guard kept the event's version).
    const fill = stdout.match(/first fill\s+(\d+) device \+ (\d+) module twins in (\d+) pages: applied (\d+), stale (\d+) \(an event was ahead\), dead-lettered 0/);
    expect(fill, stdout).not.toBeNull();
    const [, devices, modules, , applied, stale] = fill!.map(Number);
    expect(devices).toBeGreaterThan(20);
    expect(applied + stale).toBe(devices + modules);
    expect(stale).toBeGreaterThan(0);
    // Events were published and synced while the fill read the hub.
    const during = stdout.match(/events during the fill\s+(\d+) published and (\d+) synced by syncTwins/);
    expect(Number(during?.[1])).toBeGreaterThan(0);
    expect(Number(during?.[2])).toBeGreaterThan(0);
    expect(stdout).toMatch(/next timer run\s+missing 0, stale 0, partial 0, extra 0; repaired \d+, remaining 0/);
    expect(stdout).toMatch(/accounting\s+received = applied/);
    expect(stdout).toMatch(/replica matches hub: 30\/30 devices/);
  }, 120_000);

  it('the fill can be the verify/repair run the timer makes today: same verdict', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--attach', '--fill', 'verify', '--devices', '30', '--events', '2500', '--pre-attach-ops', '1500', '--fill-page-size', '3', '--partitions', '2', '--seed', '4', '--no-progress'], { timeout: 120_000 });
    expect(stdout).toMatch(/first fill \(verify\)\s+\d+ device \+ \d+ module twins: missing \d+, stale \d+, partial \d+, changed during the scan \d+; repaired [1-9]\d*/);
    expect(Number(stdout.match(/events during the fill\s+\d+ published and (\d+) synced/)?.[1])).toBeGreaterThan(0);
    expect(stdout).toMatch(/next timer run\s+missing 0, stale 0, partial 0, extra 0; repaired \d+, remaining 0/);
    expect(stdout).toMatch(/replica matches hub: 30\/30 devices/);
  }, 120_000);

  it('negative control: attached without the fill, the twins nobody touched since are missing and the run fails', async () => {
    const err = await run(tsx[0], [tsx[1], '--attach', '--skip-fill', '--devices', '30', '--events', '1500', '--pre-attach-ops', '1500', '--partitions', '2', '--seed', '4', '--no-progress'], { timeout: 120_000 }).then(() => undefined, (e) => e);
    expect(err?.code).toBe(1);
    expect(err.stdout).toMatch(/first fill\s+skipped \(negative control\)/);
    expect(err.stdout).toMatch(/MISMATCH/);
  }, 120_000);

  it('lists the attach flags', async () => {
    const { stdout } = await run(tsx[0], [tsx[1], '--help']);
    for (const flag of ['--attach', '--pre-attach-ops', '--fill-page-size', '--fill <kind>', '--skip-fill']) expect(stdout).toContain(flag);
  });
});

describe('SimulatedTwinQuery (the fill reads the hub page by page)', () => {
  it('property: a twin present during the whole read is returned exactly once, whatever is created, changed or deleted between pages', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 1000 }), async (devices, pageSize, opsPerPage, seed) => {
        const hub = new SimulatedHub(() => {}, { seed });
        const workload = new Workload(hub, { devices, moduleShare: 0.5, coalesceRate: 0, seed: seed + 1 });
        workload.provision();
        const query = new SimulatedTwinQuery(hub, 0);
        for (const [sql, modules] of [['SELECT * FROM devices', false], ['SELECT * FROM devices.modules', true]] as const) {
          const initial = new Set(hub.twins().filter((t) => (t.key.moduleId !== undefined) === modules).map((t) => keyId(t.key)));
          const stayed = new Set(initial);
          const seen: string[] = [];
          let continuation: string | undefined;
          do {
            const page = await query.page(sql, continuation, pageSize);
            expect(page.items.length).toBeLessThanOrEqual(pageSize);
            for (const item of page.items) {
              expect(item.moduleId !== undefined).toBe(modules);
              seen.push(keyId({ deviceId: item.deviceId as string, moduleId: item.moduleId as string | undefined }));
            }
            continuation = page.continuation;
            for (let i = 0; i < opsPerPage; i++) workload.step();
            for (const id of [...stayed]) if (!hub.twins().some((t) => keyId(t.key) === id)) stayed.delete(id);
          } while (continuation !== undefined);
          expect(new Set(seen).size).toBe(seen.length);
          for (const id of stayed) expect(seen).toContain(id);
        }
      }),
      { numRuns: 60 },
    );
  });
});
