/** Pauses and the block list. `s` is the quoted schema; every value is a parameter. */
export function controlStatements(s: string) {
  return {
    pause: `INSERT INTO ${s}.pauses (scope, id, paused_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    resume: `DELETE FROM ${s}.pauses WHERE scope = $1 AND id = $2`,
    pauses: `
      SELECT scope, id, paused_at FROM ${s}.pauses
      ORDER BY CASE scope WHEN 'global' THEN 0 WHEN 'reseller' THEN 1 ELSE 2 END, id COLLATE "C"`,

    blockedAmong: `SELECT phone FROM ${s}.blocked_phones WHERE phone = ANY($1::text[])`,
    block: `INSERT INTO ${s}.blocked_phones (phone) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`,
  };
}
