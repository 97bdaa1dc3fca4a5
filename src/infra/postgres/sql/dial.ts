import type { Settlement } from "../../../machines/ports.js";
import { RELEASE, unnest } from "./shared.js";

export type SettleKind = Settlement["kind"];

/** Per settlement kind: its input columns after (lead, claim), and one settlement's values for them. */
export const SETTLE_INPUT: {
  [K in SettleKind]: {
    columns: string[];
    values(s: Extract<Settlement, { kind: K }>, now: number): unknown[];
  };
} = {
  defer: {
    columns: [
      "at bigint",
      "streak int",
      "result text",
      "now bigint",
      "reason text",
      "prechecks int",
      // The set as a JSON array: unnest cannot carry an array per row.
      "park text",
    ],
    values: (s, now) => [
      s.at,
      s.notPlacedStreak ?? null,
      s.dialResult ?? null,
      now,
      s.parkOn ? "channel" : (s.deferReason ?? null),
      s.precheckDefers ?? null,
      s.parkOn ? JSON.stringify(s.parkOn) : null,
    ],
  },
  finish: {
    columns: ["new_outcome text", "result text", "now bigint"],
    values: (s, now) => [s.outcome, s.dialResult ?? null, now],
  },
  placed: { columns: ["call_id text", "now bigint"], values: (s, now) => [s.callId, now] },
  unknown: { columns: ["now bigint"], values: (_s, now) => [now] },
  ended: {
    columns: ["new_outcome text", "retry_at bigint", "now bigint"],
    values: (s, now) => [s.outcome, s.retryAt ?? null, now],
  },
  unknownExpired: { columns: ["at bigint"], values: (s) => [s.at] },
};

/**
 * The dial's begin and every settlement of a claim, each kind one batched statement. `s` is the quoted
 * schema; every value is a parameter.
 */
export function dialStatements(s: string) {
  /**
   * One batch of settlements of a kind, one input row `x` per lead: x.lead, x.claim (the token) and the
   * kind's columns (SETTLE_INPUT), each a parameter array from $2 on ($1: the from-statuses). Each row
   * is a compare-and-set on id + token + status (+ `where`). The rows that pass are locked first, in id
   * order: statements that lock several leads (these, beginDial, renewLeases) then wait for each other
   * instead of deadlocking; the update checks them again, as a plain UPDATE would. `l.id = ANY($2)`
   * repeats the join for the planner: it then reads leads by primary key, whatever its statistics.
   * When `dialWhen` holds, `dialSet` is written on the dial row of that same claim (never a row of an
   * older claim).
   */
  const settle = (
    kind: SettleKind,
    leadSet: string,
    opts: { where?: string; dialSet?: string; dialWhen?: string } = {},
  ) => {
    const cas = `l.id = x.lead AND l.token = x.claim AND l.status = ANY($1::text[]) ${opts.where ?? ""}`;
    const dial = opts.dialSet
      ? `, dial AS (
          UPDATE ${s}.dial_attempts d SET ${opts.dialSet}
          FROM settled x WHERE d.dial_ref = x.dial_ref AND d.token = x.claim AND ${opts.dialWhen ?? "true"}
        )`
      : "";
    return `
      WITH locked AS MATERIALIZED (
        SELECT x.* FROM ${s}.leads l JOIN ${unnest(["lead text", "claim text", ...SETTLE_INPUT[kind].columns], 2)}
        ON ${cas} WHERE l.id = ANY($2::text[]) ORDER BY l.id FOR NO KEY UPDATE OF l
      ), settled AS (
        UPDATE ${s}.leads l SET ${leadSet}
        FROM locked x WHERE l.id = ANY($2::text[]) AND ${cas}
        RETURNING x.*, l.dial_ref, l.status, l.outcome
      )${dial}
      SELECT claim, status, outcome FROM settled`;
  };

  /** For `ended`: the retry policy scheduled another attempt (x.retry_at) and no cancel was requested. */
  const retries = "(NOT l.cancel_requested AND x.retry_at IS NOT NULL)";

  return {
    // The dial row exists iff the lead moved to DIALING: one statement (design §2 step 7). One input
    // row per lead; returns the tokens that won. Locked in id order, as in settle.
    beginDial: `
      WITH locked AS MATERIALIZED (
        SELECT x.* FROM ${s}.leads l
        JOIN ${unnest(["lead text", "claim text", "dial_ref text", "number_id text", "at bigint", "recorded boolean"])}
        ON l.id = x.lead AND l.token = x.claim AND l.status = 'CLAIMED'
        WHERE l.id = ANY($1::text[]) ORDER BY l.id FOR NO KEY UPDATE OF l
      ), began AS (
        UPDATE ${s}.leads l SET status = 'DIALING', dial_ref = x.dial_ref, precheck_defers = 0, parked_at = NULL
        FROM locked x WHERE l.id = ANY($1::text[]) AND l.id = x.lead AND l.token = x.claim AND l.status = 'CLAIMED'
        RETURNING x.*
      )
      INSERT INTO ${s}.dial_attempts (dial_ref, lead_id, token, number_id, at, recorded)
      SELECT dial_ref, lead, claim, number_id, at, recorded FROM began
      RETURNING token`,

    // The late end of an older dial of a lead (design §7.6): its row ($1) keeps how ($2) and when ($3)
    // its call ended, as `ended` writes it for the current dial; a row that has an end keeps it.
    endDial: `
      UPDATE ${s}.dial_attempts SET outcome = $2, ended_at = $3
      WHERE dial_ref = $1 AND ended_at IS NULL`,

    settle: {
      // A cancel requested while dialling wins over the defer (design §7.16). A null streak or
      // prechecks keeps the lead's; a dial result is written when given.
      defer: settle(
        "defer",
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = x.at, ${RELEASE},
         not_placed_streak = COALESCE(x.streak, not_placed_streak),
         defer_reason = x.reason,
         park_set = CASE WHEN x.park IS NULL THEN NULL
                    ELSE ARRAY(SELECT jsonb_array_elements_text(x.park::jsonb) ORDER BY 1) END,
         parked_at = CASE WHEN x.park IS NULL THEN NULL ELSE COALESCE(parked_at, x.now) END,
         precheck_defers = COALESCE(x.prechecks, precheck_defers)`,
        { dialSet: "result = x.result, result_at = x.now", dialWhen: "x.result IS NOT NULL" },
      ),
      finish: settle("finish", `status = 'FINISHED', outcome = x.new_outcome, ${RELEASE}`, {
        dialSet: "result = x.result, result_at = x.now",
        dialWhen: "x.result IS NOT NULL",
      }),
      // The claim's owner and lease stay as they were, as in the memory store.
      placed: settle("placed", "status = 'PROCESSING', not_placed_streak = 0", {
        dialSet: "call_id = x.call_id, result = 'placed', result_at = x.now",
      }),
      unknown: settle("unknown", `status = 'PROCESSING', ${RELEASE}`, {
        where: "AND l.dial_ref IS NOT NULL",
        dialSet: "unknown = true, result = 'unknown', result_at = x.now",
      }),
      // A requested cancel wins over the retry policy (design §7.16). The dial row keeps how and when
      // its call ended: cooldown marks are rebuilt from it (design §7.6, §7.13).
      ended: settle(
        "ended",
        `status = CASE WHEN ${retries} THEN 'SCHEDULED' ELSE 'FINISHED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' WHEN ${retries} THEN outcome ELSE x.new_outcome END,
         attempt = attempt + CASE WHEN ${retries} THEN 1 ELSE 0 END,
         next_attempt_at = CASE WHEN ${retries} THEN x.retry_at ELSE next_attempt_at END,
         due_at = CASE WHEN ${retries} THEN x.retry_at ELSE due_at END,
         ${RELEASE}`,
        { dialSet: "outcome = x.new_outcome, ended_at = x.now" },
      ),
      // Only a held unknown dial expires; a placed call waits for its end.
      unknownExpired: settle(
        "unknownExpired",
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = CASE WHEN cancel_requested THEN next_attempt_at ELSE x.at END,
         ${RELEASE}`,
        {
          where: `AND EXISTS (SELECT 1 FROM ${s}.dial_attempts d WHERE d.dial_ref = l.dial_ref AND d.unknown)`,
        },
      ),
    },
  };
}
