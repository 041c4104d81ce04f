/**
 * The IoT Hub query language (twins), as a peggy grammar. Sources: Microsoft Learn, "IoT Hub query
 * language for device and module twins, jobs, and message routing" (SELECT / FROM / WHERE / GROUP BY
 * grammar, expressions, constants, string escapes, operators, functions) and "Queries for IoT Hub device
 * and module twins" (examples). Keywords are case-insensitive; identifiers keep their case (the
 * translator decides which names are matched case-insensitively).
 *
 * Why peggy: the grammar reads like the reference's BNF, peggy reports the line, column and what it
 * expected on a syntax error, and it has no native parts (it generates plain JavaScript, here once per
 * process from this text, so there is no build step and it works inside the esbuild bundle).
 *
 * The grammar accepts more than the translator supports (aggregates other than COUNT, FROM devices.jobs,
 * any function name): those are refused by the translator with their position and name, which gives a
 * clearer message than a syntax error.
 */
export const GRAMMAR = String.raw`
{{
  function node(kind, props, loc) { return Object.assign({ kind, loc: { offset: loc.start.offset, line: loc.start.line, column: loc.start.column } }, props); }
  function fold(head, tail, loc) {
    return tail.reduce((left, [op, right]) => node('binary', { op: op.toUpperCase(), left, right }, loc), head);
  }
}}

Query
  = _ SELECT __ top:(TOP __ n:Integer __ { return n; })? select:SelectList _ FROM __ from:Collection
    where:(__ WHERE __ e:Expression { return e; })?
    groupBy:(__ GROUP __ BY __ g:GroupList { return g; })? _ EndOfInput
    { return { select, top: top ?? undefined, from, where: where ?? undefined, groupBy: groupBy ?? undefined }; }

EndOfInput = !.

SelectList
  = "*" { return { kind: 'star', loc: { offset: location().start.offset, line: location().start.line, column: location().start.column } }; }
  / head:Projection tail:(_ "," _ p:Projection { return p; })* { return [head, ...tail]; }

Projection
  = value:(Aggregate / Path) alias:(__ AS __ a:Name { return a; })?
    { return node('projection', { value, alias: alias ?? undefined }, location()); }

Aggregate
  = name:$(COUNT / AVG / SUM / MIN / MAX) _ "(" _ arg:Path? _ ")"
    { return node('aggregate', { name: name.toUpperCase(), arg: arg ?? undefined }, location()); }

Collection
  = name:$(Identifier ("." Identifier)*) { return node('collection', { name }, location()); }

GroupList
  = head:Path tail:(_ "," _ p:Path { return p; })* { return [head, ...tail]; }

Expression = OrExpr

OrExpr = head:AndExpr tail:(__ op:$OR __ e:AndExpr { return [op, e]; })* { return fold(head, tail, location()); }

AndExpr = head:NotExpr tail:(__ op:$AND __ e:NotExpr { return [op, e]; })* { return fold(head, tail, location()); }

NotExpr
  = NOT _ operand:NotExpr { return node('not', { operand }, location()); }
  / Comparison

Comparison
  = left:Additive _ op:$(NIN / IN) _ right:ArrayLiteral { return node('in', { negated: op.toUpperCase() === 'NIN', value: left, list: right }, location()); }
  / left:Additive _ op:$("<>" / "!=" / "<=" / ">=" / "=" / "<" / ">") _ right:Additive { return node('compare', { op, left, right }, location()); }
  / Additive

Additive = head:Multiplicative tail:(_ op:$("+" / "-") _ e:Multiplicative { return [op, e]; })* { return fold(head, tail, location()); }

Multiplicative = head:Unary tail:(_ op:$("*" / "/" / "%") _ e:Unary { return [op, e]; })* { return fold(head, tail, location()); }

Unary
  = op:$("-" / "+") _ operand:Unary { return node('unary', { op, operand }, location()); }
  / Primary

Primary
  = "(" _ e:Expression _ ")" { return e; }
  / Literal
  / FunctionCall
  / Path

FunctionCall
  = name:Identifier _ "(" _ args:(head:Expression tail:(_ "," _ e:Expression { return e; })* { return [head, ...tail]; })? _ ")"
    { return node('call', { name, args: args ?? [] }, location()); }

Path
  = head:PathStart tail:(_ "." _ s:Segment { return s; })* { return node('path', { segments: [head, ...tail] }, location()); }

PathStart = !(Keyword !IdentPart) s:Segment { return s; }

Segment
  = "[[" name:$((!"]]" .)+) "]]" { return name; }
  / Identifier

Literal
  = StringLiteral
  / NumberLiteral
  / TRUE { return node('literal', { value: true }, location()); }
  / FALSE { return node('literal', { value: false }, location()); }
  / NULL { return node('literal', { value: null }, location()); }
  / UNDEFINED { return node('undefined', {}, location()); }
  / ArrayLiteral
  / ObjectLiteral

ArrayLiteral
  = "[" _ items:(head:Expression tail:(_ "," _ e:Expression { return e; })* { return [head, ...tail]; })? _ "]"
    { return node('array', { items: items ?? [] }, location()); }

ObjectLiteral
  = "{" _ entries:(head:Entry tail:(_ "," _ e:Entry { return e; })* { return [head, ...tail]; })? _ "}"
    { return node('object', { entries: entries ?? [] }, location()); }

Entry = key:(s:StringLiteral { return s.value; } / Identifier) _ ":" _ value:Expression { return { key, value }; }

StringLiteral
  = "'" chars:(SingleChar)* "'" { return node('literal', { value: chars.join('') }, location()); }
  / '"' chars:(DoubleChar)* '"' { return node('literal', { value: chars.join('') }, location()); }

SingleChar = Escape / c:[^'\\] { return c; }
DoubleChar = Escape / c:[^"\\] { return c; }

Escape
  = "\\'" { return "'"; }
  / '\\"' { return '"'; }
  / "\\\\" { return "\\"; }
  / "\\u" hex:$([0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]) { return String.fromCharCode(parseInt(hex, 16)); }
  / "\\" c:. { error('the escape \\' + c + ' is not one the IoT Hub query language allows (\\\', \\", \\\\, \\uXXXX)'); }

NumberLiteral
  = "0x"i hex:$[0-9a-fA-F]+ !IdentPart { return node('literal', { value: parseInt(hex, 16) }, location()); }
  / n:$([0-9]+ ("." [0-9]+)? ([eE] [+-]? [0-9]+)? / "." [0-9]+ ([eE] [+-]? [0-9]+)?) !IdentPart { return node('literal', { value: Number(n) }, location()); }

Integer = n:$[0-9]+ { return Number(n); }

Name = Identifier / "[[" name:$((!"]]" .)+) "]]" { return name; }

Identifier = $([A-Za-z_$] IdentPart*)
IdentPart = [A-Za-z0-9_$]

Keyword = SELECT / FROM / WHERE / GROUP / BY / AND / OR / NOT / NIN / IN / AS / TOP / TRUE / FALSE / NULL / UNDEFINED

SELECT = "SELECT"i !IdentPart
FROM = "FROM"i !IdentPart
WHERE = "WHERE"i !IdentPart
GROUP = "GROUP"i !IdentPart
BY = "BY"i !IdentPart
AND = "AND"i !IdentPart
OR = "OR"i !IdentPart
NOT = "NOT"i !IdentPart
IN = "IN"i !IdentPart
NIN = "NIN"i !IdentPart
AS = "AS"i !IdentPart
TOP = "TOP"i !IdentPart
TRUE = "TRUE"i !IdentPart
FALSE = "FALSE"i !IdentPart
NULL = "NULL"i !IdentPart
UNDEFINED = "UNDEFINED"i !IdentPart
COUNT = "COUNT"i !IdentPart
AVG = "AVG"i !IdentPart
SUM = "SUM"i !IdentPart
MIN = "MIN"i !IdentPart
MAX = "MAX"i !IdentPart

_ "whitespace" = [ \t\r\n]*
__ "whitespace" = [ \t\r\n]+ / &[()\[\],'"*]
`;
