import type { LeadRecord } from "../../src/machines/ports.js";

/** A stored lead as the stores return it, SCHEDULED on its first claim unless `over` says otherwise. */
export function leadRecord(over: Partial<LeadRecord> = {}): LeadRecord {
  const id = over.id ?? "L1";
  return {
    id,
    phone: "+919800000001",
    templateId: "t1",
    status: "SCHEDULED",
    outcome: null,
    attempt: 0,
    notPlacedStreak: 0,
    claimSeq: 1,
    token: `${id}:1`,
    owner: null,
    leaseUntil: null,
    nextAttemptAt: 0,
    dueAt: 0,
    expiresAt: null,
    timeZone: null,
    cancelRequested: false,
    dial: null,
    payload: {},
    deferReason: null,
    precheckDefers: 0,
    parkedOn: null,
    parkedAt: null,
    ...over,
  };
}
