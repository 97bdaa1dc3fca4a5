import { z } from "zod";
import type { DispatcherEvents } from "../events.js";
import { type DispatcherConfig, parseOrThrow } from "../infra/config.js";
import { phoneKey } from "../infra/phone-key.js";
import type { Clock, GateStore, LeadRecord, LeadStore, Timer } from "../machines/ports.js";
import type { Alerter } from "./alerter.js";
import { parseDialRef } from "./gates.js";
import type { Outbox } from "./outbox.js";

export type CallEndResult =
  | { kind: "ended"; leadId: string; next: "finished" | "retry" }
  /** Already ended, or an end for an older dial of the lead: nothing freed. */
  | { kind: "duplicate"; leadId: string }
  /** Nobody dialled it: an orphan_call_end alert went out (throttled). */
  | { kind: "orphan" }
  /** The dial is still committing: the signal is kept and applied right after (design §7.15). */
  | { kind: "pending"; leadId: string };

export const callEndSchema = z
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

export interface CallLifecycleDeps {
  config: DispatcherConfig;
  store: LeadStore;
  gates: GateStore;
  clock: Clock;
  alerter: Alerter;
  outbox: Outbox;
  hmacSecret: string;
  emit: <K extends keyof DispatcherEvents>(name: K, payload: DispatcherEvents[K]) => void;
  /** Something became claimable. */
  poke: () => void;
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
  }

  /**
   * A call ended (from a provider callback, received by any process): finishes the lead or schedules
   * its retry, then frees its line exactly once. Duplicate and late signals free nothing.
   */
  async callEnded(signal: { callId?: string; dialRef?: string; outcome: string }): Promise<CallEndResult> {
    const { callId, dialRef, outcome } = parseOrThrow(callEndSchema, signal, "callEnded");
    const lead = await this.#d.store.findByDial({ callId, dialRef });
    if (!lead) {
      await this.#d.alerter.raise("orphan_call_end", "orphan", "A call ended that no lead dialled", {
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
    const now = this.#d.clock.now();
    const retryAt = await this.#retryAt(lead, outcome, now);
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

  /**
   * An end signal that overtook the reply to makeCall: tried again shortly, until the dial row says
   * placed or unknown (then it ends the call) or the dial can no longer be committing.
   */
  #applyAfterCommit(
    leadId: string,
    signal: { callId?: string; dialRef?: string; outcome: string },
  ): CallEndResult {
    const giveUpAt = this.#d.clock.now() + this.#d.config.dial.timeoutMs + this.#d.config.claimLeaseMs;
    const retry = () => {
      this.callEnded(signal).then(
        (result) => {
          if (result.kind === "pending" && this.#d.clock.now() < giveUpAt)
            this.#d.clock.setTimer(this.#d.clock.now() + 250, retry);
        },
        (error: unknown) => this.#d.emit("error", { where: `call end ${leadId}`, error }),
      );
    };
    this.#d.clock.setTimer(this.#d.clock.now() + 250, retry);
    return { kind: "pending", leadId };
  }

  /**
   * The end of an older dial of the lead (its unknown hold expired and the lead moved on): the call did
   * ring, so it counts against the phone's limit again; it frees nothing a newer dial holds (§7.15).
   */
  async #recordLateEnd(lead: LeadRecord, dialRef: string): Promise<void> {
    const { token, at } = parseDialRef(dialRef);
    if (token === lead.token || !Number.isFinite(at)) return;
    const template = await this.#d.store.template(lead.templateId);
    const rules = template?.rateLimitRules ?? this.#d.config.rateLimit.rules;
    const key = phoneKey(this.#d.hmacSecret, lead.phone);
    try {
      await this.#d.gates.record(key, token, rules, at, false);
    } catch {
      this.#d.outbox.add({
        what: `record ${token}`,
        run: () => this.#d.gates.record(key, token, rules, at, false),
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
      if (!dial?.callId) continue;
      if ((await this.callEnded({ callId: dial.callId, outcome: "UNKNOWN" })).kind === "ended")
        overdueCalls += 1;
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

  async #retryAt(lead: LeadRecord, outcome: string, now: number): Promise<number | undefined> {
    if (lead.cancelRequested) return undefined;
    const retry = (await this.#d.store.template(lead.templateId))?.retry;
    if (!retry?.onOutcomes.includes(outcome) || lead.attempt + 1 >= retry.maxAttempts) return undefined;
    return now + retry.delaySeconds * 1000;
  }

  async #releaseLine(numberId: string, holder: string): Promise<void> {
    try {
      if (await this.#d.gates.release(numberId, holder))
        this.#d.emit("channel:released", { numberId, holder });
    } catch {
      this.#d.outbox.add({
        what: `release ${numberId} ${holder}`,
        run: () => this.#d.gates.release(numberId, holder),
      });
    }
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
