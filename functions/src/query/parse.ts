import peggy from 'peggy';
import { QueryError, type QueryAst } from './ast';
import { GRAMMAR } from './grammar';

/** IoT Hub's documented maximum length of a query expression ("Queries for IoT Hub device and module twins", limitations). */
export const MAX_QUERY_LENGTH = 8192;

let parser: peggy.Parser | undefined;

/** Parses an IoT Hub twin query; throws QueryError with the position of a syntax error. */
export function parseQuery(text: string): QueryAst {
  if (text.length > MAX_QUERY_LENGTH) {
    throw new QueryError('length', { offset: MAX_QUERY_LENGTH, line: 1, column: MAX_QUERY_LENGTH + 1 }, `the query is ${text.length} characters; IoT Hub allows ${MAX_QUERY_LENGTH}`);
  }
  parser ??= peggy.generate(GRAMMAR);
  try {
    return parser.parse(text) as QueryAst;
  } catch (err) {
    const e = err as { location?: { start: { offset: number; line: number; column: number } }; message?: string };
    if (!e.location) throw err;
    const { offset, line, column } = e.location.start;
    throw new QueryError('syntax', { offset, line, column }, `syntax error: ${e.message}`);
  }
}
