/**
 * Fragments that statements of several concerns share. `s` is the quoted schema; every value is a
 * parameter.
 */

/** A lead with its current dial row (rows.ts maps the columns), read from `from` aliased `l`. */
export const selectLeads = (s: string, from: string, extra = "") => `
    SELECT ${extra} l.*, d.number_id AS dial_number_id, d.at AS dial_at, d.call_id AS dial_call_id,
           d.unknown AS dial_unknown, d.recorded AS dial_recorded
    FROM ${from} LEFT JOIN ${s}.dial_attempts d ON d.dial_ref = l.dial_ref`;

/** Lets a claim go: no owner, no lease. */
export const RELEASE = "owner = NULL, lease_until = NULL";

/**
 * The lead `l` is covered by a pause: global, its template's, or its template's reseller's. Ids are
 * compared in "C" order, as the id columns of 001 are.
 */
export const paused = (s: string, l: string) => `EXISTS (
    SELECT 1 FROM ${s}.pauses p
    WHERE p.scope = 'global'
       OR (p.scope = 'template' AND p.id = ${l}.template_id COLLATE "C")
       OR (p.scope = 'reseller' AND p.id = (
             SELECT t.reseller_id FROM ${s}.templates t WHERE t.id = ${l}.template_id COLLATE "C")))`;

/**
 * `unnest(...) AS x(...)`: one row per item of a batch, each column ("name type") an array parameter,
 * from `$first` on.
 */
export function unnest(columns: string[], first = 1): string {
  const split = columns.map((column) => column.split(" "));
  const arrays = split.map(([, type], i) => `$${first + i}::${type}[]`);
  return `unnest(${arrays.join(", ")}) AS x(${split.map(([name]) => name).join(", ")})`;
}

/** The parameter arrays of `unnest`: column i of every row, for i < `width`. */
export function columnsOf(rows: unknown[][], width: number): unknown[][] {
  return Array.from({ length: width }, (_, i) => rows.map((row) => row[i]));
}
