import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { newBackfillState, type BackfillState } from '../functions/src/public';

/** Where a backfill keeps its progress unless --state says otherwise: one file per hub in the working folder. */
export function defaultStatePath(hub: string): string {
  return path.resolve('.twin-replica', `backfill-${hub.replace(/[^A-Za-z0-9.-]/g, '_')}.json`);
}

/** The interrupted run's state for this hub, or a fresh one. A state file of another hub is an error. */
export async function loadBackfillState(file: string, hub: string, restart: boolean): Promise<BackfillState> {
  if (restart) return newBackfillState(hub);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return newBackfillState(hub);
    throw err;
  }
  const state = JSON.parse(text) as BackfillState;
  if (state.kind !== 'twin-replica-backfill' || !state.queries?.devices || !state.queries?.modules) throw new Error(`${file} is not a backfill state file`);
  if (state.hub !== hub) throw new Error(`${file} belongs to a backfill of ${state.hub}, not ${hub}: pass --restart or another --state`);
  return state;
}

/** Writes the state atomically (temporary file + rename), so a crash mid-write leaves the previous checkpoint. */
export async function saveBackfillState(file: string, state: BackfillState): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2));
  await rename(tmp, file);
}

export async function removeBackfillState(file: string): Promise<void> {
  await rm(file, { force: true });
}
