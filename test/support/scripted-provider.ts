/**
 * A provider whose answers the test decides, and which counts every makeCall: the ground truth for
 * "makeCall never runs" and "exactly k dial".
 */
import type { Clock, DialRequest, DialResult, Provider } from "../../src/machines/ports.js";

export interface ScriptedCall {
  req: DialRequest;
  at: number;
  result: DialResult | "threw" | null;
}

/** An answer: a result, a throw (nothing sent), optionally after a virtual latency. */
export type Answer = DialResult | { throws: string } | { latencyMs: number; result: DialResult };

export class ScriptedProvider implements Provider {
  readonly name: string;
  readonly calls: ScriptedCall[] = [];
  #next: Answer[] = [];
  #callIds = 0;

  constructor(
    private readonly clock: Clock,
    /** The answer when nothing is queued: placed with a fresh call id. */
    private readonly fallback: (req: DialRequest) => Answer = () => ({
      kind: "placed",
      callId: `call-${++this.#callIds}`,
    }),
    name = "sim",
  ) {
    this.name = name;
  }

  /** Queues answers for the next makeCalls, whatever lead they are for. */
  answer(...answers: Answer[]): this {
    this.#next.push(...answers);
    return this;
  }

  callsOf(leadId: string): ScriptedCall[] {
    return this.calls.filter((c) => c.req.leadId === leadId);
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    const call: ScriptedCall = { req, at: this.clock.now(), result: null };
    this.calls.push(call);
    let answer = this.#next.shift() ?? this.fallback(req);
    if ("latencyMs" in answer) {
      const { latencyMs, result } = answer;
      await new Promise<void>((resolve) => this.clock.setTimer(this.clock.now() + latencyMs, resolve));
      answer = result;
    }
    if ("throws" in answer) {
      call.result = "threw";
      throw new Error(answer.throws);
    }
    call.result = answer;
    return answer;
  }
}
