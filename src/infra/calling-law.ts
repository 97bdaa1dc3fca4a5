import type {
  CallerIdMatch,
  CooldownRule,
  PresetName,
  RateRule,
  RegionMatch,
  Template,
  WindowHours,
  ZoneSource,
} from "../machines/ports.js";
import { type Place, placeOf } from "./geo.js";

/**
 * The calling law of one lead (design §7.8): which windows must be open, in which zones, and which
 * rate-limit rules and cooldowns its record must pass. A template's own window and rules, its presets
 * and the regional overrides that match the callee all apply together: each one can only narrow.
 */
export interface LeadLaw {
  /** Zones every window is judged in: the window must be open in all of them. */
  zones: string[];
  /** Where `zones` came from: the lead's `timeZone`, the callee's number, or the template's window. */
  zoneSource: ZoneSource;
  /** Every window that must be open at once (the template's, its presets', matching regions'). */
  windows: WindowHours[];
  /** The record's rules: the template's own (or the dispatcher's), then presets' and regions'. */
  rules: RateRule[];
  /** Cooldowns after chosen outcomes (design §7.6). */
  cooldowns: CooldownRule[];
  place: Place;
}

/** A part of a preset: like a regional override, with `match` unset meaning every callee. */
interface Clause {
  match?: RegionMatch;
  window?: WindowHours;
  rateLimitRules?: RateRule[];
  cooldowns?: CooldownRule[];
}

const DAY_SECONDS = 86_400;

/**
 * The presets (design §7.8 lists each one's source and what it does not cover). A preset only adds
 * rules: it narrows a template, never widens it. Their caps and cooldowns are law: they fail closed
 * (design §7.6), a missed call rather than one too many while the gate store cannot count.
 */
export const PRESETS: Readonly<Record<PresetName, readonly Clause[]>> = {
  // US TCPA, 47 CFR § 64.1200(c)(1): no solicitation before 8 am or after 9 pm, callee's local time.
  tcpa: [{ window: { start: "08:00", end: "21:00" } }],
  // Florida Telephone Solicitation Act, Fla. Stat. § 501.616(6) as amended 2021: 8 am – 8 pm and
  // at most 3 calls per 24 hours to a person, for callees in Florida.
  florida: [
    {
      match: { country: "US", region: "FL" },
      window: { start: "08:00", end: "20:00" },
      rateLimitRules: [{ maxCalls: 3, windowSeconds: DAY_SECONDS, failMode: "closed" }],
    },
  ],
  // CFPB Regulation F, 12 CFR § 1006.14(b)(2): 7 calls within 7 days, and none within 7 days after a
  // telephone conversation (an ANSWERED call).
  regF: [
    {
      rateLimitRules: [{ maxCalls: 7, windowSeconds: 7 * DAY_SECONDS, failMode: "closed" }],
      cooldowns: [{ seconds: 7 * DAY_SECONDS, afterOutcomes: ["ANSWERED"], failMode: "closed" }],
    },
  ],
  // India, TRAI TCCCPR 2018: commercial calls 09:00–21:00 IST (the callee's zone; IST for +91).
  trai: [{ window: { start: "09:00", end: "21:00" } }],
};

/** Every clause of a template: its presets' and its regional overrides'. */
function clausesOf(template: Template): Clause[] {
  const clauses: Clause[] = [];
  // A name this version does not know (a newer process stored it) adds nothing here.
  for (const preset of template.presets ?? []) clauses.push(...(PRESETS[preset] ?? []));
  for (const region of template.regions ?? []) clauses.push(region);
  return clauses;
}

/**
 * Whether a clause's match (every field given) fits the callee. A NANP callee whose area code the
 * tables do not place (toll-free, or newer than the tables) may be in any region: a region's clause
 * applies to it, since a clause only ever narrows (design §7.8).
 */
export function matches(match: RegionMatch | undefined, place: Place): boolean {
  if (!match) return true;
  if (match.country !== undefined && match.country !== place.country) return false;
  if (match.region !== undefined && !inRegion(match.region, place)) return false;
  if (match.areaCodes !== undefined && !match.areaCodes.includes(place.areaCode ?? "")) return false;
  return true;
}

function inRegion(region: string, place: Place): boolean {
  if (place.region === undefined) return place.areaCode !== undefined;
  return place.region.split("/").includes(region);
}

/**
 * The law of one lead of `template`. `baseRules`: the template's own rules, or the dispatcher's when
 * it has none. The zones: the lead's `timeZone` when given; else every zone the callee's number may
 * ring in (all of them must be open: several zones is the conservative reading); see calleeZones.
 */
export function lawOf(
  template: Template,
  lead: { phone: string; timeZone: string | null },
  baseRules: readonly RateRule[],
): LeadLaw {
  const place = placeOf(lead.phone);
  const windows: WindowHours[] = template.window ? [template.window] : [];
  const rules = [...baseRules];
  const cooldowns = [...(template.cooldowns ?? [])];
  for (const clause of clausesOf(template)) {
    if (!matches(clause.match, place)) continue;
    if (clause.window) windows.push(clause.window);
    rules.push(...(clause.rateLimitRules ?? []));
    cooldowns.push(...(clause.cooldowns ?? []));
  }
  const [zones, zoneSource] = calleeZones(lead.timeZone, place, template);
  return { zones, zoneSource, windows, rules: uniqueRules(rules), cooldowns, place };
}

/**
 * The zones a callee is judged in: the lead's own; else every zone its number may ring in (those of
 * its prefix, or every zone of its country when the tables know only its country: toll-free numbers,
 * prefixes newer than the tables); else, for a number of no known country, the template window's zone;
 * else UTC.
 */
export function calleeZones(
  leadZone: string | null,
  place: Place,
  template: Pick<Template, "window">,
): [string[], ZoneSource] {
  if (leadZone) return [[leadZone], "lead"];
  if (place.zones.length > 0) return [place.zones, "number"];
  if (template.window) return [[template.window.timeZone], "template"];
  return [["UTC"], "none"];
}

/** The same rule twice (a preset repeating the template's) is counted once. */
function uniqueRules(rules: RateRule[]): RateRule[] {
  const seen = new Set<string>();
  return rules.filter((r) => {
    const key = `${r.maxCalls}/${r.windowSeconds}/${r.failMode ?? "open"}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Every rate-limit rule the template may apply to some callee (its own, presets', every region's):
 * how long a phone's records must be kept (design §7.6).
 */
export function templateRules(template: Template): RateRule[] {
  const rules = [...(template.rateLimitRules ?? [])];
  for (const clause of clausesOf(template)) rules.push(...(clause.rateLimitRules ?? []));
  return rules;
}

/** The largest window of `rules` in ms, 0 for none. */
export function largestWindowMs(rules: readonly RateRule[] | undefined): number {
  return Math.max(0, ...(rules ?? []).map((rule) => rule.windowSeconds * 1000));
}

/** The largest window (ms) of every rule the templates may apply: how long records are kept (design §7.6). */
export function templatesWindowMs(templates: Iterable<Template>): number {
  let window = 0;
  for (const t of templates) window = Math.max(window, largestWindowMs(templateRules(t)));
  return window;
}

/** Every cooldown the template may apply to some callee: which call ends must be remembered, how long. */
export function templateCooldowns(template: Template): CooldownRule[] {
  const cooldowns = [...(template.cooldowns ?? [])];
  for (const clause of clausesOf(template)) cooldowns.push(...(clause.cooldowns ?? []));
  return cooldowns;
}

/** Whether the template has any calling law beyond its rate-limit rules (else no lead needs a place). */
export function hasCallingLaw(template: Template): boolean {
  return (
    template.window !== undefined ||
    template.presets !== undefined ||
    template.regions !== undefined ||
    template.cooldowns !== undefined
  );
}

/** How near a caller ID is to the callee (design §7.9): same area code, region, country, or neither. */
export function nearness(callee: Place, caller: Place): CallerIdMatch {
  if (callee.areaCode !== undefined && callee.areaCode === caller.areaCode) return "areaCode";
  if (callee.region !== undefined && callee.region === caller.region) return "region";
  if (callee.country !== undefined && callee.country === caller.country) return "country";
  return "pool";
}

/** The order of preference of local presence: nearest first. */
export const NEARNESS_RANK: Readonly<Record<CallerIdMatch, number>> = {
  areaCode: 0,
  region: 1,
  country: 2,
  pool: 3,
};
