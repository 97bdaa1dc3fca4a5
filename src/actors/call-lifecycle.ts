import { z } from "zod";
import type { DispatcherEvents } from "../events.js";
import { largestWindowMs } from "../infra/calling-law.js";
import { type DispatcherConfig, parseOrThrow, text } from "../infra/config.js";
import { parseDialRef } from "../infra/dial-ref.js";
import { phoneKey } from "../infra/phone-key.js";
import type {
  CallStatus,
  Clock,
  DialInfo,
  DialResult,
  GateStore,
  LeadRecord,
  LeadStore,
  Provider,
  Template,
  Timer,
} from "../machines/ports.js";
import type { Alerter } from "./alerter.js";
import { releaseLine } from "./gates.js";
import type { Outbox } from "./outbox.js";
import type { RuleWindows } from "./rule-windows.js";

export type CallEndResult =
  | { kind: "ended"; leadId: string; next: "finished" | "retry" }
  /** Already ended, or an end for an older dial of the lead: nothing freed. */
  | { kind: "duplicate"; leadId: string }
  /** Nobody dialled it: an orphan_call_end alert went out (throttled). */
  | { kind: "orphan" }
  /**
   * The dial is still committing: the signal is kept and applied right after (design §7.15). No lead
   * yet for an end that carries only a call id: makeCall has not returned it; an orphan_call_end
   * alert goes out only once no dial can still be committing.
   */
  | { kind: "pending"; leadId: string | null };

export const callEndSchema = z
  .object({
    callId: text.min(1).optional(),
    dialRef: text.min(1).optional(),
    outcome: text.min(1).max(50),
  })
  .strict()
  .refine((v) => v.callId !== undefined || v.dialRef !== undefined, {
    message: "needs callId or dialRef",
    path: ["callId"],
  });

/** How long a call the provider still reports live is left before it is asked again. */
const LIVE_CALL_RECHECK_MS = 10 * 60_000;

type CallEndSignal = z.infer<typeof callEndSchema>;

/** An end signal kept for a dial that may still be committing: tried again until `until`. */
interface Pending {
  until: number;
  delayMs: number;
}

export interface CallLifecycleDeps {
  config: DispatcherConfig;
  store: LeadStore;
  gates: GateStore;
  clock: Clock;
  alerter: Alerter;
  outbox: Outbox;
  hmacSecret: string;
  /** By name: the sweep asks a provider that offers callStatus before closing a call UNKNOWN. */
  providers: ReadonlyMap<string, Provider>;
  emit: <K extends keyof DispatcherEvents>(name: K, payload: DispatcherEvents[K]) => void;
  /** Something became claimable. */
  poke: () => void;
  /** How long a phone's records are kept (every rule in force); the config's rules alone by default. */
  ruleWindows?: RuleWindows;
}

/**
 * A call's life after its dial committed (design §7.15, §7.16), handled from the store so that any
 * process may receive the end signal or find what a dead process left: call ends and the retry
 * policy, unknown dials whose hold expired, calls past maxCallMinutes, and orphan channel holds.
 */
export class CallLifecycle {
  readonly #d: CallLifecycleDeps;
  /** Per lead: when its held unknown dial expires, or its call has run too long. */
  readonly #deadlines = new Map<string, Timer>();
  /** Retries of end signals kept pending (§7.15), cancelled by stop(). */
  readonly #pending = new Set<Timer>();

  constructor(deps: CallLifecycleDeps) {
    this.#d = deps;
  }

  /** Deadlines count from the dial row's time (design §7.16), not from when the reply came. */
  watchUnknownDial(leadId: string, dialRef: string): void {
    this.#armDeadline(leadId, parseDialRef(dialRef).at + this.#d.config.unknownDial.holdMinutes * 60_000);
  }

  watchCall(leadId: string, dialRef: string): void {
    this.#armDeadline(leadId, parseDialRef(dialRef).at + this.#d.config.maxCallMinutes * 60_000);
  }

  stop(): void {
    for (const timer of this.#deadlines.values()) timer.cancel();
    this.#deadlines.clear();
    for (const timer of this.#pending) timer.cancel();
    this.#pending.clear();
  }

  /**
   * A call ended (from a provider callback, received by any process): finishes the lead or schedules
   * its retry, then frees its line exactly once. Duplicate and late signals free nothing. When the
   * store fails the end is also kept in the outbox and applied once the store is back (the rejection
   * still tells a webhook caller to have the provider retry: both are idempotent).
   */
  async callEnded(signal: { callId?: string; dialRef?: string; outcome: string }): Promise<CallEndResult> {
    const parsed = parseOrThrow(callEndSchema, signal, "callEnded");
    // Applied later by the outbox, the end keeps the time it was received.
    const receivedAt = this.#d.clock.now();
    try {
      return await this.#end(parsed, undefined, receivedAt);
    } catch (error) {
      this.#d.outbox.add({
        what: `call end ${parsed.dialRef ?? "by call id"}`,
        run: () => this.#end(parsed, undefined, receivedAt),
      });
      throw error;
    }
  }

  /** `pending`: set once the signal is kept, until when and how soon it is tried again. */
  async #end(signal: CallEndSignal, pending?: Pending, receivedAt?: number): Promise<CallEndResult> {
    const { callId, dialRef, outcome } = signal;
    // The dialRef first: it names one dial, while a provider may hand out a call id twice (§7.1).
    const lead = await this.#d.store.findByDial({ callId, dialRef });
    if (!lead) {
      // Only the call id: its lead learns it when makeCall returns, which may be after this end. Most
      // such ends are true orphans, so the lookups back off.
      if (!dialRef && this.#keepPending(signal, pending, true)) return { kind: "pending", leadId: null };
      await this.#d.alerter.raise("orphan_call_end", "orphan", "A call ended that no lead dialled", {
        ref: callId ?? dialRef ?? "?",
      });
      return { kind: "orphan" };
    }
    const dial = lead.dial;
    const current = dial !== null && (dialRef ? dial.dialRef === dialRef : dial.callId === callId);
    if (current && lead.status === "DIALING") {
      this.#keepPending(signal, pending, false);
      return { kind: "pending", leadId: lead.id };
    }
    if (!current || lead.status !== "PROCESSING" || !dial) {
      await this.#lateEnd(lead, current ? dial : null, dialRef, outcome, receivedAt ?? this.#d.clock.now());
      return { kind: "duplicate", leadId: lead.id };
    }
    const now = receivedAt ?? this.#d.clock.now();
    const template = await this.#templateOf(lead);
    await this.#markEnd(lead, template, outcome, now);
    const retryAt = this.#retryAt(lead, template, outcome, now);
    const token = lead.token as string;
    const settled = await this.#d.store.settle(token, { kind: "ended", outcome, retryAt }, now);
    if (!settled) return { kind: "duplicate", leadId: lead.id };
    this.#deadlines.get(lead.id)?.cancel();
    this.#deadlines.delete(lead.id);
    await this.#releaseLine(dial.numberId, token);
    if (settled.status === "SCHEDULED") {
      this.#d.emit("lead:deferred", { leadId: lead.id, reason: "retry", at: retryAt ?? now });
    } else this.#d.emit("lead:finished", { leadId: lead.id, outcome: settled.outcome ?? outcome });
    this.#d.poke();
    return { kind: "ended", leadId: lead.id, next: settled.status === "SCHEDULED" ? "retry" : "finished" };
  }

  /** The lead's template: from the store's cache when it has it. */
  async #templateOf(lead: LeadRecord): Promise<Template | null> {
    return this.#d.store.cachedTemplate?.(lead.templateId) ?? (await this.#d.store.template(lead.templateId));
  }

  /**
   * A cooldown in force lists the outcome (design §7.6): the phone's mark is written before the lead
   * settles, so no lead can dial the phone after the end without meeting it. The lead's own template
   * counts as in force even before this process's minutely read of the rules has seen it. When the
   * gate store fails the outbox writes the mark later (it keeps the end's own time).
   */
  async #markEnd(lead: LeadRecord, template: Template | null, outcome: string, at: number): Promise<void> {
    if (template) this.#d.ruleWindows?.widenTemplate(template);
    const keepMs = this.#d.ruleWindows?.coolingMs(outcome) ?? 0;
    if (keepMs === 0) return;
    const key = phoneKey(this.#d.hmacSecret, lead.phone);
    const mark = () => this.#d.gates.markEnd(key, outcome, at, keepMs);
    await mark().catch(() => this.#d.outbox.add({ what: `cooldown mark ${outcome}`, run: mark }));
  }

  /**
   * An end for a dial that is no live call of its lead: an older dial, or the lead's own dial whose
   * unknown hold expired before the end came (design §7.15, §7.16). The call did ring: the first end of
   * that dial is written on its row (no settlement does it; a gate rebuild reads it, §7.13), counts
   * against the phone's limit again and starts the cooldowns (§7.6). A repeated end changes nothing,
   * and neither does one for a dial that ended normally. When the store fails, the whole end is applied
   * later by the outbox (callEnded), with its own time.
   */
  async #lateEnd(
    lead: LeadRecord,
    current: DialInfo | null,
    dialRef: string | undefined,
    outcome: string,
    at: number,
  ): Promise<void> {
    const ref = current ? (current.unknown ? current.dialRef : undefined) : dialRef;
    if (!ref || !(await this.#d.store.endDial(ref, outcome, at))) return;
    await this.#recordLateEnd(lead, ref);
    await this.#markEnd(lead, await this.#templateOf(lead), outcome, at);
  }

  /**
   * An end signal that overtook the reply to makeCall: tried again shortly, until its lead's dial row
   * says placed or unknown (then it ends the call) or no dial can still be committing. False once
   * that time has passed.
   */
  #keepPending(signal: CallEndSignal, pending: Pending | undefined, backOff: boolean): boolean {
    const now = this.#d.clock.now();
    const until = pending?.until ?? now + this.#d.config.dial.timeoutMs + this.#d.config.claimLeaseMs;
    if (now >= until) return false;
    const delayMs = pending ? Math.min(5000, pending.delayMs * (backOff ? 2 : 1)) : 250;
    const timer = this.#d.clock.setTimer(now + delayMs, () => {
      this.#pending.delete(timer);
      this.#end(signal, { until, delayMs }).catch((error: unknown) => {
        this.#d.emit("error", { where: "call end", error });
        this.#d.outbox.add({ what: "call end", run: () => this.#end(signal) });
      });
    });
    this.#pending.add(timer);
    return true;
  }

  /**
   * The provider's reply to a dial that had already become unknown at dial.timeoutMs, applied like a
   * late end signal: while the dial is held nothing changes (its end signal closes it); once its hold
   * expired, a placed reply records the call again, since it did ring (§7.15). A reply that says not
   * placed changes nothing: the hold runs its course.
   */
  async lateDialResult(dialRef: string, result: DialResult): Promise<void> {
    if (result.kind !== "placed") return;
    const lead = await this.#d.store.findByDial({ dialRef });
    if (!lead || (lead.dial?.dialRef === dialRef && lead.status === "PROCESSING")) return;
    await this.#recordLateEnd(lead, dialRef);
  }

  /**
   * A dial that rang after its unknown hold expired (a late end, or a late placed reply): the call
   * counts against the phone's limit again (its record was undone with the hold); it frees nothing a
   * newer dial holds (§7.15).
   */
  async #recordLateEnd(lead: LeadRecord, dialRef: string): Promise<void> {
    const { token, at } = parseDialRef(dialRef);
    if (!Number.isFinite(at)) return;
    const template = await this.#d.store.template(lead.templateId);
    const rules = template?.rateLimitRules ?? this.#d.config.rateLimit.rules;
    const key = phoneKey(this.#d.hmacSecret, lead.phone);
    const options = {
      keepMs: this.#d.ruleWindows?.keepMs ?? largestWindowMs(this.#d.config.rateLimit.rules),
      marginMs: this.#d.config.rateLimit.marginMs,
    };
    try {
      await this.#d.gates.record(key, token, rules, at, false, options);
    } catch {
      this.#d.outbox.add({
        what: `record ${token}`,
        run: () => this.#d.gates.record(key, token, rules, at, false, options),
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
    const now = this.#d.clock.now();
    let unknownExpired = 0;
    let overdueCalls = 0;
    for (const lead of await this.#d.store.expiredUnknownDials(
      now - this.#d.config.unknownDial.holdMinutes * 60_000,
    )) {
      const token = lead.token as string;
      if (!(await this.#d.store.settle(token, { kind: "unknownExpired", at: now }, now))) continue;
      unknownExpired += 1;
      if (lead.dial) await this.#releaseLine(lead.dial.numberId, token);
      await this.#undoRecord(lead.phone, token);
      if (lead.cancelRequested) this.#d.emit("lead:finished", { leadId: lead.id, outcome: "CANCELLED" });
      else this.#d.emit("lead:deferred", { leadId: lead.id, reason: "unknownExpired", at: now });
    }
    for (const lead of await this.#d.store.overdueCalls(now - this.#d.config.maxCallMinutes * 60_000)) {
      const dial = lead.dial;
      if (!dial) continue;
      const status = await this.#callStatus(dial.numberId, dial.callId);
      if (status.state === "live") {
        // Still up at the provider: its line stays held; asked again later.
        this.#armDeadline(lead.id, now + LIVE_CALL_RECHECK_MS);
        continue;
      }
      const outcome = status.state === "ended" ? status.outcome : "UNKNOWN";
      // By dialRef: every dial has one, and a call id may be missing or have been reused (§7.1).
      if ((await this.#end({ dialRef: dial.dialRef, outcome })).kind === "ended") overdueCalls += 1;
    }
    // Also how an idle process takes over the leads of a dead one: their claim leases ran out.
    this.#d.poke();
    return { unknownExpired, overdueCalls };
  }

  /**
   * Channel holds that no live lead owns, released (design §7.10): a process died between its acquire and
   * its dial, or between a call's end and its release. Holders are listed before the leads are read,
   * so a hold taken meanwhile belongs to a claim the read still sees.
   */
  async releaseOrphanHolds(): Promise<number> {
    const now = this.#d.clock.now();
    const { numberIds } = await this.#d.store.gateRebuildRows(now, null);
    const held = await Promise.all(
      numberIds.map(async (id) => ({ id, holders: await this.#d.gates.listHolders(id, now) })),
    );
    if (held.every((n) => n.holders.length === 0)) return 0;
    const { claims, liveDials } = await this.#d.store.gateRebuildRows(now, null);
    const owned = new Set([
      ...liveDials.map((d) => d.token),
      // A claim whose lease ran out only just may still be renewing: give it one more lease.
      ...claims.filter((c) => c.leaseUntil + this.#d.config.claimLeaseMs > now).map((c) => c.token),
    ]);
    let released = 0;
    for (const { id, holders } of held) {
      for (const holder of holders) {
        if (owned.has(holder)) continue;
        if (await this.#d.gates.release(id, holder)) {
          released += 1;
          this.#d.emit("channel:released", { numberId: id, holder });
        }
      }
    }
    return released;
  }

  /**
   * What the provider says of a call past maxCallMinutes (design §7.19), when it offers callStatus.
   * Unknown without a call id, without the method, or when asking fails: then the call is closed
   * UNKNOWN as before.
   */
  async #callStatus(numberId: string, callId: string | null): Promise<CallStatus> {
    if (!callId) return { state: "unknown" };
    try {
      const number = await this.#d.store.number(numberId);
      const provider = number && this.#d.providers.get(number.provider);
      if (!provider?.callStatus) return { state: "unknown" };
      const controller = new AbortController();
      let timer: Timer | undefined;
      // A provider that ignores its signal still gets no longer than a dial.
      const timeout = new Promise<CallStatus>((resolve) => {
        timer = this.#d.clock.setTimer(this.#d.clock.now() + this.#d.config.dial.timeoutMs, () => {
          controller.abort();
          resolve({ state: "unknown" });
        });
      });
      try {
        return await Promise.race([provider.callStatus(callId, controller.signal), timeout]);
      } finally {
        timer?.cancel();
      }
    } catch (error) {
      this.#d.emit("error", { where: `callStatus ${numberId}`, error });
      return { state: "unknown" };
    }
  }

  #retryAt(lead: LeadRecord, template: Template | null, outcome: string, now: number): number | undefined {
    if (lead.cancelRequested) return undefined;
    const retry = template?.retry;
    if (!retry?.onOutcomes.includes(outcome) || lead.attempt + 1 >= retry.maxAttempts) return undefined;
    return now + retry.delaySeconds * 1000;
  }

  #releaseLine(numberId: string, holder: string): Promise<void> {
    return releaseLine(this.#d, numberId, holder);
  }

  async #undoRecord(phone: string, token: string): Promise<void> {
    const key = phoneKey(this.#d.hmacSecret, phone);
    try {
      await this.#d.gates.undo(key, token);
    } catch {
      this.#d.outbox.add({ what: `undo ${token}`, run: () => this.#d.gates.undo(key, token) });
    }
  }

  #armDeadline(leadId: string, at: number): void {
    this.#deadlines.get(leadId)?.cancel();
    this.#deadlines.set(
      leadId,
      this.#d.clock.setTimer(at, () => {
        this.#deadlines.delete(leadId);
        this.sweep().catch((error: unknown) => this.#d.emit("error", { where: "sweep", error }));
      }),
    );
  }
}
