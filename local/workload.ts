import { isObj, type Obj, type SimulatedHub, type TwinKey } from './hub';
import { Rng } from './random';

/**
 * A random fleet living its life on the simulated hub: desired and reported patches with nested objects
 * and null deletions, tag changes, replaces, connection flaps, identity fields changing with no event
 * (status, capabilities, activity), module and device deletes and re-creates.
 * Device ids use characters IoT Hub allows and Cosmos DB item ids do not (`#`, `%`, `'`, ...).
 */
export interface WorkloadOptions {
  devices: number;
  /** Share of devices that have modules (two each). */
  moduleShare: number;
  /** Probability that a twin change is held back and coalesced with the next one. */
  coalesceRate: number;
  /** Probability that a connection change is only reported with a later one (60 s snapshot). */
  snapshotRate?: number;
  seed: number;
}

const ID_SPICE = ['', '.', '-', '_', ':', '#', '%', "'", '@', '(', '+', '$', '!'];
const MODULES = ['sensor', 'edge.agent'];
const KEYS = ['mode', 'fw', 'config', 'limits', 'sendFrequency', 'temp', 'owner', 'zone'];

export function deviceName(i: number): string {
  return `dev${String(i).padStart(4, '0')}${ID_SPICE[i % ID_SPICE.length]}${i % 7 === 3 ? 'x' : ''}`;
}

/** A merge patch against `current`: sets, nested objects, object↔scalar changes and null deletions. */
export function randomPatch(rng: Rng, current: Obj | undefined, depth = 0): Obj {
  const patch: Obj = {};
  const existing = current ? Object.keys(current).filter((k) => !k.startsWith('$')) : [];
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) {
    const useExisting = existing.length > 0 && rng.chance(0.5);
    const k = useExisting ? rng.pick(existing) : rng.pick(KEYS);
    const r = rng.next();
    if (useExisting && r < 0.2) patch[k] = null;
    else if (r < 0.45 && depth < 2) patch[k] = randomPatch(rng, isObj(current?.[k]) ? (current[k]) : undefined, depth + 1);
    else if (r < 0.55) patch[k] = rng.chance(0.5);
    else if (r < 0.75) patch[k] = rng.int(0, 1000);
    else patch[k] = rng.pick(['on', 'off', '5m', '1h', 'eu-west', 'fw-1.2.3']);
  }
  return patch;
}

/** A full object for a replace (no nulls). */
export function randomObject(rng: Rng, depth = 0): Obj {
  const o: Obj = {};
  for (let i = rng.int(0, 3); i > 0; i--) o[rng.pick(KEYS)] = depth < 2 && rng.chance(0.3) ? randomObject(rng, depth + 1) : rng.int(0, 99);
  return o;
}

export class Workload {
  private readonly rng: Rng;
  private readonly names: string[];

  constructor(private readonly hub: SimulatedHub, readonly o: WorkloadOptions) {
    this.rng = new Rng(o.seed);
    this.names = Array.from({ length: o.devices }, (_, i) => deviceName(i));
  }

  /** Creates every device (and the modules of some) once. */
  provision(): void {
    this.names.forEach((d, i) => {
      this.hub.create({ deviceId: d }, i % 3 === 0 ? { site: `site-${i % 5}` } : undefined);
      if (this.hasModules(i)) for (const m of MODULES) this.hub.create({ deviceId: d, moduleId: m });
    });
  }

  private hasModules(i: number): boolean {
    return (i * 2654435761) % 1000 < this.o.moduleShare * 1000;
  }

  /** One operation somewhere in the fleet. */
  step(): void {
    const rng = this.rng;
    const i = rng.int(0, this.names.length - 1);
    const deviceId = this.names[i];
    if (!this.hub.twin({ deviceId })) {
      this.hub.create({ deviceId }, rng.chance(0.3) ? { site: 'recreated' } : undefined);
      return;
    }
    let key: TwinKey = { deviceId };
    if (this.hasModules(i) && rng.chance(0.4)) {
      key = { deviceId, moduleId: rng.pick(MODULES) };
      if (!this.hub.twin(key)) {
        this.hub.create(key);
        return;
      }
    }
    const t = this.hub.twin(key)!;
    const hold = rng.chance(this.o.coalesceRate);
    const r = rng.next();
    if (r < 0.3) this.hub.update(key, { desired: randomPatch(rng, t.desired.data) }, { hold });
    else if (r < 0.6) this.hub.update(key, { reported: randomPatch(rng, t.reported.data) }, { hold });
    else if (r < 0.68) this.hub.update(key, { tags: randomPatch(rng, t.tags) }, { hold });
    else if (r < 0.72) this.hub.update(key, { desired: randomPatch(rng, t.desired.data), tags: randomPatch(rng, t.tags) }, { hold });
    else if (r < 0.75) this.hub.replace(key, { tags: randomObject(rng), desired: randomObject(rng) });
    else if (r < 0.95) this.hub.setConnection(key, t.connectionState !== 'Connected', { hold: rng.chance(this.o.snapshotRate ?? 0.2) });
    else if (r < 0.97) this.hub.drift(key, rng.pick(['status', 'activity', 'scope'] as const)); // no event: verify/repair refreshes
    else this.hub.delete(key);
  }
}
