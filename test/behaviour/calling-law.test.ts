/**
 * Calling law (design §7.8, §7.6, §7.9): a lead without a zone is judged in its number's zones; windows
 * with days and excluded dates; regional overrides that narrow; the presets; cooldowns after chosen
 * outcomes; caller IDs near the callee. Once in memory, once on Redis + Postgres.
 */
import { describe, expect, it } from "vitest";
import { createDispatcher, type Dispatcher } from "../../src/dispatcher.js";
import type { VirtualClock } from "../../src/infra/clock.js";
import type { DialRequest, DialResult, Provider } from "../../src/machines/ports.js";
import { memoryBackend, realBackend, useBackend } from "../support/backends.js";
import {
  createHarness,
  type HarnessOptions,
  HMAC_SECRET,
  HOUR,
  MINUTE,
  NUMBER,
  SECOND,
  silentLogger,
} from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const DAY = 24 * HOUR;
/** rateLimit.marginMs by default. */
const MARGIN_MS = 250;
const LA = "+14155550123";
const NY = "+12125551234";
const MIAMI = "+13055550123";
const MIAMI_2 = "+13055550199";
/** What a gate rebuild reads for the regF preset's cooldown (7 days after ANSWERED). */
const COOLING_REG_F = { ms: 7 * DAY, outcomes: ["ANSWERED"] };
/** Monday 2031-01-06, at an hour of UTC (EST = UTC−5, PST = UTC−8). */
const monday = (hourUtc: number, minute = 0) => Date.UTC(2031, 0, 6, hourUtc, minute);

/** Places every call and ends it `callMs` later with the outcome `outcomeOf` gives. */
class EndingProvider implements Provider {
  readonly name = "sim";
  readonly calls: { req: DialRequest; at: number }[] = [];
  #ids = 0;
  constructor(
    private readonly clock: VirtualClock,
    private readonly dispatcher: () => Dispatcher,
    private readonly outcomeOf: (req: DialRequest) => string = () => "ANSWERED",
    private readonly callMs = MINUTE,
  ) {}

  /** Which process the provider's callbacks reach; the test's dispatcher unless told otherwise. */
  endsVia: () => Dispatcher = () => this.dispatcher();

  async makeCall(req: DialRequest): Promise<DialResult> {
    this.calls.push({ req, at: this.clock.now() });
    const callId = `call-${++this.#ids}`;
    const outcome = this.outcomeOf(req);
    this.clock.setTimer(this.clock.now() + this.callMs, () => {
      void this.endsVia().callEnded({ callId, outcome });
    });
    return { kind: "placed", callId };
  }

  to(phone: string) {
    return this.calls.filter((c) => c.req.to === phone);
  }
}

describe.each([memoryBackend, realBackend({ isolation: "schema" })])("calling law on $name", (backend) => {
  useBackend(backend);
  const harness = (
    templates: unknown[],
    options: { start?: number; numbers?: unknown[]; outcomeOf?: (req: DialRequest) => string } = {},
  ) =>
    createHarness({
      backend,
      templates,
      numbers: options.numbers,
      start: options.start ?? monday(6),
      provider: (clock, dispatcher) => new EndingProvider(clock, dispatcher, options.outcomeOf),
    });

  /**
   * Lead L1 of a Regulation F template calls the Los Angeles phone at 08:00 PST; its first dial gets
   * no usable reply and is held unknown (5 minutes). Returns the harness and that dial's dialRef.
   */
  const unknownFirstDial = async (template: object, wrapLeadStore?: HarnessOptions["wrapLeadStore"]) => {
    const h = await createHarness({
      backend,
      templates: [{ id: "debt", resellerId: "r", presets: ["regF"], ...template }],
      start: monday(16),
      provider: (clock) => new ScriptedProvider(clock).answer({ kind: "unknown", reason: "no reply" }),
      ...(wrapLeadStore && { wrapLeadStore }),
    });
    await h.dispatcher.submit({ id: "L1", phone: LA, templateId: "debt" });
    await h.settle();
    return { h, firstRef: h.of("lead:dialling")[0]?.dialRef };
  };

  it("a lead without a timeZone is judged in its number's zone; the lead's own timeZone wins", async () => {
    const h = await harness([{ id: "tcpa", resellerId: "r", presets: ["tcpa"] }]);
    // 06:00 UTC: 22:00 Sunday in Los Angeles, 01:00 in New York, 11:30 in Kolkata.
    await h.dispatcher.submit([
      { id: "LA", phone: LA, templateId: "tcpa" },
      { id: "NY", phone: NY, templateId: "tcpa" },
      { id: "IST", phone: NY, templateId: "tcpa", timeZone: "Asia/Kolkata" },
    ]);
    await h.settle();
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["IST"]);
    expect((await h.lead("LA")).nextAttemptAt).toBe(monday(16)); // 08:00 PST
    expect((await h.lead("NY")).nextAttemptAt).toBe(monday(13)); // 08:00 EST
    const windows = h.of("lead:window");
    expect(windows).toContainEqual({
      leadId: "LA",
      zones: ["America/Los_Angeles"],
      zoneSource: "number",
      open: false,
    });
    expect(windows).toContainEqual({
      leadId: "IST",
      zones: ["Asia/Kolkata"],
      zoneSource: "lead",
      open: true,
    });

    await h.advance(monday(16) - h.clock.now());
    const at = Object.fromEntries(h.provider.calls.map((c) => [c.req.leadId, c.at]));
    expect(at).toEqual({ IST: monday(6), NY: monday(13), LA: monday(16) });
  });

  it("a window opens only on its days and never on an excluded date", async () => {
    const h = await harness([
      {
        id: "weekdays",
        resellerId: "r",
        window: {
          start: "09:00",
          end: "17:00",
          timeZone: "America/New_York",
          days: ["tue", "wed", "thu"],
          excludeDates: ["2031-01-07"],
        },
      },
    ]);
    await h.dispatcher.submit({ id: "L1", phone: NY, templateId: "weekdays" });
    await h.settle();
    // Monday is not a day of the window and Tuesday the 7th is excluded: Wednesday 09:00 EST.
    expect((await h.lead("L1")).nextAttemptAt).toBe(Date.UTC(2031, 0, 8, 14));
    await h.advance(Date.UTC(2031, 0, 8, 14) - h.clock.now());
    expect(h.provider.calls.map((c) => c.at)).toEqual([Date.UTC(2031, 0, 8, 14)]);
  });

  it("a regional override narrows the window for the callees it matches and no others", async () => {
    const h = await harness(
      [
        {
          id: "t",
          resellerId: "r",
          window: { start: "08:00", end: "21:00", timeZone: "America/New_York" },
          regions: [{ match: { region: "FL" }, window: { start: "10:00", end: "12:00" } }],
        },
      ],
      { start: monday(13, 30) }, // 08:30 EST
    );
    await h.dispatcher.submit([
      { id: "NY", phone: NY, templateId: "t" },
      { id: "FL", phone: MIAMI, templateId: "t" },
    ]);
    await h.settle();
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["NY"]);
    expect((await h.lead("FL")).nextAttemptAt).toBe(monday(15)); // 10:00 EST
  });

  it("the florida preset: 3 calls per 24 h and 08:00–20:00 for Florida callees; New York is not Florida", async () => {
    const h = await harness(
      [
        {
          id: "fl",
          resellerId: "r",
          presets: ["florida"],
          retry: { maxAttempts: 100, onOutcomes: ["NO_ANSWER"], delaySeconds: 1800 },
        },
      ],
      { start: monday(12), outcomeOf: () => "NO_ANSWER" }, // 07:00 EST
    );
    await h.dispatcher.submit([
      { id: "FL", phone: MIAMI, templateId: "fl" },
      { id: "NY", phone: NY, templateId: "fl" },
    ]);
    await h.advance(DAY + 4 * HOUR);
    const fl = h.provider.to(MIAMI).map((c) => c.at);
    // Not before 08:00 EST (13:00 UTC); three, then the fourth once the first left the 24 h window.
    expect(fl.slice(0, 3)).toEqual([monday(13), monday(13, 31), monday(14, 2)]);
    expect(fl[3]).toBe(monday(13) + DAY + MARGIN_MS);
    for (const at of fl) {
      const hour = new Date(at).getUTCHours(); // EST = UTC−5: 08:00–20:00 is 13:00–01:00 UTC
      expect(hour >= 13 || hour < 1).toBe(true);
    }
    // New York callees meet neither rule: a call each half hour from 07:00 EST on.
    expect(h.provider.to(NY).length).toBeGreaterThan(20);
    expect(h.provider.to(NY)[0]?.at).toBe(monday(12));
  });

  it("the regF preset: its templates call no phone within 7 days of an answered call; NO_ANSWER does not cool", async () => {
    const h = await harness(
      [
        { id: "debt", resellerId: "r", presets: ["regF"] },
        { id: "plain", resellerId: "r" },
      ],
      { start: monday(12), outcomeOf: (req) => (req.to === LA ? "ANSWERED" : "NO_ANSWER") },
    );
    await h.dispatcher.submit([
      { id: "A1", phone: LA, templateId: "debt" },
      { id: "N1", phone: NY, templateId: "debt" },
    ]);
    await h.advance(2 * MINUTE); // both calls ended a minute after they started
    const answeredEnd = monday(12, 1);
    await h.dispatcher.submit([
      { id: "A2", phone: LA, templateId: "debt" },
      { id: "N2", phone: NY, templateId: "debt" },
      { id: "P1", phone: LA, templateId: "plain" },
    ]);
    await h.settle();
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["A1", "N1", "N2", "P1"]);
    expect((await h.lead("A2")).nextAttemptAt).toBe(answeredEnd + 7 * DAY);
    // The plain template's call to the same phone was answered too: a cooldown counts from any
    // call's end with a listed outcome (design §7.6), so A2 waits 7 days from that one.
    await h.advance(8 * DAY);
    const plainEnd = monday(12, 3);
    expect(h.provider.calls.filter((c) => c.req.leadId === "A2").map((c) => c.at)).toEqual([
      plainEnd + 7 * DAY,
    ]);
  });

  it("local presence picks a free number of the callee's area code, then region, then country, then any", async () => {
    const line = (id: string, e164: string) => ({ ...NUMBER, id, e164, maxChannels: 1 });
    const numbers = [
      line("a-uk", "+442079460000"),
      line("b-ny", "+12125550100"),
      line("c-sf", "+14155550100"),
      line("d-pa", "+16505550100"), // Palo Alto: California, another area code
    ];
    const h = await harness(
      [
        { id: "local", resellerId: "r", callerId: "local" },
        { id: "pool", resellerId: "r" },
      ],
      { numbers, start: monday(18) },
    );
    const sf = (i: number) => `+1415555${String(1000 + i)}`;
    await h.dispatcher.submit([1, 2, 3, 4].map((i) => ({ id: `L${i}`, phone: sf(i), templateId: "local" })));
    await h.settle();
    const picks = h.of("lead:dialling").map((e) => [e.leadId, e.numberId, e.callerId]);
    expect(picks).toEqual([
      ["L1", "c-sf", "areaCode"],
      ["L2", "d-pa", "region"],
      ["L3", "b-ny", "country"],
      ["L4", "a-uk", "pool"],
    ]);
    // Lines free again: the same area code first, every time one is free.
    await h.advance(2 * MINUTE);
    await h.dispatcher.submit({ id: "L5", phone: sf(5), templateId: "local" });
    await h.dispatcher.submit({ id: "P1", phone: sf(6), templateId: "pool" });
    await h.settle();
    const later = h.of("lead:dialling").slice(4);
    expect(later.map((e) => [e.leadId, e.numberId, e.callerId])).toEqual([
      ["L5", "c-sf", "areaCode"],
      ["P1", "a-uk", undefined], // no local presence: the least busy number, ties by id
    ]);
  });

  it("a lead passes the window only while it stays open a minute more, so its call goes out inside it", async () => {
    const office = { start: "09:00", end: "17:00", timeZone: "America/New_York" };
    const h = await harness([{ id: "office", resellerId: "r", window: office }], { start: monday(21, 58) });
    await h.dispatcher.submit({ id: "L1", phone: NY, templateId: "office" }); // 16:58 EST
    await h.settle();
    await h.advance(MINUTE);
    await h.dispatcher.submit({ id: "L2", phone: MIAMI, templateId: "office" }); // 16:59 EST
    await h.settle();
    expect(h.provider.calls.map((c) => [c.req.leadId, c.at])).toEqual([["L1", monday(21, 58)]]);
    expect((await h.lead("L2")).nextAttemptAt).toBe(Date.UTC(2031, 0, 7, 14)); // Tuesday 09:00 EST
  });

  it("the end of an older dial, whose unknown hold had expired, still starts the cooldown", async () => {
    const { h, firstRef } = await unknownFirstDial({});
    // The unknown dial's hold ends; the lead is dialled again and that call is still going.
    await h.advance(6 * MINUTE);
    expect(h.provider.calls.map((c) => c.result && typeof c.result === "object" && c.result.kind)).toEqual([
      "unknown",
      "placed",
    ]);
    const endedAt = h.clock.now();
    const late = await h.dispatcher.callEnded({ dialRef: firstRef, outcome: "ANSWERED" });
    expect(late.kind).toBe("duplicate");
    // Written on that older dial's row too: a rebuild after a Redis restart writes its mark again.
    expect((await h.leads.gateRebuildRows(h.clock.now(), null, COOLING_REG_F)).endedCalls).toEqual([
      { phone: LA, outcome: "ANSWERED", at: endedAt },
    ]);
    await h.dispatcher.submit({ id: "L2", phone: LA, templateId: "debt" });
    await h.settle();
    expect(h.provider.calls).toHaveLength(2);
    expect((await h.lead("L2")).nextAttemptAt).toBe(endedAt + 7 * DAY);
  });

  it("the late end of an older dial reaches its dial row through the outbox when the lead store fails", async () => {
    let failing = false;
    // Only the dial-row write of a late end fails; every other call goes through.
    const { h, firstRef } = await unknownFirstDial(
      {},
      (inner) =>
        new Proxy(inner, {
          get(target, property) {
            const value = Reflect.get(target, property, target) as unknown;
            if (typeof value !== "function") return value;
            if (property === "endDial" && failing) return () => Promise.reject(new Error("Postgres down"));
            return (value as (...args: unknown[]) => unknown).bind(target);
          },
        }),
    );
    await h.advance(6 * MINUTE);
    expect(h.provider.calls).toHaveLength(2);
    const endedAt = h.clock.now();
    failing = true;
    // The end is refused (the provider's webhook would be retried) and kept in the outbox whole.
    await expect(h.dispatcher.callEnded({ dialRef: firstRef, outcome: "ANSWERED" })).rejects.toThrow(
      "Postgres down",
    );
    expect(h.dispatcher.stats().outbox).toBe(1);
    expect((await h.leads.gateRebuildRows(h.clock.now(), null, COOLING_REG_F)).endedCalls).toEqual([]);

    await h.advance(MINUTE);
    failing = false;
    await h.advance(MINUTE);
    expect(h.dispatcher.stats().outbox).toBe(0);
    // Applied with the end's own time, not the time the outbox got through.
    expect((await h.leads.gateRebuildRows(h.clock.now(), null, COOLING_REG_F)).endedCalls).toEqual([
      { phone: LA, outcome: "ANSWERED", at: endedAt },
    ]);
    await h.dispatcher.submit({ id: "L2", phone: LA, templateId: "debt" });
    await h.settle();
    expect((await h.lead("L2")).nextAttemptAt).toBe(endedAt + 7 * DAY);
  });

  it("a late end of the lead's own dial, after its unknown hold expired, starts the cooldown once", async () => {
    const { h, firstRef } = await unknownFirstDial({
      window: { start: "08:00", end: "08:05", timeZone: "America/Los_Angeles" },
    });
    // The hold expires at 08:05; the window has closed, so the lead waits for tomorrow's.
    await h.advance(6 * MINUTE);
    expect((await h.lead("L1")).status).toBe("SCHEDULED");
    const endedAt = h.clock.now();
    expect((await h.dispatcher.callEnded({ dialRef: firstRef, outcome: "ANSWERED" })).kind).toBe("duplicate");
    // The same end again, later: it changes nothing (the cooldown still counts from the first).
    await h.advance(HOUR);
    await h.dispatcher.callEnded({ dialRef: firstRef, outcome: "ANSWERED" });
    // Tomorrow's window opens: the cooldown defers the lead to a week after the first end.
    await h.advance(DAY);
    expect(h.provider.calls).toHaveLength(1);
    expect((await h.lead("L1")).nextAttemptAt).toBe(endedAt + 7 * DAY);
    expect((await h.leads.gateRebuildRows(h.clock.now(), null, COOLING_REG_F)).endedCalls).toEqual([
      { phone: LA, outcome: "ANSWERED", at: endedAt },
    ]);
  });

  it("a call end received by a process that has not read the template yet still marks the phone", async () => {
    const h = await harness(
      [{ id: "busy", resellerId: "r", cooldowns: [{ seconds: 2 * 86400, afterOutcomes: ["BUSY"] }] }],
      {
        start: monday(16),
        outcomeOf: () => "BUSY",
      },
    );
    // Another process on the same stores, started before the template existed: its rules in force
    // know no cooldown. The provider's callback reaches it.
    const other = createDispatcher({
      leadStore: h.leads,
      gateStore: h.direct,
      providers: [h.provider],
      clock: h.clock,
      logger: silentLogger,
      hmacSecret: HMAC_SECRET,
      owner: "other-process",
      numbers: [],
      templates: [],
    });
    h.provider.endsVia = () => other;
    await h.dispatcher.submit({ id: "L1", phone: LA, templateId: "busy" });
    await h.advance(2 * MINUTE);
    await h.dispatcher.submit({ id: "L2", phone: LA, templateId: "busy" });
    await h.settle();
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1"]);
    expect((await h.lead("L2")).nextAttemptAt).toBe(monday(16, 1) + 2 * DAY);
  });

  it("a cooldown that fails closed defers the lead when the gate store cannot count", async () => {
    const h = await harness([
      {
        id: "strict",
        resellerId: "r",
        cooldowns: [{ seconds: 3600, afterOutcomes: ["ANSWERED"], failMode: "closed" }],
      },
    ]);
    h.gates.fail(["record"]);
    await h.dispatcher.submit({ id: "L1", phone: MIAMI_2, templateId: "strict" });
    await h.settle();
    expect(h.provider.calls).toHaveLength(0);
    expect(h.of("gate:failClosed")).toHaveLength(1);
    expect((await h.lead("L1")).status).toBe("SCHEDULED");
    expect((await h.lead("L1")).nextAttemptAt).toBeGreaterThanOrEqual(h.clock.now() + 5 * SECOND);
  });
});
