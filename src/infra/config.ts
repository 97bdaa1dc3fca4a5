import { DateTime } from "luxon";
import { z } from "zod";
import { maskPhones } from "./mask.js";
import { normalisePhone } from "./phone.js";

/** One rejected field: its path (`leads[1].phone`), the (masked) value and what is wrong with it. */
export interface ValidationIssue {
  readonly path: string;
  readonly value: unknown;
  readonly problem: string;
}

/** Issues spelled out in a message; `issues` keeps them all. */
const MESSAGE_ISSUES = 10;

/**
 * A value rejected at the boundary; the message quotes the field path and the (masked) value of
 * every issue. `path`, `value` and `problem` are the first issue's; `issues` lists them all.
 */
export class ValidationError extends Error {
  override readonly name = "ValidationError";
  readonly issues: readonly ValidationIssue[];
  constructor(
    readonly path: string,
    readonly value: unknown,
    readonly problem: string,
    more: readonly ValidationIssue[] = [],
  ) {
    const issues = [{ path, value, problem }, ...more];
    const shown = issues.slice(0, MESSAGE_ISSUES).map(formatIssue);
    if (issues.length > MESSAGE_ISSUES) shown.push(`and ${issues.length - MESSAGE_ISSUES} more`);
    super(shown.join("; "));
    this.issues = issues;
  }

  /** The error of several issues (at least one). */
  static of(issues: readonly ValidationIssue[]): ValidationError {
    const [first, ...more] = issues;
    if (!first) throw new TypeError("ValidationError.of needs at least one issue");
    return new ValidationError(first.path, first.value, first.problem, more);
  }
}

/** `leads[1].phone must be a valid phone number in E.164 form, got "***5018"`. */
export function formatIssue(issue: ValidationIssue): string {
  return `${issue.path} ${issue.problem}, got ${formatValue(issue.value)}`;
}

function formatValue(value: unknown): string {
  if (value === undefined) return "undefined";
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "must be HH:MM (24 h)");
const ianaZone = z.string().refine(isIanaZone, "must be an IANA time zone such as Asia/Kolkata");
const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, "must be an E.164 number such as +15550000001");

/**
 * A NUL or half a surrogate pair: Postgres refuses the first (and the whole batch with it, naming no
 * field) and stores the second as U+FFFD, while memory keeps both. Refused here, with the field path,
 * so that both backends see the same input.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
export const BAD_TEXT_MESSAGE = "must not contain a NUL character or a lone surrogate";

export function isCleanText(text: string): boolean {
  return !text.includes("\u0000") && !LONE_SURROGATE.test(text);
}

/** A string that both lead stores keep as it was given. */
export const text = z.string().refine(isCleanText, BAD_TEXT_MESSAGE);
const id = text.min(1, "must not be empty").max(200, "must be at most 200 characters");

/** A phone in any spelling libphonenumber-js reads as valid, out as E.164 (see normalisePhone). */
export const phoneSchema = z.string().transform((raw, ctx) => {
  const result = normalisePhone(raw);
  if ("e164" in result) return result.e164;
  ctx.addIssue({ code: "custom", message: result.problem });
  return z.NEVER;
});

/** Free-form JSON: every key and string inside must be clean text; the issue names the first bad one. */
const payloadSchema = z.record(z.string(), z.unknown()).superRefine((payload, ctx) => {
  const bad = firstBadText(payload, []);
  if (bad) ctx.addIssue({ code: "custom", path: bad.path, message: bad.message });
});

function firstBadText(
  value: unknown,
  path: (string | number)[],
): { path: (string | number)[]; message: string } | null {
  if (typeof value === "string") return isCleanText(value) ? null : { path, message: BAD_TEXT_MESSAGE };
  if (value === null || typeof value !== "object") return null;
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : Object.entries(value);
  for (const [key, v] of entries) {
    if (typeof key === "string" && !isCleanText(key))
      return { path, message: "must not have a key with a NUL character or a lone surrogate" };
    const bad = firstBadText(v, [...path, key]);
    if (bad) return bad;
  }
  return null;
}

export const rateRuleSchema = z.object({
  maxCalls: z.number().int().min(1),
  windowSeconds: z
    .number()
    .int()
    .min(1)
    .max(31 * 86400),
  /** When the gate store cannot count: dial and record later (open), or defer (closed), design §7.6. */
  failMode: z.enum(["open", "closed"]).optional(),
});

export const cooldownRuleSchema = z
  .object({
    seconds: z
      .number()
      .int()
      .min(1)
      .max(31 * 86400),
    afterOutcomes: z.array(text.min(1).max(50)).min(1),
    failMode: z.enum(["open", "closed"]).optional(),
  })
  .strict();

const isoDate = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/, "must be a date YYYY-MM-DD")
  .refine((d) => DateTime.fromISO(d).isValid, "must be a date that exists");

const windowHoursSchema = z.object({
  start: hhmm,
  end: hhmm,
  days: z
    .array(z.enum(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]))
    .min(1)
    .optional(),
  excludeDates: z.array(isoDate).optional(),
});

export const configSchema = z
  .object({
    rateLimit: z
      .object({
        rules: z
          .array(rateRuleSchema)
          .min(1)
          .default([{ maxCalls: 7, windowSeconds: 3600 }]),
        mode: z.enum(["block", "alertOnly"]).default("block"),
        /**
         * Added to every window (ms): the provider sees a call a dial-row write and a request after
         * its record (40–90 ms p99 measured under load), so a record counts this much longer and the
         * cap also holds as the provider counts.
         */
        marginMs: z.number().int().min(0).max(60_000).default(250),
      })
      .prefault({}),
    channelWait: z
      .object({
        /**
         * A lead parked for a line is looked at again this long after it parked at the latest: its set
         * is checked for a free line every maxParkSeconds (a wake-up lost to a crash strands nothing).
         */
        maxParkSeconds: z.number().min(1).default(60),
      })
      .strict()
      .prefault({}),
    dial: z.object({ timeoutMs: z.number().int().min(1).default(15_000) }).prefault({}),
    unknownDial: z.object({ holdMinutes: z.number().positive().default(5) }).prefault({}),
    maxCallMinutes: z.number().positive().default(240),
    concurrency: z.number().int().min(1).max(100_000).default(100),
    drainTimeoutMs: z.number().int().min(0).default(30_000),
    claimLeaseMs: z.number().int().min(1000).default(60_000),
    store: z.object({ commandTimeoutMs: z.number().int().min(1).default(500) }).prefault({}),
    preDialCheck: z
      .object({
        /** Longest wait for the host's pre-dial checks of one attempt; then they count as failed. */
        timeoutMs: z.number().int().min(1).default(5000),
        /** Precheck defers a lead may take in a row; the next one finishes it PRECHECK_FAILED. */
        maxDefers: z.number().int().min(0).default(10),
        /** How long a lead waits after a check threw or timed out. */
        failureDeferSeconds: z.number().min(1).default(30),
      })
      .prefault({}),
    /** Seconds a store-error defer waits: uniform in [min, max]. */
    storeErrorDeferSeconds: z
      .object({ min: z.number().min(0).default(5), max: z.number().min(0).default(30) })
      .prefault({}),
  })
  .strict();

export type DispatcherConfig = z.output<typeof configSchema>;
export type DispatcherConfigInput = z.input<typeof configSchema>;

export const numberSchema = z
  .object({
    id,
    e164,
    provider: text.min(1),
    /** At least one: a number with no line would defer its leads for ever; DISABLED takes it out. */
    maxChannels: z.number().int().min(1),
    status: z.enum(["AVAILABLE", "DISABLED"]).default("AVAILABLE"),
    pool: z.boolean().default(false),
  })
  .strict();

export const templateSchema = z
  .object({
    id,
    resellerId: id,
    numberId: id.optional(),
    provider: text.min(1).optional(),
    window: windowHoursSchema.extend({ timeZone: ianaZone }).strict().optional(),
    retry: z
      .object({
        maxAttempts: z.number().int().min(1),
        onOutcomes: z.array(text.min(1)),
        delaySeconds: z.number().min(0),
      })
      .strict()
      .optional(),
    rateLimitRules: z.array(rateRuleSchema).min(1).optional(),
    cooldowns: z.array(cooldownRuleSchema).min(1).optional(),
    regions: z
      .array(
        z
          .object({
            match: z
              .object({
                country: z
                  .string()
                  .regex(/^[A-Z]{2}$/, "must be an ISO 3166 country code such as US")
                  .optional(),
                region: z
                  .string()
                  .regex(/^[A-Z]{2}$/, "must be a state or province code such as FL")
                  .optional(),
                areaCodes: z
                  .array(z.string().regex(/^[2-9]\d\d$/, "must be a NANP area code such as 305"))
                  .min(1)
                  .optional(),
              })
              .strict()
              .refine((m) => Object.keys(m).length > 0, "must name a country, region or areaCodes"),
            window: windowHoursSchema.strict().optional(),
            rateLimitRules: z.array(rateRuleSchema).min(1).optional(),
            cooldowns: z.array(cooldownRuleSchema).min(1).optional(),
          })
          .strict(),
      )
      .min(1)
      .optional(),
    presets: z
      .array(z.enum(["tcpa", "florida", "regF", "trai"]))
      .min(1)
      .optional(),
    callerId: z.enum(["pool", "local"]).optional(),
  })
  .strict();

export const leadSchema = z
  .object({
    id,
    phone: phoneSchema,
    templateId: id,
    dueAt: z.number().int().nonnegative().optional(),
    expiresAt: z.number().int().nonnegative().optional(),
    timeZone: ianaZone.optional(),
    payload: payloadSchema.optional(),
  })
  .strict();

/**
 * Parses `value` or throws a ValidationError listing every bad field zod found, each as
 * `root.a.b[0].c`. Phone values are masked in the message: fields named `phone`, the value itself
 * when `isPhone` (a block-list entry), and phone-like text anywhere. Other numbers are shown as they
 * are (a bad `dueAt` is no phone).
 */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  root: string,
  { isPhone = false } = {},
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue): ValidationIssue => {
    const path = root + issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("");
    let bad: unknown = value;
    for (const key of issue.path)
      bad = (bad as Record<PropertyKey, unknown> | undefined)?.[key as PropertyKey];
    const phoneField = issue.path.length === 0 ? isPhone : issue.path.at(-1) === "phone";
    return { path, value: maskPhones(bad, phoneField), problem: describeIssue(issue) };
  });
  throw issues.length > 0 ? ValidationError.of(issues) : new ValidationError(root, value, "is invalid");
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "too_small":
      if (issue.origin === "array") return `must have at least ${issue.minimum} item(s)`;
      if (issue.origin === "string") return issue.minimum === 1 ? "must not be empty" : issue.message;
      return `must be ${issue.inclusive ? "≥" : ">"} ${issue.minimum}`;
    case "too_big":
      return `must be ${issue.inclusive ? "≤" : "<"} ${issue.maximum}`;
    case "invalid_type":
      return `must be ${issue.expected}`;
    case "unrecognized_keys":
      return `has unknown key(s) ${issue.keys.join(", ")}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return issue.message;
  }
}

function isIanaZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return zone.includes("/") || zone === "UTC";
  } catch {
    return false;
  }
}
