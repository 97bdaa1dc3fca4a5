import { z } from "zod";
import { configSchema, leadSchema, numberSchema, parseOrThrow, templateSchema } from "../../infra/config.js";
import { simPlanSchema } from "../../infra/providers/simulated.js";
import { PHONE_STREAM, uniform } from "./random.js";

/**
 * The scenario file of `dialgate simulate` (simulate.md). Parsed once with `parseScenario`; an invalid
 * file is a ValidationError quoting the field path (`scenario.leads[3].generate.count must be ≥ 1, got 0`).
 */

const id = leadSchema.shape.id;
const seconds = z.number().min(0);
const MAX_GENERATED = 1_000_000;

const explicitLeadSchema = z
  .object({
    id,
    phone: leadSchema.shape.phone,
    templateId: leadSchema.shape.templateId,
    /** Seconds after `startAt` the lead becomes due. */
    dueAtSeconds: seconds.default(0),
    /** Seconds after `startAt` a lead still not dialled ends EXPIRED. */
    expiresAtSeconds: seconds.optional(),
    timeZone: leadSchema.shape.timeZone,
    payload: leadSchema.shape.payload,
  })
  .strict();

const generateSchema = z
  .object({
    generate: z
      .object({
        count: z.number().int().min(1).max(MAX_GENERATED),
        /** Distinct phones the leads are spread over: lead n calls phone (n mod phones). */
        phones: z.number().int().min(1).max(MAX_GENERATED),
        templateId: id,
        /** Due times are uniform in [0, spreadSeconds). */
        spreadSeconds: seconds.default(0),
      })
      .strict(),
  })
  .strict();

export type ExplicitLead = z.output<typeof explicitLeadSchema>;
export type GenerateLeads = z.output<typeof generateSchema>["generate"];

/**
 * An entry of `leads` is either a lead or a `{ generate }` block. Picked by shape rather than with
 * z.union, so that an error names the field inside the entry instead of "invalid input".
 */
const leadEntrySchema = z
  .custom<z.input<typeof explicitLeadSchema> | z.input<typeof generateSchema>>()
  .transform((value: unknown, ctx): ExplicitLead | { generate: GenerateLeads } => {
    const isGenerate = typeof value === "object" && value !== null && "generate" in value;
    const result = (isGenerate ? generateSchema : explicitLeadSchema).safeParse(value);
    if (result.success) return result.data;
    // Paths relative to the entry: the array prefixes its index.
    ctx.issues.push(...(result.error.issues as z.core.$ZodRawIssue[]));
    return z.NEVER;
  });

const faultSchema = z
  .object({
    kind: z.enum(["storeDown", "providerDown"]),
    fromSeconds: seconds,
    toSeconds: seconds,
  })
  .strict()
  .refine((f) => f.toSeconds > f.fromSeconds, { message: "must be > fromSeconds", path: ["toSeconds"] });

export const scenarioSchema = z
  .object({
    seed: z.number().int().default(0),
    /** Virtual wall-clock time at second 0; calling windows are evaluated against it. */
    startAt: z.iso
      .datetime({ offset: true, error: "must be an ISO 8601 date-time such as 2026-01-01T00:00:00Z" })
      .default("2026-01-01T00:00:00Z"),
    /** Hard stop for new dials; calls in progress then are left as they are. */
    untilSeconds: z.number().positive().default(86_400),
    /** The dispatcher's configuration, validated by the dispatcher's own schema. */
    config: configSchema.prefault({}),
    numbers: z.array(numberSchema).default([]),
    templates: z.array(templateSchema).default([]),
    leads: z.array(leadEntrySchema).min(1),
    provider: z
      .object({
        default: simPlanSchema.partial({ result: true }).optional(),
        /** Answers by the lead's dial sequence (1st, 2nd, … makeCall), then `default`. */
        perLead: z.record(id, z.array(simPlanSchema)).default({}),
      })
      .strict()
      .prefault({}),
    faults: z.array(faultSchema).default([]),
  })
  .strict()
  .superRefine((s, ctx) => {
    uniqueIds(ctx, "numbers", s.numbers);
    uniqueIds(ctx, "templates", s.templates);
    const leadIds = new Set<string>();
    let generated = 0;
    for (const entry of s.leads) if ("generate" in entry) generated += entry.generate.count;
    if (generated > MAX_GENERATED)
      ctx.addIssue({ code: "custom", path: ["leads"], message: `generate at most ${MAX_GENERATED} leads` });
    s.leads.forEach((entry, i) => {
      if ("generate" in entry) return;
      if (leadIds.has(entry.id) || generatedIndex(entry.id, generated) !== null)
        ctx.addIssue({ code: "custom", path: ["leads", i, "id"], message: "must be unique among the leads" });
      leadIds.add(entry.id);
    });
    for (const leadId of Object.keys(s.provider.perLead)) {
      if (!leadIds.has(leadId) && generatedIndex(leadId, generated) === null)
        ctx.addIssue({
          code: "custom",
          path: ["provider", "perLead", leadId],
          message: "must be keyed by the id of a lead of the scenario",
        });
    }
  });

export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Scenario = z.output<typeof scenarioSchema>;
export type Fault = z.output<typeof faultSchema>;

/** Validates a scenario; throws a ValidationError naming the first bad field (`scenario.…`). */
export function parseScenario(value: unknown): Scenario {
  return parseOrThrow(scenarioSchema, value, "scenario");
}

/** A lead as the simulator submits it; times in ms after `startAt`. */
export interface SimLead {
  id: string;
  phone: string;
  templateId: string;
  dueAtMs: number;
  expiresAtMs?: number;
  timeZone?: string;
  payload?: Record<string, unknown>;
}

/**
 * Every lead of the scenario in file order, generate blocks expanded: ids G1, G2, … across blocks; lead n
 * calls generated phone (n mod phones) and is due at a uniform draw in [0, spreadSeconds) keyed by
 * (seed, n, 0).
 */
export function expandLeads(scenario: Scenario): SimLead[] {
  const leads: SimLead[] = [];
  let n = 0;
  for (const entry of scenario.leads) {
    if ("generate" in entry) {
      const { count, phones, templateId, spreadSeconds } = entry.generate;
      for (let i = 0; i < count; i++) {
        n += 1;
        leads.push({
          id: `G${n}`,
          phone: generatedPhone(scenario.seed, n % phones),
          templateId,
          dueAtMs: Math.floor(uniform(scenario.seed, n, 0) * spreadSeconds * 1000),
        });
      }
      continue;
    }
    const { id: leadId, phone, templateId, dueAtSeconds, expiresAtSeconds, timeZone, payload } = entry;
    leads.push({
      id: leadId,
      phone,
      templateId,
      dueAtMs: Math.round(dueAtSeconds * 1000),
      ...(expiresAtSeconds !== undefined && { expiresAtMs: Math.round(expiresAtSeconds * 1000) }),
      ...(timeZone !== undefined && { timeZone }),
      ...(payload !== undefined && { payload }),
    });
  }
  return leads;
}

/** Coprime with 10^8, so `index → digits` is a bijection: distinct indexes get distinct phones. */
const PHONE_STEP = 48_271;
const PHONE_SPACE = 100_000_000;

/**
 * Generated phone `index` of a seed: an Indian mobile number `+9198` + 8 digits. Every +9198 number of
 * that length is valid for libphonenumber-js (the tests check a sample), so no draw is ever skipped.
 */
export function generatedPhone(seed: number, index: number): string {
  const offset = Math.floor(uniform(seed, PHONE_STREAM, 0) * PHONE_SPACE);
  const digits = (index * PHONE_STEP + offset) % PHONE_SPACE;
  return `+9198${String(digits).padStart(8, "0")}`;
}

/** n when `leadId` is `G<n>` with 1 ≤ n ≤ generated, else null. */
function generatedIndex(leadId: string, generated: number): number | null {
  const match = /^G([1-9]\d*)$/.exec(leadId);
  const n = match ? Number(match[1]) : 0;
  return n >= 1 && n <= generated ? n : null;
}

function uniqueIds(ctx: z.RefinementCtx, field: string, items: { id: string }[]): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.id))
      ctx.addIssue({ code: "custom", path: [field, i, "id"], message: `must be unique among the ${field}` });
    seen.add(item.id);
  });
}
