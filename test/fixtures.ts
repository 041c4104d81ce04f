import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { WireEvent } from '../testkit/events';

/** The sample events in test/fixtures/events (provenance in each file and in that folder's README), as the trigger hands them over. */
export const FIXTURE_DIR = join(import.meta.dirname, 'fixtures', 'events');

export function loadFixture(name: string): WireEvent {
  const file = JSON.parse(readFileSync(join(FIXTURE_DIR, name.endsWith('.json') ? name : `${name}.json`), 'utf8'));
  return { body: file.event.body, properties: file.event.properties, systemProperties: file.event.systemProperties };
}

export function fixtureNames(): string[] {
  return readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.json')).sort();
}
