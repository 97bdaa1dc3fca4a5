/**
 * Fuzzing scenario files (`dialgate simulate`): parseScenario accepts every valid scenario and refuses
 * anything else with a ValidationError naming the field (`scenario.leads[2].generate.count`); a file
 * that cannot be read or is not JSON is a ScenarioFileError naming the file.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScenario, ScenarioFileError } from "../../src/cli/simulate/index.js";
import { parseScenario } from "../../src/cli/simulate/scenario.js";
import { ValidationError } from "../../src/infra/config.js";
import {
  errorOf,
  errorOfSync,
  expectFieldError,
  FEW,
  garbageArb,
  idArb,
  phoneArb,
  RUNS,
  setPath,
  zoneArb,
} from "./support.js";

const planArb = fc.record(
  {
    result: fc.constantFrom("placed", "notPlaced", "throttled", "unknown", "throw", "rejected"),
    latencyMs: fc.nat({ max: 10_000 }),
    callSeconds: fc.nat({ max: 3600 }),
    outcome: fc.string({ minLength: 1, maxLength: 50 }),
    retryAfterSeconds: fc.nat({ max: 600 }),
  },
  { requiredKeys: ["result"] },
);
const explicitLeadArb = fc.record(
  {
    id: idArb.filter((id) => !/^G[1-9]\d*$/.test(id)),
    phone: phoneArb,
    templateId: idArb,
    dueAtSeconds: fc.nat({ max: 86_400 }),
    expiresAtSeconds: fc.nat({ max: 86_400 }),
    timeZone: zoneArb,
  },
  { requiredKeys: ["id", "phone", "templateId"] },
);
const generateArb = fc.record({
  generate: fc.record(
    {
      count: fc.integer({ min: 1, max: 1000 }),
      phones: fc.integer({ min: 1, max: 1000 }),
      templateId: idArb,
      spreadSeconds: fc.nat({ max: 86_400 }),
    },
    { requiredKeys: ["count", "phones", "templateId"] },
  ),
});
const faultArb = fc
  .tuple(
    fc.constantFrom("storeDown", "providerDown"),
    fc.nat({ max: 3600 }),
    fc.integer({ min: 1, max: 3600 }),
  )
  .map(([kind, from, length]) => ({ kind, fromSeconds: from, toSeconds: from + length }));

/** Valid scenarios: unique explicit ids; perLead keyed by those ids. */
const scenarioArb = fc
  .record(
    {
      seed: fc.integer(),
      startAt: fc
        .date({
          min: new Date("2020-01-01T00:00:00Z"),
          max: new Date("2040-01-01T00:00:00Z"),
          noInvalidDate: true,
        })
        .map((d) => d.toISOString()),
      untilSeconds: fc.integer({ min: 1, max: 7 * 86_400 }),
      config: fc.record({ concurrency: fc.integer({ min: 1, max: 1000 }) }, { requiredKeys: [] }),
      templates: fc.constant([{ id: "t1", resellerId: "r1" }]),
      leads: fc.array(fc.oneof(explicitLeadArb, generateArb), { minLength: 1, maxLength: 5 }),
      faults: fc.array(faultArb, { maxLength: 3 }),
      defaultPlan: planArb,
    },
    { requiredKeys: ["leads"] },
  )
  .map(({ defaultPlan, leads, ...rest }) => {
    const seen = new Set<string>();
    const unique = leads.filter((l) => "generate" in l || (!seen.has(l.id) && seen.add(l.id)));
    const perLead = Object.fromEntries([...seen].slice(0, 2).map((id) => [id, [{ result: "placed" }]]));
    return { ...rest, leads: unique, provider: { ...(defaultPlan && { default: defaultPlan }), perLead } };
  });

/** A field of a valid scenario and values it must refuse; paths into the first lead entry. */
const badFields: [string[], fc.Arbitrary<unknown>][] = [
  [["seed"], fc.oneof(fc.double({ noInteger: true, noNaN: true }), fc.string())],
  [["startAt"], fc.constantFrom("yesterday", "2026-13-01T00:00:00Z", "2026-01-01", 0)],
  [["untilSeconds"], fc.oneof(fc.integer({ max: 0 }), fc.constant("1h"))],
  [["config", "concurrency"], fc.oneof(fc.integer({ max: 0 }), fc.constant("many"))],
  [["leads"], fc.constantFrom([], {}, "all")],
  [["faults"], fc.constantFrom([{ kind: "redisDown", fromSeconds: 0, toSeconds: 1 }], "none")],
  [["provider", "default"], fc.constantFrom({ result: "maybe" }, { latencyMs: -1 }, 7)],
  [["numbers"], fc.constantFrom([{ id: "n1" }], {})],
];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dialgate-fuzz-scenario-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("fuzz: scenario files", () => {
  it("accepts every valid scenario", () => {
    fc.assert(
      fc.property(scenarioArb, (input) => {
        const scenario = parseScenario(input);
        expect(scenario.leads).toHaveLength(input.leads.length);
        expect(scenario.faults).toHaveLength(input.faults?.length ?? 0);
      }),
      RUNS,
    );
  });

  it("refuses a scenario with one bad field by naming that field", () => {
    const broken = fc
      .constantFrom(...badFields)
      .chain(([path, bad]) => fc.tuple(fc.constant(path), scenarioArb, bad));
    fc.assert(
      fc.property(broken, ([path, scenario, bad]) => {
        const error = expectFieldError(
          errorOfSync(() => parseScenario(setPath(scenario, path, bad))),
          "scenario",
        );
        const field = `scenario.${path.join(".")}`;
        expect(
          error.path === field || error.path.startsWith(`${field}.`) || error.path.startsWith(`${field}[`),
          `${error.path} for ${field}`,
        ).toBe(true);
      }),
      RUNS,
    );
  });

  it("refuses a bad lead entry by its index and field", () => {
    const broken = fc
      .tuple(
        scenarioArb,
        fc.nat(),
        fc.constantFrom<[string[], unknown]>(
          [["phone"], "+1"],
          [["dueAtSeconds"], -5],
          [["generate", "count"], 0],
          [["generate", "phones"], 1.5],
          [["id"], ""],
          [["colour"], "red"],
        ),
      )
      .map(([scenario, k, [path, bad]]) => {
        const index = k % scenario.leads.length;
        const entry = scenario.leads[index] as Record<string, unknown>;
        // A generate-only path on an explicit lead (or the reverse) is an unknown key: still named.
        const leads = scenario.leads.map((l, i) => (i === index ? setPath(entry, path, bad) : l));
        return { scenario: { ...scenario, leads }, index };
      });
    fc.assert(
      fc.property(broken, ({ scenario, index }) => {
        expectFieldError(
          errorOfSync(() => parseScenario(scenario)),
          `scenario.leads[${index}]`,
        );
      }),
      RUNS,
    );
  });

  it("refuses anything that is not a scenario with a ValidationError, never a crash", () => {
    fc.assert(
      fc.property(fc.oneof(garbageArb, fc.jsonValue()), (value) => {
        expectFieldError(
          errorOfSync(() => parseScenario(value)),
          "scenario",
        );
      }),
      RUNS,
    );
  });

  it("reads a file: not JSON is a ScenarioFileError naming the file, JSON that is no scenario a ValidationError", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        async (text) => {
          const file = join(dir, `s${++n}.json`);
          await writeFile(file, text);
          const error = await errorOf(() => readScenario(file));
          let json = true;
          try {
            JSON.parse(text);
          } catch {
            json = false;
          }
          if (!json) {
            expect(error).toBeInstanceOf(ScenarioFileError);
            expect((error as ScenarioFileError).message.startsWith(file)).toBe(true);
          } else if (error !== undefined) expect(error).toBeInstanceOf(ValidationError);
        },
      ),
      FEW,
    );
    const missing = await errorOf(() => readScenario(join(dir, "missing.json")));
    expect(missing).toBeInstanceOf(ScenarioFileError);
  });
});
