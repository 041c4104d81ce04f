import { makeSyncTwins, type AttemptCounter, type DeadLetter, type DeadLetterSink, type StoredDoc, type SyncEngine, type SyncTwinsHandler, type TwinDoc, type TwinStore, type WriteOp, type WriteResult } from '../functions/src/public';
import { HostCrashed } from './eventHub';

/**
 * One Functions host process, as far as faults go: a crash switch (after N more store operations the
 * process dies: the operation that trips it reaches the server but its answer is never seen, and nothing
 * after it is sent) and a hook that lets a second writer act just before one of this host's writes.
 */
export class HostFaults {
  crashed = false;
  /**
   * Set while the host runs a batch holding an event whose processing kills the process (out of memory,
   * a hang past the function timeout): its first store operation never leaves, and the host is gone.
   */
  poisoned = false;
  private opsUntilCrash: number | undefined;
  /** Runs once, before the next create/replace reaches the store (an ETag race from another writer). */
  beforeNextWrite: ((doc: TwinDoc) => Promise<void>) | undefined;

  /** The host dies during its `ops`-th store operation from now (1 = the next one). */
  armCrash(ops: number): void {
    this.opsUntilCrash = Math.max(1, ops);
  }

  get armed(): boolean {
    return this.opsUntilCrash !== undefined;
  }

  /** True when this operation is the one that kills the host. */
  tripsCrash(): boolean {
    if (this.opsUntilCrash === undefined) return false;
    if (--this.opsUntilCrash > 0) return false;
    this.opsUntilCrash = undefined;
    return true;
  }
}

export class FaultyStore implements TwinStore {
  /** Present when the inner store has it (Cosmos bulk), so the engine takes the same path as in production. */
  readonly writeMany?: (ops: readonly WriteOp[]) => Promise<WriteResult[]>;

  constructor(readonly inner: TwinStore, private readonly faults: HostFaults) {
    const many = inner.writeMany?.bind(inner);
    if (many) {
      this.writeMany = async (ops) => {
        if (ops.length > 0) await this.beforeWrite(ops[0].doc);
        return this.op('bulk write', () => many(ops));
      };
    }
  }

  private async op<T>(name: string, run: () => Promise<T>): Promise<T> {
    if (this.faults.crashed) throw new HostCrashed(`host is gone (${name} not sent)`);
    if (this.faults.poisoned) {
      this.faults.crashed = true;
      throw new HostCrashed(`host died processing a worker-killing event (${name} not sent)`);
    }
    const trips = this.faults.tripsCrash();
    const result = await run();
    if (trips) this.faults.crashed = true;
    if (this.faults.crashed) throw new HostCrashed(`host died during ${name}`);
    return result;
  }

  private async beforeWrite(doc: TwinDoc): Promise<void> {
    const race = this.faults.beforeNextWrite;
    if (!race) return;
    this.faults.beforeNextWrite = undefined;
    await race(doc);
  }

  read(id: string, deviceId: string): Promise<StoredDoc | undefined> {
    return this.op('read', () => this.inner.read(id, deviceId));
  }

  async create(doc: TwinDoc): Promise<StoredDoc> {
    await this.beforeWrite(doc);
    return this.op('create', () => this.inner.create(doc));
  }

  async replace(doc: TwinDoc, etag: string): Promise<StoredDoc> {
    await this.beforeWrite(doc);
    return this.op('replace', () => this.inner.replace(doc, etag));
  }

  listModuleIds(deviceId: string): Promise<string[]> {
    return this.op('query', () => this.inner.listModuleIds(deviceId));
  }
}

/** A dead host writes no dead letters either. */
export class FaultyDeadLetters implements DeadLetterSink {
  constructor(private readonly inner: DeadLetterSink, private readonly faults: HostFaults) {}

  async write(records: readonly DeadLetter[]): Promise<void> {
    if (this.faults.crashed) throw new HostCrashed('host is gone (dead letters not written)');
    await this.inner.write(records);
  }
}

/**
 * The sequence of host processes: each generation gets fresh faults and a fresh engine (empty caches, new
 * clients) that the real `syncTwins` handler ({@link handler}) runs on.
 */
export class LocalHost {
  generation = 0;
  faults = new HostFaults();
  engine!: SyncEngine;
  /** The real syncTwins handler, on the current generation's engine. */
  readonly handler: SyncTwinsHandler = makeSyncTwins(() => ({ engine: this.engine, attempts: this.attempts }));

  /**
   * `attempts`, when given, is the function's durable count of batch starts: one object for every host
   * generation, as a blob outlives the processes that write it.
   */
  constructor(
    private readonly makeEngine: (faults: HostFaults) => SyncEngine,
    private readonly disposeEngine?: (engine: SyncEngine) => void,
    private readonly attempts?: AttemptCounter,
  ) {
    this.start();
  }

  private start(): void {
    this.faults = new HostFaults();
    this.engine = this.makeEngine(this.faults);
    this.generation++;
  }

  /** The running process, for the trigger to tell whether it died during an invocation. */
  current(): HostFaults {
    return this.faults;
  }

  /** Starts the next process, unless `crashed` is not the current one (another partition restarted it already). */
  restart(crashed: { crashed: boolean } = this.faults): void {
    if (crashed !== this.faults) return;
    const old = this.engine;
    this.start();
    this.disposeEngine?.(old);
  }

  stop(): void {
    this.disposeEngine?.(this.engine);
  }
}
