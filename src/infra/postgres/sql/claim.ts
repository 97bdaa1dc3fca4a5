import { paused, RELEASE, selectLeads } from "./shared.js";

/** Claiming due leads and keeping their leases. `s` is the quoted schema; every value is a parameter. */
export function claimStatements(s: string) {
  return {
    // One round trip per claim:
    // - A DIALING lead whose owner stopped renewing may have rung: hold it as an unknown dial, never
    //   redial it blindly (design §3, §7.16). SKIP LOCKED: a row being settled right now is left to that
    //   settle (or to the next claim), so claimers never queue behind actors. (Data-modifying WITH
    //   parts run whether or not the query reads them; they touch rows the claim does not.)
    // - Oldest due first, not earliest nextAttemptAt: a lead deferred for a line keeps its place.
    //   SKIP LOCKED: concurrent claimers take disjoint leads instead of queueing on the same rows.
    //   Paused leads are left where they are: no claim, no re-queue, no churn.
    // - Each claimed lead comes with the block list's verdict, the check gate's read (design §2 step 1).
    claimDue: `
      WITH expired AS (
        SELECT id FROM ${s}.leads
        WHERE status = 'DIALING' AND COALESCE(lease_until, 0) <= $2
        FOR UPDATE SKIP LOCKED
      ), held AS (
        UPDATE ${s}.leads l SET status = 'PROCESSING', ${RELEASE}
        FROM expired WHERE l.id = expired.id
        RETURNING l.dial_ref
      ), held_dials AS (
        UPDATE ${s}.dial_attempts d SET unknown = true, result = 'unknown', result_at = $2
        FROM held WHERE d.dial_ref = held.dial_ref
      ), waiting AS (
        SELECT DISTINCT ON (template_id) template_id, park_set FROM ${s}.leads
        WHERE status = 'SCHEDULED' AND park_set IS NOT NULL
        ORDER BY template_id, parked_at DESC
      ), joining AS (
        SELECT l.id, w.park_set FROM ${s}.leads l JOIN waiting w ON w.template_id = l.template_id
        WHERE l.status = 'SCHEDULED' AND l.park_set IS NULL AND l.parked_at IS NULL AND l.next_attempt_at <= $2
          AND NOT ${paused(s, "l")}
        FOR UPDATE OF l SKIP LOCKED
      ), joined AS (
        UPDATE ${s}.leads l SET park_set = j.park_set, parked_at = $2, defer_reason = 'channel'
        FROM joining j WHERE l.id = j.id
      ), due AS (
        SELECT id FROM ${s}.leads l
        WHERE ((status = 'SCHEDULED' AND park_set IS NULL AND next_attempt_at <= $2)
               OR (status = 'SCHEDULED' AND park_set IS NOT NULL AND expires_at <= $2)
               OR (status = 'CLAIMED' AND COALESCE(lease_until, 0) <= $2))
          AND NOT ${paused(s, "l")}
          AND l.id NOT IN (SELECT id FROM joining)
        ORDER BY due_at, id
        LIMIT $3
        FOR UPDATE OF l SKIP LOCKED
      ), claimed AS (
        UPDATE ${s}.leads l
        SET status = 'CLAIMED', claim_seq = l.claim_seq + 1, token = l.id || ':' || (l.claim_seq + 1),
            owner = $1, lease_until = $4, defer_reason = NULL, park_set = NULL
        FROM due WHERE l.id = due.id
        RETURNING l.*
      )
      ${selectLeads(s, "claimed l", `EXISTS (SELECT 1 FROM ${s}.blocked_phones b WHERE b.phone = l.phone) AS blocked,`)}
      ORDER BY l.due_at, l.id`,

    // A parked lead is due only when it expires.
    nextDueAt: `
      SELECT min(CASE WHEN park_set IS NULL THEN next_attempt_at ELSE expires_at END) AS at FROM ${s}.leads l
      WHERE status = 'SCHEDULED' AND NOT ${paused(s, "l")}`,

    // A token names its lead, so matching both lists pairs them. Locked in id order, as in settle.
    renewLeases: `
      WITH locked AS MATERIALIZED (
        SELECT id FROM ${s}.leads
        WHERE id = ANY($1::text[]) AND token = ANY($2::text[]) AND status IN ('CLAIMED', 'DIALING')
        ORDER BY id FOR NO KEY UPDATE
      )
      UPDATE ${s}.leads l SET lease_until = $3
      FROM locked WHERE l.id = locked.id
        AND l.token = ANY($2::text[]) AND l.status IN ('CLAIMED', 'DIALING')`,
  };
}
