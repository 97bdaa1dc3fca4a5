import type { DispatcherStats } from "../../dispatcher.js";
import { calleeZones, hasCallingLaw, matches, PRESETS } from "../../infra/calling-law.js";
import { placeOf } from "../../infra/geo.js";
import { canonicalPhone } from "../../infra/phone.js";
import type { SimDial } from "../../infra/providers/simulated.js";
import type {
  AlertKind,
  CallerIdMatch,
  CooldownRule,
  LeadRecord,
  LeadStatus,
  PresetName,
  RateRule,
  RegionMatch,
  Severity,
  Template,
  WindowHours,
  ZoneSource,
} from "../../machines/ports.js";
import type { SimulationRun } from "./engine.js";
import type { SimLead } from "./scenario.js";

/** The report of simulate.md, exactly; `--json` prints this object. Times in seconds after `startAt`. */
export interface Report {
  leads: Record<string, LeadReport>;
  totals: {
    leads: number;
    dials: number;
    placed: number;
    /** FINISHED leads by outcome. */
    finished: Record<string, number>;
    /** Deferral events by reason. */
    deferred: Record<string, number>;
    /** Leads not FINISHED at the end. */
    pending: number;
    /** Leads that met a window gate, by where their zones came from (their last `lead:window`). */
    zoneSource: Partial<Record<ZoneSource, number>>;
    /** Dials of local-presence templates by how near the chosen number was to the callee. */
    callerId: Partial<Record<CallerIdMatch, number>>;
  };
  invariants: {
    maxConcurrentByNumber: Record<string, number>;
    maxDialsPerPhoneInWindow: number;
    /** The config's rules, in order (`rateRules` entries with `templateId: null`). */
    maxDialsPerPhoneByRule: number[];
    /**
     * Every rule in force: the config's, then per template its own, its presets' and its regional
     * overrides' (each governing the template's calls to the callees it matches).
     */
    rateRules: RuleReport[];
    /** The calling law of each call's lead (windows, cooldowns), checked on the provider's side. */
    callingLaw: CallingLawReport;
    duplicateDials: number;
    lostLeads: number;
  };
  alerts: { kind: AlertKind; severity: Severity; key: string; atSeconds: number }[];
  gates: DispatcherStats["gates"];
  makespanSeconds: number;
}

/** Placed calls that broke the calling law of their lead. */
export interface CallingLawReport {
  /** Placed while a window of the lead's law was closed in one of the callee's zones. */
  outsideWindow: number;
  /**
   * Placed while a cooldown of the lead's law ran: an earlier call to the same phone (any template)
   * ended with one of its outcomes less than its `seconds` before.
   */
  inCooldown: number;
}

/** One rate rule in force, measured against the calls it governs. */
export interface RuleReport {
  /** The template whose rule this is; null for a config rule. */
  templateId: string | null;
  /** The rule comes from this preset of the template (absent: the template's own or the config's). */
  preset?: PresetName;
  /** The rule comes from the template's `regions[region]` override. */
  region?: number;
  maxCalls: number;
  windowSeconds: number;
  /**
   * Most placed calls to one phone, from any template, inside the window of this rule that ends at
   * (and includes) a call this rule governs.
   */
  maxDialsPerPhone: number;
  /** Calls this rule governs that found more than `maxCalls` calls in that window. */
  violations: number;
}

export interface LeadReport {
  /** "MISSING" when the store no longer has the lead (a lost lead). */
  status: LeadStatus | "MISSING";
  outcome: string | null;
  /** Placed dials. */
  attempts: number;
  dials: DialReport[];
  defers: { atSeconds: number; seconds: number; reason: string }[];
  /** The zones its windows were last judged in (`lead:window`); absent when it never met a window. */
  zones?: string[];
  zoneSource?: ZoneSource;
}

export interface DialReport {
  atSeconds: number;
  /** null while the result had not come back at the horizon. */
  resultAtSeconds: number | null;
  numberId: string;
  /** As in the scenario, `throw` reported as `notPlaced`; null while in flight at the horizon. */
  result: string | null;
  /** Local-presence templates only: how near the chosen number is to the callee (`lead:dialling`). */
  callerId?: CallerIdMatch;
}

const LIVE_STATUSES: ReadonlySet<string> = new Set<LeadStatus>([
  "SCHEDULED",
  "CLAIMED",
  "DIALING",
  "PROCESSING",
  "FINISHED",
]);

export function buildReport(run: SimulationRun): Report {
  const { scenario, startAt } = run;
  const seconds = (at: number) => Math.round(at - startAt) / 1000;
  const stored = new Map(run.stored.map((lead) => [lead.id, lead]));
  const dialsByLead = groupBy(run.dials, (d) => d.leadId);
  const placed = run.dials.filter(isPlaced);

  const leads: Record<string, LeadReport> = {};
  const deferred: Record<string, number> = {};
  const zoneSource: Record<string, number> = {};
  const callerId: Record<string, number> = {};
  for (const lead of run.leads) {
    const record = stored.get(lead.id);
    const dials = dialsByLead.get(lead.id) ?? [];
    const defers = run.defers.get(lead.id) ?? [];
    for (const d of defers) deferred[d.reason] = (deferred[d.reason] ?? 0) + 1;
    const window = run.windowZones.get(lead.id);
    if (window) zoneSource[window.zoneSource] = (zoneSource[window.zoneSource] ?? 0) + 1;
    leads[lead.id] = {
      status: record?.status ?? "MISSING",
      outcome: record?.outcome ?? null,
      attempts: dials.filter(isPlaced).length,
      dials: dials.map((d) => {
        const match = run.callerIds.get(d.dialRef);
        if (match) callerId[match] = (callerId[match] ?? 0) + 1;
        return {
          atSeconds: seconds(d.at),
          resultAtSeconds: d.resultAt === null ? null : seconds(d.resultAt),
          numberId: d.numberId,
          result: d.result === "throw" ? "notPlaced" : d.result,
          ...(match && { callerId: match }),
        };
      }),
      defers: defers.map((d) => ({
        atSeconds: seconds(d.at),
        seconds: Math.round(d.until - d.at) / 1000,
        reason: d.reason,
      })),
      ...(window && { zones: window.zones, zoneSource: window.zoneSource }),
    };
  }

  const finished: Record<string, number> = {};
  let pending = 0;
  for (const lead of run.leads) {
    const record = stored.get(lead.id);
    if (record?.status === "FINISHED") {
      const outcome = record.outcome ?? "?";
      finished[outcome] = (finished[outcome] ?? 0) + 1;
    } else pending += 1;
  }

  const governedBy = ruleSetByLead(run);
  const leadById = new Map(run.leads.map((l) => [l.id, l]));
  const rateRules = rulesInForce(run).map(({ templateId, rule, preset, region, match }): RuleReport => {
    const governs =
      preset === undefined && region === undefined
        ? (d: SimDial) => governedBy.get(d.leadId) === templateId
        : (d: SimDial) => {
            const lead = leadById.get(d.leadId);
            return lead?.templateId === templateId && matches(match, placeOf(lead.phone));
          };
    const counted = placedOverRule(placed, rule, governs);
    return {
      templateId,
      ...(preset !== undefined && { preset }),
      ...(region !== undefined && { region }),
      maxCalls: rule.maxCalls,
      windowSeconds: rule.windowSeconds,
      ...counted,
    };
  });
  const breaches = callingLawBreaches(run);
  const byRule = rateRules.filter((r) => r.templateId === null).map((r) => r.maxDialsPerPhone);
  const allFinished = run.leads.every((lead) => run.finishedAt.has(lead.id));
  let lastFinish = startAt;
  for (const at of run.finishedAt.values()) lastFinish = Math.max(lastFinish, at);

  return {
    leads,
    totals: {
      leads: run.leads.length,
      dials: run.dials.length,
      placed: placed.length,
      finished: sortedKeys(finished),
      deferred: sortedKeys(deferred),
      pending,
      zoneSource: sortedKeys(zoneSource),
      callerId: sortedKeys(callerId),
    },
    invariants: {
      maxConcurrentByNumber: maxConcurrentByNumber(
        placed,
        scenario.numbers.map((n) => n.id),
      ),
      maxDialsPerPhoneInWindow: byRule[0] ?? 0,
      maxDialsPerPhoneByRule: byRule,
      rateRules,
      callingLaw: {
        outsideWindow: breaches.filter((b) => b.kind === "outsideWindow").length,
        inCooldown: breaches.filter((b) => b.kind === "inCooldown").length,
      },
      duplicateDials: duplicateDials(run.dials),
      lostLeads: lostLeads(
        run.leads.map((l) => l.id),
        stored,
        run.owner,
      ),
    },
    alerts: run.alerts.map((a) => ({
      kind: a.kind,
      severity: a.severity,
      key: a.key,
      atSeconds: seconds(a.at),
    })),
    gates: run.gates,
    makespanSeconds: allFinished ? seconds(lastFinish) : Math.round(run.untilAt - startAt) / 1000,
  };
}

/**
 * A rate rule in force and where it comes from: the config's (null), a template's own list, one of
 * its presets or one of its regional overrides (which govern only the callees `match` fits).
 */
export interface RuleInForce {
  templateId: string | null;
  rule: RateRule;
  preset?: PresetName;
  region?: number;
  match?: RegionMatch;
}

/**
 * Every rule in force: the config's rules, then per template (in scenario order) its own rules, its
 * presets' rules (in its `presets` order) and its regional overrides' rules.
 */
export function rulesInForce(run: Pick<SimulationRun, "scenario">): RuleInForce[] {
  const { config, templates } = run.scenario;
  const rules: RuleInForce[] = config.rateLimit.rules.map((rule) => ({ templateId: null, rule }));
  for (const t of templates) {
    for (const rule of t.rateLimitRules ?? []) rules.push({ templateId: t.id, rule });
    for (const preset of t.presets ?? [])
      for (const clause of PRESETS[preset])
        for (const rule of clause.rateLimitRules ?? [])
          rules.push({ templateId: t.id, rule, preset, ...(clause.match && { match: clause.match }) });
    (t.regions ?? []).forEach((regional, region) => {
      for (const rule of regional.rateLimitRules ?? [])
        rules.push({ templateId: t.id, rule, region, match: regional.match });
    });
  }
  return rules;
}

/**
 * Whose rules each lead's dials are recorded under, as the dispatcher's check step picks them: its
 * template's own rules when it has some (the template id), else the config's (null).
 */
function ruleSetByLead(run: Pick<SimulationRun, "scenario" | "leads">): Map<string, string | null> {
  const ownRules = new Set(run.scenario.templates.filter((t) => t.rateLimitRules).map((t) => t.id));
  return new Map(run.leads.map((l) => [l.id, ownRules.has(l.templateId) ? l.templateId : null]));
}

export function isPlaced(dial: SimDial): boolean {
  return dial.result === "placed";
}

/** Most placed calls ringing or in progress at once per number, each over [at, endsAt). */
export function maxConcurrentByNumber(
  placed: readonly SimDial[],
  numberIds: string[],
): Record<string, number> {
  const result: Record<string, number> = Object.fromEntries(numberIds.map((id) => [id, 0]));
  for (const [numberId, dials] of groupBy(placed, (d) => d.numberId)) {
    // An end and a start at the same instant do not overlap: ends (-1) sort first.
    const edges = dials
      .flatMap((d) => [
        [d.at, 1],
        [d.endsAt ?? Number.POSITIVE_INFINITY, -1],
      ])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let current = 0;
    let max = 0;
    for (const [, delta] of edges) {
      current += delta;
      max = Math.max(max, current);
    }
    result[numberId] = max;
  }
  return result;
}

/**
 * Most placed calls to one phone inside any half-open window [t, t + windowMs). Phones are counted by
 * their E.164 form, not as spelt: the report must not trust the dispatcher's own normalisation.
 */
export function maxPlacedPerPhoneInWindow(placed: readonly SimDial[], windowMs: number): number {
  const everyCall = { maxCalls: Number.POSITIVE_INFINITY, windowSeconds: windowMs / 1000 };
  return placedOverRule(placed, everyCall, () => true).maxDialsPerPhone;
}

/**
 * A rule as the dispatcher's record step keeps it: a call it governs is recorded only while the phone's
 * records — of every template, one sorted set per phone (design §7.6) — in the rule's window number
 * fewer than `maxCalls`. So each governed call is counted with every placed call to its phone in the
 * half-open window that ends at it, itself included; calls at one instant count in the order the
 * provider received them. Calls of other rule sets count in those windows but are not checked here.
 */
export function placedOverRule(
  placed: readonly SimDial[],
  rule: Pick<RateRule, "maxCalls" | "windowSeconds">,
  governed: (dial: SimDial) => boolean,
): { maxDialsPerPhone: number; violations: number } {
  const windowMs = rule.windowSeconds * 1000;
  const canonical = new Map<string, string>();
  const phoneOf = (to: string) => {
    let e164 = canonical.get(to);
    if (e164 === undefined) {
      e164 = canonicalPhone(to);
      canonical.set(to, e164);
    }
    return e164;
  };
  let maxDialsPerPhone = 0;
  let violations = 0;
  for (const group of groupBy(placed, (d) => phoneOf(d.to)).values()) {
    const dials = group.toSorted((a, b) => a.at - b.at); // stable: ties keep the provider's order
    let first = 0;
    for (let last = 0; last < dials.length; last++) {
      while (dials[last].at - dials[first].at >= windowMs) first += 1;
      if (!governed(dials[last])) continue;
      const count = last - first + 1;
      maxDialsPerPhone = Math.max(maxDialsPerPhone, count);
      if (count > rule.maxCalls) violations += 1;
    }
  }
  return { maxDialsPerPhone, violations };
}

/** Placed dials for a (lead, attempt) that had already rung. */
export function duplicateDials(dials: readonly SimDial[]): number {
  const rung = new Set<string>();
  let duplicates = 0;
  for (const dial of dials.filter(isPlaced)) {
    const key = `${dial.leadId}\u0000${dial.attempt}`;
    if (rung.has(key)) duplicates += 1;
    rung.add(key);
  }
  return duplicates;
}

/**
 * Submitted leads that at the end are in none of the statuses, or are CLAIMED/DIALING with no live
 * owner and no lease that will expire (design §7.4).
 */
export function lostLeads(
  submitted: string[],
  stored: ReadonlyMap<string, LeadRecord>,
  liveOwner: string,
): number {
  return submitted.filter((id) => {
    const lead = stored.get(id);
    if (!lead || !LIVE_STATUSES.has(lead.status)) return true;
    const beforeDial = lead.status === "CLAIMED" || lead.status === "DIALING";
    return beforeDial && lead.owner !== liveOwner && lead.leaseUntil === null;
  }).length;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

function sortedKeys(record: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---------------------------------------------------------------------------------------------
// The calling law, checked on the provider's side. Written apart from the dispatcher's window and
// law code on purpose (the report must not trust what it checks): local time per zone from Intl,
// the law of each lead rebuilt from its template, the presets' table and the callee's place.

/** A placed call that broke its lead's calling law. */
export interface LawBreach {
  leadId: string;
  dialRef: string;
  /** Epoch ms the provider received the call. */
  at: number;
  kind: "outsideWindow" | "inCooldown";
  /** In words: which window in which zone, or which earlier call's end. */
  detail: string;
}

/** One window of a lead's law and where it comes from ("template", "preset tcpa", "region 0"). */
interface LawWindow {
  hours: WindowHours;
  source: string;
}

/** What the report checks of one lead's law: every window in every zone, and its cooldowns. */
export interface SimLaw {
  zones: string[];
  windows: LawWindow[];
  cooldowns: CooldownRule[];
}

/**
 * The law of a lead as the calling-law rules word it: the template's window, then each preset's and
 * each matching regional override's; its cooldowns likewise. Its zones and its regions' matching are
 * the rules' own (calleeZones, matches in src/infra/calling-law.ts, design §7.8); what is checked
 * apart from the dispatcher is the local time in each zone and the calls at the provider.
 */
export function simLawOf(template: Template, lead: Pick<SimLead, "phone" | "timeZone">): SimLaw {
  const place = placeOf(lead.phone);
  const windows: LawWindow[] = template.window ? [{ hours: template.window, source: "template" }] : [];
  const cooldowns = [...(template.cooldowns ?? [])];
  const clauses = [
    ...(template.presets ?? []).flatMap((p) =>
      (PRESETS[p] ?? []).map((c) => ({ ...c, source: `preset ${p}` })),
    ),
    ...(template.regions ?? []).map((r, i) => ({ ...r, source: `region ${i}` })),
  ];
  for (const clause of clauses) {
    if (!matches(clause.match, place)) continue;
    if (clause.window) windows.push({ hours: clause.window, source: clause.source });
    cooldowns.push(...(clause.cooldowns ?? []));
  }
  const [zones] = calleeZones(lead.timeZone ?? null, place, template);
  return { zones, windows, cooldowns };
}

/**
 * Every placed call that broke its lead's law: placed while a window was closed in one of the callee's
 * zones, or while one of the lead's cooldowns ran after an earlier call to the same phone (any
 * template) that had ended, with one of its outcomes, less than its `seconds` before. Times are the
 * provider's: the call's `at`, the earlier call's `endsAt`.
 */
export function callingLawBreaches(run: Pick<SimulationRun, "scenario" | "leads" | "dials">): LawBreach[] {
  const templates = new Map(run.scenario.templates.map((t) => [t.id, t]));
  const leads = new Map(run.leads.map((l) => [l.id, l]));
  // Laws of the leads that placed a call, rebuilt once each; null for a lead its template leaves free.
  const laws = new Map<string, SimLaw | null>();
  const lawOfLead = (leadId: string): SimLaw | null => {
    let law = laws.get(leadId);
    if (law === undefined) {
      const lead = leads.get(leadId);
      const template = lead && templates.get(lead.templateId);
      law = lead && template && hasCallingLaw(template) ? simLawOf(template, lead) : null;
      laws.set(leadId, law);
    }
    return law;
  };
  const placed = run.dials.filter(isPlaced);
  // The calls that ended with an outcome, by phone (E.164, however the provider got it spelt).
  let ended: Map<string, SimDial[]> | undefined;
  const endedCalls = (to: string) => {
    ended ??= groupBy(
      placed.filter((d) => d.endsAt !== null && d.outcome !== null),
      (d) => canonicalPhone(d.to),
    );
    return ended.get(canonicalPhone(to)) ?? [];
  };

  const breaches: LawBreach[] = [];
  for (const dial of placed) {
    const law = lawOfLead(dial.leadId);
    if (!law) continue;
    const breach = (kind: LawBreach["kind"], detail: string) =>
      breaches.push({ leadId: dial.leadId, dialRef: dial.dialRef, at: dial.at, kind, detail });

    const closed = closedWindow(law, dial.at);
    if (closed) breach("outsideWindow", closed);

    for (const rule of law.cooldowns) {
      const end = endedCalls(dial.to).find(
        (e) =>
          e !== dial &&
          (e.endsAt as number) <= dial.at &&
          dial.at - (e.endsAt as number) < rule.seconds * 1000 &&
          rule.afterOutcomes.includes(e.outcome as string),
      );
      if (!end) continue;
      const since = Math.round((dial.at - (end.endsAt as number)) / 1000);
      breach(
        "inCooldown",
        `${since} s after ${end.dialRef} ended ${end.outcome} (cooldown ${rule.seconds} s)`,
      );
      break; // one call, one breach
    }
  }
  return breaches;
}

/** The first window of the law closed at `at` in one of its zones, in words; null when all are open. */
function closedWindow(law: SimLaw, at: number): string | null {
  for (const { hours, source } of law.windows)
    for (const zone of law.zones) {
      const local = localTime(at, zone);
      if (!openAt(hours, local))
        return (
          `${local.date} ${String(Math.floor(local.minute / 60)).padStart(2, "0")}:` +
          `${String(local.minute % 60).padStart(2, "0")} ${WEEKDAYS[local.weekday]} in ${zone}, ` +
          `outside ${hours.start}–${hours.end} (${source})`
        );
    }
  return null;
}

const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;

/** A wall-clock reading: the local date, its weekday (0 = Sunday) and the minute of the day. */
interface LocalTime {
  date: string;
  weekday: number;
  minute: number;
  /** The local date as UTC midnight (ms), for date arithmetic. */
  day: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The wall clock of `zone` at `at`, read with Intl (seconds dropped: windows are whole minutes). */
export function localTime(at: number, zone: string): LocalTime {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
    });
    formatters.set(zone, format);
  }
  const part: Record<string, number> = {};
  for (const p of format.formatToParts(at)) if (p.type !== "literal") part[p.type] = Number(p.value);
  const day = Date.UTC(part.year as number, (part.month as number) - 1, part.day as number);
  return {
    date: new Date(day).toISOString().slice(0, 10),
    weekday: new Date(day).getUTCDay(),
    minute: (part.hour as number) * 60 + (part.minute as number),
    day,
  };
}

/**
 * Whether the window is open at that wall-clock reading: start inclusive, end exclusive; end before
 * start wraps past midnight and belongs to the day it opens (its `days` and `excludeDates` are that
 * day's); start = end is open all day, a day running from `start` to `start`.
 */
export function openAt(hours: WindowHours, local: LocalTime): boolean {
  const start = minutesOf(hours.start);
  const end = minutesOf(hours.end);
  let opened: number; // days back to the local date the window opened on
  if (start < end) {
    if (local.minute < start || local.minute >= end) return false;
    opened = 0;
  } else if (start > end) {
    if (local.minute >= start) opened = 0;
    else if (local.minute < end) opened = 1;
    else return false;
  } else opened = local.minute >= start ? 0 : 1;
  const day = new Date(local.day - opened * 86_400_000);
  if (hours.days && !hours.days.includes(WEEKDAYS[day.getUTCDay()] as (typeof WEEKDAYS)[number]))
    return false;
  return !hours.excludeDates?.includes(day.toISOString().slice(0, 10));
}

function minutesOf(hhmm: string): number {
  const [h = 0, m = 0] = hhmm.split(":").map(Number);
  return h * 60 + m;
}
