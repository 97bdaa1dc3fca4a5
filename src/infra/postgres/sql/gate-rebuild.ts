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
      // The rules and cooldowns of every template, each distinct set once: presets are defined in
      // TypeScript (src/infra/calling-law.ts), so the longest window is computed there.
      templateLaws: `
        SELECT DISTINCT rate_limit_rules, calling_law FROM ${s}.templates
        WHERE rate_limit_rules IS NOT NULL OR calling_law IS NOT NULL`,
      // Placed (a call id), sent without a usable reply (unknown), or the lead's dial still in progress.
      // $1: dials at or before it count for no window (half-open, design §7.5).
      countedDials: `
        SELECT d.token, l.phone, d.at FROM ${s}.dial_attempts d
        JOIN ${s}.leads l ON l.id = d.lead_id
        WHERE d.at > $1
          AND (d.call_id IS NOT NULL OR d.unknown OR (l.dial_ref = d.dial_ref AND l.status = 'DIALING'))`,
      // Calls that ended with one of the outcomes $2 after $1: the cooldown marks (design §7.6).
      endedCalls: `
        SELECT l.phone, d.outcome, d.ended_at FROM ${s}.dial_attempts d
        JOIN ${s}.leads l ON l.id = d.lead_id
        WHERE d.ended_at > $1 AND d.outcome = ANY($2::text[])`,
    },
  };
}
