import pg from "pg";
import type {
  CooldownRule,
  DeferReason,
  DialRow,
  GateRebuildRows,
  LeadInput,
  LeadRecord,
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
import { ChannelListener } from "./channel-listener.js";
import { ConfigCache, ConfigWatch } from "./config-cache.js";
import {
  lawsCooldowns,
  lawsWindowMs,
  readGateRebuildRows,
  type TemplateLawRow,
} from "./gate-rebuild-rows.js";
import { assertSchemaName, leadsChannel } from "./migrate.js";
import {
  firstById,
  type LeadRow,
  lastById,
  leadIdOf,
  leadInputRow,
  type NumberRow,
  numberRow,
  pauseRow,
  rowOrNull,
  type TemplateRow,
  templateRow,
  toLead,
  toMs,
  toNumber,
  toPauseScope,
  toTemplate,
} from "./rows.js";
import { SETTLE_INPUT, type SettleKind } from "./sql/dial.js";
import { columnsOf } from "./sql/shared.js";
import { type Statements, statementName, statements } from "./sql/statements.js";

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
 * Its parts: the SQL of each concern in sql/, rows ⇄ records in rows.ts, the LISTEN connection in
 * channel-listener.ts, the config cache and its watch in config-cache.ts; this class composes them.
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
    (Object.keys(SETTLE_INPUT) as SettleKind[]).map((kind) => [kind, this.#settleBatcher(kind)]),
  ) as Record<SettleKind, Batcher<{ token: string; s: Settlement; now: number }, Settled | null>>;

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

  async endDial(dialRef: string, outcome: string, at: number): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.endDial, [dialRef, outcome, at]);
    return rowCount === 1;
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

  gateRebuildRows(
    now: number,
    windowMs: number | null,
    cooling?: { ms: number; outcomes: string[] },
  ): Promise<GateRebuildRows> {
    return readGateRebuildRows(this.#pool, this.#sql.gateRebuild, now, windowMs, cooling);
  }

  async templateWindowMs(): Promise<number> {
    return lawsWindowMs(await this.#rows<TemplateLawRow>(this.#sql.gateRebuild.templateLaws, []));
  }

  async templateCooldowns(): Promise<CooldownRule[]> {
    return lawsCooldowns(await this.#rows<TemplateLawRow>(this.#sql.gateRebuild.templateLaws, []));
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
  #settleBatcher(kind: SettleKind): Batcher<{ token: string; s: Settlement; now: number }, Settled | null> {
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
