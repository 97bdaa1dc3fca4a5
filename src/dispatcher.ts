import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { z } from "zod";
import { Alerter } from "./actors/alerter.js";
import { type CallEndResult, CallLifecycle } from "./actors/call-lifecycle.js";
import { createGateStateSource } from "./actors/gate-rebuild.js";
import { PoolLineCounts } from "./actors/gates.js";
import { createLeadRunner } from "./actors/lead-actor.js";
import { Outbox } from "./actors/outbox.js";
import { Supervisor } from "./actors/supervisor.js";
import type { DispatcherEventName, DispatcherEvents } from "./events.js";
import { LogAlertSink } from "./infra/alerts/log-sink.js";
import { SystemClock } from "./infra/clock.js";
import {
  configSchema,
  type DispatcherConfig,
  type DispatcherConfigInput,
  leadSchema,
  numberSchema,
  parseOrThrow,
  templateSchema,
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

const pauseScopeSchema = z.union(
  [
    z.object({ global: z.literal(true) }).strict(),
    z.object({ resellerId: z.string().min(1).max(200) }).strict(),
    z.object({ templateId: z.string().min(1).max(200) }).strict(),
  ],
  { error: "must be { global: true }, { resellerId } or { templateId }" },
);

const leadIdSchema = z.string().min(1, "must not be empty").max(200);

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
  readonly #sweepEveryMs: number;
  /** Leads waiting for a line: number → lead → due time (design §7.11). */
  readonly #waiters = new Map<string, Map<string, number>>();
  #started = false;

  constructor(options: DispatcherOptions) {
    this.config = parseOrThrow(configSchema, options.config ?? {}, "DispatcherConfig");
    this.#seed = {
      numbers: (options.numbers ?? []).map((n, i) => parseOrThrow(numberSchema, n, `numbers[${i}]`)),
      templates: (options.templates ?? []).map((t, i) => parseOrThrow(templateSchema, t, `templates[${i}]`)),
      blocked: options.blockedPhones ?? [],
    };
    this.clock = options.clock ?? new SystemClock();
    this.logger = options.logger ?? createLogger();
    this.store = options.leadStore ?? new MemoryLeadStore();
    this.gates = options.gateStore ?? new MemoryGateStore();
    this.#hmacSecret = options.hmacSecret ?? randomUUID();
    const preDialChecks = options.preDialChecks ?? [];
    preDialChecks.forEach((check, i) => {
      if (typeof check !== "function")
        throw new TypeError(`DispatcherOptions.preDialChecks[${i}] must be a function, got ${typeof check}`);
    });
    this.#events.setMaxListeners(100);
    this.#stats = emptyStats();
    this.#countEvents();

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
    const run = createLeadRunner({
      config: this.config,
      store: this.store,
      gates: this.gates,
      providers: new Map((options.providers ?? []).map((p) => [p.name, p])),
      clock: this.clock,
      outbox: this.#outbox,
      hmacSecret: this.#hmacSecret,
      random: options.random ?? Math.random,
      emit,
      alerter: this.#alerter,
      logger: this.logger,
      preDialChecks,
      lineCounts: this.#lineCounts,
    });
    this.#supervisor = new Supervisor({
      store: this.store,
      clock: this.clock,
      owner: options.owner ?? `dialgate-${process.pid}-${randomUUID().slice(0, 8)}`,
      concurrency: this.config.concurrency,
      claimLeaseMs: this.config.claimLeaseMs,
      drainTimeoutMs: this.config.drainTimeoutMs,
      run,
      onError,
      onClaimed: (lead) => emit("lead:claimed", { leadId: lead.id, token: lead.token as string }),
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
      emit,
      poke: () => this.#supervisor.poke(),
    });
    this.on("lead:heldUnknown", ({ leadId, dialRef }) => this.#calls.watchUnknownDial(leadId, dialRef));
    this.on("lead:dialled", ({ leadId, dialRef }) => this.#calls.watchCall(leadId, dialRef));
    this.#wakeWaitersOnRelease();
    this.#rebuildGatesFromStore();
  }

  /** Seeds numbers, templates and the block list given in the options, then starts claiming. */
  async start(): Promise<void> {
    if (this.#started) return;
    await this.store.upsertNumbers(this.#seed.numbers);
    // A restart with edited windows moves the parked leads like a live upsert does.
    await this.#upsertTemplates(this.#seed.templates);
    await this.store.block(this.#seed.blocked);
    await this.#prepareGates();
    this.#started = true;
    this.#supervisor.start();
    if (this.#sweepEveryMs > 0) this.#armSweep();
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

  async upsertNumbers(numbers: unknown[]): Promise<void> {
    await this.store.upsertNumbers(numbers.map((n, i) => parseOrThrow(numberSchema, n, `numbers[${i}]`)));
    await this.#prepareGates();
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

  /** Expired unknown dials re-queued, overdue calls closed UNKNOWN (see CallLifecycle.sweep). */
  sweep(): Promise<{ unknownExpired: number; overdueCalls: number }> {
    return this.#calls.sweep();
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
   * A released line wakes one lead that found its number full, instead of leaving the line idle until
   * that lead's backoff ends. A wake is a hint: the woken lead still meets every gate.
   */
  #wakeWaitersOnRelease(): void {
    this.on("channel:waiting", ({ leadId, numberId, dueAt }) => {
      const waiting = this.#waiters.get(numberId) ?? new Map<string, number>();
      this.#waiters.set(numberId, waiting.set(leadId, dueAt));
    });
    this.on("lead:claimed", ({ leadId }) => {
      for (const waiting of this.#waiters.values()) waiting.delete(leadId);
    });
    this.on("channel:released", ({ numberId }) => {
      this.#lineCounts.changed();
      const waiting = this.#waiters.get(numberId);
      const pool = waiting?.size ? [waiting] : [...this.#waiters.values()];
      let oldest: [string, number] | undefined;
      for (const w of pool) for (const entry of w) if (!oldest || entry[1] < oldest[1]) oldest = entry;
      if (!oldest) return;
      const [leadId] = oldest;
      for (const w of this.#waiters.values()) w.delete(leadId);
      this.store.expedite(leadId, this.clock.now()).then(
        (woken) => woken && this.#supervisor.poke(),
        (error: unknown) => this.#emit("error", { where: "wake waiter", error }),
      );
    });
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
    finished: {},
    gates: { peek: 0, record: 0, recordRejected: 0, channelExhausted: 0, failOpen: 0 },
    alerts: 0,
  };
}
