/** The parsed form of an IoT Hub twin query (see grammar.ts). Every node carries where it starts in the text. */
export interface Loc {
  /** 0-based character offset. */
  offset: number;
  /** 1-based line and column. */
  line: number;
  column: number;
}

export type Literal = { kind: 'literal'; value: string | number | boolean | null; loc: Loc };
export type Expr =
  | Literal
  | { kind: 'undefined'; loc: Loc }
  | PathNode
  | { kind: 'array'; items: Expr[]; loc: Loc }
  | { kind: 'object'; entries: { key: string; value: Expr }[]; loc: Loc }
  | { kind: 'call'; name: string; args: Expr[]; loc: Loc }
  | { kind: 'binary'; op: string; left: Expr; right: Expr; loc: Loc }
  | { kind: 'compare'; op: string; left: Expr; right: Expr; loc: Loc }
  | { kind: 'in'; negated: boolean; value: Expr; list: Extract<Expr, { kind: 'array' }>; loc: Loc }
  | { kind: 'not'; operand: Expr; loc: Loc }
  | { kind: 'unary'; op: string; operand: Expr; loc: Loc };

export interface PathNode {
  kind: 'path';
  /** As written (without the `[[ ]]` escape). */
  segments: string[];
  loc: Loc;
}

export interface Projection {
  kind: 'projection';
  value: PathNode | { kind: 'aggregate'; name: string; arg?: PathNode; loc: Loc };
  alias?: string;
  loc: Loc;
}

export interface QueryAst {
  select: { kind: 'star'; loc: Loc } | Projection[];
  top?: number;
  from: { kind: 'collection'; name: string; loc: Loc };
  where?: Expr;
  groupBy?: PathNode[];
}

/** A query the replica will not run: a syntax error, or a construct outside what is supported. Raised before any request. */
export class QueryError extends Error {
  override name = 'QueryError';
  constructor(
    /** What was refused, e.g. `AVG`, `FROM devices.jobs`, `syntax`. */
    readonly construct: string,
    readonly position: Loc,
    detail: string,
  ) {
    super(`line ${position.line}, column ${position.column}: ${detail}`);
  }
}
