/**
 * Shared pieces of the fuzz suites: valid-value arbitraries, the "rejected with a typed error naming
 * the field" check, and the run counts that keep the suites fast.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { generatedPhone } from "../../src/cli/simulate/scenario.js";
import { ValidationError } from "../../src/infra/config.js";

/** Runs per property: enough to wander, few enough that the whole fuzz suite stays in seconds. */
export const RUNS = { numRuns: 150 } as const;
export const FEW = { numRuns: 60 } as const;

export const idArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s.length >= 1);
/** Valid phones only: the scenario generator's +9198… numbers are all valid for libphonenumber-js. */
export const phoneArb = fc.integer({ min: 0, max: 1_000_000 }).map((i) => generatedPhone(3, i));
export const zoneArb = fc.constantFrom(
  "Asia/Kolkata",
  "America/New_York",
  "Europe/Berlin",
  "UTC",
  "Australia/Sydney",
);
export const hhmmArb = fc
  .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
  .map(([h, m]) => `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`);

/** Values of every JSON-ish and a few non-JSON kinds, for "put garbage here". */
export const garbageArb = fc.oneof(
  fc.anything(),
  fc.constantFrom(null, undefined, Number.NaN, Number.POSITIVE_INFINITY, -1, 0, "", " ", [], {}, true),
  fc.string(),
  fc.double(),
);

/** The same check as `describeIssue` would need: `Intl` knows the zone and it is Area/City or UTC. */
export function isIanaZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return zone.includes("/") || zone === "UTC";
  } catch {
    return false;
  }
}

/**
 * `error` is a ValidationError whose path starts with `root` (and names `field` when given: the
 * path's last segment), and whose message quotes that path.
 */
export function expectFieldError(error: unknown, root: string, field?: string): ValidationError {
  expect(error, String(error)).toBeInstanceOf(ValidationError);
  const e = error as ValidationError;
  expect(e.path.startsWith(root), `${e.path} should start with ${root}`).toBe(true);
  if (field !== undefined) expect(e.path, e.message).toBe(field);
  expect(e.message.startsWith(e.path)).toBe(true);
  return e;
}

/** Runs `f`; its error, or undefined when it returned. */
export async function errorOf(f: () => unknown): Promise<unknown> {
  try {
    await f();
    return undefined;
  } catch (error) {
    return error;
  }
}

/** Runs `f`; its error, or undefined when it returned. */
export function errorOfSync(f: () => unknown): unknown {
  try {
    f();
    return undefined;
  } catch (error) {
    return error;
  }
}

/** `value` with the field at `path` set to `bad`, objects on the way created as needed. */
export function setPath(
  value: Record<string, unknown>,
  path: string[],
  bad: unknown,
): Record<string, unknown> {
  const [head, ...rest] = path;
  const inner = value[head];
  const next = typeof inner === "object" && inner !== null ? (inner as Record<string, unknown>) : {};
  return { ...value, [head]: rest.length === 0 ? bad : setPath(next, rest, bad) };
}
