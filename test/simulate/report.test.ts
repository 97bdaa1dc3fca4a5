import { describe, expect, it } from "vitest";
import type { SimulationRun } from "../../src/cli/simulate/engine.js";
import {
  buildReport,
  duplicateDials,
  lostLeads,
  maxConcurrentByNumber,
  maxPlacedPerPhoneInWindow,
} from "../../src/cli/simulate/report.js";
import { parseScenario, type ScenarioInput } from "../../src/cli/simulate/scenario.js";
import { violations } from "../../src/cli/simulate/summary.js";
import type { SimDial } from "../../src/infra/providers/simulated.js";
import type { LeadRecord } from "../../src/machines/ports.js";
import { leadRecord } from "../support/lead-record.js";

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

const stored = leadRecord;

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

const HOUR = 3_600_000;
const START = Date.parse("2026-01-01T00:00:00Z");

/**
 * A finished run built by hand: config rule 7 per hour; t1 without rules of its own, t2 with a
 * 3-per-24 h rule (a Florida-style cap). `calls` are [leadId, templateId, hour, spelling of the phone].
 */
function runOf(calls: [string, string, number, string?][], over: Partial<ScenarioInput> = {}): SimulationRun {
  const scenario = parseScenario({
    config: { rateLimit: { rules: [{ maxCalls: 7, windowSeconds: 3600 }] } },
    numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 2, pool: true }],
    templates: [
      { id: "t1", resellerId: "r1" },
      { id: "t2", resellerId: "r1", rateLimitRules: [{ maxCalls: 3, windowSeconds: 86_400 }] },
    ],
    leads: calls.map(([id, templateId, , phone = "+919800000001"]) => ({ id, templateId, phone })),
    ...over,
  });
  const dials = calls.map(([leadId, , hour, phone = "+919800000001"]) => {
    const at = START + hour * HOUR;
    return dial({
      leadId,
      dialRef: `${leadId}:1@${at}`,
      to: phone,
      at,
      resultAt: at + 80,
      endsAt: at + 30_000,
    });
  });
  return {
    scenario,
    startAt: START,
    untilAt: START + 86_400_000,
    leads: calls.map(([id, templateId, , phone = "+919800000001"]) => ({
      id,
      templateId,
      phone,
      dueAtMs: 0,
    })),
    dials,
    defers: new Map(),
    alerts: [],
    gates: { peek: 0, record: 0, recordRejected: 0, channelExhausted: 0, failOpen: 0 },
    finishedAt: new Map(calls.map(([id], i) => [id, dials[i]?.endsAt ?? START])),
    stored: calls.map(([id, templateId]) =>
      stored({ id, templateId, status: "FINISHED", outcome: "ANSWERED" }),
    ),
    owner: "simulate",
    windowZones: new Map(),
    callerIds: new Map(),
  };
}

describe("report invariants by every rule in force", () => {
  it("a template's 3-per-24 h rule is broken by its 4th and 5th call while the config's 7-per-hour rule holds", () => {
    // Issue 10 item 2: one t1 call, then t2 calls hours apart. Spelt four ways: one phone still.
    const run = runOf([
      ["A", "t1", 0],
      ["B1", "t2", 1, "+91 98000 00001"],
      ["B2", "t2", 2, "+91-98000-00001"],
      ["B3", "t2", 3],
      ["B4", "t2", 4, "+91/98000/00001"],
    ]);
    const report = buildReport(run);

    expect(report.invariants.rateRules).toEqual([
      { templateId: null, maxCalls: 7, windowSeconds: 3600, maxDialsPerPhone: 1, violations: 0 },
      { templateId: "t2", maxCalls: 3, windowSeconds: 86_400, maxDialsPerPhone: 5, violations: 2 },
    ]);
    expect(report.invariants.maxDialsPerPhoneByRule).toEqual([1]);
    expect(report.invariants.maxDialsPerPhoneInWindow).toBe(1);
    expect(violations(report, run)).toEqual([
      "2 call(s) over template t2 rule 0: a phone got 5 calls within 86400 s (max 3)",
    ]);
  });

  it("a template's rule counts the phone's calls of every template, but checks only its own template's calls", () => {
    // t2 called first: the later t1 calls are the config rule's to check, and stay under 7 per hour.
    const calls: [string, string, number][] = [
      ["B1", "t2", 0],
      ["A1", "t1", 0.1],
      ["A2", "t1", 0.2],
      ["A3", "t1", 0.3],
    ];
    const run = runOf(calls);
    const report = buildReport(run);
    expect(report.invariants.rateRules.map((r) => [r.maxDialsPerPhone, r.violations])).toEqual([
      [4, 0],
      [1, 0],
    ]);
    expect(violations(report, run)).toEqual([]);

    // A t2 call after them is the 5th call of t1 and t2 within 24 h: over its 3.
    const later = runOf([...calls, ["B2", "t2", 5]]);
    expect(buildReport(later).invariants.rateRules[1]).toMatchObject({ maxDialsPerPhone: 5, violations: 1 });
  });

  it("the config's rules do not govern a template with rules of its own, though its calls count against them", () => {
    const config = { rateLimit: { rules: [{ maxCalls: 2, windowSeconds: 3600 }] } };
    const templates = [
      { id: "t1", resellerId: "r1" },
      { id: "t2", resellerId: "r1", rateLimitRules: [{ maxCalls: 5, windowSeconds: 3600 }] },
    ];
    const t2Only = runOf(
      [
        ["B1", "t2", 0],
        ["B2", "t2", 0.1],
        ["B3", "t2", 0.2],
        ["B4", "t2", 0.3],
      ],
      { config, templates },
    );
    const report = buildReport(t2Only);
    expect(report.invariants.rateRules).toEqual([
      { templateId: null, maxCalls: 2, windowSeconds: 3600, maxDialsPerPhone: 0, violations: 0 },
      { templateId: "t2", maxCalls: 5, windowSeconds: 3600, maxDialsPerPhone: 4, violations: 0 },
    ]);
    expect(violations(report, t2Only)).toEqual([]);

    const withT1 = runOf(
      [
        ["B1", "t2", 0],
        ["B2", "t2", 0.1],
        ["A1", "t1", 0.5],
      ],
      { config, templates },
    );
    const both = buildReport(withT1);
    expect(both.invariants.maxDialsPerPhoneByRule).toEqual([3]);
    expect(both.invariants.rateRules[0]).toMatchObject({ maxDialsPerPhone: 3, violations: 1 });
    expect(violations(both, withT1)).toEqual([
      "1 call(s) over config rule 0: a phone got 3 calls within 3600 s (max 2)",
    ]);
  });

  it("calls at one instant count in the order the provider received them", () => {
    const templates = [
      { id: "t1", resellerId: "r1" },
      { id: "t2", resellerId: "r1", rateLimitRules: [{ maxCalls: 1, windowSeconds: 86_400 }] },
    ];
    const t2First = buildReport(
      runOf(
        [
          ["B", "t2", 1],
          ["A", "t1", 1],
        ],
        { templates },
      ),
    );
    expect(t2First.invariants.rateRules[1]).toMatchObject({ maxDialsPerPhone: 1, violations: 0 });
    const t1First = buildReport(
      runOf(
        [
          ["A", "t1", 1],
          ["B", "t2", 1],
        ],
        { templates },
      ),
    );
    expect(t1First.invariants.rateRules[1]).toMatchObject({ maxDialsPerPhone: 2, violations: 1 });
  });

  it("alertOnly reports the calls over a template's rule without calling them broken invariants", () => {
    const calls: [string, string, number][] = [0, 1, 2, 3].map((h) => [`B${h}`, "t2", h]);
    const run = runOf(calls, {
      config: { rateLimit: { mode: "alertOnly", rules: [{ maxCalls: 7, windowSeconds: 3600 }] } },
    });
    const report = buildReport(run);
    expect(report.invariants.rateRules[1]).toMatchObject({ maxDialsPerPhone: 4, violations: 1 });
    expect(violations(report, run)).toEqual([]);
  });
});
