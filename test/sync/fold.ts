import { applyEvent, type FoldContext, type Outcome, type RuleOptions } from '../../functions/src/sync/rules';
import type { TwinDoc, TwinEvent } from '../../functions/src/sync/types';

// The rules applied one event after another, as the engine folds a document's events: for the property tests.
/** Folds a document's events in order; returns the final document and each event's outcome. */
export function foldEvents(doc: TwinDoc | undefined, events: readonly TwinEvent[], options: RuleOptions = {}, context: FoldContext = {}): { doc: TwinDoc | undefined; outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  let current = doc;
  for (const event of events) {
    const r = applyEvent(current, event, options, context);
    current = r.doc;
    outcomes.push(r.outcome);
  }
  return { doc: current, outcomes };
}
