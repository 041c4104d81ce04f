/**
 * A small evaluator for exactly the KQL the summary-line alerts use (infra/constructs/monitoring.ts), so a
 * test can run a query's filter and sum over sample AppTraces rows. Hand-written because no JavaScript
 * KQL engine exists; it knows these forms only and throws on any other line, so a query that grows
 * beyond them fails the test instead of being half-evaluated:
 *
 *   AppTraces | let x = AppTraces
 *   | where Message startswith "<text>"
 *   | extend summary = parse_json(extract(@"<regex>", 1, Message))
 *   | where tobool(summary.<field>)
 *   | summarize <name> = sum(<term> [+ <term>…]) by bin(TimeGenerated, 15m)[;]   with <term> = tolong(summary.<f>) | todouble(summary.<f>)
 *
 * Kusto semantics kept: extract gives null when the regex does not match, parse_json(null) is null, a
 * field of null is null, tobool(null) is false in a where, null + x is null, sum skips nulls.
 */
export interface TraceRow {
  TimeGenerated: Date;
  Message: string;
}

type Row = TraceRow & { summary?: Record<string, unknown> | null };

function field(row: Row, name: string): unknown {
  const s = row.summary;
  return s && typeof s === 'object' ? s[name] ?? null : null;
}

function toNumber(v: unknown, integer: boolean): number | null {
  if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'object') return null;
  const n = Number(v);
  if (!Number.isFinite(n)) return null;
  return integer ? Math.trunc(n) : n;
}

/** Runs one summary-line query over rows; returns the sum per 15-minute bin (ISO start of the bin). */
export function evaluate(query: string, rows: readonly TraceRow[]): { column: string; bins: Record<string, number> } {
  let current: Row[] = [];
  let result: { column: string; bins: Record<string, number> } | undefined;
  for (const raw of query.split('\n').map((l) => l.trim())) {
    let m: RegExpExecArray | null;
    if (result) {
      throw new Error(`kqlSubset: unsupported line after summarize: ${raw}`);
    } else if (/^(let \w+ = )?AppTraces$/.test(raw)) {
      current = rows.map((r) => ({ ...r }));
    } else if ((m = /^\| where Message startswith "([^"]*)"$/.exec(raw))) {
      const prefix = m[1];
      current = current.filter((r) => r.Message.toLowerCase().startsWith(prefix.toLowerCase()));
    } else if ((m = /^\| extend summary = parse_json\(extract\(@"((?:[^"]|"")*)", 1, Message\)\)$/.exec(raw))) {
      const re = new RegExp(m[1].replace(/""/g, '"'));
      for (const r of current) {
        const x = re.exec(r.Message)?.[1];
        try {
          r.summary = x === undefined ? null : (JSON.parse(x) as Record<string, unknown>);
        } catch {
          r.summary = null;
        }
      }
    } else if ((m = /^\| where tobool\(summary\.(\w+)\)$/.exec(raw))) {
      const name = m[1];
      current = current.filter((r) => {
        const v = field(r, name);
        return v === true || (typeof v === 'string' && v.toLowerCase() === 'true');
      });
    } else if ((m = /^\| summarize (\w+) = sum\((.+)\) by bin\(TimeGenerated, 15m\);?$/.exec(raw))) {
      const terms = m[2].split(' + ').map((t) => {
        const tm = /^(tolong|todouble)\(summary\.(\w+)\)$/.exec(t.trim());
        if (!tm) throw new Error(`kqlSubset: unsupported term ${t}`);
        return { integer: tm[1] === 'tolong', name: tm[2] };
      });
      const bins: Record<string, number> = {};
      for (const r of current) {
        let total: number | null = 0;
        for (const t of terms) {
          const v = toNumber(field(r, t.name), t.integer);
          total = v === null || total === null ? null : total + v;
        }
        if (total === null) continue;
        const bin = new Date(Math.floor(r.TimeGenerated.getTime() / 900_000) * 900_000).toISOString();
        bins[bin] = (bins[bin] ?? 0) + total;
      }
      result = { column: m[1], bins };
    } else {
      throw new Error(`kqlSubset: unsupported line: ${raw}`);
    }
  }
  if (!result) throw new Error('kqlSubset: the query has no summarize');
  return result;
}

/** The `let processed = …;` statement of the lag query, as its own query. */
export function letStatement(query: string, name: string): string {
  const lines = query.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`let ${name} = `));
  const end = lines.findIndex((l, i) => i >= start && l.endsWith(';'));
  if (start < 0 || end < 0) throw new Error(`no let ${name}`);
  return lines.slice(start, end + 1).join('\n');
}
