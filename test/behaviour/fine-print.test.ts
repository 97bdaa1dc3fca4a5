/**
 * Design §2 and §7 fine print around the matrix: what happens when the world moves between an actor's
 * steps (another process cancels, an end signal overtakes the dial's reply, a call never ends).
 */
import { describe, expect, it } from "vitest";
import { createHarness, HOUR, MINUTE, NUMBER, PHONE, SECOND, T0, TEMPLATE } from "../support/harness.js";
import { HookedLeadStore } from "../support/hooked-lead-store.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const lead = (id: string) => ({ id, phone: PHONE, templateId: TEMPLATE.id });
const withScript = (leadStore?: HookedLeadStore, numbers?: unknown[]) =>
  createHarness({ leadStore, numbers, provider: (clock) => new ScriptedProvider(clock) });

describe("spec fine print", () => {
  it("a lead cancelled by another process before its check is dropped without taking a line or a record (§2 step 1)", async () => {
    const leads = new HookedLeadStore();
    let open!: () => void;
    leads.beforeTemplate = () =>
      new Promise<void>((resolve) => {
        open = resolve;
      });
    const h = await withScript(leads);

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    expect((await h.lead("L1")).status).toBe("CLAIMED");
    // Another process cancels it in the shared store; this process's actor is not told.
    await leads.cancel("L1", h.clock.now());
    leads.beforeTemplate = null;
    open();
    await h.advance(MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
    expect(h.provider.calls).toEqual([]);
    expect(h.of("lead:dropped")).toEqual([{ leadId: "L1" }]);
    expect(h.gates.count("acquire"), "no line taken for a lead that is no longer ours").toBe(0);
    expect(h.gates.count("record"), "no rate-limit record for a lead that is no longer ours").toBe(0);
  });

  it("an end signal that arrives while the dial is still committing is applied right after (§7.15)", async () => {
    const h = await withScript();
    h.provider.answer({ latencyMs: SECOND, result: { kind: "placed", callId: "call-1" } });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    const { dialRef } = h.provider.calls[0].req;
    await h.advance(SECOND / 2);
    expect((await h.lead("L1")).status).toBe("DIALING");
    // The provider's end webhook overtakes its reply to makeCall.
    await h.dispatcher.callEnded({ dialRef, outcome: "ANSWERED" });
    await h.advance(MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
    expect(await h.holders(), "the line is freed once the dial commits").toEqual([]);
  });

  it("a placed call with no end signal within maxCallMinutes is closed UNKNOWN and its line released (§2 step 8)", async () => {
    const h = await withScript();

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    expect((await h.lead("L1")).status).toBe("PROCESSING");
    await h.advance(4 * HOUR + MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "UNKNOWN" });
    expect(await h.holders()).toEqual([]);
  });

  it("a cancel while dialling ends the lead CANCELLED when the dial proves not placed, and it is not redialled (§7.16)", async () => {
    const h = await withScript();
    h.provider.answer({ latencyMs: 2 * SECOND, result: { kind: "notPlaced", reason: "refused" } });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    await h.advance(SECOND);
    expect(await h.dispatcher.cancel("L1")).toMatchObject({ status: "DIALING", cancelRequested: true });
    await h.advance(10 * MINUTE);

    expect(h.provider.calls, "no dial after the cancel").toHaveLength(1);
    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
    expect(await h.holders()).toEqual([]);
    expect(await h.members(PHONE)).toEqual([]);
  });

  it("a late end for an expired unknown dial records its call and frees nothing of the newer dial (§7.15)", async () => {
    const h = await withScript();
    h.provider.answer({ kind: "unknown", reason: "timeout after send" });

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    const first = (await h.lead("L1")).dial?.dialRef as string;
    await h.advance(5 * MINUTE + SECOND);
    expect(h.provider.calls).toHaveLength(2);
    expect(await h.holders()).toEqual(["L1:2"]);
    expect(await h.members(PHONE)).toEqual(["L1:2"]);

    // The first dial did ring after all: its end arrives late.
    await h.dispatcher.callEnded({ dialRef: first, outcome: "ANSWERED" });
    await h.settle();
    expect(await h.holders(), "the newer dial keeps its line").toEqual(["L1:2"]);
    expect((await h.lead("L1")).status).toBe("PROCESSING");
    expect(await h.members(PHONE), "the call that did ring counts toward the cap again").toHaveLength(2);
  });

  it("a lead cancelled while its actor waits at a full number is reported cancelled, not deferred", async () => {
    const h = await withScript(undefined, [{ ...NUMBER, maxChannels: 1 }]);
    await h.direct.acquire({
      numberId: NUMBER.id,
      maxChannels: 1,
      holder: "other:1",
      now: T0,
      leaseUntil: T0 + HOUR,
      waiter: "other",
      waiterTtlMs: MINUTE,
    });
    let open!: () => void;
    h.gates.before("acquire", () => new Promise<void>((resolve) => (open = resolve)));

    await h.dispatcher.submit(lead("L1"));
    await h.settle();
    await h.dispatcher.cancel("L1");
    h.gates.before("acquire", null);
    open();
    await h.advance(MINUTE);

    expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
    expect(h.of("lead:finished")).toEqual([{ leadId: "L1", outcome: "CANCELLED" }]);
    expect(h.of("lead:deferred"), "no deferral event for a lead the store finished").toEqual([]);
    expect(h.dispatcher.stats().deferred).toEqual({});
  });
});
