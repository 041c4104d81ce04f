// The IoT Hub query language on the replica: parse, translate to parameterised Cosmos SQL. Pure (no SDK).
export { QueryError, type Loc, type QueryAst, type Expr, type PathNode } from './ast';
export { MAX_QUERY_LENGTH, parseQuery } from './parse';
export { resolvePath, SUPPORTED_FUNCTIONS, translate, TWIN_FIELDS, type Collection, type Column, type CosmosQuery, type Plan } from './translate';
