import { createHash } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import type {
  DeferReason,
  DialRow,
  GateRebuildRows,
  LeadInput,
  LeadRecord,
  LeadStatus,
  LeadStore,
  OutboundNumber,
  Pause,
  PauseScope,
  Settled,
  Settlement,
  Template,
} from "../../machines/ports.js";
import { SETTLES_FROM } from "../../machines/ports.js";
import { assertSchemaName, leadsChannel } from "./migrate.js";

export interface PostgresLeadStoreOptions {
  /** Schema migrated by `migrate(pool, { schema })`. */
  schema: string;
}

/**
 * Called when a lead became SCHEDULED (submit, defer, retry, re-queue, a window wake), a pause was
 * lifted, or after the listener reconnected.
 */
export type LeadsListener = () => void;

/**
 * The durable lead store (spec §4). Every state change is one statement that compare-and-sets on
 * the lead's id, claim token and status, so concurrent processes, late end signals and stale actors
 * can only lose, never overwrite (spec §7.1). Times are the caller's epoch ms; NOW() is never used.
 *
 * The pool belongs to the caller: close() stops this store's listeners, not the pool.
 */
export class PostgresLeadStore implements LeadStore {
  readonly #pool: pg.Pool;
  readonly #sql: Statements;
  readonly #channel: string;
  readonly #listeners = new Set<ChannelListener>();

  constructor(pool: pg.Pool, options: PostgresLeadStoreOptions) {
    assertSchemaName(options.schema);
    this.#pool = pool;
    this.#sql = statements(pg.escapeIdentifier(options.schema));
    this.#channel = leadsChannel(options.schema);
  }

  /**
   * Every statement as a named prepared statement: each connection parses and plans it once, not on
   * every call (2–3× faster per call, measured). The name is a digest of the text, so it is stable.
   */
  #query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []) {
    return this.#pool.query<R>({ name: statementName(text), text, values });
  }

  async submit(inputs: LeadInput[], now: number): Promise<LeadRecord[]> {
    if (inputs.length === 0) return [];
    const firsts = firstById(inputs);
    await this.#query(this.#sql.insertLeads, [JSON.stringify(firsts.map((i) => leadInputRow(i, now)))]);
    // A separate read: it also sees a row a concurrent submit of the same id committed meanwhile.
    const leads = await this.#leads(this.#sql.leadsByIds, [firsts.map((i) => i.id)]);
    const byId = new Map(leads.map((lead) => [lead.id, lead]));
    return inputs.map((input) => structuredClone(byId.get(input.id) as LeadRecord));
  }

  async get(id: string): Promise<LeadRecord | null> {
    const [lead] = await this.#leads(this.#sql.leadById, [id]);
    return lead ?? null;
  }

  async claimDue(owner: string, now: number, limit: number, leaseMs: number): Promise<LeadRecord[]> {
    await this.#query(this.#sql.holdExpiredDials, [now]);
    return this.#leads(this.#sql.claimDue, [owner, now, Math.max(0, limit), now + leaseMs]);
  }

  async nextDueAt(): Promise<number | null> {
    const { rows } = await this.#query<{ at: string | null }>(this.#sql.nextDueAt);
    return toMs(rows[0].at);
  }

  async renewLeases(tokens: string[], leaseUntil: number): Promise<void> {
    if (tokens.length === 0) return;
    await this.#query(this.#sql.renewLeases, [tokens.map(leadIdOf), tokens, leaseUntil]);
  }

  async beginDial(token: string, row: DialRow): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.beginDial, [
      leadIdOf(token),
      token,
      row.dialRef,
      row.numberId,
      row.at,
      row.recorded,
    ]);
    return rowCount === 1;
  }

  async settle(token: string, s: Settlement, now: number): Promise<Settled | null> {
    const cas = [leadIdOf(token), token, SETTLES_FROM[s.kind]];
    const { rows } = await this.#query<Settled>(...this.#settlement(s, cas, now));
    return rows[0] ?? null;
  }

  async expedite(id: string, at: number): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.expedite, [id, at]);
    return rowCount === 1;
  }

  async wakeParked(templateId: string, reason: DeferReason, at: number): Promise<number> {
    const { rowCount } = await this.#query(this.#sql.wakeParked, [templateId, reason, at]);
    return rowCount ?? 0;
  }

  async pause(scope: PauseScope, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.pause, [...pauseRow(scope), now]);
    return rowCount === 1;
  }

  /** The delete's trigger (002_controls.sql) notifies the listeners of every process. */
  async resume(scope: PauseScope): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.resume, pauseRow(scope));
    return rowCount === 1;
  }

  async pauses(): Promise<Pause[]> {
    const { rows } = await this.#query<{ scope: string; id: string; paused_at: string }>(this.#sql.pauses);
    return rows.map((r) => ({ scope: toPauseScope(r.scope, r.id), pausedAt: Number(r.paused_at) }));
  }

  async findByDial(ref: { callId?: string; dialRef?: string }): Promise<LeadRecord | null> {
    // Empty strings find nothing, as in the memory store.
    const [lead] = await this.#leads(this.#sql.leadByDial, [ref.callId || null, ref.dialRef || null]);
    return lead ?? null;
  }

  async cancel(id: string, _now: number): Promise<LeadRecord | null> {
    const [lead] = await this.#leads(this.#sql.cancel, [id]);
    // Nothing updated: the lead is unknown or already FINISHED, which never changes again.
    return lead ?? this.get(id);
  }

  async expiredUnknownDials(dialAtOrBefore: number): Promise<LeadRecord[]> {
    return this.#leads(this.#sql.expiredUnknownDials, [dialAtOrBefore]);
  }

  async overdueCalls(dialAtOrBefore: number): Promise<LeadRecord[]> {
    return this.#leads(this.#sql.overdueCalls, [dialAtOrBefore]);
  }

  async list(): Promise<LeadRecord[]> {
    return this.#leads(this.#sql.listLeads, []);
  }

  async gateRebuildRows(now: number, windowMs: number | null): Promise<GateRebuildRows> {
    const sql = this.#sql.gateRebuild;
    const client = await this.#pool.connect();
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
      client.release();
    }
  }

  async template(id: string): Promise<Template | null> {
    const { rows } = await this.#query<TemplateRow>(this.#sql.templateById, [id]);
    return rows.length > 0 ? toTemplate(rows[0]) : null;
  }

  async number(id: string): Promise<OutboundNumber | null> {
    const { rows } = await this.#query<NumberRow>(this.#sql.numberById, [id]);
    return rows.length > 0 ? toNumber(rows[0]) : null;
  }

  async poolNumbers(provider?: string): Promise<OutboundNumber[]> {
    const { rows } = await this.#query<NumberRow>(this.#sql.poolNumbers, [provider ?? null]);
    return rows.map(toNumber);
  }

  async isBlocked(phone: string): Promise<boolean> {
    const { rows } = await this.#query<{ blocked: boolean }>(this.#sql.isBlocked, [phone]);
    return rows[0].blocked;
  }

  async upsertTemplates(templates: Template[]): Promise<string[]> {
    if (templates.length === 0) return [];
    const rows = lastById(templates).map(templateRow);
    const { rows: moved } = await this.#query<{ id: string }>(this.#sql.upsertTemplates, [
      JSON.stringify(rows),
    ]);
    const ids = new Set(moved.map((r) => r.id));
    return rows.map((r) => r.id).filter((id) => ids.has(id));
  }

  async upsertNumbers(numbers: OutboundNumber[]): Promise<void> {
    if (numbers.length === 0) return;
    const rows = lastById(numbers).map(numberRow);
    await this.#query(this.#sql.upsertNumbers, [JSON.stringify(rows)]);
  }

  async block(phones: string[]): Promise<void> {
    if (phones.length === 0) return;
    await this.#query(this.#sql.block, [phones]);
  }

  /**
   * Calls `listener` whenever a lead becomes SCHEDULED or a pause is lifted in this schema, from any
   * process, so an idle supervisor wakes without polling. Uses a dedicated connection (LISTEN holds
   * its session); resolves once listening. Returns the unsubscribe function.
   */
  async onLeadsAdded(listener: LeadsListener): Promise<() => Promise<void>> {
    const channelListener = new ChannelListener(this.#pool.options, this.#channel, listener);
    await channelListener.start();
    this.#listeners.add(channelListener);
    return async () => {
      this.#listeners.delete(channelListener);
      await channelListener.stop();
    };
  }

  /** Stops this store's listeners. The pool is the caller's to end. */
  async close(): Promise<void> {
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    await Promise.all(listeners.map((l) => l.stop()));
  }

  async #leads(sql: string, values: unknown[]): Promise<LeadRecord[]> {
    const { rows } = await this.#query<LeadRow>(sql, values);
    return rows.map(toLead);
  }

  /** The statement and its values; `cas` is [lead id, token, from-statuses] = $1..$3. */
  #settlement(s: Settlement, cas: unknown[], now: number): [string, unknown[]] {
    const sql = this.#sql.settle;
    switch (s.kind) {
      case "defer":
        return [
          sql.defer,
          [
            ...cas,
            s.at,
            s.notPlacedStreak ?? null,
            s.dialResult ?? null,
            now,
            s.deferReason ?? null,
            s.precheckDefers ?? null,
          ],
        ];
      case "finish":
        return [sql.finish, [...cas, s.outcome, s.dialResult ?? null, now]];
      case "placed":
        return [sql.placed, [...cas, s.callId, now]];
      case "unknown":
        return [sql.unknown, [...cas, now]];
      case "ended":
        return [sql.ended, [...cas, s.outcome, s.retryAt ?? null]];
      case "unknownExpired":
        return [sql.unknownExpired, [...cas, s.at]];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SQL. `s` is the quoted schema; every value is a parameter.

type Statements = ReturnType<typeof statements>;

function statements(s: string) {
  const selectLeads = (from: string) => `
    SELECT l.*, d.number_id AS dial_number_id, d.at AS dial_at, d.call_id AS dial_call_id,
           d.unknown AS dial_unknown, d.recorded AS dial_recorded
    FROM ${from} LEFT JOIN ${s}.dial_attempts d ON d.dial_ref = l.dial_ref`;

  /**
   * One settlement: compare-and-set the lead on id ($1) + token ($2) + from-statuses ($3), then, when
   * `dialWhen` holds, write `dialSet` on the dial row of that same claim (never a row of an older claim).
   */
  const settle = (leadSet: string, opts: { where?: string; dialSet?: string; dialWhen?: string } = {}) => {
    const dial = opts.dialSet
      ? `, dial AS (
          UPDATE ${s}.dial_attempts d SET ${opts.dialSet}
          FROM lead WHERE d.dial_ref = lead.dial_ref AND d.token = $2 AND ${opts.dialWhen ?? "true"}
        )`
      : "";
    return `
      WITH lead AS (
        UPDATE ${s}.leads SET ${leadSet}
        WHERE id = $1 AND token = $2 AND status = ANY($3::text[]) ${opts.where ?? ""}
        RETURNING dial_ref, status, outcome
      )${dial}
      SELECT status, outcome FROM lead`;
  };

  const release = "owner = NULL, lease_until = NULL";
  /**
   * The lead `l` is covered by a pause: global, its template's, or its template's reseller's. Ids are
   * compared in "C" order, as the id columns of 001 are.
   */
  const paused = (l: string) => `EXISTS (
    SELECT 1 FROM ${s}.pauses p
    WHERE p.scope = 'global'
       OR (p.scope = 'template' AND p.id = ${l}.template_id COLLATE "C")
       OR (p.scope = 'reseller' AND p.id = (
             SELECT t.reseller_id FROM ${s}.templates t WHERE t.id = ${l}.template_id COLLATE "C")))`;
  /** For `ended`: the retry policy scheduled another attempt ($5 retryAt) and no cancel was requested. */
  const retries = "(NOT cancel_requested AND $5::bigint IS NOT NULL)";

  return {
    leadById: `${selectLeads(`${s}.leads l`)} WHERE l.id = $1`,
    leadsByIds: `${selectLeads(`${s}.leads l`)} WHERE l.id = ANY($1::text[])`,
    listLeads: `${selectLeads(`${s}.leads l`)} ORDER BY l.seq`,

    // ON CONFLICT DO NOTHING: a second submit of an id keeps the existing lead (spec §7.17).
    insertLeads: `
      INSERT INTO ${s}.leads
        (id, phone, template_id, status, next_attempt_at, due_at, expires_at, time_zone, payload)
      SELECT id, phone, template_id, 'SCHEDULED', due_at, due_at, expires_at, time_zone, payload
      FROM jsonb_to_recordset($1::jsonb) AS x(id text, phone text, template_id text,
        due_at bigint, expires_at bigint, time_zone text, payload jsonb)
      ON CONFLICT (id) DO NOTHING`,

    // A DIALING lead whose owner stopped renewing may have rung: hold it as an unknown dial, never
    // redial it blindly (spec §3, §7.16). SKIP LOCKED: a row being settled right now is left to that
    // settle (or to the next claim), so claimers never queue behind actors.
    holdExpiredDials: `
      WITH expired AS (
        SELECT id FROM ${s}.leads
        WHERE status = 'DIALING' AND COALESCE(lease_until, 0) <= $1
        FOR UPDATE SKIP LOCKED
      ), held AS (
        UPDATE ${s}.leads l SET status = 'PROCESSING', ${release}
        FROM expired WHERE l.id = expired.id
        RETURNING l.dial_ref
      )
      UPDATE ${s}.dial_attempts d SET unknown = true, result = 'unknown', result_at = $1
      FROM held WHERE d.dial_ref = held.dial_ref`,

    // Oldest due first, not earliest nextAttemptAt: a lead deferred for a line keeps its place.
    // SKIP LOCKED: concurrent claimers take disjoint leads instead of queueing on the same rows.
    // Paused leads are left where they are: no claim, no re-queue, no churn.
    claimDue: `
      WITH due AS (
        SELECT id FROM ${s}.leads l
        WHERE ((status = 'SCHEDULED' AND next_attempt_at <= $2)
               OR (status = 'CLAIMED' AND COALESCE(lease_until, 0) <= $2))
          AND NOT ${paused("l")}
        ORDER BY due_at, id
        LIMIT $3
        FOR UPDATE OF l SKIP LOCKED
      ), claimed AS (
        UPDATE ${s}.leads l
        SET status = 'CLAIMED', claim_seq = l.claim_seq + 1, token = l.id || ':' || (l.claim_seq + 1),
            owner = $1, lease_until = $4, defer_reason = NULL
        FROM due WHERE l.id = due.id
        RETURNING l.*
      )
      ${selectLeads("claimed l")}
      ORDER BY l.due_at, l.id`,

    nextDueAt: `
      SELECT min(next_attempt_at) AS at FROM ${s}.leads l
      WHERE status = 'SCHEDULED' AND NOT ${paused("l")}`,

    // A token names its lead, so matching both lists pairs them.
    renewLeases: `
      UPDATE ${s}.leads SET lease_until = $3
      WHERE id = ANY($1::text[]) AND token = ANY($2::text[]) AND status IN ('CLAIMED', 'DIALING')`,

    // The dial row exists iff the lead moved to DIALING: one statement (spec §2 step 7).
    beginDial: `
      WITH lead AS (
        UPDATE ${s}.leads SET status = 'DIALING', dial_ref = $3, precheck_defers = 0
        WHERE id = $1 AND token = $2 AND status = 'CLAIMED'
        RETURNING id, token
      )
      INSERT INTO ${s}.dial_attempts (dial_ref, lead_id, token, number_id, at, recorded)
      SELECT $3::text, id, token, $4::text, $5::bigint, $6::boolean FROM lead`,

    settle: {
      // $4 at, $5 notPlacedStreak (kept when null), $6 dialResult (written when given), $7 now,
      // $8 deferReason, $9 precheckDefers (kept when null).
      // A cancel requested while dialling wins over the defer (spec §7.16).
      defer: settle(
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = $4, ${release},
         not_placed_streak = COALESCE($5::int, not_placed_streak),
         defer_reason = $8::text,
         precheck_defers = COALESCE($9::int, precheck_defers)`,
        { dialSet: "result = $6, result_at = $7", dialWhen: "$6::text IS NOT NULL" },
      ),
      // $4 outcome, $5 dialResult (written when given), $6 now
      finish: settle(`status = 'FINISHED', outcome = $4, ${release}`, {
        dialSet: "result = $5, result_at = $6",
        dialWhen: "$5::text IS NOT NULL",
      }),
      // $4 callId, $5 now. The claim's owner and lease stay as they were, as in the memory store.
      placed: settle("status = 'PROCESSING', not_placed_streak = 0", {
        dialSet: "call_id = $4, result = 'placed', result_at = $5",
      }),
      // $4 now
      unknown: settle(`status = 'PROCESSING', ${release}`, {
        where: "AND dial_ref IS NOT NULL",
        dialSet: "unknown = true, result = 'unknown', result_at = $4",
      }),
      // $4 outcome, $5 retryAt. A requested cancel wins over the retry policy (spec §7.16).
      ended: settle(`
        status = CASE WHEN ${retries} THEN 'SCHEDULED' ELSE 'FINISHED' END,
        outcome = CASE WHEN cancel_requested THEN 'CANCELLED' WHEN ${retries} THEN outcome ELSE $4::text END,
        attempt = attempt + CASE WHEN ${retries} THEN 1 ELSE 0 END,
        next_attempt_at = CASE WHEN ${retries} THEN $5 ELSE next_attempt_at END,
        due_at = CASE WHEN ${retries} THEN $5 ELSE due_at END,
        ${release}`),
      // $4 at. Only a held unknown dial expires; a placed call waits for its end.
      unknownExpired: settle(
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = CASE WHEN cancel_requested THEN next_attempt_at ELSE $4 END,
         ${release}`,
        {
          where: `AND EXISTS (SELECT 1 FROM ${s}.dial_attempts d WHERE d.dial_ref = leads.dial_ref AND d.unknown)`,
        },
      ),
    },

    // Only ever earlier: a wake is a hint and must not postpone a lead.
    expedite: `
      UPDATE ${s}.leads SET next_attempt_at = $2
      WHERE id = $1 AND status = 'SCHEDULED' AND next_attempt_at > $2`,

    // Only ever earlier, like expedite; the leads trigger wakes the supervisors.
    wakeParked: `
      UPDATE ${s}.leads SET next_attempt_at = $3
      WHERE template_id = $1 AND status = 'SCHEDULED' AND defer_reason = $2 AND next_attempt_at > $3`,

    pause: `INSERT INTO ${s}.pauses (scope, id, paused_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    resume: `DELETE FROM ${s}.pauses WHERE scope = $1 AND id = $2`,
    pauses: `
      SELECT scope, id, paused_at FROM ${s}.pauses
      ORDER BY CASE scope WHEN 'global' THEN 0 WHEN 'reseller' THEN 1 ELSE 2 END, id COLLATE "C"`,

    // The provider's call id first, then the dialRef (an unknown dial has no call id).
    leadByDial: `
      ${selectLeads(`${s}.leads l`)}
      WHERE l.id = COALESCE(
        (SELECT lead_id FROM ${s}.dial_attempts WHERE call_id = $1 ORDER BY result_at DESC LIMIT 1),
        (SELECT lead_id FROM ${s}.dial_attempts WHERE dial_ref = $2))`,

    // Before the dial: finished now. Dialing or in a call: flagged, finished CANCELLED when it ends
    // (spec §7.16). Every CASE reads the row as it was before this statement.
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
      ${selectLeads("cancelled l")}`,

    expiredUnknownDials: `
      ${selectLeads(`${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND d.unknown AND d.at <= $1
      ORDER BY l.seq`,

    overdueCalls: `
      ${selectLeads(`${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND NOT d.unknown AND d.at <= $1
      ORDER BY l.seq`,

    // The gate rebuild after a Redis restart (spec §7.13), read in one REPEATABLE READ snapshot.
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
      // $1: dials at or before it count for no window (half-open, spec §7.5).
      countedDials: `
        SELECT d.token, l.phone, d.at FROM ${s}.dial_attempts d
        JOIN ${s}.leads l ON l.id = d.lead_id
        WHERE d.at > $1
          AND (d.call_id IS NOT NULL OR d.unknown OR (l.dial_ref = d.dial_ref AND l.status = 'DIALING'))`,
    },

    templateById: `SELECT * FROM ${s}.templates WHERE id = $1`,
    // Every part of one statement reads the same snapshot: \`old\` is the rows as they were before it.
    upsertTemplates: `
      WITH input AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text, reseller_id text, number_id text,
          provider text, calling_window jsonb, retry jsonb, rate_limit_rules jsonb)
      ), old AS (
        SELECT t.id, t.calling_window FROM ${s}.templates t
        WHERE t.id IN (SELECT input.id COLLATE "C" FROM input)
      ), upserted AS (
        INSERT INTO ${s}.templates (id, reseller_id, number_id, provider, calling_window, retry, rate_limit_rules)
        SELECT * FROM input
        ON CONFLICT (id) DO UPDATE SET
          reseller_id = excluded.reseller_id, number_id = excluded.number_id, provider = excluded.provider,
          calling_window = excluded.calling_window, retry = excluded.retry,
          rate_limit_rules = excluded.rate_limit_rules
        RETURNING id, calling_window
      )
      SELECT upserted.id FROM upserted JOIN old ON old.id = upserted.id
      WHERE old.calling_window IS DISTINCT FROM upserted.calling_window`,

    numberById: `SELECT * FROM ${s}.numbers WHERE id = $1`,
    poolNumbers: `
      SELECT * FROM ${s}.numbers
      WHERE pool AND status = 'AVAILABLE' AND ($1::text IS NULL OR provider = $1)
      ORDER BY id`,
    upsertNumbers: `
      INSERT INTO ${s}.numbers (id, e164, provider, max_channels, status, pool)
      SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text, e164 text, provider text,
        max_channels integer, status text, pool boolean)
      ON CONFLICT (id) DO UPDATE SET
        e164 = excluded.e164, provider = excluded.provider, max_channels = excluded.max_channels,
        status = excluded.status, pool = excluded.pool`,

    isBlocked: `SELECT EXISTS (SELECT 1 FROM ${s}.blocked_phones WHERE phone = $1) AS blocked`,
    block: `INSERT INTO ${s}.blocked_phones (phone) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`,
  };
}

// ---------------------------------------------------------------------------------------------
// Rows. bigint columns arrive as strings (pg does not guess at precision); times fit a double.

interface LeadRow {
  id: string;
  phone: string;
  template_id: string;
  status: LeadStatus;
  outcome: string | null;
  attempt: number;
  not_placed_streak: number;
  claim_seq: number;
  token: string | null;
  owner: string | null;
  lease_until: string | null;
  next_attempt_at: string;
  due_at: string;
  expires_at: string | null;
  time_zone: string | null;
  cancel_requested: boolean;
  dial_ref: string | null;
  payload: Record<string, unknown>;
  defer_reason: DeferReason | null;
  precheck_defers: number;
  dial_number_id: string;
  dial_at: string;
  dial_call_id: string | null;
  dial_unknown: boolean;
  dial_recorded: boolean;
}

interface TemplateRow {
  id: string;
  reseller_id: string;
  number_id: string | null;
  provider: string | null;
  calling_window: Template["window"] | null;
  retry: Template["retry"] | null;
  rate_limit_rules: Template["rateLimitRules"] | null;
}

type NumberRow = Omit<OutboundNumber, "maxChannels"> & { max_channels: number };

function toMs(value: string | null): number | null {
  return value === null ? null : Number(value);
}

function toLead(row: LeadRow): LeadRecord {
  return {
    id: row.id,
    phone: row.phone,
    templateId: row.template_id,
    status: row.status,
    outcome: row.outcome,
    attempt: row.attempt,
    notPlacedStreak: row.not_placed_streak,
    claimSeq: row.claim_seq,
    token: row.token,
    owner: row.owner,
    leaseUntil: toMs(row.lease_until),
    nextAttemptAt: Number(row.next_attempt_at),
    dueAt: Number(row.due_at),
    expiresAt: toMs(row.expires_at),
    timeZone: row.time_zone,
    cancelRequested: row.cancel_requested,
    dial:
      row.dial_ref === null
        ? null
        : {
            dialRef: row.dial_ref,
            numberId: row.dial_number_id,
            at: Number(row.dial_at),
            callId: row.dial_call_id,
            unknown: row.dial_unknown,
            recorded: row.dial_recorded,
          },
    payload: row.payload,
    deferReason: row.defer_reason,
    precheckDefers: row.precheck_defers,
  };
}

function leadInputRow(input: LeadInput, now: number) {
  return {
    id: input.id,
    phone: input.phone,
    template_id: input.templateId,
    due_at: input.dueAt ?? now,
    expires_at: input.expiresAt ?? null,
    time_zone: input.timeZone ?? null,
    payload: input.payload ?? {},
  };
}

/** Optional fields absent rather than null, exactly as they were upserted. */
function toTemplate(row: TemplateRow): Template {
  const template: Template = { id: row.id, resellerId: row.reseller_id };
  if (row.number_id !== null) template.numberId = row.number_id;
  if (row.provider !== null) template.provider = row.provider;
  if (row.calling_window !== null) template.window = row.calling_window;
  if (row.retry !== null) template.retry = row.retry;
  if (row.rate_limit_rules !== null) template.rateLimitRules = row.rate_limit_rules;
  return template;
}

function templateRow(t: Template) {
  return {
    id: t.id,
    reseller_id: t.resellerId,
    number_id: t.numberId,
    provider: t.provider,
    calling_window: t.window,
    retry: t.retry,
    rate_limit_rules: t.rateLimitRules,
  };
}

function toNumber(row: NumberRow): OutboundNumber {
  return {
    id: row.id,
    e164: row.e164,
    provider: row.provider,
    maxChannels: row.max_channels,
    status: row.status,
    pool: row.pool,
  };
}

function numberRow(n: OutboundNumber) {
  return {
    id: n.id,
    e164: n.e164,
    provider: n.provider,
    max_channels: n.maxChannels,
    status: n.status,
    pool: n.pool,
  };
}

/** The (scope, id) key of a pause row. */
function pauseRow(scope: PauseScope): [string, string] {
  if ("global" in scope) return ["global", ""];
  if ("resellerId" in scope) return ["reseller", scope.resellerId];
  return ["template", scope.templateId];
}

function toPauseScope(scope: string, id: string): PauseScope {
  if (scope === "global") return { global: true };
  return scope === "reseller" ? { resellerId: id } : { templateId: id };
}

/** `leadId:claimSeq` → leadId (ids may contain colons; the sequence never does). */
function leadIdOf(token: string): string {
  return token.slice(0, token.lastIndexOf(":"));
}

/** A batch submit may name an id twice; like sequential submits, the first one wins. */
function firstById<T extends { id: string }>(items: T[]): T[] {
  const firsts = new Map<string, T>();
  for (const item of items) if (!firsts.has(item.id)) firsts.set(item.id, item);
  return [...firsts.values()];
}

/** A batch upsert may name an id twice; like sequential upserts, the last one wins. */
function lastById<T extends { id: string }>(items: T[]): T[] {
  return [...new Map(items.map((item) => [item.id, item])).values()];
}

// ---------------------------------------------------------------------------------------------
// LISTEN

const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5_000;

/**
 * One dedicated connection LISTENing on a channel. When the server drops it, it reconnects with
 * backoff and then calls the listener once: notifications sent while it was away are lost, and a
 * supervisor that missed one would otherwise sleep until its next timer.
 */
class ChannelListener {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #listener: LeadsListener;
  #client: pg.Client | null = null;
  readonly #stopped = new AbortController();

  constructor(config: pg.ClientConfig, channel: string, listener: LeadsListener) {
    this.#config = { ...config, application_name: "dialgate-listen" };
    this.#channel = channel;
    this.#listener = listener;
  }

  async start(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on("notification", (msg) => {
      if (msg.channel === this.#channel) this.#listener();
    });
    // An 'error' (server gone) is followed by 'end'; the listener is required, or Node throws.
    client.on("error", () => this.#lost(client));
    client.on("end", () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.#stopped.signal.aborted) {
      await client.end();
      return;
    }
    this.#client = client;
  }

  async stop(): Promise<void> {
    this.#stopped.abort();
    const client = this.#client;
    this.#client = null;
    await client?.end();
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    for (
      let wait = RECONNECT_FIRST_MS;
      !this.#stopped.signal.aborted;
      wait = Math.min(2 * wait, RECONNECT_MAX_MS)
    ) {
      try {
        await this.start();
        if (!this.#stopped.signal.aborted) this.#listener();
        return;
      } catch {
        // Real time on purpose: this paces network retries, it is not a domain timer of the clock.
        await delay(wait, undefined, { signal: this.#stopped.signal }).catch(() => {});
      }
    }
  }
}

const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `dialgate_${createHash("sha1").update(text).digest("hex").slice(0, 16)}`;
    statementNames.set(text, name);
  }
  return name;
}
