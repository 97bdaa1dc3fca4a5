/**
 * The report's calling-law check (issue 15): placed calls outside a window of the lead's law in any of
 * the callee's zones, inside a cooldown after an earlier call's end, and over a preset's or regional
 * override's cap. Fed hand-made provider logs that break each rule, so the check is seen to fail.
 */
import { describe, expect, it } from "vitest";
import type { SimulationRun } from "../../src/cli/simulate/engine.js";
import {
  buildReport,
  callingLawBreaches,
  localTime,
  openAt,
  simLawOf,
} from "../../src/cli/simulate/report.js";
import { expandLeads, parseScenario, type ScenarioInput } from "../../src/cli/simulate/scenario.js";
import { violations } from "../../src/cli/simulate/summary.js";
import type { SimDial } from "../../src/infra/providers/simulated.js";
import type { CallerIdMatch, LeadRecord, Template, ZoneSource } from "../../src/machines/ports.js";
import { leadRecord } from "../support/lead-record.js";

const DAY = 86_400_000;

/** One placed call as the provider saw it: `at` an ISO instant, ending `seconds` later with `outcome`. */
interface Call {
  leadId: string;
  templateId: string;
  phone: string;
  at: string;
  outcome?: string;
  seconds?: number;
  timeZone?: string;
}

const TEMPLATES: ScenarioInput["templates"] = [
  { id: "plain", resellerId: "r1" },
  { id: "tcpa", resellerId: "r1", presets: ["tcpa"] },
  { id: "fl", resellerId: "r1", presets: ["tcpa", "florida"] },
  { id: "regf", resellerId: "r1", presets: ["regF"] },
  {
    id: "own",
    resellerId: "r1",
    window: {
      start: "09:00",
      end: "17:00",
      timeZone: "America/New_York",
      days: ["mon", "tue", "wed", "thu", "fri"],
    },
    cooldowns: [{ seconds: 3600, afterOutcomes: ["BUSY"] }],
    regions: [
      {
        match: { areaCodes: ["212"] },
        window: { start: "10:00", end: "16:00", excludeDates: ["2026-07-03"] },
        rateLimitRules: [{ maxCalls: 1, windowSeconds: 3600 }],
      },
    ],
  },
];

/** A finished run built from the calls, in the order the provider received them. */
function runOf(
  calls: Call[],
  options: {
    mode?: "block" | "alertOnly";
    windowZones?: [string, ZoneSource, string[]][];
    callerIds?: [string, CallerIdMatch][];
  } = {},
): SimulationRun {
  const leads = new Map<string, Call>();
  for (const call of calls) if (!leads.has(call.leadId)) leads.set(call.leadId, call);
  const scenario = parseScenario({
    config: { rateLimit: { mode: options.mode ?? "block", rules: [{ maxCalls: 7, windowSeconds: 3600 }] } },
    numbers: [{ id: "n1", e164: "+12125550100", provider: "sim", maxChannels: 50, pool: true }],
    templates: TEMPLATES,
    leads: [...leads.values()].map(({ leadId, templateId, phone, timeZone }) => ({
      id: leadId,
      templateId,
      phone,
      ...(timeZone && { timeZone }),
    })),
  });
  const startAt = Date.parse("2026-06-01T00:00:00Z");
  const dials = calls.map((call, i): SimDial => {
    const at = Date.parse(call.at);
    return {
      leadId: call.leadId,
      attempt: i,
      dialRef: `${call.leadId}:${i}`,
      numberId: "n1",
      to: call.phone,
      at,
      resultAt: at + 80,
      result: "placed",
      callId: `sim-${i}`,
      endsAt: at + (call.seconds ?? 60) * 1000,
      outcome: call.outcome ?? "ANSWERED",
    };
  });
  return {
    scenario,
    startAt,
    untilAt: startAt + 30 * DAY,
    leads: expandLeads(scenario), // phones in their E.164 form, as a run submits them
    dials,
    defers: new Map(),
    alerts: [],
    gates: { peek: 0, record: 0, recordRejected: 0, channelExhausted: 0, failOpen: 0 },
    finishedAt: new Map(),
    stored: [...leads.values()].map((c) => stored(c.leadId, c.templateId, c.phone)),
    owner: "simulate",
    windowZones: new Map(
      (options.windowZones ?? []).map(([leadId, zoneSource, zones]) => [leadId, { zones, zoneSource }]),
    ),
    callerIds: new Map(options.callerIds ?? []),
  };
}

function stored(id: string, templateId: string, phone: string): LeadRecord {
  return leadRecord({ id, templateId, phone, status: "FINISHED", outcome: "ANSWERED" });
}

/** Calls of one lead each: the count of each breach kind. */
function breaches(calls: Omit<Call, "leadId">[]) {
  const run = runOf(calls.map((c, i) => ({ ...c, leadId: `L${i}` })));
  const found = callingLawBreaches(run);
  return {
    outsideWindow: found.filter((b) => b.kind === "outsideWindow").map((b) => b.leadId),
    inCooldown: found.filter((b) => b.kind === "inCooldown").map((b) => b.leadId),
  };
}

function template(id: string): Template {
  const parsed = parseScenario({
    templates: TEMPLATES,
    leads: [{ id: "x", phone: "+12125550100", templateId: id }],
  });
  return parsed.templates.find((t) => t.id === id) as Template;
}

describe("local time per zone (Intl)", () => {
  it("reads the wall clock, its date and weekday in the zone", () => {
    const at = Date.parse("2026-06-01T02:30:00Z"); // Monday in UTC; Sunday evening in the Americas
    expect(localTime(at, "America/Los_Angeles")).toMatchObject({
      date: "2026-05-31",
      weekday: 0,
      minute: 19 * 60 + 30,
    });
    expect(localTime(at, "Asia/Kolkata")).toMatchObject({ date: "2026-06-01", weekday: 1, minute: 8 * 60 });
    expect(localTime(at, "Pacific/Honolulu")).toMatchObject({ date: "2026-05-31", minute: 16 * 60 + 30 });
  });

  it("follows DST: 08:00 New York is 12:00 UTC in summer and 13:00 UTC in winter", () => {
    const w = { start: "08:00", end: "21:00" };
    const open = (iso: string) => openAt(w, localTime(Date.parse(iso), "America/New_York"));
    // 2026-03-08, spring forward at 07:00Z.
    expect(open("2026-03-08T11:59:00Z")).toBe(false);
    expect(open("2026-03-08T12:00:00Z")).toBe(true);
    // 2026-11-01, fall back at 06:00Z: 12:30Z is 07:30 EST.
    expect(open("2026-11-01T12:30:00Z")).toBe(false);
    expect(open("2026-11-01T13:00:00Z")).toBe(true);
    // The end is exclusive: 21:00 EDT is 01:00Z the next day.
    expect(open("2026-06-02T00:59:59Z")).toBe(true);
    expect(open("2026-06-02T01:00:00Z")).toBe(false);
  });

  it("a wrapping window belongs to the day it opens: its days and excluded dates are that day's", () => {
    const w = { start: "22:00", end: "02:00", days: ["fri" as const], excludeDates: ["2026-06-12"] };
    const open = (iso: string) => openAt(w, localTime(Date.parse(iso), "UTC"));
    expect(open("2026-06-05T23:00:00Z")).toBe(true); // Friday night
    expect(open("2026-06-06T01:59:00Z")).toBe(true); // Saturday small hours: Friday's window
    expect(open("2026-06-06T02:00:00Z")).toBe(false);
    expect(open("2026-06-06T23:00:00Z")).toBe(false); // Saturday night
    expect(open("2026-06-05T01:00:00Z")).toBe(false); // Friday small hours: Thursday's window
    expect(open("2026-06-12T23:00:00Z")).toBe(false); // an excluded Friday
    expect(open("2026-06-13T01:00:00Z")).toBe(false); // and its small hours
    expect(open("2026-06-19T23:00:00Z")).toBe(true);
  });

  it("start = end is open all day, except on days it does not open", () => {
    const always = { start: "00:00", end: "00:00" };
    expect(openAt(always, localTime(Date.parse("2026-06-06T12:00:00Z"), "UTC"))).toBe(true);
    const weekdays = { ...always, days: ["mon" as const] };
    expect(openAt(weekdays, localTime(Date.parse("2026-06-01T23:59:00Z"), "UTC"))).toBe(true);
    expect(openAt(weekdays, localTime(Date.parse("2026-06-02T00:00:00Z"), "UTC"))).toBe(false);
  });
});

describe("the law of a lead, rebuilt for the report", () => {
  it("zones: the lead's timeZone, else every zone the number rings in, else the template window's", () => {
    expect(simLawOf(template("tcpa"), { phone: "+19075550110" }).zones).toEqual([
      "America/Adak",
      "America/Anchorage",
    ]);
    expect(
      simLawOf(template("tcpa"), { phone: "+19075550110", timeZone: "America/Anchorage" }).zones,
    ).toEqual(["America/Anchorage"]);
    // A toll-free number rings anywhere in its country: every US zone, whatever the template's.
    for (const id of ["own", "tcpa"]) {
      const { zones } = simLawOf(template(id), { phone: "+18002345678" });
      expect(zones).toContain("America/New_York");
      expect(zones).toContain("Pacific/Honolulu");
      expect(zones).not.toContain("America/Toronto");
    }
  });

  it("presets and regional overrides add windows and cooldowns only for the callees they match", () => {
    const windowsOf = (id: string, phone: string) =>
      simLawOf(template(id), { phone }).windows.map((w) => `${w.source} ${w.hours.start}-${w.hours.end}`);
    expect(windowsOf("fl", "+13055550110")).toEqual([
      "preset tcpa 08:00-21:00",
      "preset florida 08:00-20:00",
    ]);
    expect(windowsOf("fl", "+12125550110")).toEqual(["preset tcpa 08:00-21:00"]);
    expect(windowsOf("own", "+12125550110")).toEqual(["template 09:00-17:00", "region 0 10:00-16:00"]);
    expect(windowsOf("own", "+13125550110")).toEqual(["template 09:00-17:00"]);
    expect(simLawOf(template("regf"), { phone: "+13125550110" }).cooldowns).toEqual([
      { seconds: 7 * 86_400, afterOutcomes: ["ANSWERED"], failMode: "closed" },
    ]);
  });
});

describe("calls outside a window of the law", () => {
  it("TCPA is judged in the callee's zone: 08:00–21:00 Pacific for a 415 number", () => {
    const sf = (at: string) => ({ templateId: "tcpa", phone: "+14155550110", at });
    const { outsideWindow } = breaches([
      sf("2026-06-01T14:59:00Z"), // 07:59 PDT
      sf("2026-06-01T15:00:00Z"), // 08:00
      sf("2026-06-02T03:59:00Z"), // 20:59
      sf("2026-06-02T04:00:00Z"), // 21:00
    ]);
    expect(outsideWindow).toEqual(["L0", "L3"]);
  });

  it("a number of several zones must be open in all of them (Alaska's 907: Anchorage and Adak)", () => {
    const ak = (at: string) => ({ templateId: "tcpa", phone: "+19075550110", at });
    const { outsideWindow } = breaches([
      ak("2026-06-01T16:30:00Z"), // 08:30 Anchorage, 07:30 Adak
      ak("2026-06-01T17:00:00Z"), // 09:00 Anchorage, 08:00 Adak
      ak("2026-06-02T04:30:00Z"), // 20:30 Anchorage, 19:30 Adak
      ak("2026-06-02T05:00:00Z"), // 21:00 Anchorage, 20:00 Adak
    ]);
    expect(outsideWindow).toEqual(["L0", "L3"]);
  });

  it("Hawaii, Alaska and Puerto Rico each in their own zone", () => {
    const { outsideWindow } = breaches([
      { templateId: "tcpa", phone: "+18085550110", at: "2026-06-01T17:59:00Z" }, // 07:59 HST
      { templateId: "tcpa", phone: "+18085550110", at: "2026-06-01T18:00:00Z" }, // 08:00 HST
      { templateId: "tcpa", phone: "+19075550110", at: "2026-06-01T16:30:00Z" }, // 08:30 AKDT, 07:30 Adak
      { templateId: "tcpa", phone: "+19075550110", at: "2026-06-01T17:00:00Z" }, // 09:00 AKDT, 08:00 Adak
      { templateId: "tcpa", phone: "+17875550110", at: "2026-06-01T11:59:00Z" }, // 07:59 AST
      { templateId: "tcpa", phone: "+17875550110", at: "2026-06-01T12:00:00Z" }, // 08:00 AST
    ]);
    expect(outsideWindow).toEqual(["L0", "L2", "L4"]);
  });

  it("the lead's timeZone replaces the number's zones", () => {
    const { outsideWindow } = breaches([
      { templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T12:30:00Z", timeZone: "America/New_York" },
      { templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T12:30:00Z" },
    ]);
    expect(outsideWindow).toEqual(["L1"]);
  });

  it("Florida's 08:00–20:00 holds for Florida callees of a florida template only", () => {
    const at = "2026-06-02T00:30:00Z"; // 20:30 EDT
    const { outsideWindow } = breaches([
      { templateId: "fl", phone: "+13055550110", at },
      { templateId: "fl", phone: "+12125550110", at },
      { templateId: "tcpa", phone: "+13055550111", at },
      { templateId: "fl", phone: "+14075550110", at: "2026-06-01T23:59:00Z" }, // 19:59
    ]);
    expect(outsideWindow).toEqual(["L0"]);
  });

  it("a template's days and a region's excluded dates and narrower hours", () => {
    const { outsideWindow } = breaches([
      { templateId: "own", phone: "+13125550110", at: "2026-06-06T15:00:00Z" }, // Saturday 10:00 CDT
      { templateId: "own", phone: "+13125550110", at: "2026-06-05T15:00:00Z" }, // Friday 10:00 CDT
      { templateId: "own", phone: "+12125550110", at: "2026-06-05T13:30:00Z" }, // 09:30 EDT: region says 10:00
      { templateId: "own", phone: "+12125550111", at: "2026-07-03T15:00:00Z" }, // a holiday of the region
      { templateId: "own", phone: "+12125550112", at: "2026-07-02T15:00:00Z" },
      { templateId: "plain", phone: "+12125550113", at: "2026-07-04T03:00:00Z" }, // no window at all
    ]);
    expect(outsideWindow).toEqual(["L0", "L2", "L3"]);
  });
});

describe("calls inside a cooldown", () => {
  const phone = "+13125550110";
  const end = (at: string, seconds = 60) => new Date(Date.parse(at) + seconds * 1000).toISOString();
  const plus = (iso: string, ms: number) => new Date(Date.parse(iso) + ms).toISOString();
  const first = "2026-06-01T15:00:00Z";

  it("Reg F: none within 7 days after an ANSWERED call of any template; after NO_ANSWER or 7 days, fine", () => {
    const { inCooldown } = breaches([
      { templateId: "plain", phone, at: first, outcome: "ANSWERED" },
      { templateId: "regf", phone, at: plus(end(first), 3 * DAY), outcome: "NO_ANSWER" },
      { templateId: "regf", phone, at: plus(end(first), 7 * DAY - 1000), outcome: "NO_ANSWER" },
      { templateId: "plain", phone, at: plus(end(first), 2 * DAY), outcome: "NO_ANSWER" }, // no cooldown of its own
      { templateId: "regf", phone: "+1 (312) 555-0110", at: plus(end(first), 4 * DAY) }, // the same phone, spelt otherwise
    ]);
    expect(inCooldown).toEqual(["L1", "L2", "L4"]);
  });

  it("the cooldown runs from the earlier call's end, and ends after exactly its seconds", () => {
    const long = 3600; // a one-hour call
    const { inCooldown } = breaches([
      { templateId: "plain", phone, at: first, outcome: "ANSWERED", seconds: long },
      { templateId: "regf", phone, at: plus(first, 1000) }, // while the first still rings: not ended yet
      { templateId: "regf", phone: "+13125550111", at: first, outcome: "ANSWERED" },
      { templateId: "regf", phone: "+13125550111", at: plus(end(first), 7 * DAY) },
    ]);
    expect(inCooldown).toEqual([]);
  });

  it("a template's own cooldown after BUSY, for an hour", () => {
    const at = "2026-06-01T15:00:00Z";
    const { inCooldown } = breaches([
      { templateId: "own", phone, at, outcome: "BUSY" },
      { templateId: "own", phone, at: plus(end(at), 59 * 60_000), outcome: "BUSY" },
      { templateId: "own", phone, at: plus(end(plus(end(at), 59 * 60_000)), 3600_000) },
    ]);
    expect(inCooldown).toEqual(["L1"]);
  });
});

describe("the calling law in the report and the run's verdict", () => {
  it("counts the breaches, and a breach fails the run like the other invariants", () => {
    const run = runOf([
      { leadId: "A", templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T14:00:00Z" }, // 07:00 PDT
      { leadId: "B", templateId: "regf", phone: "+13125550110", at: "2026-06-01T15:00:00Z" },
      { leadId: "C", templateId: "regf", phone: "+13125550110", at: "2026-06-02T15:00:00Z" },
    ]);
    const report = buildReport(run);
    expect(report.invariants.callingLaw).toEqual({ outsideWindow: 1, inCooldown: 1 });
    expect(violations(report, run)).toEqual([
      "1 call(s) outside a calling window in the callee's local time",
      "1 call(s) inside a cooldown after an earlier call's end",
    ]);
    const clean = runOf([
      { leadId: "A", templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T16:00:00Z" },
    ]);
    const ok = buildReport(clean);
    expect(ok.invariants.callingLaw).toEqual({ outsideWindow: 0, inCooldown: 0 });
    expect(violations(ok, clean)).toEqual([]);
  });

  it("alertOnly lets cooldowns pass like the caps, never a window", () => {
    const run = runOf(
      [
        { leadId: "A", templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T14:00:00Z" },
        { leadId: "B", templateId: "regf", phone: "+13125550110", at: "2026-06-01T15:00:00Z" },
        { leadId: "C", templateId: "regf", phone: "+13125550110", at: "2026-06-02T15:00:00Z" },
      ],
      { mode: "alertOnly" },
    );
    expect(violations(buildReport(run), run)).toEqual([
      "1 call(s) outside a calling window in the callee's local time",
    ]);
  });

  it("Florida's 3 per 24 h is a rule of its own, checked at the calls to Florida callees only", () => {
    const hours = [14, 16, 18, 20]; // 10:00–16:00 EDT
    const calls = (phone: string, id: string): Call[] =>
      hours.map((h, i) => ({ leadId: `${id}${i}`, templateId: "fl", phone, at: `2026-06-01T${h}:00:00Z` }));
    const miami = runOf(calls("+13055550110", "M"));
    const report = buildReport(miami);
    expect(report.invariants.rateRules).toEqual([
      { templateId: null, maxCalls: 7, windowSeconds: 3600, maxDialsPerPhone: 1, violations: 0 },
      {
        templateId: "fl",
        preset: "florida",
        maxCalls: 3,
        windowSeconds: 86_400,
        maxDialsPerPhone: 4,
        violations: 1,
      },
      {
        templateId: "regf",
        preset: "regF",
        maxCalls: 7,
        windowSeconds: 7 * 86_400,
        maxDialsPerPhone: 0,
        violations: 0,
      },
      { templateId: "own", region: 0, maxCalls: 1, windowSeconds: 3600, maxDialsPerPhone: 0, violations: 0 },
    ]);
    expect(violations(report, miami)).toEqual([
      "1 call(s) over template fl preset florida rule 0: a phone got 4 calls within 86400 s (max 3)",
    ]);
    // The same four calls to New York: the florida rule governs none of them.
    const ny = buildReport(runOf(calls("+12125550110", "N")));
    expect(ny.invariants.rateRules[1]).toMatchObject({ maxDialsPerPhone: 0, violations: 0 });
  });

  it("Reg F's 7 per 7 days and a region's own cap, each counted for the calls it governs", () => {
    // One call a day for 7 days, and an eighth on the 7th day: 8 within 7 days.
    const days = [1, 2, 3, 4, 5, 6, 7].map((d) => `2026-06-0${d}T15:00:00Z`).concat("2026-06-07T16:00:00Z");
    const regf = runOf(
      days.map((at, i) => ({
        leadId: `R${i}`,
        templateId: "regf",
        phone: "+13125550110",
        at,
        outcome: "NO_ANSWER",
      })),
    );
    expect(buildReport(regf).invariants.rateRules[2]).toMatchObject({ maxDialsPerPhone: 8, violations: 1 });

    const region = runOf([
      { leadId: "A", templateId: "own", phone: "+12125550110", at: "2026-06-01T15:00:00Z" },
      { leadId: "B", templateId: "own", phone: "+12125550110", at: "2026-06-01T15:30:00Z" },
      { leadId: "C", templateId: "own", phone: "+13125550110", at: "2026-06-01T15:00:00Z" },
      { leadId: "D", templateId: "own", phone: "+13125550110", at: "2026-06-01T15:30:00Z" },
    ]);
    const report = buildReport(region);
    expect(report.invariants.rateRules[3]).toMatchObject({ region: 0, maxDialsPerPhone: 2, violations: 1 });
    expect(violations(report, region)).toContain(
      "1 call(s) over template own region 0 rule 0: a phone got 2 calls within 3600 s (max 1)",
    );
  });

  it("zones and caller IDs as the dispatcher announced them, per lead and in totals", () => {
    const run = runOf(
      [
        { leadId: "A", templateId: "tcpa", phone: "+16025550110", at: "2026-06-01T16:00:00Z" },
        { leadId: "B", templateId: "tcpa", phone: "+14155550110", at: "2026-06-01T16:00:00Z" },
        { leadId: "C", templateId: "plain", phone: "+14155550111", at: "2026-06-01T16:00:00Z" },
        { leadId: "A", templateId: "tcpa", phone: "+16025550110", at: "2026-06-02T16:00:00Z" },
      ],
      {
        windowZones: [
          ["A", "number", ["America/Denver", "America/Phoenix"]],
          ["B", "lead", ["America/Los_Angeles"]],
        ],
        callerIds: [
          ["A:0", "areaCode"],
          ["B:1", "country"],
          ["A:3", "areaCode"],
        ],
      },
    );
    const report = buildReport(run);
    expect(report.leads.A).toMatchObject({
      zones: ["America/Denver", "America/Phoenix"],
      zoneSource: "number",
      dials: [{ callerId: "areaCode" }, { callerId: "areaCode" }],
    });
    expect(report.leads.B).toMatchObject({ zoneSource: "lead", dials: [{ callerId: "country" }] });
    expect(report.leads.C).not.toHaveProperty("zones");
    expect(report.leads.C).not.toHaveProperty("zoneSource");
    expect(report.leads.C?.dials[0]).not.toHaveProperty("callerId");
    expect(report.totals.zoneSource).toEqual({ lead: 1, number: 1 });
    expect(report.totals.callerId).toEqual({ areaCode: 2, country: 1 });
  });
});
