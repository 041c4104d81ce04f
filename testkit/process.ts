import { spawn, type SpawnOptions } from 'node:child_process';

export interface ProcessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end and collects what it printed: how the tests run the installed CLI and the
 * commands the docs tell a user to paste. `killWhen` is polled every 25 ms and kills the process (SIGKILL)
 * once it returns true, to test what survives an interrupted command.
 */
export function runProcess(command: string, args: readonly string[], options: SpawnOptions & { killWhen?: () => boolean } = {}): Promise<ProcessRun> {
  const { killWhen, ...spawnOptions } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    const poll = killWhen ? setInterval(() => killWhen() && child.kill('SIGKILL'), 25) : undefined;
    child.on('error', (err) => {
      clearInterval(poll);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearInterval(poll);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
