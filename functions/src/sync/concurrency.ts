/**
 * The one worker pool: runs `fn` over `items` with at most `concurrency` calls in flight, in order of
 * start. The first rejection rejects the whole (workers already running finish their item). Used by the
 * engine's reads and single writes, the dead-letter sink and the tools.
 */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), items.length) }, worker));
}
