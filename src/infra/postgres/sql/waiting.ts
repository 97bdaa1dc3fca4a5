import { paused } from "./shared.js";

/**
 * Waking leads: a due time brought forward, the leads deferred for a template, the leads parked for a
 * line (design §7.11). `s` is the quoted schema; every value is a parameter.
 */
export function waitingStatements(s: string) {
  return {
    // Only ever earlier: a wake is a hint and must not postpone a lead.
    expedite: `
      UPDATE ${s}.leads SET next_attempt_at = $2
      WHERE id = $1 AND status = 'SCHEDULED' AND next_attempt_at > $2`,

    // Only ever earlier, like expedite; the leads trigger wakes the supervisors.
    wakeParked: `
      UPDATE ${s}.leads SET next_attempt_at = $3
      WHERE template_id = $1 AND status = 'SCHEDULED' AND defer_reason = $2 AND next_attempt_at > $3`,

    // Fair by phone, then longest-waiting first: a phone's turn is its leads already served (woken and
    // not yet dialled, claimed, dialling or in a call) plus its waiters ahead in line. SKIP LOCKED: two processes freeing lines at once wake different waiters; the update checks
    // the row is still parked (the compare-and-set), and the leads trigger notifies every supervisor.
    wakeWaiters: `
      WITH waiters AS (
        SELECT id, phone, parked_at, due_at FROM ${s}.leads l
        WHERE status = 'SCHEDULED' AND park_set @> ARRAY[$1::text] AND NOT ${paused(s, "l")}
        FOR UPDATE OF l SKIP LOCKED
      ), served AS (
        SELECT phone, count(*) AS n FROM ${s}.leads
        WHERE phone IN (SELECT phone FROM waiters)
          AND (status IN ('CLAIMED', 'DIALING', 'PROCESSING')
               OR (status = 'SCHEDULED' AND park_set IS NULL AND parked_at IS NOT NULL))
        GROUP BY phone
      ), ranked AS (
        SELECT w.id, w.parked_at, w.due_at,
               COALESCE(served.n, 0)
                 + row_number() OVER (PARTITION BY w.phone ORDER BY w.parked_at, w.due_at, w.id) AS turn
        FROM waiters w LEFT JOIN served ON served.phone = w.phone
      ), picked AS (
        SELECT id, row_number() OVER (ORDER BY turn, parked_at, due_at, id) AS ord FROM ranked
        ORDER BY turn, parked_at, due_at, id LIMIT $2
      ), woken AS (
        UPDATE ${s}.leads l SET park_set = NULL, next_attempt_at = LEAST(l.next_attempt_at, $3)
        FROM picked WHERE l.id = picked.id AND l.status = 'SCHEDULED' AND l.park_set IS NOT NULL
        RETURNING l.id, picked.ord
      )
      SELECT id FROM woken ORDER BY ord`,
    waitingCount: `SELECT count(*) AS n FROM ${s}.leads WHERE status = 'SCHEDULED' AND park_set IS NOT NULL`,
    waitingSets: `
      SELECT park_set, count(*) AS waiters FROM ${s}.leads
      WHERE status = 'SCHEDULED' AND park_set IS NOT NULL
      GROUP BY park_set ORDER BY park_set`,
  };
}
