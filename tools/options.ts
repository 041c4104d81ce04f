import { InvalidArgumentError } from 'commander';
import { parseNumber, type NumberSpec } from '../functions/src/public';

/**
 * The one number-option parser of the command lines (twin-replica, `npm run local`, `npm run bench`,
 * `npm run bench:query`): runtime/settings.ts parseNumber, reported the way commander reports a bad value.
 */
export function numberOption(spec: NumberSpec, name?: string): (raw: string) => number {
  return (raw) => {
    const r = parseNumber(raw, spec);
    if ('problem' in r) throw new InvalidArgumentError(name ? `${name} ${r.problem}` : r.problem);
    return r.value;
  };
}
