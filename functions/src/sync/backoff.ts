/**
 * The one back-off and sleep of the project: exponential delays (doubling from `baseMs`, capped at
 * `maxMs`, optionally spread by ±`jitter`) and a sleep that an abort signal ends early. Used by the hub
 * pager, the tools' retries through the engine, the Cosmos store's re-send of throttled bulk operations and
 * the local run's stand-in for the Functions retry policy.
 */
export interface Backoff {
  baseMs: number;
  maxMs: number;
  /** Spread as a fraction of the delay: 0.2 gives ±20%. @default 0 */
  jitter?: number;
}

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const exp = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, attempt));
  const jitter = backoff.jitter ?? 0;
  return jitter > 0 ? Math.round(exp * (1 - jitter + random() * 2 * jitter)) : exp;
}

/** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
