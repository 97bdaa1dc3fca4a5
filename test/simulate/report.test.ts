import { describe, expect, it } from "vitest";
import {
  duplicateDials,
  lostLeads,
  maxConcurrentByNumber,
  maxPlacedPerPhoneInWindow,
} from "../../src/cli/simulate/report.js";
import type { SimDial } from "../../src/infra/providers/simulated.js";
import type { LeadRecord } from "../../src/machines/ports.js";

function dial(over: Partial<SimDial>): SimDial {
  return {
    leadId: "L1",
    attempt: 0,
    dialRef: "L1:1@0",
    numberId: "n1",
    to: "+919800000001",
    at: 0,
    resultAt: 80,
    result: "placed",
    callId: "sim-1",
    endsAt: 45_080,
    outcome: "ANSWERED",
    ...over,
  };
}

function stored(over: Partial<LeadRecord>): LeadRecord {
  return {
    id: "L1",
    phone: "+919800000001",
    templateId: "t1",
    status: "SCHEDULED",
    outcome: null,
    attempt: 0,
    notPlacedStreak: 0,
    claimSeq: 1,
    token: "L1:1",
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

describe("report invariants", () => {
  it("concurrency per number counts calls over [at, endsAt): a call starting as another ends does not overlap", () => {
    const dials = [
      dial({ at: 0, endsAt: 100 }),
      dial({ at: 100, endsAt: 200, leadId: "L2" }),
      dial({ at: 150, endsAt: 300, leadId: "L3" }),
      dial({ at: 0, endsAt: 500, numberId: "n2", leadId: "L4" }),
    ];
    expect(maxConcurrentByNumber(dials, ["n1", "n2", "n3"])).toEqual({ n1: 2, n2: 1, n3: 0 });
  });

  it("dials per phone count a half-open window: a call exactly W later starts a new window", () => {
    const at = (t: number, to = "+919800000001") => dial({ at: t, to });
    expect(maxPlacedPerPhoneInWindow([at(0), at(1000), at(2000)], 2000)).toBe(2);
    expect(maxPlacedPerPhoneInWindow([at(0), at(1000), at(1999)], 2000)).toBe(3);
    expect(maxPlacedPerPhoneInWindow([at(0), at(10, "+919800000002"), at(20)], 2000)).toBe(2);
    expect(maxPlacedPerPhoneInWindow([], 2000)).toBe(0);
  });

  it("dials per phone count one number as one phone however it is spelt", () => {
    const spellings = ["+919800000001", "+91 98000 00001", "+91-98000-00001", "+91/98000/00001"];
    const dials = spellings.map((to, i) => dial({ at: i * 10, to, leadId: `L${i + 1}` }));
    expect(maxPlacedPerPhoneInWindow(dials, 2000)).toBe(4);
    // A different number stays apart, whatever its spelling.
    expect(maxPlacedPerPhoneInWindow([...dials, dial({ at: 5, to: "+91 98000 00002" })], 2000)).toBe(4);
  });

  it("a duplicate dial is a second placed call for one (lead, attempt)", () => {
    const dials = [
      dial({ result: "notPlaced" }),
      dial({}),
      dial({ result: "unknown" }),
      dial({ attempt: 1 }),
      dial({ leadId: "L2" }),
      dial({}),
    ];
    expect(duplicateDials(dials)).toBe(1);
  });

  it("a lost lead is missing, or CLAIMED/DIALING with no live owner and no lease", () => {
    const leads = new Map<string, LeadRecord>([
      ["A", stored({ id: "A", status: "FINISHED", outcome: "ANSWERED" })],
      ["B", stored({ id: "B", status: "CLAIMED", owner: "simulate", leaseUntil: 10 })],
      ["C", stored({ id: "C", status: "DIALING", owner: null, leaseUntil: null })],
      ["D", stored({ id: "D", status: "CLAIMED", owner: "dead", leaseUntil: 99 })],
      ["E", stored({ id: "E", status: "PROCESSING" })],
    ]);
    expect(lostLeads(["A", "B", "C", "D", "E", "F"], leads, "simulate")).toBe(2); // C and F
  });
});
