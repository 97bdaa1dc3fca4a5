/**
 * Issue 15, done when: examples/us-calling-law.json — a US campaign over every NANP zone (Eastern,
 * Central, Mountain with Arizona, Pacific, Alaska, Hawaii, Puerto Rico), no lead with a timeZone —
 * places no call outside 08:00–21:00 in any of the callee's zones and still dials its leads; the
 * Florida preset keeps 3 calls per 24 h and 08:00–20:00 for Florida callees; a Reg F template never
 * calls a phone within 7 days after an answered call, and does call again after NO_ANSWER; local
 * presence calls from a number of the callee's area code whenever one is free.
 *
 * Each is asserted twice: by the report's own check, and here again from the provider's log with
 * luxon. The whole suite runs on the memory backend and on Redis + Postgres (the harness's servers).
 */
import { readFileSync } from "node:fs";
import { DateTime } from "luxon";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runScenario, type SimulationRun } from "../../src/cli/simulate/engine.js";
import { redisBackend } from "../../src/cli/simulate/index.js";
import { buildReport, type Report } from "../../src/cli/simulate/report.js";
import { parseScenario, type ScenarioInput } from "../../src/cli/simulate/scenario.js";
import { violations } from "../../src/cli/simulate/summary.js";
import { placeOf } from "../../src/infra/geo.js";
import type { SimDial } from "../../src/infra/providers/simulated.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";

const input = JSON.parse(readFileSync("examples/us-calling-law.json", "utf8")) as ScenarioInput;
const scenario = parseScenario(input);

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

interface Outcome {
  run: SimulationRun;
  report: Report;
}

/** The lead's template, phone and whether it has a timeZone, by lead id. */
function leadsOf(run: SimulationRun) {
  return new Map(run.leads.map((l) => [l.id, l]));
}

function placedOf(run: SimulationRun, templateId?: string): SimDial[] {
  const leads = leadsOf(run);
  return run.dials.filter(
    (d) =>
      d.result === "placed" && (templateId === undefined || leads.get(d.leadId)?.templateId === templateId),
  );
}

/** Minutes after local midnight in `zone`, by luxon. */
function localMinute(at: number, zone: string): number {
  const local = DateTime.fromMillis(at, { zone });
  return local.hour * 60 + local.minute;
}

/** Placed calls inside [startMin, endMin) of local time in every zone the callee's number rings in? */
function outside(dials: SimDial[], startMin: number, endMin: number): string[] {
  const found: string[] = [];
  for (const d of dials)
    for (const zone of placeOf(d.to).zones) {
      const minute = localMinute(d.at, zone);
      if (minute < startMin || minute >= endMin)
        found.push(`${d.leadId} at ${DateTime.fromMillis(d.at, { zone }).toISO()} (${zone})`);
    }
  return found;
}

function areaCodeOf(e164: string): string {
  return e164.slice(2, 5);
}

function callingLawSuite(name: string, outcome: () => Outcome): void {
  describe(name, () => {
    it("the campaign covers every NANP zone, no lead has a timeZone, every lead is judged in its number's zones", () => {
      const { run, report } = outcome();
      expect(run.leads.every((l) => l.timeZone === undefined)).toBe(true);
      const zones = new Set(run.leads.flatMap((l) => placeOf(l.phone).zones));
      for (const zone of [
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
        "America/Puerto_Rico",
      ])
        expect(zones, zone).toContain(zone);
      expect(report.totals.zoneSource).toEqual({ number: run.leads.length });
      for (const lead of run.leads)
        expect(report.leads[lead.id]?.zones, lead.id).toEqual(placeOf(lead.phone).zones);
    });

    it("TCPA: no call outside 08:00–21:00 in any of the callee's zones, and the leads are dialled", () => {
      const { run, report } = outcome();
      expect(report.invariants.callingLaw).toEqual({ outsideWindow: 0, inCooldown: 0 });
      expect(violations(report, run)).toEqual([]);
      expect(outside(placedOf(run), 8 * 60, 21 * 60)).toEqual([]);
      // The windows mattered: the run starts on a Sunday evening in the US and leads waited for them.
      expect(report.totals.deferred.window).toBeGreaterThan(20);
      // Every lead is dialled but those a Reg F cooldown keeps (below).
      const undialled = run.leads.filter((l) => (report.leads[l.id]?.attempts ?? 0) === 0).map((l) => l.id);
      expect(undialled.sort()).toEqual(
        [
          ...["212", "312", "303", "602", "415", "907", "808", "787"].map((ac) => `col-${ac}-b`),
          "col-404-x",
        ].sort(),
      );
      expect(report.invariants).toMatchObject({ duplicateDials: 0, lostLeads: 0 });
    });

    it("Florida: 3 calls per 24 h and 08:00–20:00 for Florida callees; others of the template are not capped so", () => {
      const { run, report } = outcome();
      const rule = report.invariants.rateRules.find(
        (r) => r.templateId === "florida-sales" && r.preset === "florida",
      );
      expect(rule).toEqual({
        templateId: "florida-sales",
        preset: "florida",
        maxCalls: 3,
        windowSeconds: 86_400,
        maxDialsPerPhone: 3,
        violations: 0,
      });
      const placed = placedOf(run, "florida-sales");
      const florida = placed.filter((d) => placeOf(d.to).region === "FL");
      const elsewhere = placed.filter((d) => placeOf(d.to).region !== "FL");
      expect(outside(florida, 8 * 60, 20 * 60)).toEqual([]);
      expect(maxIn24h(florida)).toBe(3);
      // Each Florida lead still got its six calls, three a day.
      for (const ac of ["305", "407", "813"])
        for (const n of [1, 2]) expect(report.leads[`fla-${ac}-${n}`]?.attempts, `fla-${ac}-${n}`).toBe(6);
      // New York and San Francisco callees of the same template: six calls within a few hours.
      expect(maxIn24h(elsewhere)).toBe(6);
    });

    it("Reg F: no call within 7 days after an answered call to the phone; NO_ANSWER is called again", () => {
      const { run, report } = outcome();
      const everyPlaced = placedOf(run);
      const cooled: string[] = [];
      for (const d of placedOf(run, "collections")) {
        const answered = everyPlaced.find(
          (e) =>
            e.to === d.to &&
            e.outcome === "ANSWERED" &&
            e.endsAt !== null &&
            e.endsAt <= d.at &&
            d.at - e.endsAt < 7 * DAY_MS,
        );
        if (answered) cooled.push(`${d.leadId} after ${answered.leadId}`);
      }
      expect(cooled).toEqual([]);
      const rule = report.invariants.rateRules.find(
        (r) => r.templateId === "collections" && r.preset === "regF",
      );
      expect(rule).toMatchObject({ maxCalls: 7, windowSeconds: 604_800, violations: 0 });
      for (const ac of ["212", "312", "303", "602", "415", "907", "808", "787"]) {
        // Unanswered twice, answered the third time, 2 h apart.
        expect(report.leads[`col-${ac}-n`], `col-${ac}-n`).toMatchObject({
          attempts: 3,
          outcome: "ANSWERED",
        });
        // The phone answered col-…-a: its second lead a day later waits out the cooldown.
        expect(report.leads[`col-${ac}-b`], `col-${ac}-b`).toMatchObject({
          status: "SCHEDULED",
          attempts: 0,
        });
      }
      // A reminder's answered call (another template, no cooldown of its own) marks the phone too.
      expect(report.leads["rem-404-1"]).toMatchObject({ outcome: "ANSWERED", attempts: 1 });
      expect(report.leads["col-404-x"]).toMatchObject({ status: "SCHEDULED", attempts: 0 });
      // The template's own window: weekdays only, not on its holiday (2026-06-02), in the callee's zones.
      for (const d of placedOf(run, "collections"))
        for (const zone of placeOf(d.to).zones) {
          const local = DateTime.fromMillis(d.at, { zone });
          expect(local.weekday, `${d.leadId} ${local.toISO()}`).toBeLessThanOrEqual(5);
          expect(local.toISODate(), d.leadId).not.toBe("2026-06-02");
        }
    });

    it("local presence: every call from a number of the callee's area code", () => {
      const { run, report } = outcome();
      const numbers = new Map(run.scenario.numbers.map((n) => [n.id, n.e164]));
      const local = run.dials.filter((d) => leadsOf(run).get(d.leadId)?.templateId === "local-callback");
      expect(local.length).toBe(18);
      for (const d of local) {
        const dial = report.leads[d.leadId]?.dials.find((r) => r.atSeconds === (d.at - run.startAt) / 1000);
        expect(dial?.callerId, d.leadId).toBe("areaCode");
        expect(areaCodeOf(numbers.get(d.numberId) ?? ""), d.leadId).toBe(areaCodeOf(d.to));
      }
      expect(report.totals.callerId).toEqual({ areaCode: local.length });
      // Other templates' dials carry no caller-ID match.
      const others = run.leads.filter((l) => l.templateId !== "local-callback");
      for (const lead of others)
        for (const dial of report.leads[lead.id]?.dials ?? [])
          expect(dial, lead.id).not.toHaveProperty("callerId");
    });
  });
}

/** Most placed calls to one phone within any 24 h. */
function maxIn24h(dials: SimDial[]): number {
  let max = 0;
  for (const d of dials) {
    const count = dials.filter((e) => e.to === d.to && e.at <= d.at && d.at - e.at < 24 * HOUR_MS).length;
    max = Math.max(max, count);
  }
  return max;
}

let memory: Outcome | undefined;

describe("examples/us-calling-law.json on the memory backend", () => {
  beforeAll(async () => {
    const run = await runScenario(scenario);
    memory = { run, report: buildReport(run) };
  }, 120_000);

  callingLawSuite("memory", () => memory as Outcome);
});

describe("examples/us-calling-law.json on Redis + Postgres", () => {
  let redis: RedisServer | undefined;
  let postgres: PostgresServer | undefined;
  let real: Outcome | undefined;

  beforeAll(async () => {
    [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
    const run = await runScenario(scenario, {
      backend: redisBackend({ redisUrl: redis.url, databaseUrl: postgres.url }),
    });
    real = { run, report: buildReport(run) };
  }, 300_000);

  afterAll(async () => {
    await Promise.all([redis?.stop(), postgres?.stop()]);
  });

  callingLawSuite("redis + postgres", () => real as Outcome);

  it("the same totals and invariants as in memory", async () => {
    if (!memory) {
      const run = await runScenario(scenario);
      memory = { run, report: buildReport(run) };
    }
    const comparable = ({ report }: Outcome) => ({ totals: report.totals, invariants: report.invariants });
    expect(comparable(real as Outcome)).toEqual(comparable(memory));
  }, 120_000);
});
