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
import { redactError } from "../mask.js";
import { Batcher } from "./batch.js";
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
 * The durable lead store (design §4). Every state change is a compare-and-set on the lead's id, claim
 * token and status, so concurrent processes, late end signals and stale actors can only lose, never
 * overwrite (design §7.1). Times are the caller's epoch ms; NOW() is never used.
 *
 * The hot calls of a dial are batched (batch.ts): the beginDials, the settlements of one kind, the
 * gets, isBlocked and findByDial calls made in one turn of the event loop, or while the previous batch
 * of their kind is in flight, go as one statement, each lead still its own compare-and-set. Templates
 * and numbers are cached exactly (ConfigCache).
 *
 * The pool belongs to the caller: close() stops this store's listeners, not the pool.
 */
export class PostgresLeadStore implements LeadStore {
  readonly #pool: pg.Pool;
  readonly #sql: Statements;
  readonly #channel: string;
  readonly #listeners = new Set<ChannelListener>();
  readonly #config: ConfigCache;
  #watching: Promise<boolean> | undefined;
  #closed = false;

  // Reads: a batch may name a row twice; each call still gets an object of its own.
  readonly #gets = new Batcher<string, LeadRecord | null>({
    run: async (ids) => {
      const rows = await this.#rows<LeadRow>(this.#sql.leadsByIds, [ids]);
      const byId = new Map(rows.map((r) => [r.id, r]));
      return ids.map((id) => rowOrNull(byId.get(id)));
    },
  });
  readonly #blocked = new Batcher<string, boolean>({
    run: async (phones) => {
      const rows = await this.#rows<{ phone: string }>(this.#sql.blockedAmong, [phones]);
      const blocked = new Set(rows.map((r) => r.phone));
      return phones.map((phone) => blocked.has(phone));
    },
  });
  readonly #byDial = new Batcher<{ callId: string | null; dialRef: string | null }, LeadRecord | null>({
    run: async (refs) => {
      const values = [refs.map((r) => r.callId), refs.map((r) => r.dialRef)];
      const rows = await this.#rows<LeadRow & { n: string }>(this.#sql.leadsByDial, values);
      const byN = new Map(rows.map((r) => [Number(r.n), r]));
      return refs.map((_, i) => rowOrNull(byN.get(i + 1)));
    },
  });
  /** Keyed by lead: a batch names a lead once, and a second call for it waits for the first. */
  readonly #beginDials = new Batcher<{ token: string; row: DialRow }, boolean>({
    key: (item) => leadIdOf(item.token),
    run: async (items) => {
      const input = items.map(({ token, row }) => [
        leadIdOf(token),
        token,
        row.dialRef,
        row.numberId,
        row.at,
        row.recorded,
      ]);
      const rows = await this.#rows<{ token: string }>(this.#sql.beginDial, columnsOf(input, 6));
      const began = new Set(rows.map((r) => r.token));
      return items.map((item) => began.has(item.token));
    },
  });
  readonly #settles = Object.fromEntries(
    (Object.keys(SETTLE_INPUT) as Kind[]).map((kind) => [kind, this.#settleBatcher(kind)]),
  ) as Record<Kind, Batcher<{ token: string; s: Settlement; now: number }, Settled | null>>;

  constructor(pool: pg.Pool, options: PostgresLeadStoreOptions) {
    assertSchemaName(options.schema);
    this.#pool = pool;
    this.#sql = statements(pg.escapeIdentifier(options.schema));
    this.#channel = leadsChannel(options.schema);
    this.#config = new ConfigCache(options.schema);
  }

  /**
   * Every statement as a named prepared statement: each connection parses and plans it once, not on
   * every call (2–3× faster per call, measured). The name is a digest of the text, so it is stable.
   */
  #query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []) {
    // A driver error quotes the rows it choked on (`where`): redacted before anyone can log it.
    return this.#pool.query<R>({ name: statementName(text), text, values }).catch((error: unknown) => {
      throw redactError(error);
    });
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

  get(id: string): Promise<LeadRecord | null> {
    return this.#gets.add(id);
  }

  async claimDue(owner: string, now: number, limit: number, leaseMs: number): Promise<LeadRecord[]> {
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

  beginDial(token: string, row: DialRow): Promise<boolean> {
    return this.#beginDials.add({ token, row });
  }

  settle(token: string, s: Settlement, now: number): Promise<Settled | null> {
    return this.#settles[s.kind].add({ token, s, now });
  }

  async expedite(id: string, at: number): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.expedite, [id, at]);
    return rowCount === 1;
  }

  async wakeParked(templateId: string, reason: DeferReason, at: number): Promise<number> {
    const { rowCount } = await this.#query(this.#sql.wakeParked, [templateId, reason, at]);
    return rowCount ?? 0;
  }

  async wakeWaiters(numberId: string, count: number, now: number): Promise<string[]> {
    if (count <= 0) return [];
    const rows = await this.#rows<{ id: string }>(this.#sql.wakeWaiters, [numberId, count, now]);
    return rows.map((r) => r.id);
  }

  async waitingCount(): Promise<number> {
    const [row] = await this.#rows<{ n: string }>(this.#sql.waitingCount, []);
    return Number(row?.n ?? 0);
  }

  async waitingSets(): Promise<{ numberIds: string[]; waiters: number }[]> {
    const rows = await this.#rows<{ park_set: string[]; waiters: string }>(this.#sql.waitingSets, []);
    return rows.map((r) => ({ numberIds: r.park_set, waiters: Number(r.waiters) }));
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

  findByDial(ref: { callId?: string; dialRef?: string }): Promise<LeadRecord | null> {
    // Empty strings find nothing, as in the memory store.
    return this.#byDial.add({ callId: ref.callId || null, dialRef: ref.dialRef || null });
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

  async templateWindowMs(): Promise<number> {
    const [row] = await this.#rows<{ ms: string | null }>(this.#sql.gateRebuild.templateWindowMs, []);
    return Number(row?.ms ?? 0);
  }

  template(id: string): Promise<Template | null> {
    return this.#cached(`t:${id}`, async () => {
      const [row] = await this.#rows<TemplateRow>(this.#sql.templateById, [id]);
      return row ? toTemplate(row) : null;
    });
  }

  cachedTemplate(id: string): Template | null | undefined {
    return this.#config.peek<Template | null>(`t:${id}`);
  }

  number(id: string): Promise<OutboundNumber | null> {
    return this.#cached(`n:${id}`, async () => {
      const [row] = await this.#rows<NumberRow>(this.#sql.numberById, [id]);
      return row ? toNumber(row) : null;
    });
  }

  poolNumbers(provider?: string): Promise<OutboundNumber[]> {
    return this.#cached(provider === undefined ? "p" : `p:${provider}`, async () =>
      (await this.#rows<NumberRow>(this.#sql.poolNumbers, [provider ?? null])).map(toNumber),
    );
  }

  isBlocked(phone: string): Promise<boolean> {
    return this.#blocked.add(phone);
  }

  async upsertTemplates(templates: Template[]): Promise<string[]> {
    if (templates.length === 0) return [];
    const rows = lastById(templates).map(templateRow);
    try {
      const moved = await this.#rows<{ id: string }>(this.#sql.upsertTemplates, [JSON.stringify(rows)]);
      const ids = new Set(moved.map((r) => r.id));
      return rows.map((r) => r.id).filter((id) => ids.has(id));
    } finally {
      // This process sees its own write at once, not when the notification comes back.
      this.#config.clear();
    }
  }

  async upsertNumbers(numbers: OutboundNumber[]): Promise<void> {
    if (numbers.length === 0) return;
    const rows = lastById(numbers).map(numberRow);
    try {
      await this.#query(this.#sql.upsertNumbers, [JSON.stringify(rows)]);
    } finally {
      this.#config.clear();
    }
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

  /**
   * Starts caching templates and numbers (the first read of one does too). Resolves true once the
   * cache serves reads, false when the schema lacks 004_config_notify.sql or the store was closed.
   */
  async watchConfig(): Promise<boolean> {
    return (await this.#watchConfig()) && this.#config.whenLive();
  }

  /** Stops this store's listeners. The pool is the caller's to end. */
  async close(): Promise<void> {
    this.#closed = true;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    await Promise.all([...listeners.map((l) => l.stop()), ConfigWatch.leave(this.#pool, this.#config)]);
  }

  async #leads(sql: string, values: unknown[]): Promise<LeadRecord[]> {
    return (await this.#rows<LeadRow>(sql, values)).map(toLead);
  }

  async #rows<R extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<R[]> {
    return (await this.#query<R>(sql, values)).rows;
  }

  /** Keyed by lead, like beginDial. */
  #settleBatcher(kind: Kind): Batcher<{ token: string; s: Settlement; now: number }, Settled | null> {
    const input = SETTLE_INPUT[kind] as { values(s: Settlement, now: number): unknown[] };
    return new Batcher({
      key: (item) => leadIdOf(item.token),
      run: async (items) => {
        const rows = items.map(({ token, s, now }) => [leadIdOf(token), token, ...input.values(s, now)]);
        const values = [SETTLES_FROM[kind], ...columnsOf(rows, rows[0].length)];
        const settled = await this.#rows<Settled & { claim: string }>(this.#sql.settle[kind], values);
        const byToken = new Map(settled.map((r) => [r.claim, { status: r.status, outcome: r.outcome }]));
        return items.map((item) => byToken.get(item.token) ?? null);
      },
    });
  }

  /** `load` through the config cache, which this starts on first use. */
  #cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    void this.#watchConfig();
    return this.#config.read(key, load);
  }

  #watchConfig(): Promise<boolean> {
    this.#watching ??= (async () => {
      if (this.#closed) return false;
      const [{ ok }] = await this.#rows<{ ok: boolean }>(this.#sql.configNotifies, []);
      if (!ok || this.#closed) return false;
      ConfigWatch.join(this.#pool, this.#config);
      return true;
    })().catch(() => {
      // Tried again on the next read.
      this.#watching = undefined;
      return false;
    });
    return this.#watching;
  }
}

// ---------------------------------------------------------------------------------------------
// SQL. `s` is the quoted schema; every value is a parameter.

type Statements = ReturnType<typeof statements>;

function statements(s: string) {
  const selectLeads = (from: string, extra = "") => `
    SELECT ${extra} l.*, d.number_id AS dial_number_id, d.at AS dial_at, d.call_id AS dial_call_id,
           d.unknown AS dial_unknown, d.recorded AS dial_recorded
    FROM ${from} LEFT JOIN ${s}.dial_attempts d ON d.dial_ref = l.dial_ref`;

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
    kind: Kind,
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
  /** For `ended`: the retry policy scheduled another attempt (x.retry_at) and no cancel was requested. */
  const retries = "(NOT l.cancel_requested AND x.retry_at IS NOT NULL)";

  return {
    leadsByIds: `${selectLeads(`${s}.leads l`)} WHERE l.id = ANY($1::text[])`,
    listLeads: `${selectLeads(`${s}.leads l`)} ORDER BY l.seq`,

    // ON CONFLICT DO NOTHING: a second submit of an id keeps the existing lead (design §7.17).
    insertLeads: `
      INSERT INTO ${s}.leads
        (id, phone, template_id, status, next_attempt_at, due_at, expires_at, time_zone, payload)
      SELECT id, phone, template_id, 'SCHEDULED', due_at, due_at, expires_at, time_zone, payload
      FROM jsonb_to_recordset($1::jsonb) AS x(id text, phone text, template_id text,
        due_at bigint, expires_at bigint, time_zone text, payload jsonb)
      ON CONFLICT (id) DO NOTHING`,

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
        UPDATE ${s}.leads l SET status = 'PROCESSING', ${release}
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
          AND NOT ${paused("l")}
        FOR UPDATE OF l SKIP LOCKED
      ), joined AS (
        UPDATE ${s}.leads l SET park_set = j.park_set, parked_at = $2, defer_reason = 'channel'
        FROM joining j WHERE l.id = j.id
      ), due AS (
        SELECT id FROM ${s}.leads l
        WHERE ((status = 'SCHEDULED' AND park_set IS NULL AND next_attempt_at <= $2)
               OR (status = 'SCHEDULED' AND park_set IS NOT NULL AND expires_at <= $2)
               OR (status = 'CLAIMED' AND COALESCE(lease_until, 0) <= $2))
          AND NOT ${paused("l")}
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
      ${selectLeads("claimed l", `EXISTS (SELECT 1 FROM ${s}.blocked_phones b WHERE b.phone = l.phone) AS blocked,`)}
      ORDER BY l.due_at, l.id`,

    // A parked lead is due only when it expires.
    nextDueAt: `
      SELECT min(CASE WHEN park_set IS NULL THEN next_attempt_at ELSE expires_at END) AS at FROM ${s}.leads l
      WHERE status = 'SCHEDULED' AND NOT ${paused("l")}`,

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

    settle: {
      // A cancel requested while dialling wins over the defer (design §7.16). A null streak or
      // prechecks keeps the lead's; a dial result is written when given.
      defer: settle(
        "defer",
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = x.at, ${release},
         not_placed_streak = COALESCE(x.streak, not_placed_streak),
         defer_reason = x.reason,
         park_set = CASE WHEN x.park IS NULL THEN NULL
                    ELSE ARRAY(SELECT jsonb_array_elements_text(x.park::jsonb) ORDER BY 1) END,
         parked_at = CASE WHEN x.park IS NULL THEN NULL ELSE COALESCE(parked_at, x.now) END,
         precheck_defers = COALESCE(x.prechecks, precheck_defers)`,
        { dialSet: "result = x.result, result_at = x.now", dialWhen: "x.result IS NOT NULL" },
      ),
      finish: settle("finish", `status = 'FINISHED', outcome = x.new_outcome, ${release}`, {
        dialSet: "result = x.result, result_at = x.now",
        dialWhen: "x.result IS NOT NULL",
      }),
      // The claim's owner and lease stay as they were, as in the memory store.
      placed: settle("placed", "status = 'PROCESSING', not_placed_streak = 0", {
        dialSet: "call_id = x.call_id, result = 'placed', result_at = x.now",
      }),
      unknown: settle("unknown", `status = 'PROCESSING', ${release}`, {
        where: "AND l.dial_ref IS NOT NULL",
        dialSet: "unknown = true, result = 'unknown', result_at = x.now",
      }),
      // A requested cancel wins over the retry policy (design §7.16).
      ended: settle(
        "ended",
        `status = CASE WHEN ${retries} THEN 'SCHEDULED' ELSE 'FINISHED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' WHEN ${retries} THEN outcome ELSE x.new_outcome END,
         attempt = attempt + CASE WHEN ${retries} THEN 1 ELSE 0 END,
         next_attempt_at = CASE WHEN ${retries} THEN x.retry_at ELSE next_attempt_at END,
         due_at = CASE WHEN ${retries} THEN x.retry_at ELSE due_at END,
         ${release}`,
      ),
      // Only a held unknown dial expires; a placed call waits for its end.
      unknownExpired: settle(
        "unknownExpired",
        `status = CASE WHEN cancel_requested THEN 'FINISHED' ELSE 'SCHEDULED' END,
         outcome = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE outcome END,
         next_attempt_at = CASE WHEN cancel_requested THEN next_attempt_at ELSE x.at END,
         ${release}`,
        {
          where: `AND EXISTS (SELECT 1 FROM ${s}.dial_attempts d WHERE d.dial_ref = l.dial_ref AND d.unknown)`,
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

    // Fair by phone, then longest-waiting first: a phone's turn is its leads already served (woken and
    // not yet dialled, claimed, dialling or in a call) plus its waiters ahead in line. SKIP LOCKED: two processes freeing lines at once wake different waiters; the update checks
    // the row is still parked (the compare-and-set), and the leads trigger notifies every supervisor.
    wakeWaiters: `
      WITH waiters AS (
        SELECT id, phone, parked_at, due_at FROM ${s}.leads l
        WHERE status = 'SCHEDULED' AND park_set @> ARRAY[$1::text] AND NOT ${paused("l")}
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

    pause: `INSERT INTO ${s}.pauses (scope, id, paused_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    resume: `DELETE FROM ${s}.pauses WHERE scope = $1 AND id = $2`,
    pauses: `
      SELECT scope, id, paused_at FROM ${s}.pauses
      ORDER BY CASE scope WHEN 'global' THEN 0 WHEN 'reseller' THEN 1 ELSE 2 END, id COLLATE "C"`,

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
      ${selectLeads(`found JOIN ${s}.leads l ON l.id = found.lead_id`, "found.n,")}`,

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
      ${selectLeads("cancelled l")}`,

    expiredUnknownDials: `
      ${selectLeads(`${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND d.unknown AND d.at <= $1
      ORDER BY l.seq`,

    overdueCalls: `
      ${selectLeads(`${s}.leads l`)}
      WHERE l.status = 'PROCESSING' AND NOT d.unknown AND d.at <= $1
      ORDER BY l.seq`,

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

    // Whether 004_config_notify.sql was applied: only then may templates and numbers be cached.
    configNotifies: `SELECT to_regprocedure('${s}.notify_config_changed()') IS NOT NULL AS ok`,

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

    blockedAmong: `SELECT phone FROM ${s}.blocked_phones WHERE phone = ANY($1::text[])`,
    block: `INSERT INTO ${s}.blocked_phones (phone) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`,
  };
}

/**
 * `unnest(...) AS x(...)`: one row per item of a batch, each column ("name type") an array parameter,
 * from `$first` on.
 */
function unnest(columns: string[], first = 1): string {
  const split = columns.map((column) => column.split(" "));
  const arrays = split.map(([, type], i) => `$${first + i}::${type}[]`);
  return `unnest(${arrays.join(", ")}) AS x(${split.map(([name]) => name).join(", ")})`;
}

/** The parameter arrays of `unnest`: column i of every row, for i < `width`. */
function columnsOf(rows: unknown[][], width: number): unknown[][] {
  return Array.from({ length: width }, (_, i) => rows.map((row) => row[i]));
}

type Kind = Settlement["kind"];

/** Per settlement kind: its input columns after (lead, claim), and one settlement's values for them. */
const SETTLE_INPUT: {
  [K in Kind]: { columns: string[]; values(s: Extract<Settlement, { kind: K }>, now: number): unknown[] };
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
  ended: { columns: ["new_outcome text", "retry_at bigint"], values: (s) => [s.outcome, s.retryAt ?? null] },
  unknownExpired: { columns: ["at bigint"], values: (s) => [s.at] },
};

// ---------------------------------------------------------------------------------------------
// Rows. bigint columns arrive as strings (pg does not guess at precision); times fit a double.

interface LeadRow {
  /** Only in claims. */
  blocked?: boolean;
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
  park_set: string[] | null;
  parked_at: string | null;
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

function rowOrNull(row: LeadRow | undefined): LeadRecord | null {
  return row === undefined ? null : toLead(row);
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
    parkedOn: row.park_set,
    parkedAt: toMs(row.parked_at),
    ...(row.blocked !== undefined && { blocked: row.blocked }),
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

interface ChannelOptions {
  /** Told true once the connection listens, false when it is lost or stopped. */
  live?(live: boolean): void;
  /** Neither the connection nor its reconnect timer keeps the process alive. */
  unref?: boolean;
}

/**
 * One dedicated connection LISTENing on a channel. When the server drops it, it reconnects with
 * backoff and then calls the listener once: notifications sent while it was away are lost, and a
 * supervisor that missed one would otherwise sleep until its next timer.
 */
class ChannelListener {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #listener: (payload: string) => void;
  readonly #options: ChannelOptions;
  #client: pg.Client | null = null;
  readonly #stopped = new AbortController();

  constructor(
    config: pg.ClientConfig,
    channel: string,
    listener: (payload: string) => void,
    options: ChannelOptions = {},
  ) {
    this.#config = { ...config, application_name: "dialgate-listen" };
    this.#channel = channel;
    this.#listener = listener;
    this.#options = options;
  }

  async start(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on("notification", (msg) => {
      if (msg.channel === this.#channel) this.#listener(msg.payload ?? "");
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
    // pg's types lack unref(); it unrefs the socket, as pg-pool's allowExitOnIdle does.
    if (this.#options.unref) (client as unknown as { unref(): void }).unref();
    this.#client = client;
    this.#options.live?.(true);
  }

  /** Starts in the background, retrying with backoff until stop(). */
  keep(): void {
    void this.#reconnect();
  }

  async stop(): Promise<void> {
    this.#stopped.abort();
    const client = this.#client;
    this.#client = null;
    if (client) this.#options.live?.(false);
    await client?.end();
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    this.#options.live?.(false);
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
        if (!this.#stopped.signal.aborted) this.#listener("");
        return;
      } catch {
        // Real time on purpose: this paces network retries, it is not a domain timer of the clock.
        const ref = !this.#options.unref;
        await delay(wait, undefined, { signal: this.#stopped.signal, ref }).catch(() => {});
      }
    }
  }
}

/** Notified by the triggers of 004_config_notify.sql; the payload is the schema. */
const CONFIG_CHANNEL = "dialgate_config";

/**
 * An exact cache of one store's templates and numbers. It serves entries only while the pool's config
 * listener (ConfigWatch) is LISTENing, and it is emptied by every notification for its schema, by the
 * listener's loss and by the store's own upserts. An entry is the read's promise, stored when the read
 * starts (after LISTEN): whatever empties the cache also drops the reads in flight, which may have
 * read the row before the change.
 */
class ConfigCache {
  readonly schema: string;
  readonly #entries = new Map<string, Promise<unknown>>();
  /** The entries whose read has come back, by the same key; emptied with them. */
  readonly #values = new Map<string, unknown>();
  #live = false;
  #closed = false;
  #waiting: ((live: boolean) => void)[] = [];

  constructor(schema: string) {
    this.schema = schema;
  }

  /** Live: the watch LISTENs (a change of state drops the entries either way). */
  setLive(live: boolean): void {
    this.#live = live && !this.#closed;
    this.clear();
    if (this.#live || this.#closed) for (const wake of this.#waiting.splice(0)) wake(this.#live);
  }

  clear(): void {
    this.#entries.clear();
    this.#values.clear();
  }

  close(): void {
    this.#closed = true;
    this.setLive(false);
  }

  /** True once live, false once closed. */
  whenLive(): Promise<boolean> {
    if (this.#live || this.#closed) return Promise.resolve(this.#live);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** A copy of the cached value, or of what `load` reads (cached when live). */
  async read<T>(key: string, load: () => Promise<T>): Promise<T> {
    if (!this.#live) return load();
    let entry = this.#entries.get(key) as Promise<T> | undefined;
    if (entry === undefined) {
      const loading = load();
      entry = loading;
      this.#entries.set(key, loading);
      loading.then(
        (value) => {
          if (this.#entries.get(key) === loading) this.#values.set(key, deepFreeze(value));
        },
        () => {
          if (this.#entries.get(key) === loading) this.#entries.delete(key);
        },
      );
    }
    // Callers may change what they get; the entry stays as read.
    return structuredClone(await entry);
  }

  /**
   * The cached value itself (frozen: a caller that tries to change it throws) when its read has come
   * back and the cache is live, else undefined. No copy: the check gate peeks once per lead.
   */
  peek<T>(key: string): T | undefined {
    if (!this.#live) return undefined;
    return this.#values.get(key) as T | undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * One connection per pool LISTENing on CONFIG_CHANNEL for the caches of every store on the pool, so a
 * store that is never closed costs no connection of its own. It ends with its last cache, or with the
 * pool (pg-pool emits 'remove' for each client it ends).
 */
class ConfigWatch {
  static readonly #byPool = new WeakMap<pg.Pool, ConfigWatch>();

  static join(pool: pg.Pool, cache: ConfigCache): void {
    let watch = ConfigWatch.#byPool.get(pool);
    if (watch === undefined) {
      watch = new ConfigWatch(pool);
      ConfigWatch.#byPool.set(pool, watch);
    }
    watch.#caches.add(cache);
    cache.setLive(watch.#live);
  }

  /** Closes the cache; the watch stops with its last one. */
  static async leave(pool: pg.Pool, cache: ConfigCache): Promise<void> {
    cache.close();
    const watch = ConfigWatch.#byPool.get(pool);
    if (watch === undefined || !watch.#caches.delete(cache)) return;
    if (watch.#caches.size === 0) await watch.#stop();
  }

  readonly #pool: pg.Pool;
  readonly #caches = new Set<ConfigCache>();
  readonly #listener: ChannelListener;
  #live = false;
  readonly #removed = () => {
    if (this.#pool.ending) this.#stop().catch(() => {});
  };

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
    const changed = (schema: string) => {
      for (const cache of this.#caches) if (cache.schema === schema) cache.clear();
    };
    this.#listener = new ChannelListener(pool.options, CONFIG_CHANNEL, changed, {
      unref: true,
      live: (live) => {
        this.#live = live;
        for (const cache of this.#caches) cache.setLive(live);
      },
    });
    pool.on("remove", this.#removed);
    this.#listener.keep();
  }

  async #stop(): Promise<void> {
    if (ConfigWatch.#byPool.get(this.#pool) === this) ConfigWatch.#byPool.delete(this.#pool);
    this.#pool.off("remove", this.#removed);
    await this.#listener.stop();
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
