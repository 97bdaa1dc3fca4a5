/** What the gates are rebuilt from. `s` is the quoted schema; every value is a parameter. */
export function gateRebuildStatements(s: string) {
  return {
    // The gate rebuild after a Redis restart (design §7.13), read in one REPEATABLE READ snapshot.
    gateRebuild: {
      numberIds: `SELECT id FROM ${s}.numbers ORDER BY id`,
      claims: `SELECT token, lease_until FROM ${s}.leads WHERE status = 'CLAIMED'`,
      liveDials: `
        SELECT d.token, d.number_id, d.at FROM ${s}.leads l
        JOIN ${s}.dial_attempts d ON d.dial_ref = l.dial_ref
        WHERE l.status IN ('DIALING', 'PROCESSING')`,
      templateWindowMs: `
        SELECT max((r->>'windowSeconds')::bigint) * 1000 AS ms
        FROM ${s}.templates t,
          jsonb_array_elements(CASE WHEN jsonb_typeof(t.rate_limit_rules) = 'array' THEN t.rate_limit_rules END) r`,
      // Placed (a call id), sent without a usable reply (unknown), or the lead's dial still in progress.
      // $1: dials at or before it count for no window (half-open, design §7.5).
      countedDials: `
        SELECT d.token, l.phone, d.at FROM ${s}.dial_attempts d
        JOIN ${s}.leads l ON l.id = d.lead_id
        WHERE d.at > $1
          AND (d.call_id IS NOT NULL OR d.unknown OR (l.dial_ref = d.dial_ref AND l.status = 'DIALING'))`,
    },
  };
}
