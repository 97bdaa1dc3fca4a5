/**
 * Waiting for a line (design §7.11) on a real dispatcher and a virtual clock, on memory and on Redis +
 * Postgres: every place a line comes free wakes a parked lead, a woken lead meets every gate again, and
 * cancel, expiry and pause work while it waits.
 */
import { describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import { SimulatedProvider } from "../../src/infra/providers/simulated.js";
import { memoryBackend, realBackend, useBackend } from "../support/backends.js";
import {
  createHarness,
  HOUR,
  MINUTE,
  NUMBER,
  PHONE,
  PHONES,
  SECOND,
  T0,
  TEMPLATE,
} from "../support/harness.js";

const BACKENDS = [memoryBackend, realBackend({ isolation: "schema" })];
const ONE_LINE = { ...NUMBER, maxChannels: 1 };

describe.each(BACKENDS)("on $name", (backend) => {
  useBackend(backend);

  const withSim = (options: { numbers?: object[]; config?: object; callSeconds?: number } = {}) =>
    createHarness({
      backend,
      numbers: options.numbers ?? [ONE_LINE],
      config: { rateLimit: { rules: [{ maxCalls: 1, windowSeconds: 3600 }] }, ...options.config },
      provider: (clock, dispatcher) =>
        new SimulatedProvider({
          clock,
          default: { result: "placed", outcome: "ANSWERED", callSeconds: options.callSeconds ?? 45 },
          onCallEnd: (end) => void dispatcher().callEnded(end),
        }),
    });
  const lead = (id: string, phone: string, extra: object = {}) => ({
    id,
    phone,
    templateId: TEMPLATE.id,
    ...extra,
  });

  /** L0 holds the only line in a call; the given leads park behind it, in order. */
  async function behindACall(h: Awaited<ReturnType<typeof withSim>>, leads: object[]) {
    await h.dispatcher.submit(lead("L0", PHONES[1]));
    await h.settle();
    for (const l of leads) {
      await h.dispatcher.submit(l as never);
      await h.advance(SECOND);
    }
  }

  it("a woken waiter whose phone is now over its rate limit defers for the limit; the next waiter gets the line", async () => {
    const h = await withSim();
    await behindACall(h, [lead("A", PHONE), lead("B", PHONES[2])]);
    expect(h.dispatcher.stats().waiting).toBe(2);
    // A's phone uses up its one call an hour elsewhere while A waits.
    await h.direct.record(h.key(PHONE), "elsewhere", [{ maxCalls: 1, windowSeconds: 3600 }], h.clock.now());

    // L0's call ends at 45 s.
    await h.advance(46 * SECOND);
    // L0's line woke A (longest waiting); A met the peek and went back for the limit, not for a line.
    expect(
      h
        .of("lead:deferred")
        .filter((d) => d.leadId === "A")
        .map((d) => d.reason),
    ).toEqual(["channel", "rateLimit"]);
    expect(await h.lead("A")).toMatchObject({ status: "SCHEDULED", parkedOn: null, parkedAt: null });
    // A left the line it was woken for: it is passed on to B at once.
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0", "B"]);
    expect(await h.members(PHONE)).toEqual(["elsewhere"]);
  });

  it("a waiter cancelled while parked finishes CANCELLED and is never dialled", async () => {
    const h = await withSim();
    await behindACall(h, [lead("A", PHONE)]);
    await h.dispatcher.cancel("A");
    await h.advance(2 * MINUTE);
    expect(await h.lead("A")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0"]);
    expect(h.dispatcher.stats().waiting).toBe(0);
  });

  it("a parked lead finishes EXPIRED at its expiresAt, while the line is still busy", async () => {
    const h = await withSim({ callSeconds: 600 });
    await behindACall(h, [lead("A", PHONE, { expiresAt: T0 + 90 * SECOND })]);
    await h.advance(80 * SECOND);
    expect((await h.lead("A")).status).toBe("SCHEDULED");
    await h.advance(20 * SECOND);
    expect(await h.lead("A")).toMatchObject({ status: "FINISHED", outcome: "EXPIRED" });
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0"]);
  });

  it("a pause keeps parked leads parked; after the resume a free line is handed to them", async () => {
    const h = await withSim({ callSeconds: 30 });
    await behindACall(h, [lead("A", PHONE)]);
    await h.dispatcher.pause({ templateId: TEMPLATE.id });
    await h.advance(5 * MINUTE);
    expect(await h.lead("A")).toMatchObject({ status: "SCHEDULED", parkedOn: [NUMBER.id] });
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0"]);
    await h.dispatcher.resume({ templateId: TEMPLATE.id });
    await h.advance(SECOND);
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0", "A"]);
  });

  it("a number given more lines, or re-enabled, wakes as many waiters as lines are free", async () => {
    const h = await withSim({ callSeconds: 600 });
    await behindACall(h, [lead("A", PHONE), lead("B", PHONES[2]), lead("C", PHONES[3])]);
    await h.dispatcher.upsertNumbers([{ ...ONE_LINE, maxChannels: 3 }]);
    await h.advance(SECOND);
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0", "A", "B"]);
    expect(await h.lead("C")).toMatchObject({ parkedOn: [NUMBER.id] });

    await h.dispatcher.upsertNumbers([{ ...ONE_LINE, maxChannels: 4, status: "DISABLED" }]);
    await h.advance(SECOND);
    // Disabled: C's set has no AVAILABLE number, so C meets the number gate again and finishes.
    expect(await h.lead("C")).toMatchObject({ status: "FINISHED", outcome: "NUMBER_UNAVAILABLE" });
    expect(h.dispatcher.stats().waiting).toBe(0);
  });

  it("a disabled number re-enabled wakes its waiters", async () => {
    const h = await withSim({ numbers: [ONE_LINE, { ...ONE_LINE, id: "num-2", e164: "+15550000002" }] });
    // Both lines busy, then A and B wait on the pool.
    await h.dispatcher.submit([lead("L0", PHONES[1]), lead("L1", PHONES[4])]);
    await h.settle();
    await h.dispatcher.submit([lead("A", PHONE), lead("B", PHONES[2])]);
    await h.advance(SECOND);
    expect(h.dispatcher.stats().waiting).toBe(2);
    await h.dispatcher.upsertNumbers([
      { ...ONE_LINE, id: "num-2", e164: "+15550000002", status: "DISABLED" },
    ]);
    await h.advance(SECOND);
    expect(h.provider.dials).toHaveLength(2);
    // Back with three lines, one of them L1's: two free, two woken.
    await h.dispatcher.upsertNumbers([{ ...ONE_LINE, id: "num-2", e164: "+15550000002", maxChannels: 3 }]);
    await h.advance(SECOND);
    expect(h.provider.dials.map((d) => d.leadId).sort()).toEqual(["A", "B", "L0", "L1"]);
    expect(h.dispatcher.stats().waiting).toBe(0);
  });

  it("the sweep releasing an orphan hold wakes a waiter at once", async () => {
    const h = await withSim();
    await h.direct.acquire({
      numberId: NUMBER.id,
      maxChannels: 1,
      holder: "gone:1",
      now: T0,
      leaseUntil: T0 + HOUR,
      waiter: "gone",
      waiterTtlMs: MINUTE,
    });
    await h.dispatcher.submit(lead("A", PHONE));
    await h.advance(SECOND);
    expect(h.of("lead:parked")).toHaveLength(1);
    expect(await h.dispatcher.releaseOrphanHolds()).toBe(1);
    await h.advance(SECOND);
    expect(h.provider.dials.map((d) => d.leadId)).toEqual(["A"]);
  });
});

describe("channelWait config", () => {
  it("refuses the retired timed-retry keys by name, and defaults maxParkSeconds to 60", () => {
    for (const key of ["maxBackoffSeconds", "pileThreshold", "pileDeferSeconds"]) {
      expect(() => createDispatcher({ config: { channelWait: { [key]: 5 } } as never })).toThrow(
        `DispatcherConfig.channelWait has unknown key(s) ${key}`,
      );
    }
    expect(createDispatcher().config.channelWait).toEqual({ maxParkSeconds: 60 });
  });
});
