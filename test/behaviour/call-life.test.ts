/**
 * A call's life after the dial (design §7.15, §7.16, §7.19) when the provider or the store misbehaves:
 * replies without a usable call id, call ids handed out twice, ends that overtake the reply,
 * providers that ignore their AbortSignal, a lead store that is away when a call ends, and the
 * provider's callStatus asked before a stuck call is closed. On memory and on Redis + Postgres.
 */
import { describe, expect, it } from "vitest";
import type {
  CallStatus,
  Clock,
  DialRequest,
  DialResult,
  LeadStore,
  Provider,
} from "../../src/machines/ports.js";
import { memoryBackend, realBackend, type TestBackend, useBackend } from "../support/backends.js";
import {
  createHarness,
  type HarnessOptions,
  HOUR,
  MINUTE,
  PHONES,
  SECOND,
  TEMPLATE,
} from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const BACKENDS = [memoryBackend, realBackend({ isolation: "schema" })];

const lead = (id: string, phone: string = PHONES[0]) => ({ id, phone, templateId: TEMPLATE.id });

/** A provider that never settles the first dial of each lead, whatever its signal says, until told. */
class HangingProvider implements Provider {
  readonly name = "sim";
  readonly calls: DialRequest[] = [];
  readonly #hanging = new Map<string, (result: DialResult) => void>();

  async makeCall(req: DialRequest): Promise<DialResult> {
    this.calls.push(req);
    if (this.#hanging.has(req.leadId) || this.calls.filter((c) => c.leadId === req.leadId).length > 1)
      return { kind: "placed", callId: `call-${this.calls.length}` };
    return new Promise((resolve) => this.#hanging.set(req.leadId, resolve));
  }

  /** The hung dial of the lead answers at last. */
  settle(leadId: string, result: DialResult): void {
    this.#hanging.get(leadId)?.(result);
  }
}

/** A provider whose first reply is whatever the test gives (a misbehaving adapter), then placed. */
class BrokenProvider implements Provider {
  readonly name = "sim";
  readonly calls: DialRequest[] = [];
  constructor(private readonly first: unknown) {}

  async makeCall(req: DialRequest): Promise<DialResult> {
    this.calls.push(req);
    if (this.calls.length === 1) return this.first as DialResult;
    return { kind: "placed", callId: `call-${this.calls.length}` };
  }
}

/** A ScriptedProvider that also answers callStatus, with the answer the test sets. */
class StatusProvider extends ScriptedProvider {
  status: CallStatus | "throws" = { state: "unknown" };
  readonly asked: string[] = [];

  constructor(clock: Clock) {
    super(clock);
  }

  async callStatus(callId: string): Promise<CallStatus> {
    this.asked.push(callId);
    if (this.status === "throws") throw new Error("provider API down");
    return this.status;
  }
}

/** The lead store, failing every call while `down` (a Postgres outage). */
function outage() {
  const state = { down: false };
  const wrap = (inner: LeadStore): LeadStore =>
    new Proxy(inner, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (typeof value !== "function" || name === "close") return value;
        return (...args: unknown[]) => {
          if (state.down) return Promise.reject(new Error("connect ECONNREFUSED (Postgres down)"));
          return value.apply(target, args);
        };
      },
    });
  return { state, wrap };
}

describe.each(BACKENDS)("call life on $name", (backend: TestBackend) => {
  useBackend(backend);
  const scripted = (options: Omit<HarnessOptions, "provider"> = {}) =>
    createHarness({ ...options, backend, provider: (clock) => new ScriptedProvider(clock) });

  it("a placed reply with an empty call id is held unknown, then re-queued when its hold ends", async () => {
    const h = await scripted();
    h.provider.answer({ kind: "placed", callId: "" });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", dial: { unknown: true } });
    expect(h.of("lead:heldUnknown").map((e) => e.reason)).toEqual(["placed without a call id"]);

    await h.advance(5 * MINUTE + SECOND);
    expect(h.provider.calls, "redialled once the unknown hold ended").toHaveLength(2);
    expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", dial: { callId: "call-1" } });
    expect(await h.holders()).toEqual(["L1:2"]);
  });

  it.each([
    ["a call id that is no string", { kind: "placed", callId: 4711 }],
    ["a reply of no known kind", { kind: "queued", callId: "call-x" }],
    ["no reply object at all", undefined],
  ])("a broken reply (%s) is held unknown, never redialled blindly", async (_what, reply) => {
    const h = await createHarness({ backend, provider: () => new BrokenProvider(reply) });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    await h.advance(MINUTE);
    expect(h.provider.calls, "the request may have rung: no second dial").toHaveLength(1);
    expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", dial: { unknown: true } });
    expect(await h.holders()).toEqual(["L1:1"]);
  });

  it("a call id handed out twice: each end finds its dial by dialRef, and the sweep closes the other", async () => {
    const h = await scripted();
    h.provider.answer({ kind: "placed", callId: "dup" }, { kind: "placed", callId: "dup" });

    await h.dispatcher.submit(lead("A", PHONES[0]));
    await h.settle();
    await h.advance(SECOND);
    await h.dispatcher.submit(lead("B", PHONES[1]));
    await h.settle();
    const refOf = async (id: string) => (await h.lead(id)).dial?.dialRef as string;
    const [a, b] = [await refOf("A"), await refOf("B")];

    expect(await h.dispatcher.callEnded({ callId: "dup", dialRef: a, outcome: "ANSWERED" })).toEqual({
      kind: "ended",
      leadId: "A",
      next: "finished",
    });
    expect(await h.lead("B")).toMatchObject({ status: "PROCESSING" });
    expect(await h.holders()).toEqual(["B:1"]);

    // B's end never comes: past maxCallMinutes the sweep closes it, whatever its call id.
    await h.advance(4 * HOUR + MINUTE);
    expect(await h.lead("B")).toMatchObject({ status: "FINISHED", outcome: "UNKNOWN" });
    expect(await h.holders()).toEqual([]);
    expect(b).not.toBe(a);
  });

  it("the sweep closes an overdue call of a lead whose call id a later lead was given too", async () => {
    const h = await scripted();
    h.provider.answer({ kind: "placed", callId: "dup" }, { kind: "placed", callId: "dup" });

    await h.dispatcher.submit(lead("A", PHONES[0]));
    await h.settle();
    await h.advance(SECOND);
    await h.dispatcher.submit(lead("B", PHONES[1]));
    await h.settle();
    const b = (await h.lead("B")).dial?.dialRef as string;
    await h.dispatcher.callEnded({ callId: "dup", dialRef: b, outcome: "ANSWERED" });

    await h.advance(4 * HOUR + MINUTE);
    expect(await h.lead("A")).toMatchObject({ status: "FINISHED", outcome: "UNKNOWN" });
    expect(await h.lead("B")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
    expect(await h.holders()).toEqual([]);
  });

  it("an end with only a call id that overtakes the reply to makeCall is kept and applied (§7.15)", async () => {
    const h = await scripted();
    h.provider.answer({ latencyMs: SECOND, result: { kind: "placed", callId: "call-9" } });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    await h.advance(SECOND / 2);
    expect((await h.lead("L1")).status).toBe("DIALING");
    expect(await h.dispatcher.callEnded({ callId: "call-9", outcome: "ANSWERED" })).toEqual({
      kind: "pending",
      leadId: null,
    });
    await h.advance(MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
    expect(await h.holders()).toEqual([]);
    expect(h.alerts("orphan_call_end")).toEqual([]);
  });

  it("an end with only a call id that no dial ever returns is an orphan once no dial can be committing", async () => {
    const h = await scripted();
    expect((await h.dispatcher.callEnded({ callId: "ghost", outcome: "ANSWERED" })).kind).toBe("pending");
    expect(h.alerts("orphan_call_end")).toEqual([]);
    await h.advance(2 * MINUTE);
    expect(h.alerts("orphan_call_end")).toHaveLength(1);
  });

  it("a provider that ignores its AbortSignal: unknown at dial.timeoutMs, the next lead dials, stop() drains", async () => {
    const h = await createHarness({
      backend,
      config: { dial: { timeoutMs: SECOND }, concurrency: 1 },
      provider: () => new HangingProvider(),
    });

    await h.dispatcher.submit([lead("L1", PHONES[0]), lead("L2", PHONES[1])]);
    await h.advance(2 * SECOND);
    expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", dial: { unknown: true } });
    expect(h.of("lead:heldUnknown").map((e) => [e.leadId, e.reason])).toEqual([
      ["L1", "timeout"],
      ["L2", "timeout"],
    ]);
    expect(
      h.provider.calls.map((c) => c.leadId),
      "the next lead got its turn",
    ).toEqual(["L1", "L2"]);
    expect(await h.holders(), "the unknown dial keeps its line").toContain("L1:1");
    const lease = (await h.lead("L1")).leaseUntil;
    await h.advance(2 * MINUTE);
    expect((await h.lead("L1")).leaseUntil, "its lease is no longer renewed").toBe(lease);
    expect(
      h.provider.calls.filter((c) => c.leadId === "L1"),
      "never redialled blindly",
    ).toHaveLength(1);

    const stopping = h.dispatcher.stop();
    await h.advance(SECOND);
    expect(await stopping).toEqual({ drained: true });
  });

  it("a hung dial's late placed reply after its hold ended counts the call again (like a late end)", async () => {
    const h = await createHarness({
      backend,
      config: { dial: { timeoutMs: SECOND } },
      provider: () => new HangingProvider(),
    });

    await h.dispatcher.submit(lead("L1"));
    await h.advance(5 * MINUTE + 2 * SECOND);
    expect(h.provider.calls, "redialled after the unknown hold ended").toHaveLength(2);
    expect(await h.members(PHONES[0])).toEqual(["L1:2"]);

    h.provider.settle("L1", { kind: "placed", callId: "late-1" });
    await h.advance(SECOND);
    expect((await h.members(PHONES[0])).sort(), "the first dial did ring").toEqual(["L1:1", "L1:2"]);
    expect(await h.holders(), "nothing of the newer dial is freed").toEqual(["L1:2"]);
  });

  it("an end while the lead store is away is rejected, kept in the outbox and applied once it is back", async () => {
    const store = outage();
    const h = await createHarness({
      backend,
      wrapLeadStore: store.wrap,
      provider: (clock) => new ScriptedProvider(clock),
    });
    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    const dialRef = (await h.lead("L1")).dial?.dialRef as string;

    store.state.down = true;
    await expect(h.dispatcher.callEnded({ dialRef, outcome: "ANSWERED" })).rejects.toThrow(/Postgres down/);
    await h.advance(5 * SECOND);
    store.state.down = false;
    await h.advance(MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
    expect(await h.holders()).toEqual([]);
    expect(h.dispatcher.stats().outbox).toBe(0);
  });

  describe("callStatus before a stuck call is closed (§7.19)", () => {
    const withStatus = (status: CallStatus | "throws") =>
      createHarness({
        backend,
        provider: (clock) => {
          const p = new StatusProvider(clock);
          p.status = status;
          return p;
        },
      });

    it("a call the provider reports ended is closed with that outcome", async () => {
      const h = await withStatus({ state: "ended", outcome: "BUSY" });
      await h.dispatcher.submit(lead("L1"));
      await h.settle();
      await h.advance(4 * HOUR + MINUTE);
      expect(h.provider.asked).toEqual(["call-1"]);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "BUSY" });
      expect(await h.holders()).toEqual([]);
    });

    it("a call the provider reports live keeps its line and is asked again later", async () => {
      const h = await withStatus({ state: "live" });
      await h.dispatcher.submit(lead("L1"));
      await h.settle();
      await h.advance(4 * HOUR + MINUTE);
      expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING" });
      expect(await h.holders()).toEqual(["L1:1"]);

      h.provider.status = { state: "ended", outcome: "ANSWERED" };
      await h.advance(15 * MINUTE);
      expect(h.provider.asked).toEqual(["call-1", "call-1"]);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
      expect(await h.holders()).toEqual([]);
    });

    it("a provider that cannot tell, or fails, leaves the call closed UNKNOWN", async () => {
      for (const status of [{ state: "unknown" } as const, "throws" as const]) {
        const h = await withStatus(status);
        await h.dispatcher.submit(lead("L1"));
        await h.settle();
        await h.advance(4 * HOUR + MINUTE);
        expect(h.provider.asked).toEqual(["call-1"]);
        expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "UNKNOWN" });
        expect(await h.holders()).toEqual([]);
      }
    });
  });
});
