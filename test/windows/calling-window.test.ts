/**
 * Calling windows (design §2 step 2, §7.8): start inclusive, end exclusive, in the template's IANA zone
 * or the lead's own; overnight windows wrap; a closed window parks the lead until the exact next
 * instant the window is open, across DST changes; a changed window moves the leads it parked.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { windowDecision } from "../../src/actors/calling-window.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import type { CallingWindow } from "../../src/machines/ports.js";
import { createWorld, HOUR, MINUTE, PHONES, T0 } from "../controls/world.js";

const NY = "America/New_York";
const LONDON = "Europe/London";
const at = (iso: string) => Date.parse(iso);
const win = (start: string, end: string, timeZone = NY): CallingWindow => ({ start, end, timeZone });
const opensAt = (window: CallingWindow, now: number, zone?: string) => {
  const decision = windowDecision(window, now, zone);
  if (decision.open) throw new Error(`window open at ${new Date(now).toISOString()}`);
  return new Date(decision.opensAt).toISOString();
};
const isOpen = (window: CallingWindow | undefined, now: number, zone?: string) =>
  windowDecision(window, now, zone).open;

describe("windowDecision", () => {
  const office = win("09:00", "17:00");

  it("is open from the start minute (inclusive) to the end minute (exclusive)", () => {
    expect(isOpen(office, at("2031-01-06T14:00:00Z"))).toBe(true); // 09:00 EST
    expect(isOpen(office, at("2031-01-06T21:59:59.999Z"))).toBe(true); // 16:59:59.999
    expect(isOpen(office, at("2031-01-06T22:00:00Z"))).toBe(false); // 17:00
    expect(isOpen(office, at("2031-01-06T13:59:59.999Z"))).toBe(false);
  });

  it("before the start parks until today's start, after the end until tomorrow's", () => {
    expect(opensAt(office, T0)).toBe("2031-01-06T14:00:00.000Z");
    expect(opensAt(office, at("2031-01-06T13:59:59.999Z"))).toBe("2031-01-06T14:00:00.000Z");
    expect(opensAt(office, at("2031-01-06T22:00:00Z"))).toBe("2031-01-07T14:00:00.000Z");
    expect(opensAt(office, at("2031-01-07T04:59:00Z"))).toBe("2031-01-07T14:00:00.000Z"); // 23:59 EST
  });

  it("no window, or start equal to end, is always open", () => {
    expect(isOpen(undefined, T0)).toBe(true);
    expect(isOpen(win("09:00", "09:00"), T0)).toBe(true);
  });

  describe("overnight 21:00–06:00 wraps past midnight", () => {
    const night = win("21:00", "06:00");

    it("is open late in the evening and early in the morning, closed in the day", () => {
      expect(isOpen(night, at("2031-01-07T02:00:00Z"))).toBe(true); // 21:00 EST
      expect(isOpen(night, at("2031-01-07T04:59:59Z"))).toBe(true); // 23:59:59
      expect(isOpen(night, at("2031-01-07T05:00:00Z"))).toBe(true); // 00:00
      expect(isOpen(night, at("2031-01-06T10:59:59.999Z"))).toBe(true); // 05:59:59.999
      expect(isOpen(night, at("2031-01-06T11:00:00Z"))).toBe(false); // 06:00
      expect(isOpen(night, at("2031-01-06T17:00:00Z"))).toBe(false); // noon
    });

    it("parks a closed lead until 21:00 the same day", () => {
      expect(opensAt(night, at("2031-01-06T11:00:00Z"))).toBe("2031-01-07T02:00:00.000Z");
      expect(opensAt(night, at("2031-01-07T01:59:59.999Z"))).toBe("2031-01-07T02:00:00.000Z");
    });

    it("the night the clocks go forward ends at 06:00 EDT, the next opens at 21:00 EDT", () => {
      expect(opensAt(night, at("2031-03-08T11:00:00Z"))).toBe("2031-03-09T02:00:00.000Z"); // 21:00 EST
      expect(isOpen(night, at("2031-03-09T07:30:00Z"))).toBe(true); // 03:30 EDT, after the gap
      expect(isOpen(night, at("2031-03-09T09:59:00Z"))).toBe(true); // 05:59 EDT
      expect(opensAt(night, at("2031-03-09T10:00:00Z"))).toBe("2031-03-10T01:00:00.000Z"); // 21:00 EDT
    });
  });

  describe("America/New_York, spring forward (2031-03-09 02:00 EST → 03:00 EDT)", () => {
    it("a day window opens at 09:00 EDT, one hour earlier in UTC than the day before", () => {
      expect(opensAt(office, at("2031-03-08T23:00:00Z"))).toBe("2031-03-09T13:00:00.000Z");
      expect(opensAt(office, at("2031-03-08T05:00:00Z"))).toBe("2031-03-08T14:00:00.000Z");
    });

    it("a start inside the gap opens where the gap ends, when the window is open then", () => {
      expect(opensAt(win("02:30", "05:00"), at("2031-03-09T06:00:00Z"))).toBe("2031-03-09T07:00:00.000Z");
      expect(opensAt(win("02:00", "04:00"), at("2031-03-09T06:59:59Z"))).toBe("2031-03-09T07:00:00.000Z");
      expect(isOpen(win("02:30", "05:00"), at("2031-03-09T07:00:00Z"))).toBe(true);
    });

    it("a window wholly inside the gap does not open that day", () => {
      expect(opensAt(win("02:00", "02:30"), at("2031-03-09T06:00:00Z"))).toBe("2031-03-10T06:00:00.000Z");
    });
  });

  describe("America/New_York, fall back (2031-11-02 02:00 EDT → 01:00 EST)", () => {
    it("a start in the repeated hour opens at its first occurrence", () => {
      expect(opensAt(win("01:30", "05:00"), at("2031-11-02T04:00:00Z"))).toBe("2031-11-02T05:30:00.000Z");
    });

    it("a window that closed in the first pass of the hour opens again in the second", () => {
      const early = win("01:00", "01:30");
      expect(isOpen(early, at("2031-11-02T05:15:00Z"))).toBe(true); // 01:15 EDT
      expect(opensAt(early, at("2031-11-02T05:30:00Z"))).toBe("2031-11-02T06:00:00.000Z"); // 01:00 EST
      expect(opensAt(early, at("2031-11-02T06:30:00Z"))).toBe("2031-11-03T06:00:00.000Z");
    });

    it("the clock falling back into a window opens it at the change", () => {
      expect(opensAt(win("00:30", "01:30"), at("2031-11-02T05:59:00Z"))).toBe("2031-11-02T06:00:00.000Z");
    });

    it("a day window opens at 09:00 EST, one hour later in UTC than the day before", () => {
      expect(opensAt(office, at("2031-11-01T22:00:00Z"))).toBe("2031-11-02T14:00:00.000Z");
      expect(opensAt(office, at("2031-10-31T22:00:00Z"))).toBe("2031-11-01T13:00:00.000Z");
    });
  });

  describe("Europe/London (2031-03-30 01:00 GMT → 02:00 BST, 2031-10-26 02:00 BST → 01:00 GMT)", () => {
    const day = win("08:00", "20:00", LONDON);

    it("a day window opens at 08:00 BST after the spring change and 08:00 GMT after the autumn one", () => {
      expect(opensAt(day, at("2031-03-29T21:00:00Z"))).toBe("2031-03-30T07:00:00.000Z");
      expect(opensAt(day, at("2031-10-25T19:00:00Z"))).toBe("2031-10-26T08:00:00.000Z");
    });

    it("01:00–01:30 lies in the spring gap: it opens the next night", () => {
      expect(opensAt(win("01:00", "01:30", LONDON), at("2031-03-30T00:30:00Z"))).toBe(
        "2031-03-31T00:00:00.000Z",
      );
    });

    it("01:15–01:45 opens again in the repeated autumn hour", () => {
      expect(opensAt(win("01:15", "01:45", LONDON), at("2031-10-26T00:45:00Z"))).toBe(
        "2031-10-26T01:15:00.000Z",
      );
    });
  });

  it("the lead's zone overrides the template's", () => {
    // T0 is 01:00 in New York, 06:00 in London, 11:30 in Kolkata.
    expect(isOpen(office, T0)).toBe(false);
    expect(isOpen(office, T0, "Asia/Kolkata")).toBe(true);
    expect(opensAt(office, T0, LONDON)).toBe("2031-01-06T09:00:00.000Z");
  });

  describe("property: the decision agrees with the local wall clock (read through Intl)", () => {
    const ZONES = [NY, LONDON, "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"];
    const formatters = new Map(
      ZONES.map((zone) => [
        zone,
        new Intl.DateTimeFormat("en-US", {
          timeZone: zone,
          hourCycle: "h23",
          hour: "numeric",
          minute: "numeric",
        }),
      ]),
    );
    const localMinute = (zone: string, t: number) => {
      const parts = (formatters.get(zone) as Intl.DateTimeFormat).formatToParts(t);
      const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
      return part("hour") * 60 + part("minute");
    };
    const oracleOpen = (start: number, end: number, zone: string, t: number) => {
      const m = localMinute(zone, t);
      return start === end || (start < end ? m >= start && m < end : m >= start || m < end);
    };
    const hhmm = (m: number) =>
      `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
    // Instants near the DST changes of 2031 in both hemispheres, and anywhere in the year.
    const CHANGES = [
      "2031-03-09T07:00:00Z",
      "2031-11-02T06:00:00Z",
      "2031-03-30T01:00:00Z",
      "2031-10-26T01:00:00Z",
      "2031-04-05T16:00:00Z",
      "2031-10-04T16:00:00Z",
      "2031-04-06T03:00:00Z",
      "2031-09-07T04:00:00Z",
    ].map(at);
    const instant = fc.oneof(
      fc
        .tuple(fc.constantFrom(...CHANGES), fc.integer({ min: -36 * HOUR, max: 36 * HOUR }))
        .map(([c, d]) => c + d),
      fc.integer({ min: at("2031-01-01T00:00:00Z"), max: at("2031-12-31T00:00:00Z") }),
    );
    // Often in the small hours, where the clocks change.
    const minuteOfDay = fc.oneof(
      fc.integer({ min: 0, max: 16 }).map((q) => q * 15),
      fc.integer({ min: 0, max: 95 }).map((q) => q * 15),
      fc.integer({ min: 0, max: 1439 }),
    );

    it("open exactly when the wall clock is inside; else opensAt is the first open minute after now", () => {
      fc.assert(
        fc.property(fc.constantFrom(...ZONES), minuteOfDay, minuteOfDay, instant, (zone, start, end, now) => {
          const decision = windowDecision(win(hhmm(start), hhmm(end), zone), now);
          expect(decision.open).toBe(oracleOpen(start, end, zone, now));
          if (decision.open) return;
          expect(decision.opensAt).toBeGreaterThan(now);
          expect(oracleOpen(start, end, zone, decision.opensAt)).toBe(true);
          // Window edges and DST changes fall on whole minutes: no earlier minute may be open.
          for (let t = Math.floor(now / MINUTE) * MINUTE + MINUTE; t < decision.opensAt; t += MINUTE) {
            if (oracleOpen(start, end, zone, t))
              throw new Error(
                `open at ${new Date(t).toISOString()}, before ${new Date(decision.opensAt).toISOString()}`,
              );
          }
        }),
        { numRuns: 300, seed: 20310309 },
      );
    });
  });
});

describe("calling windows in the dispatcher", () => {
  // New York numbers: a lead without a zone is judged in its number's (design §7.8).
  const NY_PHONE = "+12125551234";
  const NY_PHONE_2 = "+12125551235";
  const NY_OFFICE = { id: "t-ny", resellerId: "r1", window: win("09:00", "17:00") };
  const OTHER = { id: "t-other", resellerId: "r1", window: win("09:00", "17:00") };

  it("a closed-window lead parks at exactly the next window start and dials at that instant", async () => {
    const w = await createWorld({ templates: [NY_OFFICE] });
    await w.dispatcher.submit({ id: "L1", phone: NY_PHONE, templateId: "t-ny" });
    await w.settle();
    const start = at("2031-01-06T14:00:00Z");
    expect(w.of("lead:deferred")).toEqual([{ leadId: "L1", reason: "window", at: start }]);
    expect(await w.lead("L1")).toMatchObject({
      status: "SCHEDULED",
      nextAttemptAt: start,
      deferReason: "window",
    });

    await w.advance(start - T0 - 1);
    expect(w.provider.dials).toEqual([]);
    await w.advance(1);
    expect(w.provider.dialled("L1")).toEqual([start]);
    await w.dispatcher.stop();
  });

  it("the lead's timeZone overrides the template's", async () => {
    const w = await createWorld({ templates: [NY_OFFICE] });
    await w.dispatcher.submit([
      { id: "kolkata", phone: PHONES[0], templateId: "t-ny", timeZone: "Asia/Kolkata" },
      { id: "london", phone: PHONES[1], templateId: "t-ny", timeZone: LONDON },
    ]);
    await w.settle();
    expect(w.provider.dialled("kolkata")).toEqual([T0]);
    expect(await w.lead("london")).toMatchObject({
      nextAttemptAt: at("2031-01-06T09:00:00Z"),
      deferReason: "window",
    });
    await w.advance(3 * HOUR);
    expect(w.provider.dialled("london")).toEqual([at("2031-01-06T09:00:00Z")]);
    await w.dispatcher.stop();
  });

  it("a template whose window opens now wakes its parked leads, and only those", async () => {
    const w = await createWorld({ templates: [NY_OFFICE, OTHER] });
    await w.dispatcher.submit([
      { id: "parked", phone: NY_PHONE, templateId: "t-ny" },
      { id: "later", phone: NY_PHONE_2, templateId: "t-ny", dueAt: T0 + 10 * HOUR },
      { id: "other", phone: PHONES[2], templateId: "t-other" },
    ]);
    await w.settle();

    // Now from 01:00 in New York (T0): open for the New York callee.
    await w.dispatcher.upsertTemplates([{ ...NY_OFFICE, window: win("01:00", "12:00") }]);
    await w.settle();
    expect(w.of("window:changed")).toEqual([{ templateId: "t-ny", woken: 1 }]);
    expect(w.provider.dialled("parked")).toEqual([T0]);
    expect(await w.lead("later")).toMatchObject({ status: "SCHEDULED", nextAttemptAt: T0 + 10 * HOUR });
    expect(await w.lead("other")).toMatchObject({ nextAttemptAt: at("2031-01-06T14:00:00Z") });
    await w.dispatcher.stop();
  });

  it("a window that now starts later re-parks its leads at the new start, not the old one", async () => {
    const w = await createWorld({ templates: [NY_OFFICE] });
    await w.dispatcher.submit({ id: "L1", phone: NY_PHONE, templateId: "t-ny" });
    await w.settle();
    await w.advance(HOUR);
    await w.dispatcher.upsertTemplates([{ ...NY_OFFICE, window: win("12:00", "17:00") }]);
    await w.settle();
    const newStart = at("2031-01-06T17:00:00Z");
    expect(await w.lead("L1")).toMatchObject({ status: "SCHEDULED", nextAttemptAt: newStart, claimSeq: 2 });
    await w.advance(newStart - w.clock.now());
    expect(w.provider.dialled("L1")).toEqual([newStart]);
  });

  it("removing the window dials the parked leads now; an unchanged window wakes nobody", async () => {
    const w = await createWorld({ templates: [NY_OFFICE] });
    await w.dispatcher.submit({ id: "L1", phone: NY_PHONE, templateId: "t-ny" });
    await w.settle();
    await w.dispatcher.upsertTemplates([
      { ...NY_OFFICE, retry: { maxAttempts: 2, onOutcomes: ["BUSY"], delaySeconds: 60 } },
    ]);
    await w.settle();
    expect(w.of("window:changed")).toEqual([]);
    expect(await w.lead("L1")).toMatchObject({ status: "SCHEDULED", claimSeq: 1 });

    await w.dispatcher.upsertTemplates([{ id: "t-ny", resellerId: "r1" }]);
    await w.settle();
    expect(w.of("window:changed")).toEqual([{ templateId: "t-ny", woken: 1 }]);
    expect(w.provider.dialled("L1")).toEqual([T0]);
  });

  it("a restart with an edited window moves the leads the old one parked", async () => {
    const store = new MemoryLeadStore();
    const first = await createWorld({ leadStore: store, templates: [NY_OFFICE] });
    await first.dispatcher.submit({ id: "L1", phone: NY_PHONE, templateId: "t-ny" });
    await first.settle();
    expect(await first.lead("L1")).toMatchObject({
      deferReason: "window",
      nextAttemptAt: at("2031-01-06T14:00:00Z"),
    });
    await first.dispatcher.stop();

    const second = await createWorld({
      leadStore: store,
      start: T0 + MINUTE,
      templates: [{ ...NY_OFFICE, window: win("00:30", "18:00") }],
    });
    await second.settle();
    expect(second.provider.dialled("L1")).toEqual([T0 + MINUTE]);
  });
});
