/**
 * Fuzzing `dispatcher.submit`: any input either stores leads or is refused with a ValidationError that
 * names the field (`lead.phone`, `leads[2].dueAt`), masks phone values, and stores nothing of a batch
 * with one bad lead. Valid leads are always accepted.
 */
import fc from "fast-check";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import type { LeadInput } from "../../src/machines/ports.js";
import {
  errorOf,
  expectFieldError,
  garbageArb,
  idArb,
  isIanaZone,
  phoneArb,
  RUNS,
  zoneArb,
} from "./support.js";

const silent = pino({ level: "silent" });
const newDispatcher = () => createDispatcher({ logger: silent, templates: [{ id: "t1", resellerId: "r1" }] });

let seq = 0;
/** Valid leads; ids made unique per run so that idempotent submits do not hide a result. */
const leadArb: fc.Arbitrary<LeadInput> = fc
  .record(
    {
      id: idArb,
      phone: phoneArb,
      templateId: idArb,
      dueAt: fc.nat(),
      expiresAt: fc.nat(),
      timeZone: zoneArb,
      payload: fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 4 }),
    },
    { requiredKeys: ["id", "phone", "templateId"] },
  )
  .map((lead) => ({ ...lead, id: `${lead.id}#${++seq}` }));

/** For each field, values it must refuse. */
const badValues: Record<keyof LeadInput, fc.Arbitrary<unknown>> = {
  id: fc.oneof(
    fc.constant(""),
    fc.string({ minLength: 201, maxLength: 260 }),
    fc.integer(),
    fc.constant(null),
  ),
  phone: fc.oneof(
    fc.constantFrom("", "+1", "12345", "+91981234", "not a phone", "+00000000000"),
    fc.integer(),
    fc.constant(null),
  ),
  templateId: fc.oneof(fc.constant(""), fc.string({ minLength: 201, maxLength: 260 }), fc.boolean()),
  dueAt: fc.oneof(fc.integer({ max: -1 }), fc.double({ min: 0.1, max: 1e6, noInteger: true }), fc.string()),
  expiresAt: fc.oneof(fc.integer({ max: -1 }), fc.constant(Number.NaN), fc.constant("tomorrow")),
  timeZone: fc.oneof(
    fc.string().filter((z) => !isIanaZone(z)),
    fc.constantFrom("EST", "Mars/Olympus", "asia/kolkata "),
  ),
  payload: fc.oneof(fc.string(), fc.integer(), fc.array(fc.nat()), fc.constant(null)),
};
const fields = Object.keys(badValues) as (keyof LeadInput)[];

describe("fuzz: submit", () => {
  it("accepts every valid lead, alone or in a batch, and stores it as given", async () => {
    const dispatcher = newDispatcher();
    await fc.assert(
      fc.asyncProperty(fc.array(leadArb, { minLength: 1, maxLength: 5 }), async (leads) => {
        const stored = await dispatcher.submit(leads);
        expect(stored.map((l) => l.id)).toEqual(leads.map((l) => l.id));
        for (const [i, lead] of stored.entries()) {
          expect(lead).toMatchObject({
            status: "SCHEDULED",
            phone: leads[i].phone,
            templateId: leads[i].templateId,
          });
        }
      }),
      RUNS,
    );
  });

  it("refuses a lead with one bad field by naming that field, and masks a bad phone", async () => {
    const dispatcher = newDispatcher();
    const broken = fc
      .constantFrom(...fields)
      .chain((field) => fc.tuple(fc.constant(field), leadArb, badValues[field]));
    await fc.assert(
      fc.asyncProperty(broken, async ([field, lead, bad]) => {
        const input = { ...lead, [field]: bad };
        const error = expectFieldError(
          await errorOf(() => dispatcher.submit(input)),
          "lead",
          `lead.${field}`,
        );
        if (field === "phone" && typeof bad === "string" && bad.replace(/\D/g, "").length > 4)
          expect(error.message).not.toContain(bad);
        expect(await dispatcher.store.get(lead.id)).toBeNull();
      }),
      RUNS,
    );
  });

  it("stores nothing of a batch with one bad lead, and names it by its index", async () => {
    const dispatcher = newDispatcher();
    const batch = fc
      .tuple(fc.array(leadArb, { minLength: 1, maxLength: 5 }), fc.constantFrom(...fields), fc.nat())
      .chain(([leads, field, k]) =>
        fc.tuple(fc.constant(leads), fc.constant(field), fc.constant(k % leads.length), badValues[field]),
      );
    await fc.assert(
      fc.asyncProperty(batch, async ([leads, field, index, bad]) => {
        const input = leads.map((l, i) => (i === index ? { ...l, [field]: bad } : l));
        expectFieldError(await errorOf(() => dispatcher.submit(input)), "leads", `leads[${index}].${field}`);
        for (const lead of leads) expect(await dispatcher.store.get(lead.id)).toBeNull();
      }),
      RUNS,
    );
  });

  it("refuses unknown keys and anything that is not a lead with a ValidationError, never a crash", async () => {
    const dispatcher = newDispatcher();
    const unknownKey = fc
      .tuple(
        leadArb,
        fc.string({ minLength: 1 }).filter((k) => !(fields as string[]).includes(k) && k !== "__proto__"),
      )
      .map(([lead, key]) => ({ ...lead, [key]: 1 }));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(garbageArb, unknownKey, fc.array(garbageArb, { maxLength: 3 })),
        async (input) => {
          const error = await errorOf(() => dispatcher.submit(input as LeadInput));
          // An empty batch is a valid (empty) submit.
          if (Array.isArray(input) && input.length === 0) expect(error).toBeUndefined();
          else expectFieldError(error, "lead");
        },
      ),
      RUNS,
    );
  });
});
