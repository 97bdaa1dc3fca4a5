/**
 * The behaviour matrix of design §2, one named test per row, plus the behaviours around it (backoff,
 * windows, cancel, graceful stop, end signals, retries, submit). Every test runs a real dispatcher on a
 * virtual clock, once on the in-memory backend and once on Redis + Postgres (the harness's servers, a
 * key prefix and a schema per test); the gate store can fail like a dead Redis.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/infra/config.js";
import { type SimPlan, SimulatedProvider } from "../../src/infra/providers/simulated.js";
import type { RateRule } from "../../src/machines/ports.js";
import { memoryBackend, realBackend, type TestBackend, useBackend } from "../support/backends.js";
import type { GateCall } from "../support/faulty-gate-store.js";
import {
  createHarness,
  type HarnessOptions,
  HOUR,
  MINUTE,
  NUMBER,
  PHONE,
  PHONES,
  SECOND,
  T0,
  TEMPLATE,
} from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const RULES: RateRule[] = [{ maxCalls: 7, windowSeconds: 3600 }];
const COMMAND_TIMEOUT_MS = 500;
/** rateLimit.marginMs by default: room returns this long after the window (the provider's view). */
const MARGIN_MS = 250;

type SimOptions = { default?: SimPlan; perLead?: Record<string, SimPlan[]> };

/** A harness with the simulated provider on its clock, end signals wired to the dispatcher. */
const simHarness = (backend: TestBackend, options: SimOptions & Omit<HarnessOptions, "provider"> = {}) => {
  const { default: plan, perLead, ...rest } = options;
  return createHarness({
    ...rest,
    backend,
    provider: (clock, dispatcher) =>
      new SimulatedProvider({
        clock,
        default: plan,
        perLead,
        onCallEnd: (end) => void dispatcher().callEnded(end),
      }),
  });
};

const scriptHarness = (backend: TestBackend, options: Omit<HarnessOptions, "provider"> = {}) =>
  createHarness({ ...options, backend, provider: (clock) => new ScriptedProvider(clock) });

const BACKENDS = [memoryBackend, realBackend({ isolation: "schema" })];

const lead = (id: string, phone: string = PHONE, extra: Record<string, unknown> = {}) => ({
  id,
  phone,
  templateId: TEMPLATE.id,
  ...extra,
});

/** A pause point: calls matching `when` wait at the gate store until `open()`. */
function barrier(when: (call: GateCall) => boolean = () => true) {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  let reached = 0;
  return {
    hook: async (call: GateCall) => {
      if (!when(call)) return;
      reached += 1;
      await opened;
    },
    open: () => open(),
    get reached() {
      return reached;
    },
  };
}

describe.each(BACKENDS)("on $name", (backend) => {
  useBackend(backend);
  const withSim = (options?: Parameters<typeof simHarness>[1]) => simHarness(backend, options);
  const withScript = (options?: Parameters<typeof scriptHarness>[1]) => scriptHarness(backend, options);

  describe("behaviour matrix (design §2)", () => {
    it("single lead, count < max: dial; exactly one peek and one record", async () => {
      const h = await withSim();
      for (const i of [0, 1, 2]) await h.direct.record(h.key(PHONE), `earlier-${i}`, RULES, T0 - 20 * MINUTE);

      await h.dispatcher.submit(lead("L1"));
      await h.advance(SECOND);

      expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L1"]);
      expect(h.gates.count("peek", h.key(PHONE))).toBe(1);
      expect(h.gates.count("record", h.key(PHONE))).toBe(1);
      expect(await h.members(PHONE)).toHaveLength(4);
      expect(await h.holders()).toEqual(["L1:1"]);
      expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", attempt: 0 });

      // The call ends: its line is freed, its record stays (a placed call counts).
      await h.advance(MINUTE);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
      expect(await h.holders()).toEqual([]);
      expect(await h.members(PHONE)).toHaveLength(4);
      expect(h.gates.count("peek", h.key(PHONE))).toBe(1);
      expect(h.gates.count("record", h.key(PHONE))).toBe(1);
    });

    it("single lead, count ≥ max: alert + defer until the window has room (≤ 3600 s); no channel taken; no record", async () => {
      const h = await withSim();
      const earlier = Array.from({ length: 7 }, (_, i) => T0 - 40 * MINUTE + i * MINUTE);
      for (const [i, at] of earlier.entries()) await h.direct.record(h.key(PHONE), `earlier-${i}`, RULES, at);

      await h.dispatcher.submit(lead("L1"));
      await h.settle();

      const roomAt = earlier[0] + HOUR + MARGIN_MS;
      const l1 = await h.lead("L1");
      expect(l1).toMatchObject({ status: "SCHEDULED", attempt: 0, nextAttemptAt: roomAt });
      expect(l1.nextAttemptAt - T0).toBeLessThanOrEqual(3600 * SECOND);
      expect(h.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "rateLimit", at: roomAt }]);
      const alerts = h.alerts("rate_limit_blocked");
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ severity: "P2", key: "rate_limit_blocked:res-1:tpl-1" });
      expect(alerts[0].fields.phoneMasked).toBe("***0123");
      expect(JSON.stringify(alerts[0])).not.toContain(PHONE);
      expect(h.gates.count("acquire")).toBe(0);
      expect(h.gates.count("record")).toBe(0);
      expect(await h.members(PHONE)).toHaveLength(7);
      expect(await h.holders()).toEqual([]);

      // Not before the room time; at it, the oldest record has left the window and the lead dials.
      await h.advance(roomAt - h.clock.now() - 1);
      expect(h.provider.dials).toHaveLength(0);
      expect(h.gates.count("peek")).toBe(1);
      await h.advance(SECOND);
      expect(h.provider.dials.map((d) => [d.leadId, d.at])).toEqual([["L1", roomAt]]);
    });

    it("single lead, channel exhausted: parked, no record, no count growth, dialled within one call length of the line freeing", async () => {
      const h = await withSim({
        numbers: [{ ...NUMBER, maxChannels: 1 }],
        default: { result: "placed", outcome: "ANSWERED", callSeconds: 45 },
      });
      // L0 takes the only line for a 45 s call; L1 (another phone) finds it busy.
      await h.dispatcher.submit(lead("L0", PHONES[1]));
      await h.settle();
      await h.dispatcher.submit(lead("L1"));
      await h.advance(30 * SECOND);

      expect(h.of("lead:parked")).toEqual([{ leadId: "L1", numberIds: [NUMBER.id] }]);
      expect(h.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "channel", at: T0 + MINUTE }]);
      expect(await h.lead("L1")).toMatchObject({
        status: "SCHEDULED",
        parkedOn: [NUMBER.id],
        parkedAt: T0,
        deferReason: "channel",
      });
      expect(h.dispatcher.stats().waiting).toBe(1);
      // Parked: met the gates once, holds nothing, records nothing, is not claimed again.
      expect(h.of("lead:claimed").filter((c) => c.leadId === "L1")).toHaveLength(1);
      expect(h.gates.count("peek", h.key(PHONE))).toBe(1);
      expect(h.gates.count("record", h.key(PHONE))).toBe(0);
      expect(h.dispatcher.stats().gates.channelExhausted).toBe(1);
      expect(await h.members(PHONE)).toEqual([]);
      expect(await h.holders()).toEqual(["L0:1"]);

      // L0's call ends at 45 s: its line wakes L1, which dials at once, recorded once.
      await h.advance(MINUTE);
      const [l0, l1] = h.provider.dials;
      expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L0", "L1"]);
      expect(l1.at - l0.at).toBeLessThanOrEqual(45 * SECOND + SECOND);
      expect(h.of("channel:woken")).toEqual([{ numberId: NUMBER.id, leadIds: ["L1"] }]);
      expect(h.gates.count("peek", h.key(PHONE))).toBe(2);
      expect(await h.members(PHONE)).toHaveLength(1);
      expect(h.dispatcher.stats().waiting).toBe(0);
      expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", parkedOn: null, parkedAt: null });
    });

    it("a parked lead whose wake-up was lost is dialled within channelWait.maxParkSeconds", async () => {
      const h = await withSim({ numbers: [{ ...NUMBER, maxChannels: 1 }] });
      await h.direct.acquire({
        numberId: NUMBER.id,
        maxChannels: 1,
        holder: "other:1",
        now: T0,
        leaseUntil: T0 + HOUR,
        waiter: "other",
        waiterTtlMs: MINUTE,
      });
      await h.dispatcher.submit(lead("L1"));
      await h.advance(10 * SECOND);
      expect(h.of("lead:parked")).toHaveLength(1);

      // Freed behind the dispatcher's back (a process died between freeing and waking).
      await h.direct.release(NUMBER.id, "other:1");
      await h.advance(45 * SECOND);
      expect(h.provider.dials).toHaveLength(0);
      await h.advance(5 * SECOND);
      expect(h.provider.dials.map((d) => [d.leadId, d.at])).toEqual([["L1", T0 + MINUTE]]);
      expect(h.of("lead:claimed")).toHaveLength(2);
    });

    it("N concurrent same-phone, count + N ≤ max: all N dial; count grows by N", async () => {
      const h = await withSim();
      for (const i of [0, 1]) await h.direct.record(h.key(PHONE), `earlier-${i}`, RULES, T0 - MINUTE);
      const ids = ["L1", "L2", "L3", "L4", "L5"];

      await h.dispatcher.submit(ids.map((id) => lead(id)));
      await h.advance(SECOND);

      expect(h.provider.dials.map((d) => d.leadId).sort()).toEqual(ids);
      expect(await h.members(PHONE)).toHaveLength(2 + 5);
      expect(h.dispatcher.stats().gates.recordRejected).toBe(0);
      expect(h.of("lead:deferred")).toEqual([]);
      expect(h.alerts("rate_limit_blocked")).toEqual([]);
    });

    it("N concurrent same-phone, count + N > max: exactly max − count dial; the others release channel + number and defer until the window has room; their makeCall never runs", async () => {
      const h = await withSim();
      for (const i of [0, 1, 2]) await h.direct.record(h.key(PHONE), `earlier-${i}`, RULES, T0 - 10 * MINUTE);
      const ids = ["L1", "L2", "L3", "L4", "L5", "L6"];

      await h.dispatcher.submit(ids.map((id) => lead(id)));
      await h.advance(SECOND);

      const dialled = h.provider.dials.map((d) => d.leadId);
      expect(dialled).toHaveLength(4);
      expect(new Set(dialled).size).toBe(4);
      expect(await h.members(PHONE)).toHaveLength(7);
      const roomAt = T0 - 10 * MINUTE + HOUR + MARGIN_MS;
      const losers = ids.filter((id) => !dialled.includes(id));
      expect(losers).toHaveLength(2);
      for (const id of losers) {
        const l = await h.lead(id);
        expect(l.status).toBe("SCHEDULED");
        expect(l.nextAttemptAt).toBeGreaterThanOrEqual(roomAt);
        expect(l.nextAttemptAt).toBeLessThan(roomAt + SECOND);
        expect(h.gates.holdsFreed.get(`${id}:1`)).toBe(1);
      }
      expect((await h.holders()).sort()).toEqual(dialled.map((id) => `${id}:1`).sort());
      expect(h.alerts("rate_limit_blocked")).toHaveLength(1);
    });

    it("makeCall proves not placed after record: record undone, channel released, defer by backoff", async () => {
      const h = await withSim({ perLead: { L1: [{ result: "notPlaced" }] } });

      await h.dispatcher.submit(lead("L1"));
      await h.advance(SECOND);

      const [first] = h.provider.dials;
      expect(first.result).toBe("notPlaced");
      const l1 = await h.lead("L1");
      expect(l1).toMatchObject({ status: "SCHEDULED", attempt: 0, notPlacedStreak: 1 });
      expect(l1.nextAttemptAt).toBe((first.resultAt as number) + 5 * SECOND);
      expect(h.gates.recordsAdded.get("L1:1")).toBe(1);
      expect(h.gates.recordsUndone.get("L1:1")).toBe(1);
      expect(h.gates.holdsFreed.get("L1:1")).toBe(1);
      expect(await h.members(PHONE)).toEqual([]);
      expect(await h.holders()).toEqual([]);
      expect(h.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "notPlaced", at: l1.nextAttemptAt }]);

      await h.advance(5 * SECOND);
      expect(h.provider.dials.map((d) => [d.attempt, d.at, d.result])).toEqual([
        [0, T0, "notPlaced"],
        [0, l1.nextAttemptAt, "placed"],
      ]);
      expect(await h.members(PHONE)).toEqual(["L1:2"]);
    });

    it("makeCall outcome unknown: held as a placed call; no redial until reconciled", async () => {
      const h = await withSim({ perLead: { L1: [{ result: "unknown" }] } });

      await h.dispatcher.submit(lead("L1"));
      await h.advance(SECOND);

      const l1 = await h.lead("L1");
      expect(l1.status).toBe("PROCESSING");
      expect(l1.dial).toMatchObject({ unknown: true, callId: null, recorded: true });
      expect(await h.holders()).toEqual(["L1:1"]);
      expect(await h.members(PHONE)).toEqual(["L1:1"]);
      expect(h.alerts("unknown_dial")).toHaveLength(1);
      expect(h.alerts("unknown_dial")[0].severity).toBe("P1");

      // The unknown-dial hold (5 min from the dial row) keeps the line and the record; no redial.
      const dialAt = (l1.dial as { at: number }).at;
      await h.advance(dialAt + 5 * MINUTE - h.clock.now() - 1);
      expect(h.provider.dials).toHaveLength(1);
      expect(await h.holders()).toEqual(["L1:1"]);
      expect((await h.lead("L1")).status).toBe("PROCESSING");

      // The hold ends: released, record undone, re-queued and dialled again under a new claim.
      await h.advance(SECOND);
      expect(h.gates.holdsFreed.get("L1:1")).toBe(1);
      expect(h.gates.recordsUndone.get("L1:1")).toBe(1);
      expect(h.provider.dials).toHaveLength(2);
      expect(h.provider.dials[1].at).toBeGreaterThanOrEqual(dialAt + 5 * MINUTE);
      expect(await h.holders()).toEqual(["L1:2"]);
      expect(await h.members(PHONE)).toEqual(["L1:2"]);
      expect(h.of("lead:deferred").map((d) => d.reason)).toEqual(["unknownExpired"]);

      await h.advance(MINUTE);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
      expect(await h.holders()).toEqual([]);
    });

    it("store (Redis) down at peek or record: fail open within store.commandTimeoutMs (no hang), one throttled alert", async () => {
      const h = await withSim({ config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } } });
      const phones = PHONES.slice(0, 4);
      // Every rate-limit command (and the shared alert throttle) times out.
      h.gates.fail(["peek", "record", "allow"], { delayMs: COMMAND_TIMEOUT_MS });

      await h.dispatcher.submit(phones.map((phone, i) => lead(`L${i + 1}`, phone)));
      await h.advance(2 * SECOND);

      // Every lead dialled, each waiting at most one timeout at peek and one at record.
      expect(h.provider.dials.map((d) => d.leadId).sort()).toEqual(["L1", "L2", "L3", "L4"]);
      for (const dial of h.provider.dials) expect(dial.at).toBeLessThanOrEqual(T0 + 2 * COMMAND_TIMEOUT_MS);
      const failOpen = h.of("gate:failOpen");
      expect(failOpen.filter((f) => f.gate === "peek")).toHaveLength(4);
      expect(failOpen.filter((f) => f.gate === "record")).toHaveLength(4);
      const alerts = h.alerts("store_unavailable");
      expect(alerts).toHaveLength(1);
      expect(alerts[0].severity).toBe("P0");
      expect(h.alerts()).toHaveLength(1);

      // The store comes back: the dials made while failing open are recorded (outbox), once each.
      h.gates.heal();
      await h.advance(MINUTE);
      for (const [i, phone] of phones.entries()) expect(await h.members(phone)).toEqual([`L${i + 1}:1`]);
      expect(h.dispatcher.stats().outbox).toBe(0);
    });

    it("store (Redis) down at channel gate: defer (fail closed), one throttled alert", async () => {
      const h = await withSim({ config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } } });
      const phones = PHONES.slice(0, 3);
      // The acquire runs but its reply is lost; releases and the alert throttle time out too.
      h.gates.fail(["acquire"], { mode: "after", delayMs: COMMAND_TIMEOUT_MS });
      h.gates.fail(["release", "allow"], { delayMs: COMMAND_TIMEOUT_MS });

      await h.dispatcher.submit(phones.map((phone, i) => lead(`L${i + 1}`, phone)));
      await h.advance(2 * SECOND);

      expect(h.provider.dials).toEqual([]);
      expect(h.gates.count("record")).toBe(0);
      const deferrals = h.timed("lead:deferred");
      expect(deferrals).toHaveLength(3);
      for (const { payload, at } of deferrals) {
        expect(payload.reason).toBe("store");
        expect(payload.at - at).toBeGreaterThanOrEqual(5 * SECOND);
        expect(payload.at - at).toBeLessThanOrEqual(30 * SECOND);
        expect(await h.lead(payload.leadId)).toMatchObject({
          status: "SCHEDULED",
          nextAttemptAt: payload.at,
        });
      }
      expect(h.alerts("store_unavailable")).toHaveLength(1);
      expect(h.alerts()).toHaveLength(1);

      // The holds the timed-out acquires did take are released by name once the store is back.
      h.gates.heal();
      await h.advance(4 * SECOND);
      for (const id of ["L1", "L2", "L3"]) expect(h.gates.holdsFreed.get(`${id}:1`)).toBe(1);
      expect(await h.holders()).toEqual([]);
      expect((await Promise.all(phones.map((p) => h.members(p)))).flat()).toEqual([]);

      // And the leads dial after their defer.
      await h.advance(30 * SECOND);
      expect(h.provider.dials.map((d) => d.leadId).sort()).toEqual(["L1", "L2", "L3"]);
    });

    it("no outbound number: FINISHED NUMBER_UNAVAILABLE + one P1 alert per (reseller, template) per 30 min; no channel, no record", async () => {
      const h = await withSim({
        numbers: [{ ...NUMBER, id: "num-off", status: "DISABLED", pool: false }],
        templates: [
          { id: "tpl-a", resellerId: "res-1", numberId: "num-off" },
          { id: "tpl-b", resellerId: "res-1" },
        ],
      });
      const submit = (ids: string[], templateId: string) =>
        h.dispatcher.submit(ids.map((id, i) => ({ id, phone: PHONES[i], templateId })));

      await submit(["A1", "A2", "A3"], "tpl-a");
      await submit(["B1", "B2"], "tpl-b");
      await h.settle();
      await h.advance(10 * MINUTE);
      await submit(["A4", "A5"], "tpl-a");
      await h.settle();

      const ids = ["A1", "A2", "A3", "B1", "B2", "A4", "A5"];
      for (const id of ids)
        expect(await h.lead(id)).toMatchObject({ status: "FINISHED", outcome: "NUMBER_UNAVAILABLE" });
      const alerts = h.alerts("no_outbound_number");
      expect(alerts.map((a) => [a.key, a.severity])).toEqual([
        ["no_outbound_number:res-1:tpl-a", "P1"],
        ["no_outbound_number:res-1:tpl-b", "P1"],
      ]);
      expect(h.gates.count("acquire")).toBe(0);
      expect(h.gates.count("record")).toBe(0);
      expect(h.provider.dials).toEqual([]);
      // Never a retry loop: one claim per lead.
      expect(h.of("lead:claimed")).toHaveLength(ids.length);

      // 30 minutes after the first alert, the same (reseller, template) alerts again.
      await h.advance(T0 + 30 * MINUTE - h.clock.now());
      await submit(["A6"], "tpl-a");
      await h.settle();
      expect(h.alerts("no_outbound_number")).toHaveLength(3);
    });
  });

  describe("dispatcher behaviour", () => {
    it("notPlaced backs off min(60, 5·n) s for the n-th notPlaced in a row, and a placed call resets n", async () => {
      const h = await withScript();
      h.provider.answer(
        ...Array.from({ length: 9 }, () => ({ kind: "notPlaced", reason: "refused" }) as const),
      );

      await h.dispatcher.submit(lead("L1"));
      await h.advance(10 * MINUTE);

      const times = h.provider.calls.map((c) => c.at);
      expect(times).toHaveLength(10);
      const gaps = times.slice(1).map((t, i) => (t - times[i]) / SECOND);
      expect(gaps).toEqual([5, 10, 15, 20, 25, 30, 35, 40, 45]);
      expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING", attempt: 0, notPlacedStreak: 0 });
      expect(await h.members(PHONE)).toEqual(["L1:10"]);
      expect(await h.holders()).toEqual(["L1:10"]);
    });

    it("a 429 without Retry-After backs off like notPlaced (capped at 60 s); a Retry-After is honoured", async () => {
      const h = await withScript();
      h.provider.answer(
        ...Array.from({ length: 13 }, () => ({ kind: "throttled", reason: "429" }) as const),
        {
          kind: "throttled",
          retryAfterSeconds: 17,
          reason: "429",
        },
      );

      await h.dispatcher.submit(lead("L1"));
      await h.advance(HOUR);

      const times = h.provider.calls.map((c) => c.at);
      const gaps = times.slice(1).map((t, i) => (t - times[i]) / SECOND);
      expect(gaps).toEqual([5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60, 17]);
      expect((await h.lead("L1")).status).toBe("PROCESSING");
      expect(await h.members(PHONE)).toHaveLength(1);
    });

    it("10 notPlaced in a row end the lead PROVIDER_REJECTED with one P1 alert", async () => {
      const h = await withScript();
      h.provider.answer(
        ...Array.from({ length: 9 }, () => ({ kind: "notPlaced", reason: "refused" }) as const),
        { throws: "ECONNREFUSED" }, // an adapter error before sending is notPlaced too
      );

      await h.dispatcher.submit(lead("L1"));
      await h.advance(HOUR);

      expect(h.provider.calls).toHaveLength(10);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "PROVIDER_REJECTED" });
      expect(h.alerts("provider_rejected").map((a) => a.severity)).toEqual(["P1"]);
      expect(await h.holders()).toEqual([]);
      expect(await h.members(PHONE)).toEqual([]);
      await h.advance(HOUR);
      expect(h.provider.calls).toHaveLength(10);
    });

    it("a closed calling window defers the lead to the exact next window start", async () => {
      const h = await withSim({
        templates: [{ ...TEMPLATE, window: { start: "09:00", end: "17:00", timeZone: "America/New_York" } }],
      });
      const nineInNewYork = Date.UTC(2031, 0, 6, 14, 0); // T0 is 01:00 there

      await h.dispatcher.submit([
        // A New York number: without a zone of its own the lead is judged in its number's.
        lead("L1", PHONES[3]),
        // The callee's own zone wins: 11:30 in Kolkata is inside the window.
        lead("L2", PHONES[4], { timeZone: "Asia/Kolkata" }),
      ]);
      await h.advance(SECOND);

      expect(await h.lead("L1")).toMatchObject({ status: "SCHEDULED", nextAttemptAt: nineInNewYork });
      expect(h.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "window", at: nineInNewYork }]);
      expect(h.gates.count("peek", h.key(PHONES[3]))).toBe(0);
      expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L2"]);

      await h.advance(nineInNewYork - h.clock.now() - 1);
      expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L2"]);
      await h.advance(SECOND);
      expect(h.provider.dials.map((d) => [d.leadId, d.at])).toEqual([
        ["L2", T0],
        ["L1", nineInNewYork],
      ]);
    });

    for (const gate of ["peek", "acquire", "record"] as const) {
      it(`cancel before the dial (actor waiting at ${gate}) finishes the lead CANCELLED and releases what it held`, async () => {
        const h = await withSim();
        const pause = barrier();
        h.gates.before(gate, pause.hook);

        await h.dispatcher.submit(lead("L1"));
        await h.settle();
        expect(pause.reached).toBe(1);
        if (gate === "record") expect(await h.holders()).toEqual(["L1:1"]);

        const cancelled = await h.dispatcher.cancel("L1");
        expect(cancelled).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
        pause.open();
        await h.advance(MINUTE);

        expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
        expect(h.provider.dials).toEqual([]);
        expect(await h.holders()).toEqual([]);
        expect(await h.members(PHONE)).toEqual([]);
        expect(h.gates.holdsFreed.get("L1:1") ?? 0).toBe(h.gates.holdsTaken.get("L1:1") ?? 0);
        expect(h.gates.recordsUndone.get("L1:1") ?? 0).toBe(h.gates.recordsAdded.get("L1:1") ?? 0);
        expect(h.of("lead:finished")).toEqual([{ leadId: "L1", outcome: "CANCELLED" }]);
        expect(h.of("lead:claimed")).toHaveLength(1);
      });
    }

    it("cancel of a lead still waiting for its due time finishes it CANCELLED; it is never dialled", async () => {
      const h = await withSim();
      await h.dispatcher.submit(lead("L1", PHONE, { dueAt: T0 + HOUR }));
      await h.dispatcher.cancel("L1");
      await h.advance(2 * HOUR);
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
      expect(h.of("lead:claimed")).toEqual([]);
      expect(h.provider.dials).toEqual([]);
    });

    it("graceful stop re-queues pre-dial actors and never cancels a started dial", async () => {
      const h = await withScript();
      // A waits at record (line held), C waits at peek (nothing held), B is inside makeCall for 5 s.
      const atRecord = barrier((c) => c.name?.startsWith("A:") ?? false);
      const atPeek = barrier((c) => c.subject === h.key(PHONES[2]));
      h.gates.before("record", atRecord.hook);
      h.gates.before("peek", atPeek.hook);
      h.provider.answer({ latencyMs: 5 * SECOND, result: { kind: "placed", callId: "call-B" } });

      await h.dispatcher.submit([lead("B", PHONES[1])]);
      await h.settle();
      await h.dispatcher.submit([lead("A", PHONES[0]), lead("C", PHONES[2])]);
      await h.settle();
      expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["B"]);
      expect(atRecord.reached).toBe(1);
      expect(atPeek.reached).toBe(1);
      expect((await h.holders()).sort()).toEqual(["A:1", "B:1"]);

      let stopped: { drained: boolean } | undefined;
      const stopping = h.dispatcher.stop().then((r) => {
        stopped = r;
      });
      await h.settle();
      atRecord.open();
      atPeek.open();
      await h.settle();

      // Before the dial: released and re-queued now.
      const stopAt = h.clock.now();
      for (const id of ["A", "C"])
        expect(await h.lead(id)).toMatchObject({ status: "SCHEDULED", nextAttemptAt: stopAt, attempt: 0 });
      expect(
        h
          .of("lead:deferred")
          .map((d) => [d.leadId, d.reason])
          .sort(),
      ).toEqual([
        ["A", "shutdown"],
        ["C", "shutdown"],
      ]);
      expect(await h.holders()).toEqual(["B:1"]);
      expect(await h.members(PHONES[0])).toEqual([]);
      expect(h.gates.holdsTaken.get("C:1")).toBeUndefined();

      // The started dial runs to its end and is never aborted; stop waits for it.
      expect(stopped).toBeUndefined();
      const [b] = h.provider.calls;
      expect(b.req.signal.aborted).toBe(false);
      await h.advance(5 * SECOND);
      await stopping;
      expect(stopped).toEqual({ drained: true });
      expect(b.result).toEqual({ kind: "placed", callId: "call-B" });
      expect(await h.lead("B")).toMatchObject({ status: "PROCESSING" });
      expect(await h.holders()).toEqual(["B:1"]);

      // Stopped: nothing is claimed any more.
      await h.advance(10 * MINUTE);
      expect(h.provider.calls).toHaveLength(1);
      expect(h.of("lead:claimed")).toHaveLength(3);
    });

    it("a duplicate or stale callEnded frees nothing", async () => {
      const h = await withScript({
        templates: [
          TEMPLATE,
          {
            id: "tpl-retry",
            resellerId: "res-1",
            retry: { maxAttempts: 2, onOutcomes: ["NO_ANSWER"], delaySeconds: 60 },
          },
        ],
      });
      await h.dispatcher.submit([lead("A", PHONES[0]), lead("B", PHONES[1])]);
      await h.settle();
      const callOf = (leadId: string, nth = 0) =>
        (h.provider.callsOf(leadId)[nth].result as { callId: string }).callId;

      expect(await h.dispatcher.callEnded({ callId: callOf("A"), outcome: "ANSWERED" })).toEqual({
        kind: "ended",
        leadId: "A",
        next: "finished",
      });
      expect(await h.holders()).toEqual(["B:1"]);
      const dialRefA = (await h.lead("A")).dial?.dialRef as string;
      expect(await h.dispatcher.callEnded({ callId: callOf("A"), outcome: "ANSWERED" })).toEqual({
        kind: "duplicate",
        leadId: "A",
      });
      expect(await h.dispatcher.callEnded({ dialRef: dialRefA, outcome: "BUSY" })).toEqual({
        kind: "duplicate",
        leadId: "A",
      });
      expect(await h.holders()).toEqual(["B:1"]);
      expect(await h.lead("A")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
      expect(await h.lead("B")).toMatchObject({ status: "PROCESSING" });

      // An end of an older dial of a retried lead frees nothing of its newer dial.
      await h.dispatcher.submit({ id: "R", phone: PHONES[2], templateId: "tpl-retry" });
      await h.settle();
      const firstCall = callOf("R");
      expect((await h.dispatcher.callEnded({ callId: firstCall, outcome: "NO_ANSWER" })).kind).toBe("ended");
      await h.advance(61 * SECOND);
      expect(h.provider.callsOf("R")).toHaveLength(2);
      expect((await h.holders()).sort()).toEqual(["B:1", "R:2"]);
      expect(await h.dispatcher.callEnded({ callId: firstCall, outcome: "NO_ANSWER" })).toEqual({
        kind: "duplicate",
        leadId: "R",
      });
      expect((await h.holders()).sort()).toEqual(["B:1", "R:2"]);
      expect(await h.lead("R")).toMatchObject({ status: "PROCESSING", attempt: 1 });
    });

    it("an orphan call end raises one orphan_call_end alert and frees nothing", async () => {
      const h = await withScript();
      await h.dispatcher.submit(lead("L1"));
      await h.settle();

      // A dialRef names a dial row written before makeCall: none found is an orphan at once.
      expect(await h.dispatcher.callEnded({ dialRef: "ghost:1@1", outcome: "ANSWERED" })).toEqual({
        kind: "orphan",
      });
      // A call id alone may belong to a dial whose reply has not come yet: kept until none can.
      for (const signal of [
        { callId: "ghost-1", outcome: "ANSWERED" },
        { callId: "ghost-2", outcome: "BUSY" },
      ])
        expect(await h.dispatcher.callEnded(signal)).toEqual({ kind: "pending", leadId: null });
      await h.advance(2 * MINUTE);

      const alerts = h.alerts("orphan_call_end");
      expect(alerts).toHaveLength(1);
      expect(alerts[0].severity).toBe("P1");
      expect(await h.holders()).toEqual(["L1:1"]);
      expect(await h.lead("L1")).toMatchObject({ status: "PROCESSING" });
    });

    it("retry policy: NO_ANSWER is retried after the delay with attempt + 1, up to maxAttempts placed calls", async () => {
      const h = await withSim({
        templates: [
          {
            ...TEMPLATE,
            retry: { maxAttempts: 3, onOutcomes: ["NO_ANSWER", "BUSY"], delaySeconds: 600 },
          },
        ],
        default: { result: "placed", outcome: "NO_ANSWER", callSeconds: 30 },
        perLead: { L2: [{ result: "placed", outcome: "ANSWERED", callSeconds: 30 }] },
      });

      await h.dispatcher.submit([lead("L1", PHONES[0]), lead("L2", PHONES[1])]);
      await h.advance(2 * HOUR);

      const l1Dials = h.provider.dials.filter((d) => d.leadId === "L1");
      expect(l1Dials.map((d) => d.attempt)).toEqual([0, 1, 2]);
      for (const [i, dial] of l1Dials.entries()) {
        if (i === 0) continue;
        expect(dial.at).toBe((l1Dials[i - 1].endsAt as number) + 600 * SECOND);
      }
      expect(await h.lead("L1")).toMatchObject({ status: "FINISHED", outcome: "NO_ANSWER", attempt: 2 });
      expect(await h.members(PHONES[0])).toHaveLength(3);
      expect(
        h
          .of("lead:deferred")
          .filter((d) => d.leadId === "L1")
          .map((d) => d.reason),
      ).toEqual(["retry", "retry"]);

      // An outcome outside onOutcomes is not retried.
      expect(h.provider.dials.filter((d) => d.leadId === "L2")).toHaveLength(1);
      expect(await h.lead("L2")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED", attempt: 0 });
      expect(await h.holders()).toEqual([]);
    });

    it("submit is idempotent by lead id: a second submit returns the existing lead", async () => {
      const h = await withSim();
      const [first] = await h.dispatcher.submit(lead("L1", PHONES[0]));
      const [again] = await h.dispatcher.submit(lead("L1", PHONES[1]));
      expect(again).toMatchObject({ id: "L1", phone: PHONES[0], dueAt: first.dueAt });
      await h.advance(SECOND);
      const [later] = await h.dispatcher.submit(lead("L1", PHONES[1]));
      expect(later).toMatchObject({ id: "L1", phone: PHONES[0], status: "PROCESSING" });
      await h.advance(HOUR);
      expect(await h.leads.list()).toHaveLength(1);
      expect(h.provider.dials.map((d) => d.leadId)).toEqual(["L1"]);
    });

    it("a validation error names the field path and masks the phone; nothing is stored", async () => {
      const h = await withSim();
      const bad = "+1415555012";
      const error = await h.dispatcher.submit([lead("L1"), lead("L2", bad)]).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ path: "leads[1].phone" });
      const message = (error as Error).message;
      expect(message).toContain("leads[1].phone");
      expect(message).toContain("***5012");
      expect(message).not.toContain(bad);
      expect(await h.leads.list()).toEqual([]);

      await expect(h.dispatcher.submit(lead("L3", PHONE, { templateId: "" }))).rejects.toThrow(
        /^lead\.templateId /,
      );
    });
  });
});
