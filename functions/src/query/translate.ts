import { QueryError, type Expr, type PathNode, type QueryAst } from './ast';
import type { Json } from '../sync/types';
import { parseQuery } from './parse';

/**
 * IoT Hub twin query → parameterised Cosmos DB SQL over the replica container. Pure: no SDK.
 *
 * Safety: every literal becomes a parameter (`@p0`, `@p1`, …). The SQL text is assembled only from this
 * module's own tokens, parameter names, and property names that match `[A-Za-z_][A-Za-z0-9_]*` and are not
 * Cosmos keywords (emitted as `c.tags.location`); any other property name (`$metadata`, `[[odd name]]`)
 * is a parameter too (`c.properties.reported[@p3]`). Aliases never reach the SQL: columns are named
 * `f0`, `f1`, … and renamed by the reader.
 *
 * Results contain only live twins of the collection asked for: every query carries
 * `NOT IS_DEFINED(c.deleted)` (tombstones) and `[NOT] IS_DEFINED(c.moduleId)` (devices vs devices.modules),
 * as docs/replica.md defines them.
 */

export type Collection = 'devices' | 'devices.modules';

/** An output column: the Cosmos column `field` (`f0`, …) renamed `name`. */
export interface Column {
  name: string;
  field: string;
}

export interface CosmosQuery {
  query: string;
  parameters: { name: string; value: Json }[];
}

export type Plan =
  /** SELECT *: twins, bookkeeping removed by the reader. */
  | { kind: 'twins'; collection: Collection; sql: CosmosQuery; top?: number }
  /** A projection: each Cosmos row `{ f0, f1, … }` becomes `{ [column.name]: … }`. */
  | { kind: 'rows'; collection: Collection; sql: CosmosQuery; columns: Column[]; top?: number }
  /** COUNT() without GROUP BY: `SELECT VALUE COUNT(1)`, one row `{ [alias]: n }`. */
  | { kind: 'count'; collection: Collection; sql: CosmosQuery; alias: string }
  /**
   * GROUP BY with COUNT(). `sql` (`SELECT c.<key> AS g0, … FROM c WHERE …`) is completed by the reader,
   * which counts the rows per key; `nativeSql` is the same query with Cosmos's own GROUP BY
   * (`SELECT c.<key> AS g0, …, COUNT(1) AS n … GROUP BY c.<key>`), for a Cosmos DB account (the local
   * Cosmos-compatible server has no GROUP BY).
   */
  | { kind: 'group'; collection: Collection; sql: CosmosQuery; nativeSql: CosmosQuery; keys: number; columns: ({ name: string; key: number } | { name: string; count: true })[] };

/**
 * Top-level fields of an IoT Hub twin (Microsoft Learn, "Understand and use device twins": twin JSON;
 * module twins add moduleId). Matched case-insensitively, as IoT Hub does in its documented example
 * `SELECT DeviceId, LastActivityTime` (results name them `deviceId`, `lastActivityTime`).
 */
export const TWIN_FIELDS = [
  'deviceId', 'moduleId', 'etag', 'deviceEtag', 'version', 'status', 'statusReason', 'statusUpdateTime', 'connectionState',
  'lastActivityTime', 'cloudToDeviceMessageCount', 'authenticationType', 'x509Thumbprint', 'modelId', 'capabilities',
  'deviceScope', 'parentScopes', 'managedBy', 'tags', 'properties',
] as const;
const FIELD_BY_LOWER = new Map<string, string>(TWIN_FIELDS.map((f) => [f.toLowerCase(), f]));
const SECTIONS = new Map([['desired', 'desired'], ['reported', 'reported']]);

/**
 * Cosmos DB NoSQL keywords (the SDK's grammar, Azure/azure-cosmos-dotnet-v3
 * Microsoft.Azure.Cosmos/src/Query/Core/Parser/sql.g4): a property with one of these names cannot follow a
 * dot (`primary_expression '.' identifier`), so it goes through the indexer, which takes any scalar
 * expression, a parameter included (`primary_expression '[' scalar_expression ']'`). Compared
 * case-insensitively, which is stricter than needed.
 */
const COSMOS_KEYWORDS = new Set([
  'all', 'and', 'any', 'array', 'as', 'asc', 'between', 'by', 'case', 'cast', 'convert', 'cross', 'desc', 'distinct', 'else',
  'end', 'escape', 'exists', 'false', 'first', 'for', 'from', 'group', 'having', 'in', 'inner', 'insert', 'into', 'is', 'join',
  'last', 'left', 'like', 'limit', 'rank', 'not', 'null', 'offset', 'on', 'or', 'order', 'outer', 'over', 'right', 'root', 'select',
  'set', 'some', 'then', 'top', 'true', 'udf', 'undefined', 'update', 'value', 'when', 'where', 'with', 'infinity', 'nan',
]);
const SAFE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Functions (Microsoft Learn, IoT Hub query language, "Functions": type checks, string functions and the
 * math functions it lists) → the Cosmos DB function of the same meaning, with the arities accepted.
 */
const FUNCTIONS: Record<string, { cosmos: string; min: number; max: number }> = {
  IS_DEFINED: { cosmos: 'IS_DEFINED', min: 1, max: 1 },
  IS_NULL: { cosmos: 'IS_NULL', min: 1, max: 1 },
  IS_STRING: { cosmos: 'IS_STRING', min: 1, max: 1 },
  IS_NUMBER: { cosmos: 'IS_NUMBER', min: 1, max: 1 },
  IS_BOOL: { cosmos: 'IS_BOOL', min: 1, max: 1 },
  IS_OBJECT: { cosmos: 'IS_OBJECT', min: 1, max: 1 },
  IS_ARRAY: { cosmos: 'IS_ARRAY', min: 1, max: 1 },
  IS_PRIMITIVE: { cosmos: 'IS_PRIMITIVE', min: 1, max: 1 },
  STARTSWITH: { cosmos: 'STARTSWITH', min: 2, max: 2 },
  STARTS_WITH: { cosmos: 'STARTSWITH', min: 2, max: 2 },
  ENDSWITH: { cosmos: 'ENDSWITH', min: 2, max: 2 },
  ENDS_WITH: { cosmos: 'ENDSWITH', min: 2, max: 2 },
  CONTAINS: { cosmos: 'CONTAINS', min: 2, max: 2 },
  INDEX_OF: { cosmos: 'INDEX_OF', min: 2, max: 2 },
  LENGTH: { cosmos: 'LENGTH', min: 1, max: 1 },
  LOWER: { cosmos: 'LOWER', min: 1, max: 1 },
  UPPER: { cosmos: 'UPPER', min: 1, max: 1 },
  CONCAT: { cosmos: 'CONCAT', min: 2, max: 32 },
  SUBSTRING: { cosmos: 'SUBSTRING', min: 2, max: 3 },
  ABS: { cosmos: 'ABS', min: 1, max: 1 },
  EXP: { cosmos: 'EXP', min: 1, max: 1 },
  POWER: { cosmos: 'POWER', min: 2, max: 2 },
  SQUARE: { cosmos: 'SQUARE', min: 1, max: 1 },
  CEILING: { cosmos: 'CEILING', min: 1, max: 1 },
  FLOOR: { cosmos: 'FLOOR', min: 1, max: 1 },
  SIGN: { cosmos: 'SIGN', min: 1, max: 1 },
  SQRT: { cosmos: 'SQRT', min: 1, max: 1 },
};
export const SUPPORTED_FUNCTIONS = Object.keys(FUNCTIONS);

/** A path resolved against the twin: canonical segments (`['properties', 'reported', 'fw']`). */
export function resolvePath(path: PathNode, collection: Collection): string[] {
  let segs = [...path.segments];
  // The documented prefixes: `devices.` on either collection, `devices.modules.` on module twins.
  if (segs.length > 1 && segs[0].toLowerCase() === 'devices') {
    segs = segs.slice(1);
    if (collection === 'devices.modules' && segs.length > 1 && segs[0].toLowerCase() === 'modules') segs = segs.slice(1);
  }
  const field = FIELD_BY_LOWER.get(segs[0].toLowerCase());
  if (!field) {
    throw new QueryError('path', path.loc, `${JSON.stringify(path.segments.join('.'))} is not a twin property (${TWIN_FIELDS.join(', ')}, with tags.… and properties.desired|reported.…)`);
  }
  const out = [field, ...segs.slice(1)];
  if (field === 'properties' && out.length > 1) {
    const section = SECTIONS.get(out[1].toLowerCase());
    if (!section) throw new QueryError('path', path.loc, `properties.${out[1]}: a twin has properties.desired and properties.reported only`);
    out[1] = section;
  }
  return out;
}

class Builder {
  readonly parameters: { name: string; value: Json }[] = [];

  constructor(readonly collection: Collection) {}

  param(value: Json): string {
    const name = `@p${this.parameters.length}`;
    this.parameters.push({ name, value });
    return name;
  }

  path(p: PathNode): string {
    return 'c' + resolvePath(p, this.collection).map((s) => (SAFE_NAME.test(s) && !COSMOS_KEYWORDS.has(s.toLowerCase()) ? `.${s}` : `[${this.param(s)}]`)).join('');
  }

  /** The SQL of an expression, parenthesised only where Cosmos DB's precedence needs it (see PRECEDENCE). */
  expr(e: Expr, min = 0): string {
    const { sql, prec } = this.emit(e);
    return prec < min ? `(${sql})` : sql;
  }

  private emit(e: Expr): { sql: string; prec: number } {
    const atom = (sql: string) => ({ sql, prec: P.atom });
    switch (e.kind) {
      case 'literal':
        return atom(this.param(e.value));
      case 'undefined':
        return atom('undefined');
      case 'path':
        return atom(this.path(e));
      case 'array':
      case 'object': {
        const constant = constantValue(e);
        if (constant !== NOT_CONSTANT) return atom(this.param(constant as Json));
        if (e.kind === 'array') return atom(`[${e.items.map((i) => this.expr(i)).join(', ')}]`);
        throw new QueryError('object', e.loc, 'an object literal may hold constants only');
      }
      case 'unary': {
        const constant = constantValue(e);
        if (constant !== NOT_CONSTANT) return atom(this.param(constant as Json));
        return { sql: `${e.op}${this.expr(e.operand, P.atom)}`, prec: P.unary };
      }
      case 'not':
        return { sql: `NOT ${this.expr(e.operand, P.atom)}`, prec: P.not };
      case 'binary': {
        if (e.op === 'AND' || e.op === 'OR') {
          const prec = e.op === 'AND' ? P.and : P.or;
          return { sql: `${this.expr(e.left, prec)} ${e.op} ${this.expr(e.right, prec)}`, prec };
        }
        const prec = e.op === '+' || e.op === '-' ? P.additive : P.multiplicative;
        // Left-associative: a right operand of the same precedence keeps its parentheses (a - (b - c)).
        return { sql: `${this.expr(e.left, prec)} ${e.op} ${this.expr(e.right, prec + 1)}`, prec };
      }
      case 'compare': {
        const op = e.op === '<>' ? '!=' : e.op;
        return { sql: `${this.expr(e.left, P.additive)} ${op} ${this.expr(e.right, P.additive)}`, prec: P.compare };
      }
      case 'in': {
        // As equalities (Cosmos defines IN so): an absent property is undefined, not false, so NIN does not
        // match twins lacking the property, the same on Cosmos DB and on the local server.
        if (e.list.items.length === 0) throw new QueryError(e.negated ? 'NIN' : 'IN', e.list.loc, `${e.negated ? 'NIN' : 'IN'} needs at least one value`);
        const value = this.expr(e.value, P.additive);
        const alternatives = e.list.items.map((item) => `${value} = ${this.expr(item, P.additive)}`);
        if (e.negated) return { sql: `NOT (${alternatives.join(' OR ')})`, prec: P.not };
        return { sql: alternatives.join(' OR '), prec: alternatives.length > 1 ? P.or : P.compare };
      }
      case 'call': {
        const fn = FUNCTIONS[e.name.toUpperCase()];
        if (!fn) throw new QueryError(e.name, e.loc, `function ${e.name} is not supported (supported: ${SUPPORTED_FUNCTIONS.join(', ')})`);
        if (e.args.length < fn.min || e.args.length > fn.max) {
          throw new QueryError(e.name, e.loc, `${e.name} takes ${fn.min === fn.max ? fn.min : `${fn.min} to ${fn.max}`} argument(s), got ${e.args.length}`);
        }
        const args = e.args.map((a) => this.expr(a));
        // IoT Hub's SUBSTRING(string, start [, length]); Cosmos DB's needs the length.
        if (fn.cosmos === 'SUBSTRING' && args.length === 2) args.push(`LENGTH(${args[0]})`);
        return atom(`${fn.cosmos}(${args.join(', ')})`);
      }
    }
  }
}

/**
 * Operator precedence, loosest first (OR < AND < comparison < + - < * / % < unary). In Cosmos DB's grammar
 * (sql.g4 above) NOT is a unary operator binding tighter than any binary one, so its operand is always
 * parenthesised (`NOT (c.a = @p0)`) and a NOT inside a comparison or arithmetic is too. The SQL carries only
 * the parentheses this requires: the local Cosmos-compatible server's parser slows down exponentially with
 * nesting depth.
 */
const P = { or: 1, and: 2, not: 3, compare: 4, additive: 5, multiplicative: 6, unary: 7, atom: 8 };

const NOT_CONSTANT = Symbol('not constant');
/** The JSON value of a constant expression (literals, arrays and objects of them, a signed number), or NOT_CONSTANT. */
function constantValue(e: Expr): unknown {
  if (e.kind === 'literal') return e.value;
  if (e.kind === 'unary' && e.operand.kind === 'literal' && typeof e.operand.value === 'number') return e.op === '-' ? -e.operand.value : e.operand.value;
  if (e.kind === 'array') {
    const items = e.items.map(constantValue);
    return items.includes(NOT_CONSTANT) ? NOT_CONSTANT : items;
  }
  if (e.kind === 'object') {
    const out: Record<string, unknown> = {};
    for (const { key, value } of e.entries) {
      const v = constantValue(value);
      if (v === NOT_CONSTANT) return NOT_CONSTANT;
      out[key] = v;
    }
    return out;
  }
  return NOT_CONSTANT;
}

function collectionOf(ast: QueryAst): Collection {
  const name = ast.from.name.toLowerCase();
  if (name === 'devices') return 'devices';
  if (name === 'devices.modules') return 'devices.modules';
  if (name === 'devices.jobs') throw new QueryError('FROM devices.jobs', ast.from.loc, 'FROM devices.jobs: the replica holds twins, not jobs; query jobs on the hub');
  throw new QueryError(`FROM ${ast.from.name}`, ast.from.loc, `FROM ${ast.from.name}: expected devices or devices.modules`);
}

/** The column name IoT Hub gives a projected path without an alias: its last segment (`deviceId`, `status`). */
function defaultName(segments: string[]): string {
  return segments[segments.length - 1];
}

/** Translates an IoT Hub twin query; throws QueryError (with position and construct) for anything unsupported. */
export function translate(text: string): Plan {
  const ast = parseQuery(text);
  const collection = collectionOf(ast);
  const b = new Builder(collection);
  const kindFilter = collection === 'devices' ? 'NOT IS_DEFINED(c.moduleId)' : 'IS_DEFINED(c.moduleId)';
  const where = ast.where ? ` AND ${b.expr(ast.where, P.and)}` : '';
  const filter = `FROM c WHERE NOT IS_DEFINED(c.deleted) AND ${kindFilter}${where}`;

  if (!Array.isArray(ast.select)) {
    if (ast.groupBy) throw new QueryError('GROUP BY', ast.groupBy[0].loc, 'GROUP BY needs a projection list with COUNT(), not SELECT *');
    // TOP is applied by the reader (a Cosmos TOP would apply per page of a paged query, not to the whole result).
    return { kind: 'twins', collection, sql: { query: `SELECT * ${filter}`, parameters: b.parameters }, top: ast.top };
  }
  const items = ast.select;
  for (const item of items) {
    if (item.value.kind === 'aggregate' && item.value.name !== 'COUNT') {
      throw new QueryError(item.value.name, item.value.loc, `${item.value.name}() is not supported yet; COUNT() is`);
    }
    if (item.value.kind === 'aggregate' && item.value.arg) throw new QueryError('COUNT', item.value.loc, 'COUNT() takes no argument');
  }
  const names = items.map((item) => item.alias ?? (item.value.kind === 'path' ? defaultName(resolvePath(item.value, collection)) : '$1'));
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(names[i])) throw new QueryError('alias', item.loc, `two columns are named ${JSON.stringify(names[i])}: give one an alias`);
    seen.add(names[i]);
  });
  const counts = items.filter((i) => i.value.kind === 'aggregate');

  if (ast.groupBy) {
    if (ast.top !== undefined) throw new QueryError('TOP', ast.from.loc, 'TOP with GROUP BY is not supported');
    const keys = ast.groupBy.map((g) => resolvePath(g, collection).join('.'));
    const keySql = ast.groupBy.map((g) => b.path(g));
    const columns = items.map((item, i) => {
      if (item.value.kind === 'aggregate') return { name: names[i], count: true as const };
      const key = keys.indexOf(resolvePath(item.value, collection).join('.'));
      if (key < 0) throw new QueryError('GROUP BY', item.loc, `${item.value.segments.join('.')} is neither grouped by nor an aggregate`);
      return { name: names[i], key };
    });
    const projected = keySql.map((k, i) => `${k} AS g${i}`).join(', ');
    return {
      kind: 'group', collection, keys: keys.length, columns,
      sql: { query: `SELECT ${projected} ${filter}`, parameters: b.parameters },
      nativeSql: { query: `SELECT ${projected}, COUNT(1) AS n ${filter} GROUP BY ${keySql.join(', ')}`, parameters: b.parameters },
    };
  }
  if (counts.length > 0) {
    if (items.length > 1) throw new QueryError('COUNT', items.find((i) => i.value.kind === 'path')!.loc, 'a query with COUNT() and other columns needs GROUP BY');
    return { kind: 'count', collection, alias: names[0], sql: { query: `SELECT VALUE COUNT(1) ${filter}`, parameters: b.parameters } };
  }
  const columns: Column[] = items.map((_, i) => ({ name: names[i], field: `f${i}` }));
  const projected = items.map((item, i) => `${b.path(item.value as PathNode)} AS f${i}`).join(', ');
  return { kind: 'rows', collection, columns, sql: { query: `SELECT ${projected} ${filter}`, parameters: b.parameters }, top: ast.top };
}

