import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { findEnvironment } from '../../infra/config';
import { httpStatusOf, main, parseSmokeArgs, planSmoke, retryWhileUnauthorized, SmokeUsageError, USAGE, waitForReplica, type Clock, type ReplicaReader } from '../../infra/smoke';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

describe('smoke arguments', () => {
  it('--help prints the usage and exits 0', async () => {
    const c = capture();
    expect(await main(['--help'], c.io)).toBe(0);
    expect(c.out.join('\n')).toBe(USAGE);
    expect(USAGE).toContain('one of: dev, prod');
  });

  it.each([
    [[], 'missing <env>'],
    [['staging'], 'Unknown environment "staging"; known: dev, prod'],
    [['dev', 'prod'], 'expected one <env>, got "dev" "prod"'],
    [['dev', '--timeout-seconds', '0'], '--timeout-seconds must be an integer from 5 to 900, got "0"'],
    [['dev', '--timeout-seconds', 'soon'], '--timeout-seconds must be an integer from 5 to 900, got "soon"'],
    [['dev', '--poll-seconds', '30', '--timeout-seconds', '10'], '--poll-seconds (30) must be shorter than --timeout-seconds (10)'],
    [['dev', '--device-id', 'a/b'], '--device-id "a/b" is not a valid IoT Hub device id'],
    [['dev', '--frobnicate'], "Unknown option '--frobnicate'"],
  ])('%j is a usage error: %s', async (argv, message) => {
    expect(() => parseSmokeArgs(argv)).toThrow(SmokeUsageError);
    expect(() => parseSmokeArgs(argv)).toThrow(message);
    const c = capture();
    expect(await main(argv, c.io)).toBe(2);
    expect(c.err.join('\n')).toContain(message);
    expect(c.err.join('\n')).toContain('Usage: npm run smoke -- <env>');
  });

  it('defaults: 120 s bound, 2 s polls, a new device that is deleted afterwards', () => {
    const args = parseSmokeArgs(['prod']);
    expect(args).toMatchObject({ help: false, timeoutSeconds: 120, pollSeconds: 2, keepDevice: false, dryRun: false });
  });

  it('plans endpoints from the same configuration and names as the stack', () => {
    const args = parseSmokeArgs(['dev', '--keep-device']);
    if (args.help) throw new Error('unexpected help');
    const plan = planSmoke(args, new Date('2026-01-02T03:04:05.678Z'));
    expect(plan).toMatchObject({
      environment: 'dev',
      iotHubHostName: 'iot-twinrep-dev.azure-devices.net',
      cosmosEndpoint: 'https://cosmos-twinrep-dev.documents.azure.com:443/',
      database: 'twin-replica',
      container: 'twins',
      deviceId: 'smoke-20260102030405',
      createDevice: true,
      deleteDevice: false,
    });
    expect(findEnvironment('dev').namePrefix).toBe('twinrep');
  });

  it('an existing device is used as is and never deleted', () => {
    const args = parseSmokeArgs(['dev', '--device-id', 'sensor-01']);
    if (args.help) throw new Error('unexpected help');
    expect(planSmoke(args)).toMatchObject({ deviceId: 'sensor-01', createDevice: false, deleteDevice: false });
  });

  it('--dry-run prints the plan and touches nothing', async () => {
    const c = capture();
    expect(await main(['prod', '--dry-run'], c.io)).toBe(0);
    expect(c.out[0]).toMatch(/^smoke prod: \{.*"iotHubHostName":"iot-twinrep-prod\.azure-devices\.net"/);
    expect(c.out.at(-1)).toBe('dry run: nothing was changed');
  });

  it('runs as `npm run smoke` does (tsx infra/smoke.ts) with exit code 2 on bad arguments', () => {
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'infra/smoke.ts', 'nowhere'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Unknown environment "nowhere"');
    const help = execFileSync(process.execPath, ['--import', 'tsx', 'infra/smoke.ts', '--help'], { encoding: 'utf8' });
    expect(help).toContain('Usage: npm run smoke -- <env>');
  });
});

describe('waitForReplica', () => {
  const plan = { deviceId: 'smoke-1', runId: 'run-7', timeoutSeconds: 10, pollSeconds: 2 };
  const fakeClock = () => {
    let t = 1000;
    const clock: Clock = { now: () => t, sleep: async (ms) => void (t += ms) };
    return clock;
  };

  it('returns the latency once the replica carries the runId', async () => {
    const seen = [undefined, { tags: {} }, { tags: { twinReplicaSmoke: { runId: 'old', at: '' } } }, { tags: { twinReplicaSmoke: { runId: 'run-7', at: '' } } }];
    let reads = 0;
    const reader: ReplicaReader = { readDevice: async () => seen[Math.min(reads++, seen.length - 1)] };
    expect(await waitForReplica(reader, plan, 1000, fakeClock())).toBe(6000);
    expect(reads).toBe(4);
  });

  it('retries read errors (role propagation) until the bound', async () => {
    let reads = 0;
    const reader: ReplicaReader = {
      readDevice: async () => {
        reads++;
        if (reads < 3) throw new Error('403 Forbidden');
        return { tags: { twinReplicaSmoke: { runId: 'run-7', at: '' } } };
      },
    };
    expect(await waitForReplica(reader, plan, 1000, fakeClock())).toBe(4000);
  });

  it('fails after the bound with what it last saw', async () => {
    const reader: ReplicaReader = { readDevice: async () => ({ tags: { twinReplicaSmoke: { runId: 'old', at: 'x' } } }) };
    await expect(waitForReplica(reader, plan, 1000, fakeClock())).rejects.toThrow(
      'replica of smoke-1 did not show runId run-7 within 10 s (last: replica has twinReplicaSmoke={"runId":"old","at":"x"})',
    );
  });
});

describe('retryWhileUnauthorized (finding 9: the smoke grants are minutes old on a first deploy)', () => {
  const fakeClock = () => {
    let t = 0;
    const clock: Clock = { now: () => t, sleep: async (ms) => void (t += ms) };
    return clock;
  };
  // The shapes the SDKs throw: azure-iothub translateError keeps the response; @azure/cosmos ErrorResponse has code.
  const iothub401 = Object.assign(new Error('Unauthorized'), { response: { statusCode: 401 } });
  const cosmos403 = Object.assign(new Error('Request blocked by Auth'), { code: 403 });
  const opts = { waitSeconds: 60, pollSeconds: 10, environment: 'dev' };

  it('reads the HTTP status from either SDK error shape', () => {
    expect(httpStatusOf(iothub401)).toBe(401);
    expect(httpStatusOf(cosmos403)).toBe(403);
    expect(httpStatusOf(new Error('x'))).toBeUndefined();
  });

  it('retries 401 and 403 until the operation is allowed, logging once', async () => {
    const lines: string[] = [];
    let calls = 0;
    const result = await retryWhileUnauthorized(
      'creating the smoke device',
      async () => {
        calls++;
        if (calls === 1) throw iothub401;
        if (calls === 2) throw cosmos403;
        return 'created';
      },
      opts,
      (l) => lines.push(l),
      fakeClock(),
    );
    expect(result).toBe('created');
    expect(calls).toBe(3);
    expect(lines).toEqual(['creating the smoke device refused (401); new role assignments can take minutes: retrying for up to 60 s']);
  });

  it('gives up after the bound with what to grant', async () => {
    const clock = fakeClock();
    await expect(retryWhileUnauthorized('reading the replica', async () => Promise.reject(cosmos403), opts, () => {}, clock)).rejects.toThrow(
      'reading the replica was refused (403) for 60 s: Request blocked by Auth. The identity running the smoke check needs IoT Hub Registry Contributor',
    );
    expect(clock.now()).toBeLessThanOrEqual(60_000);
    await expect(retryWhileUnauthorized('x', async () => Promise.reject(cosmos403), opts, () => {}, fakeClock())).rejects.toThrow(
      'set smokeCheckAccess for "dev" in infra/config.ts',
    );
  });

  it('fails at once on any other error', async () => {
    let calls = 0;
    const notFound = Object.assign(new Error('IotHubNotFound'), { response: { statusCode: 404 } });
    await expect(
      retryWhileUnauthorized('x', async () => {
        calls++;
        throw notFound;
      }, opts, () => {}, fakeClock()),
    ).rejects.toBe(notFound);
    expect(calls).toBe(1);
  });

  it('--auth-wait-seconds defaults to 600 and is bounded 0..1800', () => {
    expect(parseSmokeArgs(['dev'])).toMatchObject({ authWaitSeconds: 600 });
    expect(parseSmokeArgs(['dev', '--auth-wait-seconds', '0'])).toMatchObject({ authWaitSeconds: 0 });
    expect(() => parseSmokeArgs(['dev', '--auth-wait-seconds', '1801'])).toThrow('--auth-wait-seconds must be an integer from 0 to 1800, got "1801"');
  });
});
