import { attemptBlobName, type AttemptCounter, type BatchKey } from '../functions/src/adapters/attemptCounter';

/** The attempt counter in memory, for tests: one object outlives the simulated host processes, as a blob would. */
export class MemoryAttemptCounter implements AttemptCounter {
  readonly partitions = new Map<string, { firstSequence: string; starts: number }>();

  start(key: BatchKey): Promise<number> {
    const name = attemptBlobName(key);
    const current = this.partitions.get(name);
    const starts = current?.firstSequence === key.firstSequence ? current.starts + 1 : 1;
    this.partitions.set(name, { firstSequence: key.firstSequence, starts });
    return Promise.resolve(starts);
  }
}
