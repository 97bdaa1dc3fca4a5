import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { z } from "zod";
import { Alerter } from "./actors/alerter.js";
import { createGateStateSource, isRebuildable } from "./actors/gate-rebuild.js";
import { parseDialRef } from "./actors/gates.js";
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
import { phoneKey } from "./infra/phone-key.js";
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

export interface DispatcherOptions {
  /** Validated; every field has a default (spec §6). */
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

export type CallEndResult =
  | { kind: "ended"; leadId: string; next: "finished" | "retry" }
  /** Already ended, or an end for an older dial of the lead: nothing freed. */
  | { kind: "duplicate"; leadId: string }
  /** Nobody dialled it: an orphan_call_end alert went out (throttled). */
  | { kind: "orphan" }
  /** The dial is still committing: the signal is kept and applied right after (spec §7.15). */
  | { kind: "pending"; leadId: string };

export interface DispatcherStats {
  inFlight: number;
  outbox: number;
  claimed: number;
  dials: number;
  placed: number;
  heldUnknown: number;
  deferred: Record<string, number>;
  finished: Record<string, number>;
  gates: { peek: number; record: number; recordRejected: number; channelExhausted: number; failOpen: number };
  alerts: number;
}

const pauseScopeSchema = z.union(
  [
    z.object({ global: z.literal(true) }).strict(),
    z.object({ resellerId: z.string().min(1).max(200) }).strict(),
    z.object({ templateId: z.string().min(1).max(200) }).strict(),
  ],
  { error: "must be { global: true }, { resellerId } or { templateId }" },
);

const leadIdSchema = z.string().min(1, "must not be empty").max(200);

const callEndSchema = z
  .object({
    callId: z.string().min(1).optional(),
    dialRef: z.string().min(1).optional(),
    outcome: z.string().min(1).max(50),
  })
  .strict()
  .refine((v) => v.callId !== undefined || v.dialRef !== undefined, {
    message: "needs callId or dialRef",
    path: ["callId"],
  });

/** Creates an embedded dispatcher. Nothing runs until `start()`. */
export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  return new Dispatcher(options);
}

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
  readonly #hmacSecret: string;
  readonly #seed: { numbers: OutboundNumber[]; templates: Template[]; blocked: string[] };
  readonly #stats: DispatcherStats;
  /** Per lead: when its held unknown dial expires, or its call has run too long (spec §7.15, §7.16). */
  readonly #deadlines = new Map<string, Timer>();
  #sweepTimer: Timer | null = null;
  readonly #sweepEveryMs: number;
  /** Leads waiting for a line: number → lead → due time (spec §7.11). */
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
    // Deadlines count from the dial row's time (spec §7.16), not from when the reply came.
    this.on("lead:heldUnknown", ({ leadId, dialRef }) =>
      this.#armDeadline(leadId, parseDialRef(dialRef).at + this.config.unknownDial.holdMinutes * 60_000),
    );
    this.on("lead:dialled", ({ leadId, dialRef }) =>
      this.#armDeadline(leadId, parseDialRef(dialRef).at + this.config.maxCallMinutes * 60_000),
    );
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
    for (const timer of this.#deadlines.values()) timer.cancel();
    this.#deadlines.clear();
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
  async callEnded(signal: { callId?: string; dialRef?: string; outcome: string }): Promise<CallEndResult> {
    const { callId, dialRef, outcome } = parseOrThrow(callEndSchema, signal, "callEnded");
    const lead = await this.store.findByDial({ callId, dialRef });
    if (!lead) {
      await this.#alerter.raise("orphan_call_end", "orphan", "A call ended that no lead dialled", {
        ref: callId ?? dialRef ?? "?",
      });
      return { kind: "orphan" };
    }
    const dial = lead.dial;
    const current = dial && (dial.callId === callId || dial.dialRef === dialRef);
    if (current && lead.status === "DIALING") return this.#applyAfterCommit(lead.id, signal);
    if (!current || lead.status !== "PROCESSING" || !dial) {
      if (!current && dialRef) await this.#recordLateEnd(lead, dialRef);
      return { kind: "duplicate", leadId: lead.id };
    }
    const now = this.clock.now();
    const retryAt = await this.#retryAt(lead, outcome, now);
    const token = lead.token as string;
    const settled = await this.store.settle(token, { kind: "ended", outcome, retryAt }, now);
    if (!settled) return { kind: "duplicate", leadId: lead.id };
    this.#deadlines.get(lead.id)?.cancel();
    this.#deadlines.delete(lead.id);
    await this.#releaseLine(dial.numberId, token);
    if (settled.status === "SCHEDULED") {
      this.#emit("lead:deferred", { leadId: lead.id, reason: "retry", at: retryAt ?? now });
    } else this.#emit("lead:finished", { leadId: lead.id, outcome: settled.outcome ?? outcome });
    this.#supervisor.poke();
    return { kind: "ended", leadId: lead.id, next: settled.status === "SCHEDULED" ? "retry" : "finished" };
  }

  /**
   * An end signal that overtook the reply to makeCall: tried again shortly, until the dial row says
   * placed or unknown (then it ends the call) or the dial can no longer be committing.
   */
  #applyAfterCommit(
    leadId: string,
    signal: { callId?: string; dialRef?: string; outcome: string },
  ): CallEndResult {
    const giveUpAt = this.clock.now() + this.config.dial.timeoutMs + this.config.claimLeaseMs;
    const retry = () => {
      this.callEnded(signal).then(
        (result) => {
          if (result.kind === "pending" && this.clock.now() < giveUpAt)
            this.clock.setTimer(this.clock.now() + 250, retry);
        },
        (error: unknown) => this.#emit("error", { where: `call end ${leadId}`, error }),
      );
    };
    this.clock.setTimer(this.clock.now() + 250, retry);
    return { kind: "pending", leadId };
  }

  /**
   * The end of an older dial of the lead (its unknown hold expired and the lead moved on): the call did
   * ring, so it counts against the phone's limit again; it frees nothing a newer dial holds (§7.15).
   */
  async #recordLateEnd(lead: LeadRecord, dialRef: string): Promise<void> {
    const { token, at } = parseDialRef(dialRef);
    if (token === lead.token || !Number.isFinite(at)) return;
    const template = await this.store.template(lead.templateId);
    const rules = template?.rateLimitRules ?? this.config.rateLimit.rules;
    const key = phoneKey(this.#hmacSecret, lead.phone);
    try {
      await this.gates.record(key, token, rules, at, false);
    } catch {
      this.#outbox.add({
        what: `record ${token}`,
        run: () => this.gates.record(key, token, rules, at, false),
      });
    }
  }

  /**
   * Store-driven clean-up, for this process's calls and those of processes that died:
   * - held unknown dials older than unknownDial.holdMinutes: line released, record undone, lead
   *   re-queued (FINISHED CANCELLED when a cancel was requested);
   * - calls with no end signal after maxCallMinutes: closed UNKNOWN and their line released.
   */
  async sweep(): Promise<{ unknownExpired: number; overdueCalls: number }> {
    const now = this.clock.now();
    let unknownExpired = 0;
    let overdueCalls = 0;
    for (const lead of await this.store.expiredUnknownDials(
      now - this.config.unknownDial.holdMinutes * 60_000,
    )) {
      const token = lead.token as string;
      if (!(await this.store.settle(token, { kind: "unknownExpired", at: now }, now))) continue;
      unknownExpired += 1;
      if (lead.dial) await this.#releaseLine(lead.dial.numberId, token);
      await this.#undoRecord(lead.phone, token);
      if (lead.cancelRequested) this.#emit("lead:finished", { leadId: lead.id, outcome: "CANCELLED" });
      else this.#emit("lead:deferred", { leadId: lead.id, reason: "unknownExpired", at: now });
    }
    for (const lead of await this.store.overdueCalls(now - this.config.maxCallMinutes * 60_000)) {
      const dial = lead.dial;
      if (!dial?.callId) continue;
      if ((await this.callEnded({ callId: dial.callId, outcome: "UNKNOWN" })).kind === "ended")
        overdueCalls += 1;
    }
    // Also how an idle process takes over the leads of a dead one: their claim leases ran out.
    this.#supervisor.poke();
    return { unknownExpired, overdueCalls };
  }

  /**
   * Channel holds that no live lead owns, released (spec §7.10): a process died between its acquire and
   * its dial, or between a call's end and its release. Holders are listed before the leads are read,
   * so a hold taken meanwhile belongs to a claim the read still sees.
   */
  async releaseOrphanHolds(): Promise<number> {
    const now = this.clock.now();
    const { numberIds } = await this.store.gateRebuildRows(now, null);
    const held = await Promise.all(
      numberIds.map(async (id) => ({ id, holders: await this.gates.listHolders(id, now) })),
    );
    if (held.every((n) => n.holders.length === 0)) return 0;
    const { claims, liveDials } = await this.store.gateRebuildRows(now, null);
    const owned = new Set([
      ...liveDials.map((d) => d.token),
      // A claim whose lease ran out only just may still be renewing: give it one more lease.
      ...claims.filter((c) => c.leaseUntil + this.config.claimLeaseMs > now).map((c) => c.token),
    ]);
    let released = 0;
    for (const { id, holders } of held) {
      for (const holder of holders) {
        if (owned.has(holder)) continue;
        if (await this.gates.release(id, holder)) {
          released += 1;
          this.#emit("channel:released", { numberId: id, holder });
        }
      }
    }
    return released;
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

  async #retryAt(lead: LeadRecord, outcome: string, now: number): Promise<number | undefined> {
    if (lead.cancelRequested) return undefined;
    const retry = (await this.store.template(lead.templateId))?.retry;
    if (!retry?.onOutcomes.includes(outcome) || lead.attempt + 1 >= retry.maxAttempts) return undefined;
    return now + retry.delaySeconds * 1000;
  }

  async #releaseLine(numberId: string, holder: string): Promise<void> {
    try {
      if (await this.gates.release(numberId, holder)) this.#emit("channel:released", { numberId, holder });
    } catch {
      this.#outbox.add({
        what: `release ${numberId} ${holder}`,
        run: () => this.gates.release(numberId, holder),
      });
    }
  }

  async #undoRecord(phone: string, token: string): Promise<void> {
    const key = phoneKey(this.#hmacSecret, phone);
    try {
      await this.gates.undo(key, token);
    } catch {
      this.#outbox.add({ what: `undo ${token}`, run: () => this.gates.undo(key, token) });
    }
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

  #armDeadline(leadId: string, at: number): void {
    this.#deadlines.get(leadId)?.cancel();
    this.#deadlines.set(
      leadId,
      this.clock.setTimer(at, () => {
        this.#deadlines.delete(leadId);
        this.sweep().catch((error: unknown) => this.#emit("error", { where: "sweep", error }));
      }),
    );
  }

  /**
   * A gate store that can forget (Redis restarted empty) gets its live holds and rate-limit records
   * back from the lead store before its channel gate opens again (spec §7.13).
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
