import type { Expr, PathNode, QueryAst } from '../functions/src/query/ast';

/**
 * An independent evaluator of an IoT Hub twin query over plain twin objects (as the simulated hub renders
 * them): the oracle the replica's answers are checked against. It shares only the parser's AST with the
 * translator, never the translation: names are found by looking at the twin's own keys, and the semantics
 * are written out here as docs/query.md states them:
 * - top-level twin fields and properties.desired/reported match case-insensitively, deeper keys exactly;
 * - an absent property is undefined; a comparison with undefined, or between values of different types,
 *   is undefined; ordering (<, <=, >, >=) is defined for numbers with numbers and strings with strings;
 *   = compares objects and arrays by value, != between them is undefined (Microsoft Learn, "Equality and
 *   comparison operators in Azure Cosmos DB for NoSQL");
 * - AND / OR / NOT are three-valued (false AND undefined = false, true OR undefined = true, NOT undefined = undefined);
 *   a twin is in the result only when the condition is true;
 * - IN is a disjunction of equalities, NIN its negation.
 */
type V = unknown;
type Twin = Record<string, unknown>;

const typeOf = (v: V) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function deepEqual(a: V, b: V): boolean {
  if (typeOf(a) !== typeOf(b)) return false;
  if (Array.isArray(a)) return a.length === (b as V[]).length && a.every((x, i) => deepEqual(x, (b as V[])[i]));
  if (typeOf(a) === 'object') {
    const ka = Object.keys(a as object);
    return ka.length === Object.keys(b as object).length && ka.every((k) => k in (b as object) && deepEqual((a as Twin)[k], (b as Twin)[k]));
  }
  return a === b;
}

function lookup(obj: V, key: string, caseInsensitive: boolean): { value: V; key: string } {
  if (typeOf(obj) !== 'object') return { value: undefined, key };
  const o = obj as Twin;
  if (key in o) return { value: o[key], key };
  if (caseInsensitive) {
    const found = Object.keys(o).find((k) => k.toLowerCase() === key.toLowerCase());
    if (found !== undefined) return { value: o[found], key: found };
  }
  return { value: undefined, key };
}

export function evalPath(twin: Twin, p: PathNode): { value: V; name: string } {
  let segs = p.segments;
  if (segs.length > 1 && segs[0].toLowerCase() === 'devices') {
    segs = segs.slice(1);
    if (segs.length > 1 && segs[0].toLowerCase() === 'modules' && 'moduleId' in twin) segs = segs.slice(1);
  }
  let cur: V = twin;
  let name = segs[0];
  segs.forEach((s, i) => {
    const inSection = i === 1 && segs[0].toLowerCase() === 'properties';
    const r = lookup(cur, s, i === 0 || inSection);
    cur = r.value;
    name = r.key;
  });
  return { value: cur, name };
}

const str = (v: V) => typeof v === 'string';
const num = (v: V) => typeof v === 'number';
const FUNCS: Record<string, (...a: V[]) => V> = {
  IS_DEFINED: (v) => v !== undefined,
  IS_NULL: (v) => v === null,
  IS_STRING: (v) => str(v),
  IS_NUMBER: (v) => num(v),
  IS_BOOL: (v) => typeof v === 'boolean',
  IS_OBJECT: (v) => typeOf(v) === 'object',
  IS_ARRAY: (v) => Array.isArray(v),
  IS_PRIMITIVE: (v) => v === null || ['string', 'number', 'boolean'].includes(typeof v),
  STARTSWITH: (a, b) => (str(a) && str(b) ? (a).startsWith(b) : undefined),
  ENDSWITH: (a, b) => (str(a) && str(b) ? (a).endsWith(b) : undefined),
  CONTAINS: (a, b) => (str(a) && str(b) ? (a).includes(b) : undefined),
  INDEX_OF: (a, b) => (str(a) && str(b) ? (a).indexOf(b) : undefined),
  LENGTH: (a) => (str(a) ? (a).length : undefined),
  LOWER: (a) => (str(a) ? (a).toLowerCase() : undefined),
  UPPER: (a) => (str(a) ? (a).toUpperCase() : undefined),
  CONCAT: (...a) => (a.every(str) ? a.join('') : undefined),
  SUBSTRING: (s, start, len) => (str(s) && num(start) && (len === undefined || num(len)) ? (s).substr(start, len === undefined ? undefined : (len)) : undefined),
  ABS: (x) => (num(x) ? Math.abs(x) : undefined),
  EXP: (x) => (num(x) ? Math.exp(x) : undefined),
  POWER: (x, y) => (num(x) && num(y) ? Math.pow(x, y) : undefined),
  SQUARE: (x) => (num(x) ? (x) * (x) : undefined),
  CEILING: (x) => (num(x) ? Math.ceil(x) : undefined),
  FLOOR: (x) => (num(x) ? Math.floor(x) : undefined),
  SIGN: (x) => (num(x) ? Math.sign(x) : undefined),
  SQRT: (x) => (num(x) ? Math.sqrt(x) : undefined),
};
FUNCS.STARTS_WITH = FUNCS.STARTSWITH;
FUNCS.ENDS_WITH = FUNCS.ENDSWITH;

function equal(a: V, b: V): V {
  if (a === undefined || b === undefined || typeOf(a) !== typeOf(b)) return undefined;
  return deepEqual(a, b);
}

export function evalExpr(twin: Twin, e: Expr): V {
  switch (e.kind) {
    case 'literal':
      return e.value;
    case 'undefined':
      return undefined;
    case 'path':
      return evalPath(twin, e).value;
    case 'array':
      return e.items.map((i) => evalExpr(twin, i));
    case 'object':
      return Object.fromEntries(e.entries.map(({ key, value }) => [key, evalExpr(twin, value)]));
    case 'unary': {
      const v = evalExpr(twin, e.operand);
      return num(v) ? (e.op === '-' ? -(v) : v) : undefined;
    }
    case 'not': {
      const v = evalExpr(twin, e.operand);
      return typeof v === 'boolean' ? !v : undefined;
    }
    case 'binary': {
      const a = evalExpr(twin, e.left);
      const b = evalExpr(twin, e.right);
      if (e.op === 'AND') return a === false || b === false ? false : a === true && b === true ? true : undefined;
      if (e.op === 'OR') return a === true || b === true ? true : a === false && b === false ? false : undefined;
      if (!num(a) || !num(b)) return undefined;
      const x = a;
      const y = b;
      return e.op === '+' ? x + y : e.op === '-' ? x - y : e.op === '*' ? x * y : e.op === '/' ? x / y : x % y;
    }
    case 'compare': {
      const a = evalExpr(twin, e.left);
      const b = evalExpr(twin, e.right);
      if (e.op === '=') return equal(a, b);
      if (e.op === '!=' || e.op === '<>') {
        // Cosmos DB: != between two objects or two arrays is undefined (only = compares them by value).
        if (['object', 'array'].includes(typeOf(a))) return undefined;
        const eq = equal(a, b);
        return eq === undefined ? undefined : !eq;
      }
      if (!((num(a) && num(b)) || (str(a) && str(b)))) return undefined;
      const x = a as number;
      const y = b as number;
      return e.op === '<' ? x < y : e.op === '<=' ? x <= y : e.op === '>' ? x > y : x >= y;
    }
    case 'in': {
      const v = evalExpr(twin, e.value);
      const results = e.list.items.map((i) => equal(v, evalExpr(twin, i)));
      const any = results.includes(true) ? true : results.every((r) => r === false) ? false : undefined;
      return e.negated ? (any === undefined ? undefined : !any) : any;
    }
    case 'call':
      return FUNCS[e.name.toUpperCase()](...e.args.map((a) => evalExpr(twin, a)));
  }
}

/** The rows IoT Hub's semantics (as documented in docs/query.md) give for `ast` over these twins. */
export function evaluate(ast: QueryAst, twins: { devices: Twin[]; modules: Twin[] }): Record<string, unknown>[] {
  const from = ast.from.name.toLowerCase() === 'devices.modules' ? twins.modules : twins.devices;
  let matched = from.filter((t) => (ast.where ? evalExpr(t, ast.where) === true : true));
  if (ast.top !== undefined) matched = matched.slice(0, ast.top);
  if (!Array.isArray(ast.select)) return matched;
  const select = ast.select;
  const nameOf = (i: number, t: Twin) => select[i].alias ?? (select[i].value.kind === 'path' ? evalPath(t, select[i].value).name : '$1');
  if (ast.groupBy) {
    const groups = new Map<string, { twin: Twin; n: number }>();
    for (const t of matched) {
      const key = JSON.stringify(ast.groupBy.map((g) => {
        const v = evalPath(t, g).value;
        return v === undefined ? ['absent'] : ['value', v];
      }));
      const g = groups.get(key);
      if (g) g.n++;
      else groups.set(key, { twin: t, n: 1 });
    }
    return [...groups.values()].map(({ twin, n }) => {
      const row: Record<string, unknown> = {};
      select.forEach((p, i) => {
        if (p.value.kind === 'aggregate') row[nameOf(i, twin)] = n;
        else {
          const v = evalPath(twin, p.value).value;
          if (v !== undefined) row[nameOf(i, twin)] = v;
        }
      });
      return row;
    });
  }
  if (select.some((p) => p.value.kind === 'aggregate')) return [{ [nameOf(0, {})]: matched.length }];
  return matched.map((t) => {
    const row: Record<string, unknown> = {};
    select.forEach((p) => {
      const { value, name } = evalPath(t, p.value as PathNode);
      if (value !== undefined) row[p.alias ?? name] = value;
    });
    return row;
  });
}
