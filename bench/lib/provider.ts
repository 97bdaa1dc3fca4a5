/**
 * The instant simulated provider both sides dial through: every makeCall is placed at once and the
 * call lasts until the side ends it (at once). It is also the referee: the violations of the
 * guarantees (design §1) are counted here, from what the provider saw, not from what either side believes.
 */
import { RULE } from "./workload.js";

export interface Violations {
  /** Placed calls past the per-phone cap (the whole run lies inside one window). */
  overCap: number;
  /** makeCalls that found their number's lines all in use. */
  overChannels: number;
  /** makeCalls of a lead after its first. */
  duplicateDials: number;
}

export class ProviderLedger {
  readonly #maxChannels: Map<string, number>;
  readonly #dueAt: Map<string, number>;
  readonly #live = new Map<string, number>();
  readonly #callNumber = new Map<string, string>();
  readonly #perPhone = new Map<string, number>();
  readonly #perLead = new Map<string, number>();
  readonly latencies: number[] = [];
  /** Due time of each latency's lead, in the same order. */
  readonly dueTimes: number[] = [];
  readonly peakLines = new Map<string, number>();
  #overChannels = 0;
  #calls = 0;
  dials = 0;
  ended = 0;
  lastDialAt = 0;

  constructor(numbers: { id: string; maxChannels: number }[], dueAt: Map<string, number>) {
    this.#maxChannels = new Map(numbers.map((n) => [n.id, n.maxChannels]));
    this.#dueAt = dueAt;
  }

  /** A makeCall: placed at once. Returns the call id. */
  dial(leadId: string, phone: string, numberId: string): string {
    const at = Date.now();
    this.dials += 1;
    this.lastDialAt = at;
    const due = this.#dueAt.get(leadId) ?? at;
    this.latencies.push(at - due);
    this.dueTimes.push(due);
    this.#perLead.set(leadId, (this.#perLead.get(leadId) ?? 0) + 1);
    this.#perPhone.set(phone, (this.#perPhone.get(phone) ?? 0) + 1);
    const live = (this.#live.get(numberId) ?? 0) + 1;
    this.#live.set(numberId, live);
    if (live > (this.#maxChannels.get(numberId) ?? 0)) this.#overChannels += 1;
    if (live > (this.peakLines.get(numberId) ?? 0)) this.peakLines.set(numberId, live);
    const callId = `call-${++this.#calls}`;
    this.#callNumber.set(callId, numberId);
    return callId;
  }

  /** The call hung up: its line is free at the provider. */
  end(callId: string): void {
    const numberId = this.#callNumber.get(callId);
    if (numberId === undefined) return;
    this.#callNumber.delete(callId);
    this.#live.set(numberId, (this.#live.get(numberId) ?? 1) - 1);
    this.ended += 1;
  }

  violations(): Violations {
    let overCap = 0;
    for (const n of this.#perPhone.values()) overCap += Math.max(0, n - RULE.maxCalls);
    let duplicateDials = 0;
    for (const n of this.#perLead.values()) duplicateDials += n - 1;
    return { overCap, overChannels: this.#overChannels, duplicateDials };
  }
}

/** The slowest dials (due → makeCall) and when they were due, ms after the first due time. */
export function slowest(ledger: ProviderLedger, count: number): { dueAfterMs: number; latencyMs: number }[] {
  const first = Math.min(...ledger.dueTimes);
  return ledger.latencies
    .map((latencyMs, i) => ({ dueAfterMs: ledger.dueTimes[i] - first, latencyMs }))
    .sort((a, b) => b.latencyMs - a.latencyMs)
    .slice(0, count);
}
