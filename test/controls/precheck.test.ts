/**
 * The host's pre-dial checks (state `prechecking`, after the window, before anything is held):
 * proceed, abort → PRECHECK_FAILED, defer (counted, capped), a throw or a timeout → a short defer.
 */
import { describe, expect, it } from "vitest";
import { PreDialCheckError } from "../../src/actors/pre-dial-checks.js";
import { createDispatcher } from "../../src/dispatcher.js";
import { ValidationError } from "../../src/infra/config.js";
import type { PreDialCheck, PreDialCheckContext, PreDialVerdict } from "../../src/machines/ports.js";
import { createWorld, MINUTE, PHONES, SECOND, T0 } from "./world.js";

const TEMPLATE = { id: "t1", resellerId: "acme" };
const proceed: PreDialVerdict = { action: "proceed" };

/** A check whose answers the test gives one by one; it records every context it was asked with. */
function manualCheck() {
  const asked: PreDialCheckContext[] = [];
  const pending: ((verdict: PreDialVerdict) => void)[] = [];
  const check: PreDialCheck = (context) => {
    asked.push(context);
    return new Promise((resolve) => pending.push(resolve));
  };
  return {
    check,
    asked,
    answer: (verdict: PreDialVerdict) => {
      const next = pending.shift();
      if (!next) throw new Error("no check is waiting");
      next(verdict);
    },
    get waiting() {
      return pending.length;
    },
  };
}

async function world(checks: PreDialCheck[], config: Record<string, unknown> = {}) {
  return createWorld({ templates: [TEMPLATE], preDialChecks: checks, config });
}

const submit = (w: Awaited<ReturnType<typeof world>>, id = "L1", phone: string = PHONES[0]) =>
  w.dispatcher.submit({ id, phone, templateId: TEMPLATE.id });

describe("pre-dial checks", () => {
  it("without checks the state passes straight through", async () => {
    const w = await world([]);
    await submit(w);
    await w.settle();
    expect(w.provider.dialled("L1")).toEqual([T0]);
    expect(w.of("lead:prechecked")).toEqual([]);
  });

  it("proceed dials; the check is given the lead, its template and a live signal", async () => {
    const c = manualCheck();
    const w = await world([c.check]);
    await submit(w);
    await w.settle();
    expect(c.asked).toHaveLength(1);
    expect(c.asked[0].lead).toMatchObject({ id: "L1", phone: PHONES[0], status: "CLAIMED" });
    expect(c.asked[0].template).toEqual(TEMPLATE);
    expect(c.asked[0].signal.aborted).toBe(false);
    expect(w.provider.dials).toEqual([]);

    c.answer(proceed);
    await w.settle();
    expect(w.provider.dialled("L1")).toEqual([T0]);
    expect(w.of("lead:prechecked")).toEqual([{ leadId: "L1", verdict: "proceed" }]);
  });

  it("holds nothing while the checks run", async () => {
    const c = manualCheck();
    const w = await world([c.check]);
    await submit(w);
    await w.settle();
    expect(c.waiting).toBe(1);
    expect(await w.lead("L1")).toMatchObject({ status: "CLAIMED" });
    expect(w.holders()).toEqual([]);
    expect(w.members(PHONES[0])).toEqual([]);
  });

  it("abort finishes the lead PRECHECK_FAILED with the reason, phones masked, and takes nothing", async () => {
    const w = await world([async () => ({ action: "abort", reason: "customer +14155550123 opted out" })]);
    await submit(w);
    await w.settle();
    expect(await w.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "PRECHECK_FAILED" });
    expect(w.of("lead:finished")).toEqual([
      { leadId: "L1", outcome: "PRECHECK_FAILED", reason: "customer ***0123 opted out" },
    ]);
    expect(w.provider.dials).toEqual([]);
    expect(w.holders()).toEqual([]);
    expect(w.members(PHONES[0])).toEqual([]);
    expect(w.dispatcher.stats().finished).toEqual({ PRECHECK_FAILED: 1 });
  });

  it("defer parks the lead for the asked seconds, reason precheck, and counts it", async () => {
    const c = manualCheck();
    const w = await world([c.check]);
    await submit(w);
    await w.settle();
    c.answer({ action: "defer", seconds: 90 });
    await w.settle();
    expect(w.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "precheck", at: T0 + 90 * SECOND }]);
    expect(await w.lead("L1")).toMatchObject({
      status: "SCHEDULED",
      deferReason: "precheck",
      precheckDefers: 1,
      nextAttemptAt: T0 + 90 * SECOND,
      attempt: 0,
    });

    await w.advance(90 * SECOND);
    expect(c.waiting).toBe(1);
    c.answer(proceed);
    await w.settle();
    expect(w.provider.dialled("L1")).toEqual([T0 + 90 * SECOND]);
    // The checks let it through: the count starts again.
    expect(await w.lead("L1")).toMatchObject({ status: "PROCESSING", precheckDefers: 0 });
  });

  it("a defer after the checks passed once resets the count (channel full, then the checks again)", async () => {
    let answers: PreDialVerdict[] = [
      { action: "defer", seconds: 10 },
      proceed,
      { action: "defer", seconds: 10 },
    ];
    const w = await world([async () => answers.shift() ?? proceed]);
    w.provider.queue(async () => ({ kind: "notPlaced", reason: "refused" }));
    await submit(w);
    await w.settle();
    expect((await w.lead("L1")).precheckDefers).toBe(1);
    await w.advance(10 * SECOND); // proceeds, dials, not placed
    expect(await w.lead("L1")).toMatchObject({ deferReason: "notPlaced", precheckDefers: 0 });
    await w.advance(5 * SECOND); // defers again: the first of a new run
    expect(await w.lead("L1")).toMatchObject({ deferReason: "precheck", precheckDefers: 1 });
    answers = [];
    await w.advance(10 * SECOND);
    expect(w.provider.dials).toHaveLength(2);
  });

  it("more than maxDefers defers in a row finish the lead PRECHECK_FAILED", async () => {
    let asked = 0;
    const w = await world(
      [
        async () => {
          asked += 1;
          return { action: "defer", seconds: 60 };
        },
      ],
      { preDialCheck: { maxDefers: 3 } },
    );
    await submit(w);
    await w.advance(10 * MINUTE);
    expect(asked).toBe(4);
    expect(w.of("lead:deferred").map((d) => d.reason)).toEqual(["precheck", "precheck", "precheck"]);
    expect(await w.lead("L1")).toMatchObject({
      status: "FINISHED",
      outcome: "PRECHECK_FAILED",
      precheckDefers: 3,
    });
    expect(w.of("lead:finished")).toEqual([
      {
        leadId: "L1",
        outcome: "PRECHECK_FAILED",
        reason: "deferred by the pre-dial checks 3 times in a row",
      },
    ]);
    expect(w.provider.dials).toEqual([]);
  });

  it("a check that throws defers by failureDeferSeconds and reports a PreDialCheckError", async () => {
    const w = await world([async () => proceed, async () => Promise.reject(new Error("CRM down"))]);
    await submit(w);
    await w.settle();
    expect(w.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "precheck", at: T0 + 30 * SECOND }]);
    const [reported] = w.of("error");
    expect(reported.where).toBe("precheck L1");
    expect(reported.error).toBeInstanceOf(PreDialCheckError);
    expect(reported.error).toMatchObject({ leadId: "L1", check: 1, problem: "threw" });
    expect((reported.error as Error).cause).toEqual(new Error("CRM down"));
  });

  it("a check that does not answer in timeoutMs is aborted and defers by failureDeferSeconds", async () => {
    const c = manualCheck();
    const w = await world([c.check], { preDialCheck: { timeoutMs: 2000, failureDeferSeconds: 45 } });
    await submit(w);
    await w.advance(1999);
    expect(c.asked[0].signal.aborted).toBe(false);
    await w.advance(1);
    expect(c.asked[0].signal.aborted).toBe(true);
    expect(await w.lead("L1")).toMatchObject({
      status: "SCHEDULED",
      deferReason: "precheck",
      nextAttemptAt: T0 + 2000 + 45 * SECOND,
    });
    expect(w.of("error").map((e) => e.error)).toMatchObject([
      { name: "PreDialCheckError", problem: "timeout" },
    ]);
  });

  it("an answer that is not a verdict counts as a failure", async () => {
    const w = await world([async () => ({ action: "defer", seconds: -5 }) as PreDialVerdict]);
    await submit(w);
    await w.settle();
    expect(w.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "precheck", at: T0 + 30 * SECOND }]);
    expect(w.of("error").map((e) => e.error)).toMatchObject([{ problem: "invalid" }]);
  });

  it("several checks: an abort wins over a defer, the longest defer wins over shorter ones", async () => {
    const abortWins = await world([
      async () => ({ action: "defer", seconds: 600 }),
      async () => ({ action: "abort", reason: "no consent" }),
      async () => proceed,
    ]);
    await submit(abortWins);
    await abortWins.settle();
    expect(await abortWins.lead("L1")).toMatchObject({ outcome: "PRECHECK_FAILED" });

    const longest = await world([
      async () => ({ action: "defer", seconds: 60 }),
      async () => proceed,
      async () => ({ action: "defer", seconds: 120 }),
    ]);
    await submit(longest);
    await longest.settle();
    expect(await longest.lead("L1")).toMatchObject({ nextAttemptAt: T0 + 120 * SECOND, precheckDefers: 1 });
  });

  it("an abort answers at once: the checks still running are told to stop", async () => {
    const slow = manualCheck();
    const w = await world([slow.check, async () => ({ action: "abort", reason: "blocked by the CRM" })]);
    await submit(w);
    await w.settle();
    expect(await w.lead("L1")).toMatchObject({ outcome: "PRECHECK_FAILED" });
    expect(slow.asked[0].signal.aborted).toBe(true);
  });

  it("a cancel while the checks run drops the attempt and aborts the checks", async () => {
    const c = manualCheck();
    const w = await world([c.check]);
    await submit(w);
    await w.settle();
    await w.dispatcher.cancel("L1");
    await w.settle();
    expect(await w.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
    expect(w.of("lead:dropped")).toEqual([{ leadId: "L1" }]);
    expect(c.asked[0].signal.aborted).toBe(true);
    c.answer(proceed);
    await w.settle();
    expect(w.provider.dials).toEqual([]);
  });

  it("a stop while the checks run re-queues the lead now, uncounted", async () => {
    const c = manualCheck();
    const w = await world([c.check]);
    await submit(w);
    await w.settle();
    await w.dispatcher.stop();
    expect(await w.lead("L1")).toMatchObject({
      status: "SCHEDULED",
      nextAttemptAt: T0,
      deferReason: "shutdown",
      precheckDefers: 0,
    });
  });

  it("configuration is validated: timeoutMs ≥ 1, maxDefers ≥ 0, checks are functions", () => {
    expect(() => createDispatcher({ config: { preDialCheck: { timeoutMs: 0 } } })).toThrow(
      new ValidationError("DispatcherConfig.preDialCheck.timeoutMs", 0, "must be ≥ 1"),
    );
    expect(() => createDispatcher({ config: { preDialCheck: { maxDefers: -1 } } })).toThrow(ValidationError);
    expect(() => createDispatcher({ preDialChecks: ["nope" as never] })).toThrow(
      "DispatcherOptions.preDialChecks[0] must be a function, got string",
    );
  });
});
