/**
 * Fuzzing `createDispatcher` options: a config, numbers and templates either validate (and the config
 * is what was given, defaults filled in) or are refused with a ValidationError whose path names the
 * field (`DispatcherConfig.channelWait.maxBackoffSeconds`, `numbers[1].e164`, `templates[0].window.start`).
 */
import fc from "fast-check";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDispatcher, type DispatcherOptions } from "../../src/dispatcher.js";
import {
  errorOfSync,
  expectFieldError,
  garbageArb,
  hhmmArb,
  idArb,
  isIanaZone,
  RUNS,
  setPath,
  zoneArb,
} from "./support.js";

const silent = pino({ level: "silent" });
const create = (options: DispatcherOptions) => createDispatcher({ logger: silent, ...options });

const ruleArb = fc.record({
  maxCalls: fc.integer({ min: 1, max: 1000 }),
  windowSeconds: fc.integer({ min: 1, max: 31 * 86400 }),
});
/** Valid configs: any subset of the fields, each in range. */
const configArb = fc.record(
  {
    rateLimit: fc.record(
      {
        rules: fc.array(ruleArb, { minLength: 1, maxLength: 3 }),
        mode: fc.constantFrom("block", "alertOnly"),
      },
      { requiredKeys: [] },
    ),
    channelWait: fc.record(
      { maxParkSeconds: fc.double({ min: 1, max: 3600, noNaN: true }) },
      { requiredKeys: [] },
    ),
    dial: fc.record({ timeoutMs: fc.integer({ min: 1, max: 600_000 }) }, { requiredKeys: [] }),
    unknownDial: fc.record(
      { holdMinutes: fc.double({ min: 0.001, max: 600, noNaN: true }) },
      { requiredKeys: [] },
    ),
    maxCallMinutes: fc.double({ min: 0.001, max: 1440, noNaN: true }),
    concurrency: fc.integer({ min: 1, max: 100_000 }),
    drainTimeoutMs: fc.integer({ min: 0, max: 600_000 }),
    claimLeaseMs: fc.integer({ min: 1000, max: 3_600_000 }),
    store: fc.record({ commandTimeoutMs: fc.integer({ min: 1, max: 60_000 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

/** A config field (as a path) and values it must refuse. */
const badConfig: [string[], fc.Arbitrary<unknown>][] = [
  [["rateLimit", "rules"], fc.constantFrom([], "7/h", null)],
  [["rateLimit", "mode"], fc.string().filter((m) => m !== "block" && m !== "alertOnly")],
  [["channelWait", "maxParkSeconds"], fc.oneof(fc.double({ max: 0.999, noNaN: true }), fc.constant("60"))],
  [["dial", "timeoutMs"], fc.oneof(fc.integer({ max: 0 }), fc.constant(Number.NaN), fc.constant(null))],
  [["unknownDial", "holdMinutes"], fc.oneof(fc.double({ max: 0, noNaN: true }), fc.constant("5"))],
  [["maxCallMinutes"], fc.oneof(fc.double({ max: 0, noNaN: true }), fc.constant(true))],
  [["concurrency"], fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 100_001 }), fc.constant(1.5))],
  [["drainTimeoutMs"], fc.oneof(fc.integer({ max: -1 }), fc.constant("30s"))],
  [
    ["claimLeaseMs"],
    fc.oneof(
      fc.integer({ max: 999 }),
      fc.constant(undefined).map(() => "60000"),
    ),
  ],
  [["store", "commandTimeoutMs"], fc.oneof(fc.integer({ max: 0 }), fc.constant({}))],
];

const numberArb = fc.record(
  {
    id: idArb,
    e164: fc.integer({ min: 1_000_000, max: 999_999_999 }).map((n) => `+1555${n}`),
    provider: idArb,
    maxChannels: fc.integer({ min: 1, max: 500 }),
    status: fc.constantFrom("AVAILABLE", "DISABLED"),
    pool: fc.boolean(),
  },
  { requiredKeys: ["id", "e164", "provider", "maxChannels"] },
);
const badNumber: [string, fc.Arbitrary<unknown>][] = [
  ["id", fc.constantFrom("", null, 7)],
  ["e164", fc.oneof(fc.constantFrom("15550001", "+0123456789", "+1 555 000 0001", ""), fc.integer())],
  ["provider", fc.constantFrom("", null)],
  ["maxChannels", fc.oneof(fc.integer({ max: 0 }), fc.constant(1.5), fc.constant("2"))],
  ["status", fc.string().filter((s) => s !== "AVAILABLE" && s !== "DISABLED")],
  ["pool", fc.constantFrom("yes", 1, null)],
];

const templateFields = {
  id: idArb,
  resellerId: idArb,
  numberId: idArb,
  provider: idArb,
  window: fc.record({ start: hhmmArb, end: hhmmArb, timeZone: zoneArb }),
  retry: fc.record({
    maxAttempts: fc.integer({ min: 1, max: 10 }),
    onOutcomes: fc.array(idArb, { maxLength: 3 }),
    delaySeconds: fc.nat(),
  }),
  rateLimitRules: fc.array(ruleArb, { minLength: 1, maxLength: 2 }),
};
const templateArb = fc.record(templateFields, { requiredKeys: ["id", "resellerId"] });
/** Every optional part present, so that breaking one field leaves the others valid. */
const fullTemplateArb = fc.record(templateFields);
const badTemplate: [string[], fc.Arbitrary<unknown>][] = [
  [["resellerId"], fc.constantFrom("", undefined, 3)],
  [["window", "start"], fc.oneof(fc.constantFrom("9:00", "24:00", "09:60", "0900"), fc.integer())],
  [["window", "timeZone"], fc.string().filter((z) => !isIanaZone(z))],
  [["retry", "maxAttempts"], fc.oneof(fc.integer({ max: 0 }), fc.constant("3"))],
  [["rateLimitRules"], fc.constantFrom([], [{ maxCalls: 0, windowSeconds: 60 }], "7")],
];

/** `value` with `path` set to `bad` (intermediate objects created as needed). */
/** The path a refusal of `path` may name: the field itself, or inside it (a rule of the list). */
const named = (root: string, path: string[]) => (p: string) =>
  p === `${root}.${path.join(".")}` || p.startsWith(`${root}.${path.join(".")}[`);

describe("fuzz: createDispatcher options", () => {
  it("accepts every valid config, numbers and templates, and keeps the values given", () => {
    fc.assert(
      fc.property(
        configArb,
        fc.uniqueArray(numberArb, { selector: (n) => n.id, maxLength: 3 }),
        fc.array(templateArb, { maxLength: 3 }),
        (config, numbers, templates) => {
          const dispatcher = create({ config, numbers, templates });
          if (config.concurrency !== undefined)
            expect(dispatcher.config.concurrency).toBe(config.concurrency);
          if (config.dial?.timeoutMs !== undefined)
            expect(dispatcher.config.dial.timeoutMs).toBe(config.dial.timeoutMs);
          if (config.rateLimit?.rules)
            expect(dispatcher.config.rateLimit.rules).toEqual(config.rateLimit.rules);
          expect(dispatcher.config.channelWait.maxParkSeconds).toBe(config.channelWait?.maxParkSeconds ?? 60);
        },
      ),
      RUNS,
    );
  });

  it("refuses a config with one bad field by naming that field", () => {
    const broken = fc
      .constantFrom(...badConfig)
      .chain(([path, bad]) => fc.tuple(fc.constant(path), configArb, bad));
    fc.assert(
      fc.property(broken, ([path, config, bad]) => {
        const error = expectFieldError(
          errorOfSync(() => create({ config: setPath(config, path, bad) as DispatcherOptions["config"] })),
          "DispatcherConfig",
        );
        expect(named("DispatcherConfig", path)(error.path), `${error.path} for ${path.join(".")}`).toBe(true);
      }),
      RUNS,
    );
  });

  it("refuses a number or a template with one bad field by naming its index and field", () => {
    const brokenNumber = fc
      .tuple(fc.constantFrom(...badNumber), fc.array(numberArb, { minLength: 1, maxLength: 3 }), fc.nat())
      .chain(([[field, bad], numbers, k]) =>
        fc.tuple(fc.constant(field), fc.constant(numbers), fc.constant(k % numbers.length), bad),
      );
    fc.assert(
      fc.property(brokenNumber, ([field, numbers, index, bad]) => {
        const input = numbers.map((n, i) => (i === index ? { ...n, [field]: bad } : n));
        expectFieldError(
          errorOfSync(() => create({ numbers: input })),
          "numbers",
          `numbers[${index}].${field}`,
        );
      }),
      RUNS,
    );
    const brokenTemplate = fc
      .tuple(fc.constantFrom(...badTemplate), fullTemplateArb)
      .chain(([[path, bad], template]) => fc.tuple(fc.constant(path), fc.constant(template), bad));
    fc.assert(
      fc.property(brokenTemplate, ([path, template, bad]) => {
        const error = expectFieldError(
          errorOfSync(() => create({ templates: [setPath(template, path, bad)] })),
          "templates[0]",
        );
        expect(named("templates[0]", path)(error.path), `${error.path} for ${path.join(".")}`).toBe(true);
      }),
      RUNS,
    );
  });

  it("refuses anything that is not a config, a number or a template with a ValidationError, never a crash", () => {
    fc.assert(
      fc.property(garbageArb, fc.constantFrom("config", "numbers", "templates"), (value, option) => {
        const input = option === "config" ? { config: value } : { [option]: [value] };
        const error = errorOfSync(() => create(input as DispatcherOptions));
        // An absent (undefined or null) config means "all defaults"; so does an empty object.
        if (option === "config" && (value == null || isEmptyObject(value))) expect(error).toBeUndefined();
        else expectFieldError(error, option === "config" ? "DispatcherConfig" : `${option}[0]`);
      }),
      RUNS,
    );
  });
});

function isEmptyObject(value: unknown): boolean {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 0
  );
}
