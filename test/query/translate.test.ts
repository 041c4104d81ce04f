import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QueryError, translate, type Plan } from '../../functions/src/query';

/** The WHERE part the translator adds after the live-twin and collection predicates. */
const LIVE_DEVICES = 'FROM c WHERE NOT IS_DEFINED(c.deleted) AND NOT IS_DEFINED(c.moduleId)';
const LIVE_MODULES = 'FROM c WHERE NOT IS_DEFINED(c.deleted) AND IS_DEFINED(c.moduleId)';

function refusal(text: string): QueryError {
  try {
    translate(text);
  } catch (e) {
    if (e instanceof QueryError) return e;
    throw e;
  }
  throw new Error(`not refused: ${text}`);
}

describe('translate: each construct', () => {
  const cases: [string, string, unknown[]][] = [
    ["SELECT * FROM devices WHERE tags.a = 'x'", `SELECT * ${LIVE_DEVICES} AND c.tags.a = @p0`, ['x']],
    ['select * from DEVICES.modules', `SELECT * ${LIVE_MODULES}`, []],
    ['SELECT * FROM devices WHERE version != 1 AND version <> 2', `SELECT * ${LIVE_DEVICES} AND c.version != @p0 AND c.version != @p1`, [1, 2]],
    ['SELECT * FROM devices WHERE version < 1 OR version <= 2 OR version > 3 OR version >= 4', `SELECT * ${LIVE_DEVICES} AND (c.version < @p0 OR c.version <= @p1 OR c.version > @p2 OR c.version >= @p3)`, [1, 2, 3, 4]],
    ["SELECT * FROM devices WHERE deviceId IN ['a', 'b']", `SELECT * ${LIVE_DEVICES} AND (c.deviceId = @p0 OR c.deviceId = @p1)`, ['a', 'b']],
    ["SELECT * FROM devices WHERE deviceId NIN ['a']", `SELECT * ${LIVE_DEVICES} AND NOT (c.deviceId = @p0)`, ['a']],
    ['SELECT * FROM devices WHERE NOT (tags.a = true OR tags.b = false)', `SELECT * ${LIVE_DEVICES} AND NOT (c.tags.a = @p0 OR c.tags.b = @p1)`, [true, false]],
    ['SELECT * FROM devices WHERE tags.a = null AND tags.b = undefined', `SELECT * ${LIVE_DEVICES} AND c.tags.a = @p0 AND c.tags.b = undefined`, [null]],
    ['SELECT * FROM devices WHERE tags.a = -1.5e2 AND tags.b = 0x1F', `SELECT * ${LIVE_DEVICES} AND c.tags.a = @p0 AND c.tags.b = @p1`, [-150, 31]],
    ["SELECT * FROM devices WHERE tags.a = [1, 'x'] AND tags.b = {k: {n: null}, 'odd key': [true]}", `SELECT * ${LIVE_DEVICES} AND c.tags.a = @p0 AND c.tags.b = @p1`, [[1, 'x'], { k: { n: null }, 'odd key': [true] }]],
    ['SELECT * FROM devices WHERE tags.a + 1 * 2 > tags.b % 3', `SELECT * ${LIVE_DEVICES} AND c.tags.a + @p0 * @p1 > c.tags.b % @p2`, [1, 2, 3]],
    ["SELECT * FROM devices WHERE 'it''s' = 'x'".replace("''", "\\'"), `SELECT * ${LIVE_DEVICES} AND @p0 = @p1`, ["it's", 'x']],
    ['SELECT * FROM devices WHERE "say \\"hi\\" \\\\ \\u00e9" = tags.a', `SELECT * ${LIVE_DEVICES} AND @p0 = c.tags.a`, ['say "hi" \\ é']],
    ['SELECT * FROM devices WHERE properties.reported.$metadata.fw.$lastUpdated > properties.DESIRED.$version', `SELECT * ${LIVE_DEVICES} AND c.properties.reported[@p0].fw[@p1] > c.properties.desired[@p2]`, ['$metadata', '$lastUpdated', '$version']],
    ["SELECT * FROM devices WHERE tags.[[group]].name = 'v' AND tags.value = 1", `SELECT * ${LIVE_DEVICES} AND c.tags[@p0].name = @p1 AND c.tags[@p2] = @p3`, ['group', 'v', 'value', 1]],
    ["SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'm' AND devices.deviceId = 'd'", `SELECT * ${LIVE_MODULES} AND c.moduleId = @p0 AND c.deviceId = @p1`, ['m', 'd']],
    ["SELECT * FROM devices WHERE DEVICEID = 'd' AND ConnectionState = 'Connected' AND Tags.Site = 's'", `SELECT * ${LIVE_DEVICES} AND c.deviceId = @p0 AND c.connectionState = @p1 AND c.tags.Site = @p2`, ['d', 'Connected', 's']],
    ["SELECT * FROM devices WHERE is_defined(tags.a) AND IS_NULL(tags.b) AND is_string(tags.c) AND IS_NUMBER(tags.d) AND IS_BOOL(tags.e) AND IS_OBJECT(tags.f) AND IS_PRIMITIVE(tags.g) AND IS_ARRAY(tags.h)",
      `SELECT * ${LIVE_DEVICES} AND IS_DEFINED(c.tags.a) AND IS_NULL(c.tags.b) AND IS_STRING(c.tags.c) AND IS_NUMBER(c.tags.d) AND IS_BOOL(c.tags.e) AND IS_OBJECT(c.tags.f) AND IS_PRIMITIVE(c.tags.g) AND IS_ARRAY(c.tags.h)`, []],
    ["SELECT * FROM devices WHERE STARTSWITH(deviceId, 'a') AND starts_with(deviceId, 'b') AND ENDSWITH(deviceId, 'c') AND CONTAINS(deviceId, 'd')",
      `SELECT * ${LIVE_DEVICES} AND STARTSWITH(c.deviceId, @p0) AND STARTSWITH(c.deviceId, @p1) AND ENDSWITH(c.deviceId, @p2) AND CONTAINS(c.deviceId, @p3)`, ['a', 'b', 'c', 'd']],
    ["SELECT * FROM devices WHERE LENGTH(LOWER(UPPER(CONCAT(deviceId, 'x')))) = INDEX_OF(SUBSTRING(deviceId, 1), 'y')",
      `SELECT * ${LIVE_DEVICES} AND LENGTH(LOWER(UPPER(CONCAT(c.deviceId, @p0)))) = INDEX_OF(SUBSTRING(c.deviceId, @p1, LENGTH(c.deviceId)), @p2)`, ['x', 1, 'y']],
    ['SELECT * FROM devices WHERE (tags.a = 1 OR tags.b = 2) AND NOT NOT tags.c AND tags.d - (tags.e - -tags.f) = -(-tags.g)',
      `SELECT * ${LIVE_DEVICES} AND (c.tags.a = @p0 OR c.tags.b = @p1) AND NOT (NOT c.tags.c) AND c.tags.d - (c.tags.e - -c.tags.f) = -(-c.tags.g)`, [1, 2]],
    ['SELECT * FROM devices WHERE ABS(EXP(POWER(SQUARE(CEILING(FLOOR(SIGN(SQRT(version))))), 2))) > 0',
      `SELECT * ${LIVE_DEVICES} AND ABS(EXP(POWER(SQUARE(CEILING(FLOOR(SIGN(SQRT(c.version))))), @p0))) > @p1`, [2, 0]],
  ];
  for (const [text, sql, values] of cases) {
    it(text, () => {
      const plan = translate(text);
      expect(plan.sql.query).toBe(sql);
      expect(plan.sql.parameters.map((p) => p.value)).toEqual(values);
    });
  }

  it('projections: Cosmos columns f0…, named as IoT Hub names them (alias, else the last segment, canonical case)', () => {
    const plan = translate('SELECT DeviceId, LastActivityTime, properties.reported.fw AS firmware, tags.location.region FROM devices') as Extract<Plan, { kind: 'rows' }>;
    expect(plan.sql.query).toBe(`SELECT c.deviceId AS f0, c.lastActivityTime AS f1, c.properties.reported.fw AS f2, c.tags.location.region AS f3 ${LIVE_DEVICES}`);
    expect(plan.columns.map((c) => c.name)).toEqual(['deviceId', 'lastActivityTime', 'firmware', 'region']);
  });

  it('COUNT() is one VALUE COUNT(1); TOP is kept for the reader', () => {
    expect(translate('SELECT COUNT() AS n FROM devices.modules')).toMatchObject({ kind: 'count', alias: 'n', sql: { query: `SELECT VALUE COUNT(1) ${LIVE_MODULES}` } });
    expect(translate('SELECT COUNT() FROM devices')).toMatchObject({ kind: 'count', alias: '$1' });
    expect(translate('SELECT TOP 3 * FROM devices')).toMatchObject({ kind: 'twins', top: 3, sql: { query: `SELECT * ${LIVE_DEVICES}` } });
  });

  it('GROUP BY: a projected query the reader counts, and the native Cosmos GROUP BY', () => {
    const plan = translate("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices WHERE tags.a = 1 GROUP BY properties.reported.telemetryConfig.status");
    expect(plan).toMatchObject({
      kind: 'group', keys: 1, columns: [{ name: 'status', key: 0 }, { name: 'numberOfDevices', count: true }],
      sql: { query: `SELECT c.properties.reported.telemetryConfig.status AS g0 ${LIVE_DEVICES} AND c.tags.a = @p0` },
      nativeSql: { query: `SELECT c.properties.reported.telemetryConfig.status AS g0, COUNT(1) AS n ${LIVE_DEVICES} AND c.tags.a = @p0 GROUP BY c.properties.reported.telemetryConfig.status` },
    });
  });
});

describe('translate: each refusal names the construct and its position, before any request', () => {
  const cases: [string, string, number, RegExp][] = [
    ['SELECT * FROM devices.jobs', 'FROM devices.jobs', 15, /jobs/],
    ['SELECT * FROM twins', 'FROM twins', 15, /expected devices or devices.modules/],
    ['SELECT AVG(version) AS v FROM devices', 'AVG', 8, /AVG\(\) is not supported yet/],
    ['SELECT SUM(version) AS v FROM devices', 'SUM', 8, /SUM/],
    ['SELECT MIN(version) AS v FROM devices', 'MIN', 8, /MIN/],
    ['SELECT MAX(version) AS v FROM devices', 'MAX', 8, /MAX/],
    ['SELECT COUNT(version) AS v FROM devices', 'COUNT', 8, /no argument/],
    ['SELECT deviceId, COUNT() AS n FROM devices', 'COUNT', 8, /needs GROUP BY/],
    ['SELECT deviceId, COUNT() AS n FROM devices GROUP BY status', 'GROUP BY', 8, /neither grouped by nor an aggregate/],
    ['SELECT * FROM devices GROUP BY status', 'GROUP BY', 32, /projection list/],
    ['SELECT TOP 2 status, COUNT() AS n FROM devices GROUP BY status', 'TOP', 40, /TOP with GROUP BY/],
    ['SELECT deviceId, tags.deviceId FROM devices', 'alias', 18, /two columns are named "deviceId"/],
    ['SELECT * FROM devices WHERE replica.partial = true', 'path', 29, /not a twin property/],
    ['SELECT * FROM devices WHERE deleted = true', 'path', 29, /not a twin property/],
    ['SELECT * FROM devices WHERE id = 1', 'path', 29, /not a twin property/],
    ['SELECT * FROM devices WHERE properties.secret = 1', 'path', 29, /desired and properties.reported only/],
    ["SELECT * FROM devices WHERE AS_NUMBER(tags.a) = 1", 'AS_NUMBER', 29, /function AS_NUMBER is not supported/],
    ["SELECT * FROM devices WHERE REGEXMATCH(deviceId, '.*')", 'REGEXMATCH', 29, /not supported/],
    ['SELECT * FROM devices WHERE STARTSWITH(deviceId)', 'STARTSWITH', 29, /takes 2 argument\(s\), got 1/],
    ['SELECT * FROM devices WHERE deviceId IN []', 'IN', 41, /at least one value/],
    ['SELECT * FROM devices WHERE tags.a = {k: tags.b}', 'object', 38, /constants only/],
    ['SELECT * FROM devices WHERE', 'syntax', 28, /but end of input found/],
    ["SELECT * FROM devices WHERE deviceId = 'a\\nb'", 'syntax', 42, /escape \\n/],
    ['SELECT * FROM devices; DELETE', 'syntax', 22, /but ";" found/],
    // `--` is not a comment in IoT Hub's language: 1 - (-comment), and `comment` is no twin property.
    ['SELECT * FROM devices WHERE tags.a = 1 -- comment', 'path', 43, /"comment" is not a twin property/],
    ['SELECT * FROM devices /* x */', 'syntax', 23, /syntax error/],
    ['SELECT * FROM devices ORDER BY deviceId', 'syntax', 23, /syntax error/],
    ['SELECT DISTINCT deviceId FROM devices', 'syntax', 17, /syntax error/],
  ];
  for (const [text, construct, column, message] of cases) {
    it(text, () => {
      const e = refusal(text);
      expect(e.construct).toBe(construct);
      expect(e.position.column).toBe(column);
      expect(e.message).toMatch(message);
      expect(e.message).toMatch(new RegExp(`^line 1, column ${column}: `));
    });
  }

  it('over 8192 characters (IoT Hub\'s limit)', () => {
    expect(refusal(`SELECT * FROM devices WHERE tags.a = '${'x'.repeat(8200)}'`).construct).toBe('length');
  });

  it('reports lines and columns on a multi-line query', () => {
    expect(refusal('SELECT *\nFROM devices\nWHERE tags.a = 1\n  AND AVG(x) = 1').position).toMatchObject({ line: 4, column: 7 });
  });
});

/**
 * Tokens the translator itself writes. The SQL of any accepted query must split into these, parameter names
 * and `.name` property accessors restricted to [A-Za-z_][A-Za-z0-9_]* that are not Cosmos keywords.
 */
const OWN_WORDS = new Set(['SELECT', 'VALUE', 'COUNT', 'FROM', 'c', 'WHERE', 'NOT', 'IS_DEFINED', 'AND', 'OR', 'AS', 'GROUP', 'BY', 'undefined', 'n',
  'IS_NULL', 'IS_STRING', 'IS_NUMBER', 'IS_BOOL', 'IS_OBJECT', 'IS_ARRAY', 'IS_PRIMITIVE', 'STARTSWITH', 'ENDSWITH', 'CONTAINS', 'INDEX_OF', 'LENGTH',
  'LOWER', 'UPPER', 'CONCAT', 'SUBSTRING', 'ABS', 'EXP', 'POWER', 'SQUARE', 'CEILING', 'FLOOR', 'SIGN', 'SQRT']);
const COSMOS_KEYWORDS = /^(select|from|where|and|or|not|in|as|by|group|order|value|top|true|false|null|undefined|join|between|like|exists|array|offset|limit|distinct|is|escape|root|udf)$/i;

function onlyOwnTokens(sql: string, parameterCount: number): boolean {
  const token = /\s+|@p(\d+)|\.([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*)|(!=|<=|>=|[=<>()[\],*+\-/%])/y;
  let i = 0;
  while (i < sql.length) {
    token.lastIndex = i;
    const m = token.exec(sql);
    if (!m) return false;
    if (m[1] !== undefined && Number(m[1]) >= parameterCount) return false;
    if (m[2] !== undefined && COSMOS_KEYWORDS.test(m[2])) return false;
    if (m[3] !== undefined && !OWN_WORDS.has(m[3]) && !/^[fg]\d+$/.test(m[3])) return false;
    i = token.lastIndex;
  }
  return true;
}

function sqlOf(plan: Plan): { query: string; parameters: unknown[] }[] {
  return plan.kind === 'group' ? [plan.sql, plan.nativeSql] : [plan.sql];
}

describe('injection: translation either refuses or yields SQL of its own tokens plus parameters', () => {
  const nasty = fc.constantFrom("'", '"', '--', '/*', '*/', ';', '\\', '\u0000', 'é', '😀', '\u202e', ' OR 1=1', 'DROP', ')', '(', '[[', ']]', '@p0', '\n', '`', '$', '{', '}', ',', '.');
  const fragment = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), nasty, fc.constantFrom('tags.a', 'deviceId', "'x'", '1', 'IN', 'NIN', '[', ']', 'AND', 'OR', 'NOT', '=', 'STARTSWITH(', 'GROUP BY', 'AS', '[[a b]]'));
  const prefix = fc.constantFrom('SELECT * FROM devices WHERE ', 'SELECT deviceId FROM devices.modules WHERE ', 'SELECT tags.x AS y, COUNT() AS n FROM devices WHERE tags.z = 1 GROUP BY ', 'SELECT ', '');

  it('for arbitrary strings (quotes, comments, --, /*, unicode) around query syntax', () => {
    fc.assert(
      fc.property(prefix, fc.array(fragment, { maxLength: 12 }), (p, parts) => {
        const text = p + parts.join(' ');
        let plan: Plan;
        try {
          plan = translate(text);
        } catch (e) {
          expect(e).toBeInstanceOf(QueryError);
          return;
        }
        for (const sql of sqlOf(plan)) {
          expect(onlyOwnTokens(sql.query, sql.parameters.length), `${text} → ${sql.query}`).toBe(true);
          expect(sql.query).not.toMatch(/'|"|--|\/\*|;/);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('a literal with SQL in it is a parameter value, never SQL text', () => {
    const plan = translate(`SELECT * FROM devices WHERE tags.a = 'x'' OR 1=1 --' AND tags.[[b' OR '1'='1]] = "/* */"`.replace("''", "\\'"));
    expect(plan.sql.query).toBe(`SELECT * ${LIVE_DEVICES} AND c.tags.a = @p0 AND c.tags[@p1] = @p2`);
    expect(plan.sql.parameters.map((p) => p.value)).toEqual(["x' OR 1=1 --", "b' OR '1'='1", '/* */']);
  });
});
