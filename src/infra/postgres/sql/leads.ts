import { selectLeads } from "./shared.js";

/**
 * Reading, submitting and cancelling leads, and finding a lead by its dial. `s` is the quoted schema;
 * every value is a parameter.
 */
export function leadStatements(s: string) {
  return {
    leadsByIds: `${selectLeads(s, `${s}.leads l`)} WHERE l.id = ANY($1::text[])`,
    listLeads: `${selectLeads(s, `${s}.leads l`)} ORDER BY l.seq`,

    // ON CONFLICT DO NOTHING: a second submit of an id keeps the existing lead (design §7.17).
    insertLeads: `
      INSERT INTO ${s}.leads
        (id, phone, template_id, status, next_attempt_at, due_at, expires_at, time_zone, payload)
      SELECT id, phone, template_id, 'SCHEDULED', due_at, due_at, expires_at, time_zone, payload
      FROM jsonb_to_recordset($1::jsonb) AS x(id text, phone text, template_id text,
        due_at bigint, expires_at bigint, time_zone text, payload jsonb)
      ON CONFLICT (id) DO NOTHING`,

    // The dialRef first (it names one dial row), then the provider's call id (its latest dial row: a
    // provider may hand one out twice). One input row per lookup, returned with its ordinal `n`.
    leadsByDial: `
      WITH x AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(call_id, dial_ref, n)),
      found AS (
        SELECT x.n, COALESCE(
          (SELECT d.lead_id FROM ${s}.dial_attempts d WHERE d.dial_ref = x.dial_ref),
          (SELECT d.lead_id FROM ${s}.dial_attempts d WHERE d.call_id = x.call_id ORDER BY d.result_at DESC LIMIT 1)) AS lead_id
        FROM x
      )
      ${selectLeads(s, `found JOIN ${s}.leads l ON l.id = found.lead_id`, "found.n,")}`,

    // Before the dial: finished now. Dialing or in a call: flagged, finished CANCELLED when it ends
    // (design §7.16). Every CASE reads the row as it was before this statement.
    cancel: `
      WITH cancelled AS (
        UPDATE ${s}.leads SET
          status = CASE WHEN status IN ('SCHEDULED', 'CLAIMED') THEN 'FINISHED' ELSE status END,
          outcome = CASE WHEN status IN ('SCHEDULED', 'CLAIMED') THEN 'CANCELLED' ELSE outcome END,
          owner = CASE WHEN status IN ('SCHEDULED', 'CLAIMED') THEN NULL ELSE owner END,
          lease_until = CASE WHEN status IN ('SCHEDULED', 'CLAIMED') THEN NULL ELSE lease_until END,
          cancel_requested = cancel_requested OR status IN ('DIALING', 'PROCESSING')
        WHERE id = $1 AND status <> 'FINISHED'
        RETURNING *
      )
      ${selectLeads(s, "cancelled l")}`,

    expiredUnknownDials: `
      ${selectLeads(s, `${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND d.unknown AND d.at <= $1
      ORDER BY l.seq`,

    overdueCalls: `
      ${selectLeads(s, `${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND NOT d.unknown AND d.at <= $1
      ORDER BY l.seq`,
  };
}
