import cliProgress from 'cli-progress';

/** Progress on stderr (never mixed into --json output on stdout); silent when stderr is not a terminal. */
export interface Progress {
  start(label: string, total?: number): void;
  update(value: number, detail: string, total?: number): void;
  status(message: string): void;
  stop(): void;
}

export function createProgress(enabled: boolean): Progress | undefined {
  if (!enabled) return undefined;
  let bar: cliProgress.SingleBar | undefined;
  let known = false;
  return {
    start(label, total) {
      known = total !== undefined;
      bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: known ? `${label} [{bar}] {value}/{total} {detail} {status}` : `${label} {value} twins | {detail} {status}`,
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total ?? 0, 0, { detail: '', status: '' });
    },
    update(value, detail, total) {
      if (total !== undefined) bar?.setTotal(total);
      bar?.update(value, { detail, status: '' });
    },
    status(message) {
      bar?.update({ status: message });
    },
    stop() {
      bar?.stop();
    },
  };
}
