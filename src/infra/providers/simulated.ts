import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";

export const SIM_RESULTS = ["placed", "notPlaced", "throttled", "unknown", "throw", "rejected"] as const;
export type SimResult = (typeof SIM_RESULTS)[number];

/** One planned answer of the simulated provider (simulate.md `provider.default` / `perLead`). */
export const simPlanSchema = z
  .object({
    result: z.enum(SIM_RESULTS),
    latencyMs: z.number().min(0).optional(),
    callSeconds: z.number().min(0).optional(),
    /** Free-form call outcome, as `callEnded` accepts it. */
    outcome: z.string().min(1).max(50).optional(),
    retryAfterSeconds: z.number().min(0).optional(),
  })
  .strict();
export type SimPlan = z.output<typeof simPlanSchema>;

/** Every makeCall as the provider saw it: the ground truth the invariants are measured on. */
export interface SimDial {
  leadId: string;
  attempt: number;
  dialRef: string;
  numberId: string;
  to: string;
  at: number;
  resultAt: number | null;
  result: SimResult | null;
  callId: string | null;
  /** When a placed call ends (hangs up), for concurrency per number. */
  endsAt: number | null;
  outcome: string | null;
}

export interface SimulatedProviderOptions {
  clock: Clock;
  name?: string;
  default?: SimPlan;
  /** Answers by the lead's dial sequence (1st, 2nd, … makeCall), then `default`. */
  perLead?: Record<string, SimPlan[]>;
  /** True while the provider is down: every makeCall hangs until the dispatcher's timeout. */
  isDown?: (now: number) => boolean;
  /** Called when a placed call ends: wire it to `dispatcher.callEnded`. */
  onCallEnd?: (end: { callId: string; dialRef: string; outcome: string }) => void;
}

const DEFAULT_PLAN: Required<Omit<SimPlan, "retryAfterSeconds">> = {
  result: "placed",
  latencyMs: 80,
  callSeconds: 45,
  outcome: "ANSWERED",
};

/** A telephony provider on the dispatcher's clock: latency, outcomes, call lengths and end events. */
export class SimulatedProvider implements Provider {
  readonly name: string;
  readonly dials: SimDial[] = [];
  #o: SimulatedProviderOptions;
  #seqByLead = new Map<string, number>();
  #calls = 0;
  /** Call ids are unique across processes, as a real provider's are. */
  readonly #callIdPrefix = `sim-${randomUUID().slice(0, 8)}-`;

  constructor(options: SimulatedProviderOptions) {
    this.#o = options;
    this.name = options.name ?? "sim";
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    const { clock } = this.#o;
    const seq = this.#seqByLead.get(req.leadId) ?? 0;
    this.#seqByLead.set(req.leadId, seq + 1);
    const plan = { ...DEFAULT_PLAN, ...this.#o.default, ...this.#o.perLead?.[req.leadId]?.[seq] };
    const dial: SimDial = {
      leadId: req.leadId,
      attempt: req.attempt,
      dialRef: req.dialRef,
      numberId: req.numberId,
      to: req.to,
      at: clock.now(),
      resultAt: null,
      result: null,
      callId: null,
      endsAt: null,
      outcome: null,
    };
    this.dials.push(dial);
    const down = this.#o.isDown?.(dial.at) ?? false;
    const answered = await this.#after(down ? Number.POSITIVE_INFINITY : plan.latencyMs, req.signal);
    dial.resultAt = clock.now();
    if (!answered) {
      dial.result = "unknown"; // the request went out and no reply came back
      return { kind: "unknown", reason: "timeout" };
    }
    dial.result = plan.result;
    switch (plan.result) {
      case "placed":
        return this.#ring(dial, plan.callSeconds, plan.outcome);
      case "notPlaced":
        return { kind: "notPlaced", reason: "simulated refusal" };
      case "throttled":
        return { kind: "throttled", retryAfterSeconds: plan.retryAfterSeconds, reason: "simulated 429" };
      case "unknown":
        return { kind: "unknown", reason: "simulated lost reply" };
      case "rejected":
        return { kind: "rejected", reason: "simulated invalid destination" };
      case "throw":
        throw new Error("simulated provider error before sending");
    }
  }

  #ring(dial: SimDial, callSeconds: number, outcome: string): DialResult {
    const { clock } = this.#o;
    const callId = `${this.#callIdPrefix}${++this.#calls}`;
    dial.callId = callId;
    dial.endsAt = clock.now() + callSeconds * 1000;
    dial.outcome = outcome;
    clock.setTimer(dial.endsAt, () => this.#o.onCallEnd?.({ callId, dialRef: dial.dialRef, outcome }));
    return { kind: "placed", callId };
  }

  /** Resolves true after `ms` on the clock, false if the dispatcher aborts first. */
  #after(ms: number, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const timer = Number.isFinite(ms)
        ? this.#o.clock.setTimer(this.#o.clock.now() + ms, () => done(true))
        : null;
      const onAbort = () => done(false);
      const done = (answered: boolean) => {
        timer?.cancel();
        signal.removeEventListener("abort", onAbort);
        resolve(answered);
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
