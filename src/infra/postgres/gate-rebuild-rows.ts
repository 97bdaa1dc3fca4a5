import type pg from "pg";
import type { GateRebuildRows } from "../../machines/ports.js";
import type { Statements } from "./sql/statements.js";

/**
 * What the gates are rebuilt from after a Redis restart (design §7.13), read in one REPEATABLE READ
 * snapshot on a connection of its own. `windowMs` null: no rate-limit records are read.
 */
export async function readGateRebuildRows(
  pool: pg.Pool,
  sql: Statements["gateRebuild"],
  now: number,
  windowMs: number | null,
): Promise<GateRebuildRows> {
  const client = await pool.connect();
  // A checked-out client has no pool listener: a server shutdown that lands between two of these
  // queries (its notice can share a packet with the previous reply) would be thrown at the event loop.
  let lost: Error | undefined;
  const onError = (error: Error) => {
    lost = error;
  };
  client.on("error", onError);
  try {
    // One snapshot: a lead that moves from CLAIMED to DIALING meanwhile is seen in one place only.
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const numbers = await client.query<{ id: string }>(sql.numberIds);
    const claims = await client.query<{ token: string; lease_until: string | null }>(sql.claims);
    const live = await client.query<{ token: string; number_id: string; at: string }>(sql.liveDials);
    let counted: { token: string; phone: string; at: string }[] = [];
    let window = 0;
    if (windowMs !== null) {
      const { rows } = await client.query<{ ms: string | null }>(sql.templateWindowMs);
      window = Math.max(windowMs, Number(rows[0].ms ?? 0));
      counted = (await client.query(sql.countedDials, [now - window])).rows;
    }
    await client.query("COMMIT");
    return {
      numberIds: numbers.rows.map((r) => r.id),
      claims: claims.rows.map((r) => ({ token: r.token, leaseUntil: Number(r.lease_until ?? 0) })),
      liveDials: live.rows.map((r) => ({ token: r.token, numberId: r.number_id, at: Number(r.at) })),
      countedDials: counted.map((r) => ({ token: r.token, phone: r.phone, at: Number(r.at) })),
      windowMs: window,
    };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.off("error", onError);
    // A lost connection is dropped from the pool, not handed to the next caller.
    client.release(lost);
  }
}
