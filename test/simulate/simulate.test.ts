import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { runScenario } from "../../src/cli/simulate/engine.js";
import { simulate } from "../../src/cli/simulate/index.js";
import { buildReport, type Report } from "../../src/cli/simulate/report.js";
import { parseScenario, type ScenarioInput } from "../../src/cli/simulate/scenario.js";
import { violations } from "../../src/cli/simulate/summary.js";

async function example(file: string): Promise<ScenarioInput> {
  return JSON.parse(await readFile(file, "utf8")) as ScenarioInput;
}

/** One pool number, one template without window or retry, generated leads. */
function small(over: Partial<ScenarioInput> = {}): ScenarioInput {
  return {
    seed: 3,
    untilSeconds: 6 * 3600,
    numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 3, pool: true }],
    templates: [{ id: "t1", resellerId: "r1" }],
    leads: [{ generate: { count: 40, phones: 10, templateId: "t1", spreadSeconds: 120 } }],
    provider: { default: { result: "placed", latencyMs: 80, callSeconds: 30, outcome: "ANSWERED" } },
    ...over,
  };
}

function expectInvariantsHold(report: Report, maxChannels: Record<string, number>): void {
  for (const [numberId, max] of Object.entries(report.invariants.maxConcurrentByNumber))
    expect(max, `concurrent calls on ${numberId}`).toBeLessThanOrEqual(maxChannels[numberId] ?? 0);
  expect(report.invariants.maxDialsPerPhoneInWindow).toBeLessThanOrEqual(7);
  expect(report.invariants.duplicateDials).toBe(0);
  expect(report.invariants.lostLeads).toBe(0);
}

const dialResults = (report: Report, leadId: string) => report.leads[leadId]?.dials.map((d) => d.result);

describe("dialgate simulate (memory backend)", () => {
  it("the same seed gives the identical report twice", async () => {
    const scenario = parseScenario(
      small({ faults: [{ kind: "storeDown", fromSeconds: 20, toSeconds: 40 }] }),
    );
    const first = await simulate(scenario);
    const second = await simulate(scenario);
    expect(second).toEqual(first);
    expect(first.totals.finished).toEqual({ ANSWERED: 40 });
    // Jitter and due times really come from the seed: another seed moves them.
    const other = await simulate({ ...scenario, seed: 4 });
    expect(other.leads).not.toEqual(first.leads);
  }, 120_000);

  it("the spec's example lead L1 dials notPlaced, placed NO_ANSWER, then placed ANSWERED after its retry", async () => {
    // The example with a smaller crowd around L1 (1000 generated leads take a minute of wall time).
    const input = await example("examples/scenario.json");
    const leads = input.leads.map((entry) =>
      "generate" in entry ? { generate: { ...entry.generate, count: 100 } } : entry,
    );
    const report = await simulate(parseScenario({ ...input, leads }));
    const l1 = report.leads.L1;

    expect(dialResults(report, "L1")).toEqual(["notPlaced", "placed", "placed"]);
    expect(l1?.attempts).toBe(2);
    expect(l1?.status).toBe("FINISHED");
    expect(l1?.outcome).toBe("ANSWERED");
    expect(l1?.dials[0]).toEqual({
      atSeconds: 0,
      resultAtSeconds: 0.08,
      numberId: "n1",
      result: "notPlaced",
    });
    expect(l1?.defers).toContainEqual({ atSeconds: 0.08, seconds: 5, reason: "notPlaced" });
    const retry = l1?.defers.filter((d) => d.reason === "retry") ?? [];
    expect(retry).toHaveLength(1);
    expect(retry[0]?.seconds).toBe(600);
    // The retry is due 600 s after the NO_ANSWER call ended (45 s after it rang).
    const noAnswer = l1?.dials[1];
    expect(retry[0]?.atSeconds).toBeCloseTo((noAnswer?.resultAtSeconds ?? 0) + 45, 3);
    expect(l1?.dials[2]?.atSeconds).toBeGreaterThanOrEqual((retry[0]?.atSeconds ?? 0) + 600);

    expect(report.totals.leads).toBe(101);
    expect(report.totals.pending).toBe(0);
    expectInvariantsHold(report, { n1: 2 });
    // The example's storeDown fault at 100–130 s: its leads wait parked for lines (nothing meets a
    // gate); the lines freed meanwhile come back through the outbox after it, and dialling resumes.
    const dialTimes = Object.values(report.leads).flatMap((lead) => lead.dials.map((d) => d.atSeconds));
    expect(dialTimes.filter((at) => at >= 100 && at < 130)).toEqual([]);
    expect(dialTimes.filter((at) => at >= 130 && at < 160).length).toBeGreaterThan(0);
  }, 120_000);

  it("busy lines: 500 leads on 50 phones over 4 lines keep every cap and finish near call time ÷ lines", async () => {
    const report = await simulate(parseScenario(await example("examples/busy-lines.json")));

    expect(report.totals).toMatchObject({ leads: 500, placed: 500, pending: 0, finished: { ANSWERED: 500 } });
    expect(report.invariants.maxConcurrentByNumber.n1).toBeLessThanOrEqual(2);
    expect(report.invariants.maxConcurrentByNumber.n2).toBeLessThanOrEqual(2);
    expect(report.invariants.maxDialsPerPhoneInWindow).toBeLessThanOrEqual(7);
    expect(report.invariants.maxDialsPerPhoneByRule).toEqual([report.invariants.maxDialsPerPhoneInWindow]);
    expect(report.invariants.duplicateDials).toBe(0);
    expect(report.invariants.lostLeads).toBe(0);
    // Scheduling quality on virtual time: lines stay busy while any lead may go.
    const ideal = (report.totals.placed * 45) / 4;
    expect(report.makespanSeconds).toBeGreaterThanOrEqual(ideal);
    expect(report.makespanSeconds).toBeLessThanOrEqual(ideal * 1.2);
  }, 120_000);

  it("a storeDown fault fails the rate-limit gates open and the channel gate closed; every invariant holds", async () => {
    // Lines to spare: leads falling due during the fault meet the gates (none waits parked for a line).
    const report = await simulate(
      parseScenario(
        small({
          numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 40, pool: true }],
          faults: [{ kind: "storeDown", fromSeconds: 30, toSeconds: 90 }],
        }),
      ),
    );

    expect(report.gates.failOpen).toBeGreaterThan(0);
    expect(report.totals.deferred.store).toBeGreaterThan(0);
    expect(report.alerts.map((a) => a.kind)).toContain("store_unavailable");
    expectInvariantsHold(report, { n1: 40 });
    expect(report.totals).toMatchObject({ leads: 40, placed: 40, pending: 0, finished: { ANSWERED: 40 } });
    // Nothing rang while the store was down: capacity could not be proven.
    for (const lead of Object.values(report.leads))
      for (const d of lead.dials) expect(d.atSeconds >= 30 && d.atSeconds < 90).toBe(false);
  }, 120_000);

  it("two templates sharing phones: a template's own 3-per-24 h rule counts the other template's calls too", async () => {
    const run = await runScenario(
      parseScenario(
        small({
          untilSeconds: 4 * 3600,
          templates: [
            { id: "t1", resellerId: "r1" },
            { id: "t2", resellerId: "r1", rateLimitRules: [{ maxCalls: 3, windowSeconds: 86_400 }] },
          ],
          // Generated lead n calls phone n mod 2 in both blocks: 3 t1 leads and 5 t2 leads per phone.
          leads: [
            { generate: { count: 6, phones: 2, templateId: "t1", spreadSeconds: 60 } },
            { generate: { count: 10, phones: 2, templateId: "t2", spreadSeconds: 60 } },
          ],
        }),
      ),
    );
    const report = buildReport(run);

    expect(report.invariants.rateRules).toEqual([
      expect.objectContaining({ templateId: null, maxCalls: 7, windowSeconds: 3600, violations: 0 }),
      expect.objectContaining({ templateId: "t2", maxCalls: 3, windowSeconds: 86_400, violations: 0 }),
    ]);
    // t2's calls stop at the 3rd call of either template to the phone; t1's go on under 7 per hour.
    expect(report.invariants.rateRules[1]?.maxDialsPerPhone).toBe(3);
    expect(violations(report, run)).toEqual([]);
    const t1 = Object.entries(report.leads).filter(([id]) => Number(id.slice(1)) <= 6);
    for (const [id, lead] of t1) expect(lead.attempts, id).toBe(1);
    // The t2 leads left wait a day for room, past the horizon.
    expect(report.totals.pending).toBe(16 - report.totals.placed);
    expect(report.totals.pending).toBeGreaterThan(0);
    expect(report.totals.deferred.rateLimit).toBeGreaterThan(0);
  }, 120_000);

  it("a providerDown fault holds unknown dials, re-queues them after the hold, and never rings twice", async () => {
    const report = await simulate(
      parseScenario(
        small({
          numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 4, pool: true }],
          leads: [{ generate: { count: 12, phones: 12, templateId: "t1", spreadSeconds: 20 } }],
          faults: [{ kind: "providerDown", fromSeconds: 0, toSeconds: 10 }],
        }),
      ),
    );

    const held = Object.entries(report.leads).filter(([, lead]) => lead.dials[0]?.result === "unknown");
    expect(held.length).toBeGreaterThan(0);
    for (const [leadId, lead] of held) {
      const [unknown, next] = lead.dials;
      // Timed out after dial.timeoutMs, then held for unknownDial.holdMinutes before anything else.
      expect(unknown?.resultAtSeconds, leadId).toBeCloseTo((unknown?.atSeconds ?? 0) + 15, 3);
      // Re-queued no earlier than holdMinutes after the dial row (design §7.16); today the hold is armed
      // when the timeout classifies the dial, so it ends holdMinutes after resultAt.
      const requeue = lead.defers.find((d) => d.reason === "unknownExpired");
      expect(requeue?.atSeconds, leadId).toBeGreaterThanOrEqual((unknown?.atSeconds ?? 0) + 300);
      expect(requeue?.atSeconds, leadId).toBeLessThanOrEqual((unknown?.resultAtSeconds ?? 0) + 300);
      expect(next?.atSeconds, leadId).toBeGreaterThanOrEqual(requeue?.atSeconds ?? Number.POSITIVE_INFINITY);
      expect(lead.dials.map((d) => d.result)).toEqual(["unknown", "placed"]);
      expect(lead.attempts).toBe(1);
    }
    expect(report.totals.deferred.unknownExpired).toBe(held.length);
    expect(report.alerts.map((a) => a.kind)).toContain("unknown_dial");
    expectInvariantsHold(report, { n1: 4 });
    expect(report.totals).toMatchObject({ leads: 12, placed: 12, pending: 0 });
  }, 120_000);
});
