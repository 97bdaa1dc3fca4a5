import { readFile } from "node:fs/promises";
import { isValidPhoneNumber } from "libphonenumber-js";
import { describe, expect, it } from "vitest";
import { expandLeads, generatedPhone, parseScenario } from "../../src/cli/simulate/scenario.js";
import { ValidationError } from "../../src/infra/config.js";

const lead = { id: "L1", phone: "+919800000001", templateId: "t1" };
const base = {
  numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 2, pool: true }],
  templates: [{ id: "t1", resellerId: "r1" }],
  leads: [lead],
};

function errorOf(value: unknown): ValidationError {
  try {
    parseScenario(value);
  } catch (error) {
    if (error instanceof ValidationError) return error;
    throw error;
  }
  throw new Error("expected a ValidationError");
}

describe("scenario schema", () => {
  it("names the path of a bad generate count", () => {
    const error = errorOf({
      ...base,
      leads: [
        lead,
        { ...lead, id: "L2" },
        { ...lead, id: "L3" },
        { generate: { count: 0, phones: 1, templateId: "t1" } },
      ],
    });
    expect(error.message).toBe("scenario.leads[3].generate.count must be ≥ 1, got 0");
    expect(error.path).toBe("scenario.leads[3].generate.count");
  });

  it.each([
    [{ ...base, config: { concurrency: 0 } }, "scenario.config.concurrency must be ≥ 1, got 0"],
    [
      { ...base, config: { rateLimit: { rules: [{ maxCalls: 0, windowSeconds: 60 }] } } },
      "scenario.config.rateLimit.rules[0].maxCalls must be ≥ 1, got 0",
    ],
    [{ ...base, config: { nope: 1 } }, "scenario.config has unknown key(s) nope"],
    [
      { ...base, numbers: [{ id: "n1", e164: "555", provider: "sim", maxChannels: 1 }] },
      "scenario.numbers[0].e164",
    ],
    [
      { ...base, numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 0 }] },
      "scenario.numbers[0].maxChannels must be ≥ 1, got 0",
    ],
    [
      {
        ...base,
        templates: [{ id: "t1", resellerId: "r1", rateLimitRules: [{ maxCalls: 0, windowSeconds: 60 }] }],
      },
      "scenario.templates[0].rateLimitRules[0].maxCalls must be ≥ 1, got 0",
    ],
    [{ ...base, templates: [{ id: "t1" }] }, "scenario.templates[0].resellerId must be string"],
    [
      { ...base, leads: [{ ...lead, phone: "+91980000" }] },
      'scenario.leads[0].phone must be a valid phone number in E.164 form, got "***0000"',
    ],
    [
      { ...base, leads: [{ ...lead, phone: "+91 98000 00001 x2" }] },
      'scenario.leads[0].phone must not carry an extension (dialgate dials the number only): submit the number without it, got "***0012"',
    ],
    [
      { ...base, leads: [{ ...lead, payload: { note: "a\u0000b" } }] },
      'scenario.leads[0].payload.note must not contain a NUL character or a lone surrogate, got "a\\u0000b"',
    ],
    [
      { ...base, leads: [lead, { ...lead, dueAtSeconds: -1, id: "L2" }] },
      "scenario.leads[1].dueAtSeconds must be ≥ 0, got -1",
    ],
    [
      { ...base, leads: [lead, { generate: { count: 1, phones: 1 } }] },
      "scenario.leads[1].generate.templateId must be string",
    ],
    [{ ...base, leads: [lead, lead] }, 'scenario.leads[1].id must be unique among the leads, got "L1"'],
    [
      { ...base, leads: [{ ...lead, id: "G2" }, { generate: { count: 3, phones: 1, templateId: "t1" } }] },
      'scenario.leads[0].id must be unique among the leads, got "G2"',
    ],
    [
      { ...base, provider: { default: { result: "maybe" } } },
      "scenario.provider.default.result must be one of",
    ],
    [
      { ...base, provider: { perLead: { L9: [{ result: "placed" }] } } },
      "scenario.provider.perLead.L9 must be keyed by",
    ],
    [
      { ...base, faults: [{ kind: "storeDown", fromSeconds: 10, toSeconds: 10 }] },
      "scenario.faults[0].toSeconds must be > fromSeconds, got 10",
    ],
    [
      { ...base, faults: [{ kind: "diskFull", fromSeconds: 0, toSeconds: 1 }] },
      "scenario.faults[0].kind must be one of",
    ],
    [{ ...base, startAt: "tomorrow" }, "scenario.startAt must be an ISO 8601 date-time"],
    [{ ...base, leads: [] }, "scenario.leads must have at least 1 item(s)"],
  ])("rejects %j naming the field", (value, message) => {
    expect(errorOf(value).message).toContain(message);
  });

  it("fills the documented defaults", () => {
    const scenario = parseScenario(base);
    expect(scenario.startAt).toBe("2026-01-01T00:00:00Z");
    expect(scenario.seed).toBe(0);
    expect(scenario.config.rateLimit.rules).toEqual([{ maxCalls: 7, windowSeconds: 3600 }]);
    expect(scenario.faults).toEqual([]);
    expect(expandLeads(scenario)).toEqual([{ ...lead, dueAtMs: 0 }]);
  });

  it("keeps every lead phone in its E.164 form, however the file spells it", () => {
    const spellings = ["+91 98000 00001", "+91-98000-00001", " +91 (98000) 00001 "];
    const scenario = parseScenario({
      ...base,
      leads: spellings.map((phone, i) => ({ ...lead, id: `L${i + 1}`, phone })),
    });
    expect(expandLeads(scenario).map((l) => l.phone)).toEqual(spellings.map(() => "+919800000001"));
  });

  it("accepts the spec's example and the busy-lines scenario", async () => {
    for (const file of ["examples/scenario.json", "examples/busy-lines.json"]) {
      const raw: unknown = JSON.parse(await readFile(file, "utf8"));
      expect(() => parseScenario(raw), file).not.toThrow();
    }
  });
});

describe("generated leads", () => {
  const generate = (seed: number, extra: object[] = []) =>
    parseScenario({
      ...base,
      seed,
      leads: [...extra, { generate: { count: 300, phones: 40, templateId: "t1", spreadSeconds: 600 } }],
    });

  it("call valid Indian mobile numbers, one per phone index", () => {
    for (const seed of [0, 1, 7, 123_456, -5, 2 ** 40]) {
      const phones = Array.from({ length: 2000 }, (_, i) => generatedPhone(seed, i));
      for (const phone of phones) {
        expect(phone).toMatch(/^\+9198\d{8}$/);
        expect(isValidPhoneNumber(phone)).toBe(true);
      }
      expect(new Set(phones).size).toBe(phones.length);
    }
  });

  it("are G1, G2, … where lead n calls phone (n mod phones), due in [0, spreadSeconds)", () => {
    const leads = expandLeads(generate(7));
    expect(leads.map((l) => l.id)).toEqual(Array.from({ length: 300 }, (_, i) => `G${i + 1}`));
    expect(new Set(leads.map((l) => l.phone)).size).toBe(40);
    leads.forEach((l, i) => {
      expect(l.phone).toBe(generatedPhone(7, (i + 1) % 40));
      expect(l.dueAtMs).toBeGreaterThanOrEqual(0);
      expect(l.dueAtMs).toBeLessThan(600_000);
      expect(isValidPhoneNumber(l.phone)).toBe(true);
    });
    const mean = leads.reduce((sum, l) => sum + l.dueAtMs, 0) / leads.length;
    expect(mean).toBeGreaterThan(250_000);
    expect(mean).toBeLessThan(350_000);
  });

  it("are the same for the same seed and differ for another", () => {
    expect(expandLeads(generate(7))).toEqual(expandLeads(generate(7)));
    expect(expandLeads(generate(8)).map((l) => l.phone)).not.toEqual(
      expandLeads(generate(7)).map((l) => l.phone),
    );
    expect(expandLeads(generate(8)).map((l) => l.dueAtMs)).not.toEqual(
      expandLeads(generate(7)).map((l) => l.dueAtMs),
    );
  });

  it("keep their draws when other leads are added before them", () => {
    const alone = expandLeads(generate(7));
    const withOthers = expandLeads(generate(7, [lead, { ...lead, id: "L2", dueAtSeconds: 5 }])).slice(2);
    expect(withOthers).toEqual(alone);
  });
});
