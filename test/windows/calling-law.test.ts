/**
 * A lead's calling law (design §7.8): windows with days and excluded dates, several windows and
 * several zones at once, and the law a template, its presets and its regions make for one callee.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lawWindowDecision } from "../../src/actors/calling-window.js";
import { lawOf, nearness, templateCooldowns, templateRules } from "../../src/infra/calling-law.js";
import { placeOf } from "../../src/infra/geo.js";
import type { Template, Weekday, WindowHours } from "../../src/machines/ports.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const at = (iso: string) => Date.parse(iso);
const iso = (t: number) => new Date(t).toISOString();
const opensAt = (windows: WindowHours[], zones: string[], now: number) => {
  const decision = lawWindowDecision(windows, zones, now);
  return decision.open ? "open" : iso(decision.opensAt);
};
const NY = "America/New_York";
const LA = "America/Los_Angeles";
const CONFIG_RULES = [{ maxCalls: 7, windowSeconds: 3600 }];

describe("lawWindowDecision: days and excluded dates", () => {
  // 2031-01-06 is a Monday.
  const weekdays: WindowHours = {
    start: "09:00",
    end: "17:00",
    days: ["mon", "tue", "wed", "thu", "fri"],
  };

  it("a window closed on its off days opens on the next listed day", () => {
    expect(opensAt([weekdays], [NY], at("2031-01-10T23:00:00Z"))).toBe("2031-01-13T14:00:00.000Z"); // Fri 18:00 → Mon
    expect(opensAt([weekdays], [NY], at("2031-01-11T15:00:00Z"))).toBe("2031-01-13T14:00:00.000Z"); // Sat 10:00
    expect(opensAt([weekdays], [NY], at("2031-01-13T15:00:00Z"))).toBe("open"); // Mon 10:00
  });

  it("an excluded date does not open; the next day does", () => {
    const holiday = { ...weekdays, excludeDates: ["2031-01-13", "2031-01-14"] };
    expect(opensAt([holiday], [NY], at("2031-01-13T15:00:00Z"))).toBe("2031-01-15T14:00:00.000Z");
  });

  it("a wrapping window belongs to the day it opens", () => {
    const fridayNight: WindowHours = { start: "22:00", end: "02:00", days: ["fri"] };
    expect(opensAt([fridayNight], [NY], at("2031-01-11T06:30:00Z"))).toBe("open"); // Sat 01:30
    expect(opensAt([fridayNight], [NY], at("2031-01-12T06:30:00Z"))).toBe("2031-01-18T03:00:00.000Z"); // Sun 01:30
    const excluded = { ...fridayNight, excludeDates: ["2031-01-10"] };
    expect(opensAt([excluded], [NY], at("2031-01-11T06:30:00Z"))).toBe("2031-01-18T03:00:00.000Z");
  });

  it("start = end with days is open all day from the start on those days", () => {
    const sundays: WindowHours = { start: "00:00", end: "00:00", days: ["sun"] };
    expect(opensAt([sundays], [NY], at("2031-01-12T15:00:00Z"))).toBe("open");
    expect(opensAt([sundays], [NY], at("2031-01-13T15:00:00Z"))).toBe("2031-01-19T05:00:00.000Z");
  });
});

describe("lawWindowDecision: every window open in every zone", () => {
  it("a number of two zones is callable only while both are inside the window", () => {
    const tcpa: WindowHours = { start: "08:00", end: "21:00" };
    // 08:00 in New York is 05:00 in Los Angeles: both open at 08:00 PST.
    expect(opensAt([tcpa], [NY, LA], at("2031-01-06T13:00:00Z"))).toBe("2031-01-06T16:00:00.000Z");
    expect(opensAt([tcpa], [NY, LA], at("2031-01-06T16:00:00Z"))).toBe("open");
    // 21:00 EST closes New York while Los Angeles is still open.
    expect(opensAt([tcpa], [NY, LA], at("2031-01-07T02:00:00Z"))).toBe("2031-01-07T16:00:00.000Z");
  });

  it("several windows: the narrowest one decides", () => {
    const day: WindowHours = { start: "08:00", end: "21:00" };
    const florida: WindowHours = { start: "08:00", end: "20:00" };
    expect(opensAt([day, florida], [NY], at("2031-01-07T01:30:00Z"))).toBe("2031-01-07T13:00:00.000Z");
  });

  it("windows that never meet look again a day later", () => {
    const morning: WindowHours = { start: "08:00", end: "09:00" };
    const now = at("2031-01-06T12:00:00Z");
    expect(opensAt([morning], [NY, "Asia/Tokyo"], now)).toBe(iso(now + 24 * HOUR));
  });

  describe("property: agrees with the local wall clock of every zone (read through Intl)", () => {
    const ZONES = [NY, LA, "Europe/London", "Asia/Kolkata", "Australia/Sydney", "America/Phoenix"];
    const DAYS: Weekday[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const formatters = new Map(
      ZONES.map((zone) => [
        zone,
        new Intl.DateTimeFormat("en-CA", {
          timeZone: zone,
          hourCycle: "h23",
          year: "numeric",
          month: "2-digit",
          day: "2-digit",
          hour: "numeric",
          minute: "numeric",
          weekday: "short",
        }),
      ]),
    );
    /** The local date, weekday and minute of `t` in `zone`. */
    const local = (zone: string, t: number) => {
      const parts = (formatters.get(zone) as Intl.DateTimeFormat).formatToParts(t);
      const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
      return {
        date: `${part("year")}-${part("month")}-${part("day")}`,
        weekday: part("weekday").toLowerCase().slice(0, 3) as Weekday,
        minute: Number(part("hour")) * 60 + Number(part("minute")),
      };
    };
    const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));
    /** Open in one zone: the day the window opened (today, or yesterday for the part past midnight). */
    const oracleOpen = (w: WindowHours, zone: string, t: number) => {
      const [s, e] = [minutes(w.start), minutes(w.end)];
      const now = local(zone, t);
      let opened: ReturnType<typeof local> | null = null;
      if (s < e) opened = now.minute >= s && now.minute < e ? now : null;
      else if (now.minute >= s) opened = now;
      else if (now.minute < e) opened = local(zone, t - (now.minute + 1) * MINUTE); // some instant of yesterday
      if (!opened) return false;
      if (w.days && !w.days.includes(opened.weekday)) return false;
      return !(w.excludeDates ?? []).includes(opened.date);
    };
    const allOpen = (ws: WindowHours[], zones: string[], t: number) =>
      ws.every((w) => zones.every((z) => oracleOpen(w, z, t)));
    const hhmm = (m: number) =>
      `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
    const windowArb = fc
      .record({
        start: fc.integer({ min: 0, max: 95 }).map((q) => hhmm(q * 15)),
        end: fc.integer({ min: 0, max: 95 }).map((q) => hhmm(q * 15)),
        days: fc.option(fc.subarray(DAYS, { minLength: 1 }), { nil: undefined }),
        excludeDates: fc.option(
          fc.array(
            fc
              .integer({ min: 0, max: 20 })
              .map((d) => iso(at("2031-03-01T12:00:00Z") + d * 24 * HOUR).slice(0, 10)),
            { maxLength: 4 },
          ),
          { nil: undefined },
        ),
      })
      .map((w) => {
        const out: WindowHours = { start: w.start, end: w.end };
        if (w.days) out.days = w.days;
        if (w.excludeDates) out.excludeDates = w.excludeDates;
        return out;
      })
      // start = end without days or dates is always open: covered elsewhere.
      .filter((w) => w.start !== w.end || w.days !== undefined || w.excludeDates !== undefined);
    const instant = fc.integer({ min: at("2031-03-01T00:00:00Z"), max: at("2031-03-20T00:00:00Z") });

    it("open exactly when all are open; else opensAt is the first minute at which all are", () => {
      fc.assert(
        fc.property(
          fc.array(windowArb, { minLength: 1, maxLength: 2 }),
          fc.subarray(ZONES, { minLength: 1, maxLength: 2 }),
          instant,
          (windows, zones, now) => {
            const decision = lawWindowDecision(windows, zones, now);
            expect(decision.open).toBe(allOpen(windows, zones, now));
            if (decision.open) return;
            expect(decision.opensAt).toBeGreaterThan(now);
            // "Look again in a day" is only right when nothing opens within the 35 days searched.
            const gaveUp = decision.opensAt === now + 24 * HOUR && !allOpen(windows, zones, decision.opensAt);
            if (!gaveUp) expect(allOpen(windows, zones, decision.opensAt)).toBe(true);
            const until = gaveUp ? now + 35 * 24 * HOUR : decision.opensAt;
            // Sampled every 15 minutes (every edge is on a quarter hour): none earlier is open.
            for (
              let t = Math.floor(now / (15 * MINUTE)) * 15 * MINUTE + 15 * MINUTE;
              t < until;
              t += 15 * MINUTE
            )
              if (allOpen(windows, zones, t))
                throw new Error(`open at ${iso(t)}, before ${iso(decision.opensAt)}`);
          },
        ),
        { numRuns: 120, seed: 20311207 },
      );
    });
  });
});

describe("lawOf: one callee's law", () => {
  const lead = (phone: string, timeZone: string | null = null) => ({ phone, timeZone });

  it("the zones: the lead's own, else every zone its number may ring in, else the template's", () => {
    const t: Template = { id: "t", resellerId: "r", window: { start: "09:00", end: "17:00", timeZone: NY } };
    expect(lawOf(t, lead("+14155550123"), CONFIG_RULES)).toMatchObject({ zones: [LA], zoneSource: "number" });
    expect(lawOf(t, lead("+14155550123", "Asia/Kolkata"), CONFIG_RULES)).toMatchObject({
      zones: ["Asia/Kolkata"],
      zoneSource: "lead",
    });
    expect(lawOf(t, lead("+19075550123"), CONFIG_RULES).zones).toEqual(["America/Adak", "America/Anchorage"]);
    // Toll-free: anywhere in the United States.
    const tollFree = lawOf(t, lead("+18005550123"), CONFIG_RULES);
    expect(tollFree.zoneSource).toBe("number");
    expect(tollFree.zones).toEqual(expect.arrayContaining([NY, LA, "Pacific/Honolulu", "America/Anchorage"]));
    // A number of no known country: the template's zone.
    expect(lawOf(t, lead("+882123456789"), CONFIG_RULES)).toMatchObject({
      zones: [NY],
      zoneSource: "template",
    });
  });

  it("a region's clause applies to a NANP callee whose region the tables cannot tell (it only narrows)", () => {
    const t: Template = {
      id: "t",
      resellerId: "r",
      presets: ["florida"],
      regions: [{ match: { region: "PE" }, window: { start: "10:00", end: "16:00" } }],
    };
    expect(lawOf(t, lead("+18005550123"), CONFIG_RULES).windows).toEqual([
      { start: "08:00", end: "20:00" },
      { start: "10:00", end: "16:00" },
    ]);
    // 902 serves Nova Scotia and Prince Edward Island: the PE clause applies, Florida's does not.
    expect(lawOf(t, lead("+19025550123"), CONFIG_RULES).windows).toEqual([{ start: "10:00", end: "16:00" }]);
    expect(lawOf(t, lead("+442079460123"), CONFIG_RULES).windows).toEqual([]);
  });

  it("a preset name this version does not know adds nothing (a newer process may have stored it)", () => {
    const t = { id: "t", resellerId: "r", presets: ["tcpa", "someday"] } as unknown as Template;
    expect(lawOf(t, lead("+14155550123"), CONFIG_RULES).windows).toEqual([{ start: "08:00", end: "21:00" }]);
    expect(templateRules(t)).toEqual([]);
  });

  it("presets and matching regions add windows, rules and cooldowns; others do not apply", () => {
    const t: Template = {
      id: "t",
      resellerId: "r",
      presets: ["tcpa", "florida", "regF"],
      regions: [{ match: { areaCodes: ["212"] }, window: { start: "10:00", end: "18:00" } }],
    };
    const miami = lawOf(t, lead("+13055550123"), CONFIG_RULES);
    expect(miami.windows).toEqual([
      { start: "08:00", end: "21:00" },
      { start: "08:00", end: "20:00" },
    ]);
    // The presets' caps and cooldowns are law: they fail closed.
    expect(miami.rules).toEqual([
      { maxCalls: 7, windowSeconds: 3600 },
      { maxCalls: 3, windowSeconds: 86400, failMode: "closed" },
      { maxCalls: 7, windowSeconds: 604800, failMode: "closed" },
    ]);
    expect(miami.cooldowns).toEqual([{ seconds: 604800, afterOutcomes: ["ANSWERED"], failMode: "closed" }]);
    const manhattan = lawOf(t, lead("+12125551234"), CONFIG_RULES);
    expect(manhattan.windows).toEqual([
      { start: "08:00", end: "21:00" },
      { start: "10:00", end: "18:00" },
    ]);
    expect(manhattan.rules).toEqual([
      { maxCalls: 7, windowSeconds: 3600 },
      { maxCalls: 7, windowSeconds: 604800, failMode: "closed" },
    ]);
  });

  it("a template's rules and cooldowns in force include every preset's and region's", () => {
    const t: Template = {
      id: "t",
      resellerId: "r",
      rateLimitRules: [{ maxCalls: 2, windowSeconds: 60 }],
      presets: ["regF", "florida"],
      regions: [{ match: { country: "CA" }, cooldowns: [{ seconds: 60, afterOutcomes: ["BUSY"] }] }],
    };
    expect(templateRules(t).map((r) => r.windowSeconds)).toEqual([60, 604800, 86400]);
    expect(templateCooldowns(t).flatMap((c) => c.afterOutcomes)).toEqual(["ANSWERED", "BUSY"]);
  });

  it("nearness: area code, then region, then country", () => {
    const sf = placeOf("+14155550123");
    expect(nearness(sf, placeOf("+14155550100"))).toBe("areaCode");
    expect(nearness(sf, placeOf("+16505550100"))).toBe("region");
    expect(nearness(sf, placeOf("+12125550100"))).toBe("country");
    expect(nearness(sf, placeOf("+442079460000"))).toBe("pool");
  });
});
