import type { DeadLetter, DeadLetterSink } from '../sync/ports';

/** Keeps dead letters in memory: for benchmarks and tests that look at what was dead-lettered. */
export class MemoryDeadLetterSink implements DeadLetterSink {
  readonly records: DeadLetter[] = [];
  async write(records: readonly DeadLetter[]): Promise<void> {
    this.records.push(...records);
  }
}
