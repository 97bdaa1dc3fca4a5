import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { z } from "zod";
import { Alerter } from "./actors/alerter.js";
import { type CallEndResult, CallLifecycle } from "./actors/call-lifecycle.js";
import { createGateStateSource } from "./actors/gate-rebuild.js";
import { PoolLineCounts } from "./actors/gates.js";
import { createLeadRunner } from "./actors/lead-actor.js";
import { LeadLog } from "./actors/lead-log.js";
import { Outbox } from "./actors/outbox.js";
import { RuleWindows } from "./actors/rule-windows.js";
import { Supervisor } from "./actors/supervisor.js";
import type { DispatcherEventName, DispatcherEvents } from "./events.js";
import { LogAlertSink } from "./infra/alerts/log-sink.js";
import { SyncedClock, SystemClock } from "./infra/clock.js";
import {
  configSchema,
  type DispatcherConfig,
  type DispatcherConfigInput,
  leadSchema,
  numberSchema,
  parseOrThrow,
  phoneSchema,
  templateSchema,
  text,
} from "./infra/config.js";
import { createLogger } from "./infra/logger.js";
import { MemoryGateStore } from "./infra/memory/gate-store.js";
import { MemoryLeadStore } from "./infra/memory/lead-store.js";
import type {
  AlertSink,
  Clock,
  GateStore,
  LeadInput,
  LeadRecord,
  LeadStatus,
  LeadStore,
  OutboundNumber,
  Pause,
  PauseScope,
  PreDialCheck,
  Provider,
  Template,
  Timer,
} from "./machines/ports.js";
import { isRebuildable } from "./machines/rebuild-ports.js";
import type { DispatcherStats } from "./machines/stats-ports.js";

export interface DispatcherOptions {
  /** Validated; every field has a default (design §6). */
  config?: DispatcherConfigInput;
  /** Durable leads; in-memory by default. */
  leadStore?: LeadStore;
  /** Rate limits, channel holds, alert throttle; in-memory by default. */
  gateStore?: GateStore;
  /** Provider adapters by the name numbers refer to (`OutboundNumber.provider`). */
  providers?: Provider[];
  alertSinks?: AlertSink[];
  clock?: Clock;
  /**
   * Offset-synchronise the clock to the gate store's (Redis `TIME`) at start and every minute, so the
   * processes sharing it agree on time whatever their own clocks say (design §7.7). Default: on when
   * the gate store has a clock and `clock` is the wall clock (omitted, or a SystemClock); a virtual
   * or scaled clock is its own truth.
   */
  clockSync?: boolean;
  logger?: Logger;
  /** Key of the phone HMAC in the gate store; a random one per process when omitted (memory only). */
  hmacSecret?: string;
  /** Name of this process in claim leases. */
  owner?: string;
  /** Uniform [0, 1) source for jitter; seeded by the simulator. */
  random?: () => number;
  /**
   * Run the store-driven sweep this often (ms): needed when several processes share the stores, so
   * the calls and unknown dials of a process that died are closed. Off (0) by default: each process
   * always watches its own.
   */
  sweepEveryMs?: number;
  numbers?: unknown[];
  templates?: unknown[];
  /** Phones in any spelling a lead may use; kept, like lead phones, as E.164. */
  blockedPhones?: string[];
  /**
   * The host's own checks before a dial (a DNC lookup, a consent record), run at once in the
   * `prechecking` state after the calling window, before anything is held. Each answers proceed,
   * abort (FINISHED PRECHECK_FAILED) or defer; a throw or a miss of `preDialCheck.timeoutMs` defers by
   * `preDialCheck.failureDeferSeconds`. None by default: the state then passes straight through.
   */
  preDialChecks?: readonly PreDialCheck[];
}

/** `dispatchNow` of a lead that does not exist, has finished, or is dialling or in a call. */
export class LeadNotDispatchableError extends Error {
  override readonly name = "LeadNotDispatchableError";
  constructor(
    readonly leadId: string,
    /** Null when no lead has that id. */
    readonly status: LeadStatus | null,
  ) {
    super(
      status === null
        ? `lead ${JSON.stringify(leadId)} does not exist`
        : `lead ${JSON.stringify(leadId)} is ${status}: only a waiting lead can be dispatched now`,
    );
  }
}

export type { DispatcherStats };

/** How often the clock offset and the rules in force are read again (design §7.7). */
const MINUTE_MS = 60_000;

const pauseScopeSchema = z.union(
  [
    z.object({ global: z.literal(true) }).strict(),
    z.object({ resellerId: text.min(1).max(200) }).strict(),
    z.object({ templateId: text.min(1).max(200) }).strict(),
  ],
  { error: "must be { global: true }, { resellerId } or { templateId }" },
);

const leadIdSchema = text.min(1, "must not be empty").max(200);

/** Creates an embedded dispatcher. Nothing runs until `start()`. */
export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new Dispatcher(options);
}

export type { CallEndResult };

export class Dispatcher {
  readonly config: DispatcherConfig;
  readonly store: LeadStore;
  readonly gates: GateStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly #events = new EventEmitter();
  readonly #supervisor: Supervisor;
  readonly #alerter: Alerter;
  readonly #outbox: Outbox;
  readonly #lineCounts: PoolLineCounts;
  readonly #hmacSecret: string;
  readonly #seed: { numbers: OutboundNumber[]; templates: Template[]; blocked: string[] };
  readonly #stats: DispatcherStats;
  readonly #calls: CallLifecycle;
  #sweepTimer: Timer | null = null;
  #minutelyTimer: Timer | null = null;
  /** The clock when it is synchronised to the gate store's, else null. */
  readonly #synced: SyncedClock | null;
  readonly #ruleWindows: RuleWindows;
  /** The clock given is the wall clock (a SystemClock), not a virtual or scaled one. */
  readonly #wallClock: boolean;
  readonly #sweepEveryMs: number;
  /** Checks of waiting sets in flight or asked for again (by set key), see #checkSet. */
  readonly #setChecks = new Map<string, { again: boolean }>();
  #setTimer: Timer | null = null;
  #waitingRead: { again: boolean } | null = null;
  #started = false;

  constructor(options: DispatcherOptions) {
    this.config = parseOrThrow(configSchema, options.config ?? {}, "DispatcherConfig");
    this.#seed = {
      numbers: (options.numbers ?? []).map((n, i) => parseOrThrow(numberSchema, n, `numbers[${i}]`)),
      templates: (options.templates ?? []).map((t, i) => parseOrThrow(templateSchema, t, `templates[${i}]`)),
      blocked: (options.blockedPhones ?? []).map((p, i) =>
        parseOrThrow(phoneSchema, p, `blockedPhones[${i}]`, { isPhone: true }),
      ),
    };
    this.logger = options.logger ?? createLogger();
    this.store = options.leadStore ?? new MemoryLeadStore();
    this.gates = options.gateStore ?? new MemoryGateStore();
    const local = options.clock ?? new SystemClock();
    const gates = this.gates;
    this.#wallClock = local instanceof SystemClock;
    const sync = options.clockSync ?? this.#wallClock;
    this.#synced = sync && gates.serverTime ? new SyncedClock(local, () => this.#serverTime(gates)) : null;
    this.clock = this.#synced ?? local;
    this.#ruleWindows = new RuleWindows(this.config.rateLimit.rules);
    this.#hmacSecret = options.hmacSecret ?? randomUUID();
    const preDialChecks = options.preDialChecks ?? [];
    preDialChecks.forEach((check, i) => {
      if (typeof check !== "function")
        throw new TypeError(`DispatcherOptions.preDialChecks[${i}] must be a function, got ${typeof check}`);
    });
    this.#events.setMaxListeners(100);
    this.#stats = emptyStats();
    this.#countEvents();
    const leadLog = new LeadLog(this.logger);
    leadLog.attach((name, listener) => this.#events.on(name, listener));

    const emit = this.#emit.bind(this);
    const onError = (where: string, error: unknown) => emit("error", { where, error });
    this.#outbox = new Outbox(this.clock, (what, error) => onError(`outbox ${what}`, error));
    this.#alerter = new Alerter(
      this.gates,
      options.alertSinks ?? [new LogAlertSink(this.logger)],
      this.clock,
      (alert) => emit("alert", alert),
      (error) => onError("alert sink", error),
    );
    this.#lineCounts = new PoolLineCounts(this.gates);
    const providers = new Map((options.providers ?? []).map((p) => [p.name, p]));
    const run = createLeadRunner({
      config: this.config,
      store: this.store,
      gates: this.gates,
      providers,
      clock: this.clock,
      outbox: this.#outbox,
      hmacSecret: this.#hmacSecret,
      random: options.random ?? Math.random,
      emit,
      alerter: this.#alerter,
      logger: this.logger,
      leadLog,
      preDialChecks,
      lineCounts: this.#lineCounts,
      onLateDialResult: (dialRef, result) =>
        this.#calls
          .lateDialResult(dialRef, result)
          .catch((error: unknown) => onError(`late dial result ${dialRef}`, error)),
      ruleWindows: this.#ruleWindows,
      onParked: (numberIds) => {
        this.#checkSet(numberIds);
        this.#armSetCheck();
      },
      onWakeUnused: () => this.#started && void this.#checkAllSets(),
    });
    this.#supervisor = new Supervisor({
      store: this.store,
      clock: this.clock,
      owner: options.owner ?? `dialgate-${process.pid}-${randomUUID().slice(0, 8)}`,
      concurrency: this.config.concurrency,
      claimLeaseMs: this.config.claimLeaseMs,
      drainTimeoutMs: this.config.drainTimeoutMs,
      run,
      inspect: leadLog.inspector(),
      onError,
      onClaimed: (lead) => emit("lead:claimed", { leadId: lead.id, token: lead.token as string }),
      // Leads join a line only while some wait: then the count is read again.
      onClaimRound: () => this.#stats.waiting > 0 && this.#refreshWaiting(),
    });
    this.#sweepEveryMs = options.sweepEveryMs ?? 0;
    this.#calls = new CallLifecycle({
      config: this.config,
      store: this.store,
      gates: this.gates,
      clock: this.clock,
      alerter: this.#alerter,
      outbox: this.#outbox,
      hmacSecret: this.#hmacSecret,
      providers,
      emit,
      poke: () => this.#supervisor.poke(),
      ruleWindows: this.#ruleWindows,
    });
    this.on("lead:heldUnknown", ({ leadId, dialRef }) => this.#calls.watchUnknownDial(leadId, dialRef));
    this.on("lead:dialled", ({ leadId, dialRef }) => this.#calls.watchCall(leadId, dialRef));
    this.#wakeWaitersOnRelease();
    this.#countWaiting();
    this.#rebuildGatesFromStore();
  }

  /** Seeds numbers, templates and the block list given in the options, then starts claiming. */
  async start(): Promise<void> {
    if (this.#started) return;
    await this.#syncClock();
    await this.store.upsertNumbers(this.#seed.numbers);
    // A restart with edited windows moves the parked leads like a live upsert does.
    await this.#upsertTemplates(this.#seed.templates);
    await this.store.block(this.#seed.blocked);
    await this.#refreshRuleWindows();
    await this.#prepareGates();
    this.#started = true;
    this.#supervisor.start();
    if (this.#sweepEveryMs > 0) this.#armSweep();
    // On a virtual clock a timer that never ends would keep the run going: there the rules are read
    // at start and as leads meet their templates.
    if (this.#synced || this.#wallClock) this.#armMinutely();
    // Leads parked before a restart: their sets are looked at as after a park.
    this.#checkAllSets();
  }

  /**
   * Stops claiming, stops actors still before their dial (they release what they hold and the lead is
   * re-queued now), and waits up to drainTimeoutMs for dials in flight; never cancels one.
   */
  async stop(): Promise<{ drained: boolean }> {
    if (!this.#started) return { drained: true };
    this.#started = false;
    const result = await this.#supervisor.stop();
    this.#calls.stop();
    this.#sweepTimer?.cancel();
    this.#minutelyTimer?.cancel();
    this.#setTimer?.cancel();
    this.#setTimer = null;
    await this.#outbox.flush();
    this.#outbox.stop();
    return result;
  }

  /** Validates every lead first (nothing is written when one is bad), then stores them. Idempotent by id. */
  async submit(leads: LeadInput | LeadInput[]): Promise<LeadRecord[]> {
    const list = Array.isArray(leads) ? leads : [leads];
    const valid = list.map((lead, i) =>
      parseOrThrow(leadSchema, lead, Array.isArray(leads) ? `leads[${i}]` : "lead"),
    );
    const stored = await this.store.submit(valid, this.clock.now());
    this.#supervisor.poke();
    return stored;
  }

  /** Re-reads the store for claimable leads (after another process added some). */
  poke(): void {
    this.#supervisor.poke();
  }

  /** A number re-enabled or given more lines wakes as many parked leads of its sets as lines are free. */
  async upsertNumbers(numbers: unknown[]): Promise<void> {
    await this.store.upsertNumbers(numbers.map((n, i) => parseOrThrow(numberSchema, n, `numbers[${i}]`)));
    await this.#prepareGates();
    if (this.#started) await this.#checkAllSets();
  }

  /**
   * Validates every template first, then stores them. A template whose calling window changed wakes
   * its leads parked for the window: they meet the new window now and are parked at its next start
   * (not left waiting for the old one).
   */
  async upsertTemplates(templates: unknown[]): Promise<void> {
    await this.#upsertTemplates(templates.map((t, i) => parseOrThrow(templateSchema, t, `templates[${i}]`)));
  }

  async #upsertTemplates(templates: Template[]): Promise<void> {
    for (const template of templates) this.#ruleWindows.widenTemplate(template);
    const moved = await this.store.upsertTemplates(templates);
    let woken = 0;
    for (const templateId of moved) {
      const count = await this.store.wakeParked(templateId, "window", this.clock.now());
      woken += count;
      this.logger.info({ templateId, woken: count }, "calling window changed: its parked leads were woken");
      this.#emit("window:changed", { templateId, woken: count });
    }
    if (woken > 0) this.#supervisor.poke();
  }

  /**
   * Stops claims of the scope's leads, in every process on this lead store: they stay SCHEDULED and
   * are not claimed (no churn) until resumed. Attempts already running finish as they would.
   * False when the scope was already paused.
   */
  async pause(scope: PauseScope): Promise<boolean> {
    const valid = parseOrThrow(pauseScopeSchema, scope, "pause scope") as PauseScope;
    const paused = await this.store.pause(valid, this.clock.now());
    if (paused) this.#emit("dispatch:paused", { scope: valid });
    return paused;
  }

  /**
   * Lifts a pause; its due leads are claimed at once (here, and in other processes through the store's
   * notification). False when the scope was not paused.
   */
  async resume(scope: PauseScope): Promise<boolean> {
    const valid = parseOrThrow(pauseScopeSchema, scope, "resume scope") as PauseScope;
    const resumed = await this.store.resume(valid);
    if (resumed) this.#emit("dispatch:resumed", { scope: valid });
    this.#supervisor.poke();
    // Parked leads stayed parked through the pause; lines freed meanwhile woke only unpaused ones.
    if (resumed) void this.#checkAllSets();
    return resumed;
  }

  /** Every pause in force. */
  async pauses(): Promise<Pause[]> {
    return this.store.pauses();
  }

  /**
   * Makes a waiting lead due now (a defer, a retry delay, a future due time) and wakes the claimer.
   * It still meets every gate (window, checks, rate limit, channel) and a pause. A lead already claimed
   * is left to its attempt. Throws LeadNotDispatchableError for an unknown lead, a FINISHED one, and
   * one that is dialling or in a call.
   */
  async dispatchNow(leadId: string): Promise<LeadRecord> {
    const id = parseOrThrow(leadIdSchema, leadId, "leadId");
    const lead = await this.store.get(id);
    if (!lead) throw new LeadNotDispatchableError(id, null);
    if (lead.status !== "SCHEDULED" && lead.status !== "CLAIMED")
      throw new LeadNotDispatchableError(id, lead.status);
    if (lead.status === "SCHEDULED") await this.store.expedite(id, this.clock.now());
    this.#supervisor.poke();
    return (await this.store.get(id)) ?? lead;
  }

  /**
   * Before the dial: FINISHED CANCELLED (its actor releases what it holds). While dialling or in a
   * call: the call finishes, then the lead ends CANCELLED instead of retrying.
   */
  async cancel(leadId: string): Promise<LeadRecord | null> {
    parseOrThrow(leadIdSchema, leadId, "leadId");
    const lead = await this.store.cancel(leadId, this.clock.now());
    this.#supervisor.stopLead(leadId);
    if (lead?.status === "FINISHED" && lead.outcome === "CANCELLED") {
      this.#emit("lead:finished", { leadId, outcome: "CANCELLED" });
    }
    return lead;
  }

  /**
   * A call ended (from a provider callback, received by any process): finishes the lead or schedules
   * its retry, then frees its line exactly once. Duplicate and late signals free nothing.
   */
  callEnded(signal: { callId?: string; dialRef?: string; outcome: string }): Promise<CallEndResult> {
    return this.#calls.callEnded(signal);
  }

  /**
   * Expired unknown dials re-queued, overdue calls closed UNKNOWN (see CallLifecycle.sweep); then every
   * set leads are parked on that has a free line wakes as many of them (a wake lost to a crash).
   */
  async sweep(): Promise<{ unknownExpired: number; overdueCalls: number }> {
    const swept = await this.#calls.sweep();
    await this.#checkAllSets();
    return swept;
  }

  /** Channel holds that no live lead owns, released (design §7.10). */
  releaseOrphanHolds(): Promise<number> {
    return this.#calls.releaseOrphanHolds();
  }

  stats(): DispatcherStats {
    return structuredClone({
      ...this.#stats,
      inFlight: this.#supervisor.inFlight,
      outbox: this.#outbox.size,
      clock: { offsetMs: this.#synced?.offsetMs ?? 0, syncedAt: this.#synced?.syncedAt ?? null },
    });
  }

  on<K extends DispatcherEventName>(name: K, listener: (payload: DispatcherEvents[K]) => void): this {
    this.#events.on(name, listener);
    return this;
  }

  off<K extends DispatcherEventName>(name: K, listener: (payload: DispatcherEvents[K]) => void): this {
    this.#events.off(name, listener);
    return this;
  }

  #emit<K extends DispatcherEventName>(name: K, payload: DispatcherEvents[K]): void {
    // An "error" nobody listens to would throw (EventEmitter semantics): log it instead.
    if (name === "error" && this.#events.listenerCount("error") === 0) {
      const { where, error } = payload as DispatcherEvents["error"];
      this.logger.warn({ where, err: error }, "dispatcher error");
      return;
    }
    this.#events.emit(name, payload);
  }

  /**
   * A released line wakes the longest-waiting lead parked on a set with that number, through the
   * store: whichever process claims it next dials it. A wake is a hint: the woken lead meets every gate.
   */
  #wakeWaitersOnRelease(): void {
    this.on("channel:released", ({ numberId }) => {
      this.#lineCounts.changed();
      void this.#wake(numberId, 1);
    });
  }

  async #wake(numberId: string, count: number): Promise<number> {
    try {
      const woken = await this.store.wakeWaiters(numberId, count, this.clock.now());
      if (woken.length > 0) {
        this.#emit("channel:woken", { numberId, leadIds: woken });
        this.#supervisor.poke();
      }
      return woken.length;
    } catch (error) {
      this.#emit("error", { where: "wake waiters", error });
      return 0;
    }
  }

  /** Every set leads wait on, looked at for free lines; re-armed while any lead waits. */
  async #checkAllSets(): Promise<void> {
    try {
      const sets = await this.store.waitingSets();
      await Promise.all(sets.map((set) => this.#checkSet(set.numberIds)));
      if (sets.length > 0) this.#armSetCheck();
    } catch (error) {
      this.#emit("error", { where: "check waiting sets", error });
    }
  }

  /**
   * Wakes as many waiters of the set as its lines are free (all of them when none of its numbers is
   * AVAILABLE any more: they meet the number gate again). One check per set at a time; one asked for
   * meanwhile runs once after it.
   */
  async #checkSet(numberIds: string[]): Promise<void> {
    const key = numberIds.join("\n");
    const running = this.#setChecks.get(key);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: true };
    this.#setChecks.set(key, state);
    try {
      while (state.again) {
        state.again = false;
        const now = this.clock.now();
        const [numbers, used] = await Promise.all([
          Promise.all(numberIds.map((id) => this.store.number(id))),
          this.gates.inUse(numberIds, now),
        ]);
        const available = numbers.filter((n): n is OutboundNumber => n?.status === "AVAILABLE");
        if (available.length === 0) {
          while ((await this.#wake(numberIds[0] as string, 1000)) > 0) {}
          continue;
        }
        for (const n of available) {
          const free = n.maxChannels - (used.get(n.id) ?? 0);
          if (free > 0) await this.#wake(n.id, free);
        }
      }
    } catch (error) {
      this.#emit("error", { where: "check waiting set", error });
    } finally {
      this.#setChecks.delete(key);
    }
  }

  /** Looks at every waiting set `channelWait.maxParkSeconds` from now, unless a look is armed. */
  #armSetCheck(): void {
    if (this.#setTimer || !this.#started) return;
    this.#setTimer = this.clock.setTimer(
      this.clock.now() + this.config.channelWait.maxParkSeconds * 1000,
      () => {
        this.#setTimer = null;
        if (this.#started) void this.#checkAllSets();
      },
    );
  }

  /** stats().waiting: read from the store after parks, wakes and claims, one read at a time. */
  #countWaiting(): void {
    this.on("lead:parked", () => this.#refreshWaiting());
    this.on("channel:woken", () => this.#refreshWaiting());
    this.on("lead:finished", () => this.#stats.waiting > 0 && this.#refreshWaiting());
  }

  #refreshWaiting(): void {
    if (this.#waitingRead) {
      this.#waitingRead.again = true;
      return;
    }
    const state = { again: true };
    this.#waitingRead = state;
    void (async () => {
      try {
        while (state.again) {
          state.again = false;
          this.#stats.waiting = await this.store.waitingCount();
        }
      } catch (error) {
        this.#emit("error", { where: "count waiting", error });
      } finally {
        this.#waitingRead = null;
      }
    })();
  }

  /**
   * A gate store that can forget (Redis restarted empty) gets its live holds and rate-limit records
   * back from the lead store before its channel gate opens again (design §7.13).
   */
  #rebuildGatesFromStore(): void {
    if (!isRebuildable(this.gates)) return;
    const source = createGateStateSource({
      store: this.store,
      clock: this.clock,
      config: this.config,
      hmacSecret: this.#hmacSecret,
      keepMs: () => this.#ruleWindows.keepMs,
      cooling: () => this.#ruleWindows.cooling(),
    });
    this.gates.rebuildFrom(source, (report) => {
      if (report.kind === "failed") this.logger.warn({ err: report.error }, "gate store rebuild failed");
      else this.logger.info(report, "gate store rebuilt from the lead store");
    });
  }

  /**
   * New numbers, or a fresh Redis: rebuilt before the first acquire meets them. Never fails the
   * caller: with Redis down the first acquires start the rebuild instead.
   */
  async #prepareGates(): Promise<void> {
    if (!isRebuildable(this.gates)) return;
    await this.gates
      .ensureReady()
      .catch((error: unknown) => this.logger.warn({ err: error }, "gate store not prepared"));
  }

  /** Redis `TIME`, bounded like every store command (a dead store answers within the timeout). */
  #serverTime(gates: GateStore): Promise<number> {
    return (gates.serverTime as () => Promise<number>).call(gates);
  }

  /** Measures the clock offset; on failure the last one stays (the store is away). */
  async #syncClock(): Promise<void> {
    if (!this.#synced) return;
    const before = this.#synced.offsetMs;
    try {
      const offsetMs = await this.#synced.sync();
      if (Math.abs(offsetMs - before) >= 1000)
        this.logger.info({ offsetMs, before }, "clock offset to the gate store changed");
    } catch (error) {
      this.logger.warn({ err: error, offsetMs: before }, "clock sync failed: the last offset stays");
    }
  }

  /** Templates another process added: their rules keep the records they count (design §7.6). */
  async #refreshRuleWindows(): Promise<void> {
    await this.#ruleWindows
      .refresh(this.store)
      .catch((error: unknown) => this.#emit("error", { where: "rules in force", error }));
  }

  /** Every minute: the clock offset and the rules in force. */
  #armMinutely(): void {
    this.#minutelyTimer = this.clock.setTimer(this.clock.now() + MINUTE_MS, () => {
      Promise.all([this.#syncClock(), this.#refreshRuleWindows()]).finally(
        () => this.#started && this.#armMinutely(),
      );
    });
  }

  /** The periodic sweep (`sweepEveryMs`): finds what other, dead processes left behind. */
  #armSweep(): void {
    this.#sweepTimer = this.clock.setTimer(this.clock.now() + this.#sweepEveryMs, () => {
      Promise.all([this.sweep(), this.releaseOrphanHolds()])
        .catch((error: unknown) => this.#emit("error", { where: "sweep", error }))
        .finally(() => this.#started && this.#armSweep());
    });
  }

  #countEvents(): void {
    const s = this.#stats;
    const bump = (record: Record<string, number>, key: string) => {
      record[key] = (record[key] ?? 0) + 1;
    };
    this.on("lead:claimed", () => s.claimed++);
    this.on("lead:dialling", () => s.dials++);
    this.on("lead:dialled", () => s.placed++);
    this.on("lead:heldUnknown", () => s.heldUnknown++);
    this.on("lead:deferred", ({ reason }) => bump(s.deferred, reason));
    this.on("lead:finished", ({ outcome }) => bump(s.finished, outcome));
    this.on("gate:failOpen", () => s.gates.failOpen++);
    this.on("alert", () => s.alerts++);
    this.on("gate:result", ({ gate, verdict }) => {
      if (gate === "peek") s.gates.peek++;
      else if (gate === "record") verdict === "rejected" ? s.gates.recordRejected++ : s.gates.record++;
      else if (verdict === "exhausted") s.gates.channelExhausted++;
    });
  }
}

function emptyStats(): DispatcherStats {
  return {
    inFlight: 0,
    outbox: 0,
    claimed: 0,
    dials: 0,
    placed: 0,
    heldUnknown: 0,
    deferred: {},
    waiting: 0,
    finished: {},
    gates: { peek: 0, record: 0, recordRejected: 0, channelExhausted: 0, failOpen: 0 },
    clock: { offsetMs: 0, syncedAt: null },
    alerts: 0,
  };
}
