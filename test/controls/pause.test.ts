/**
 * Operator controls on the in-memory backend: pause and resume (global, per reseller, per template),
 * and dispatchNow. Paused leads wait without churning: never claimed, no timer armed for them.
 */
import { describe, expect, it } from "vitest";
import { LeadNotDispatchableError } from "../../src/dispatcher.js";
import { ValidationError } from "../../src/infra/config.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import type { DialResult } from "../../src/machines/ports.js";
import { createWorld, HOUR, MINUTE, PHONES, SECOND, T0 } from "./world.js";

const TEMPLATES = [
  { id: "t1", resellerId: "acme" },
  { id: "t2", resellerId: "acme" },
  { id: "t3", resellerId: "shopco" },
];

/** A lead store that counts claims: the measure of churn. */
class CountingStore extends MemoryLeadStore {
  claims = 0;
  override async claimDue(owner: string, now: number, limit: number, leaseMs: number) {
    this.claims += 1;
    return super.claimDue(owner, now, limit, leaseMs);
  }
}

async function world() {
  const store = new CountingStore();
  const w = await createWorld({ templates: TEMPLATES, leadStore: store });
  return { ...w, counting: store };
}

const leads = (specs: [id: string, templateId: string][]) =>
  specs.map(([id, templateId], i) => ({ id, templateId, phone: PHONES[i % PHONES.length] }));

describe("pause and resume", () => {
  it("a global pause holds every lead without churn; resume dispatches them at once", async () => {
    const w = await world();
    expect(await w.dispatcher.pause({ global: true })).toBe(true);
    await w.dispatcher.submit(
      leads([
        ["a", "t1"],
        ["b", "t3"],
      ]),
    );
    await w.settle();
    const claimsWhilePaused = w.counting.claims;

    await w.advance(6 * HOUR);
    expect(w.provider.dials).toEqual([]);
    expect(w.of("lead:claimed")).toEqual([]);
    expect(await w.lead("a")).toMatchObject({ status: "SCHEDULED", claimSeq: 0 });
    expect(w.counting.claims, "no claims while nothing can be claimed").toBe(claimsWhilePaused);
    expect(w.clock.nextAt(), "no timer armed for paused leads").toBeNull();

    const resumedAt = w.clock.now();
    expect(await w.dispatcher.resume({ global: true })).toBe(true);
    await w.settle();
    expect(w.provider.dialled("a")).toEqual([resumedAt]);
    expect(w.provider.dialled("b")).toEqual([resumedAt]);
    expect(w.of("dispatch:paused")).toEqual([{ scope: { global: true } }]);
    expect(w.of("dispatch:resumed")).toEqual([{ scope: { global: true } }]);
    await w.dispatcher.stop();
  });

  it("a reseller pause holds all of its templates and none of another reseller's", async () => {
    const w = await world();
    await w.dispatcher.pause({ resellerId: "acme" });
    await w.dispatcher.submit(
      leads([
        ["a1", "t1"],
        ["a2", "t2"],
        ["s3", "t3"],
      ]),
    );
    await w.advance(MINUTE);
    expect(w.provider.dials.map((d) => d.leadId)).toEqual(["s3"]);

    await w.dispatcher.resume({ resellerId: "acme" });
    await w.settle();
    expect(w.provider.dials.map((d) => d.leadId).sort()).toEqual(["a1", "a2", "s3"]);
  });

  it("a template pause holds that template only, including leads that come due later", async () => {
    const w = await world();
    await w.dispatcher.pause({ templateId: "t1" });
    await w.dispatcher.submit([
      { id: "now", phone: PHONES[0], templateId: "t1" },
      { id: "soon", phone: PHONES[1], templateId: "t1", dueAt: T0 + HOUR },
      { id: "other", phone: PHONES[2], templateId: "t2", dueAt: T0 + HOUR },
    ]);
    await w.advance(2 * HOUR);
    expect(w.provider.dials.map((d) => d.leadId)).toEqual(["other"]);
    expect(w.provider.dialled("other")).toEqual([T0 + HOUR]);

    await w.dispatcher.resume({ templateId: "t1" });
    await w.settle();
    expect(w.provider.dials.map((d) => d.leadId).sort()).toEqual(["now", "other", "soon"]);
  });

  it("a lead deferred while its template is paused waits past its time, then dials on resume", async () => {
    const w = await world();
    w.provider.queue(async (): Promise<DialResult> => ({ kind: "notPlaced", reason: "refused" }));
    await w.dispatcher.submit(leads([["a", "t1"]]));
    await w.settle();
    expect(await w.lead("a")).toMatchObject({ status: "SCHEDULED", deferReason: "notPlaced" });
    await w.dispatcher.pause({ templateId: "t1" });
    await w.advance(10 * MINUTE);
    expect(w.provider.dialled("a")).toEqual([T0]);

    await w.dispatcher.resume({ templateId: "t1" });
    await w.settle();
    expect(w.provider.dialled("a")).toEqual([T0, T0 + 10 * MINUTE]);
  });

  it("attempts already claimed when the pause comes run to their end", async () => {
    const w = await world();
    let answer!: (result: DialResult) => void;
    w.provider.queue(() => new Promise<DialResult>((resolve) => (answer = resolve)));
    await w.dispatcher.submit(leads([["a", "t1"]]));
    await w.settle();
    await w.dispatcher.pause({ global: true });
    answer({ kind: "placed", callId: "c-1" });
    await w.settle();
    expect(await w.lead("a")).toMatchObject({ status: "PROCESSING" });
  });

  it("pausing twice or resuming what is not paused changes nothing and says so", async () => {
    const w = await world();
    expect(await w.dispatcher.pause({ templateId: "t1" })).toBe(true);
    expect(await w.dispatcher.pause({ templateId: "t1" })).toBe(false);
    expect(await w.dispatcher.resume({ resellerId: "t1" })).toBe(false);
    expect(await w.dispatcher.pauses()).toEqual([{ scope: { templateId: "t1" }, pausedAt: T0 }]);
    expect(w.of("dispatch:paused")).toHaveLength(1);
    expect(w.of("dispatch:resumed")).toEqual([]);
  });

  it("rejects a scope that is not exactly one of global, resellerId or templateId", async () => {
    const w = await world();
    const bad: unknown[] = [
      {},
      { global: false },
      { templateId: "" },
      { templateId: "t1", resellerId: "acme" },
      { global: true, templateId: "t1" },
      "t1",
    ];
    for (const scope of bad) {
      await expect(w.dispatcher.pause(scope as never)).rejects.toThrow(ValidationError);
      await expect(w.dispatcher.resume(scope as never)).rejects.toThrow(ValidationError);
    }
    await expect(w.dispatcher.pause({} as never)).rejects.toThrow(
      /^pause scope must be \{ global: true \}, \{ resellerId \} or \{ templateId \}, got \{\}$/,
    );
    expect(await w.dispatcher.pauses()).toEqual([]);
  });
});

describe("dispatchNow", () => {
  it("makes a lead due later due now and dials it at once", async () => {
    const w = await world();
    await w.dispatcher.submit({ id: "a", phone: PHONES[0], templateId: "t1", dueAt: T0 + 5 * HOUR });
    await w.advance(MINUTE);
    const lead = await w.dispatcher.dispatchNow("a");
    expect(lead).toMatchObject({ id: "a", dueAt: T0 + 5 * HOUR });
    await w.settle();
    expect(w.provider.dialled("a")).toEqual([T0 + MINUTE]);
  });

  it("wakes a deferred lead, which still meets every gate (here its calling window)", async () => {
    const w = await createWorld({
      templates: [
        {
          id: "t1",
          resellerId: "acme",
          window: { start: "09:00", end: "17:00", timeZone: "America/New_York" },
        },
      ],
    });
    // A New York number, judged in its own zone.
    await w.dispatcher.submit({ id: "a", phone: PHONES[3], templateId: "t1" });
    await w.settle();
    await w.dispatcher.dispatchNow("a");
    await w.settle();
    expect(w.provider.dials).toEqual([]);
    expect(await w.lead("a")).toMatchObject({
      claimSeq: 2,
      deferReason: "window",
      nextAttemptAt: Date.parse("2031-01-06T14:00:00Z"),
    });
  });

  it("a lead of a paused template stays paused", async () => {
    const w = await world();
    await w.dispatcher.pause({ templateId: "t1" });
    await w.dispatcher.submit({ id: "a", phone: PHONES[0], templateId: "t1", dueAt: T0 + HOUR });
    expect(await w.dispatcher.dispatchNow("a")).toMatchObject({ status: "SCHEDULED", nextAttemptAt: T0 });
    await w.advance(2 * HOUR);
    expect(w.provider.dials).toEqual([]);
  });

  it("throws a LeadNotDispatchableError for an unknown, a finished, a dialling or an in-call lead", async () => {
    const w = await world();
    const error = async (id: string) => {
      try {
        await w.dispatcher.dispatchNow(id);
      } catch (e) {
        return e;
      }
      throw new Error(`dispatchNow(${id}) did not throw`);
    };
    expect(await error("nope")).toMatchObject({
      name: "LeadNotDispatchableError",
      leadId: "nope",
      status: null,
    });

    await w.dispatcher.submit({ id: "finished", phone: PHONES[0], templateId: "t1" });
    await w.dispatcher.cancel("finished");
    const finished = await error("finished");
    expect(finished).toBeInstanceOf(LeadNotDispatchableError);
    expect(finished).toMatchObject({ leadId: "finished", status: "FINISHED" });

    await w.dispatcher.submit({ id: "inCall", phone: PHONES[1], templateId: "t1" });
    await w.settle();
    expect(await error("inCall")).toMatchObject({ status: "PROCESSING" });

    w.provider.queue(() => new Promise<DialResult>(() => {}));
    await w.dispatcher.submit({ id: "dialling", phone: PHONES[2], templateId: "t1" });
    await w.settle();
    const dialling = (await error("dialling")) as Error;
    expect(dialling).toMatchObject({ status: "DIALING" });
    expect(dialling.message).toBe('lead "dialling" is DIALING: only a waiting lead can be dispatched now');
  });

  it("a lead already claimed is left to its attempt", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const slow = await createWorld({
      templates: TEMPLATES,
      preDialChecks: [
        async () => {
          await gate;
          return { action: "proceed" };
        },
      ],
    });
    await slow.dispatcher.submit({ id: "a", phone: PHONES[0], templateId: "t1" });
    await slow.settle();
    expect(await slow.dispatcher.dispatchNow("a")).toMatchObject({ status: "CLAIMED", claimSeq: 1 });
    open();
    await slow.advance(SECOND);
    expect(slow.provider.dialled("a")).toEqual([T0]);
  });
});
