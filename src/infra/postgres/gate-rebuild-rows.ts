import type pg from "pg";
import type { CooldownRule, GateRebuildRows, Template } from "../../machines/ports.js";
import { templateCooldowns, templatesWindowMs } from "../calling-law.js";
import { type TemplateRow, toTemplate } from "./rows.js";
import type { Statements } from "./sql/statements.js";

/** A template's rules and calling law (`gateRebuild.templateLaws`). */
export type TemplateLawRow = Pick<TemplateRow, "rate_limit_rules" | "calling_law">;

/** A template of its rules and calling law only: all templateRules and templateCooldowns read. */
function lawOnly(row: TemplateLawRow): Template {
  const none = {
    id: "",
    reseller_id: "",
    number_id: null,
    provider: null,
    calling_window: null,
    retry: null,
  };
  return toTemplate({ ...none, ...row });
}

/** The largest window (ms) of every template's rules: its own, its presets' and regions' (design §7.6). */
export function lawsWindowMs(rows: TemplateLawRow[]): number {
  return templatesWindowMs(rows.map(lawOnly));
}

/** Every cooldown of every template: its own, its presets' and regions'. */
export function lawsCooldowns(rows: TemplateLawRow[]): CooldownRule[] {
  return rows.flatMap((row) => templateCooldowns(lawOnly(row)));
}

/**
 * What the gates are rebuilt from after a Redis restart (design §7.13), read in one REPEATABLE READ
 * snapshot on a connection of its own. `windowMs` null: no rate-limit records are read. `cooling`
 * absent or without outcomes: no ended calls are read.
 */
export async function readGateRebuildRows(
  pool: pg.Pool,
  sql: Statements["gateRebuild"],
  now: number,
  windowMs: number | null,
  cooling?: { ms: number; outcomes: string[] },
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
      const { rows } = await client.query<TemplateLawRow>(sql.templateLaws);
      window = Math.max(windowMs, lawsWindowMs(rows));
      counted = (await client.query(sql.countedDials, [now - window])).rows;
    }
    let ended: { phone: string; outcome: string; ended_at: string }[] = [];
    if (cooling && cooling.outcomes.length > 0) {
      ended = (await client.query(sql.endedCalls, [now - cooling.ms, cooling.outcomes])).rows;
    }
    await client.query("COMMIT");
    return {
      numberIds: numbers.rows.map((r) => r.id),
      claims: claims.rows.map((r) => ({ token: r.token, leaseUntil: Number(r.lease_until ?? 0) })),
      liveDials: live.rows.map((r) => ({ token: r.token, numberId: r.number_id, at: Number(r.at) })),
      countedDials: counted.map((r) => ({ token: r.token, phone: r.phone, at: Number(r.at) })),
      windowMs: window,
      endedCalls: ended.map((r) => ({ phone: r.phone, outcome: r.outcome, at: Number(r.ended_at) })),
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
