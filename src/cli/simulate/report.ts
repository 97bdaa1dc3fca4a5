import type { DispatcherStats } from "../../dispatcher.js";
import { canonicalPhone } from "../../infra/phone.js";
import type { SimDial } from "../../infra/providers/simulated.js";
import type { AlertKind, LeadRecord, LeadStatus, RateRule, Severity } from "../../machines/ports.js";
import type { SimulationRun } from "./engine.js";

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
  };
  invariants: {
    maxConcurrentByNumber: Record<string, number>;
    maxDialsPerPhoneInWindow: number;
    /** The config's rules, in order (`rateRules` entries with `templateId: null`). */
    maxDialsPerPhoneByRule: number[];
    /** Every rule in force: the config's, then each template's own. */
    rateRules: RuleReport[];
    duplicateDials: number;
    lostLeads: number;
  };
  alerts: { kind: AlertKind; severity: Severity; key: string; atSeconds: number }[];
  gates: DispatcherStats["gates"];
  makespanSeconds: number;
}

/** One rate rule in force, measured against the calls it governs. */
export interface RuleReport {
  /** The template whose own rule this is; null for a config rule. */
  templateId: string | null;
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
}

export interface DialReport {
  atSeconds: number;
  /** null while the result had not come back at the horizon. */
  resultAtSeconds: number | null;
  numberId: string;
  /** As in the scenario, `throw` reported as `notPlaced`; null while in flight at the horizon. */
  result: string | null;
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
  for (const lead of run.leads) {
    const record = stored.get(lead.id);
    const dials = dialsByLead.get(lead.id) ?? [];
    const defers = run.defers.get(lead.id) ?? [];
    for (const d of defers) deferred[d.reason] = (deferred[d.reason] ?? 0) + 1;
    leads[lead.id] = {
      status: record?.status ?? "MISSING",
      outcome: record?.outcome ?? null,
      attempts: dials.filter(isPlaced).length,
      dials: dials.map((d) => ({
        atSeconds: seconds(d.at),
        resultAtSeconds: d.resultAt === null ? null : seconds(d.resultAt),
        numberId: d.numberId,
        result: d.result === "throw" ? "notPlaced" : d.result,
      })),
      defers: defers.map((d) => ({
        atSeconds: seconds(d.at),
        seconds: Math.round(d.until - d.at) / 1000,
        reason: d.reason,
      })),
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
  const rateRules = rulesInForce(run).map(({ templateId, rule }): RuleReport => {
    const counted = placedOverRule(placed, rule, (d) => governedBy.get(d.leadId) === templateId);
    return { templateId, maxCalls: rule.maxCalls, windowSeconds: rule.windowSeconds, ...counted };
  });
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
    },
    invariants: {
      maxConcurrentByNumber: maxConcurrentByNumber(
        placed,
        scenario.numbers.map((n) => n.id),
      ),
      maxDialsPerPhoneInWindow: byRule[0] ?? 0,
      maxDialsPerPhoneByRule: byRule,
      rateRules,
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

/** A rate rule in force and where it comes from: a template's own list, or the config's (null). */
export interface RuleInForce {
  templateId: string | null;
  rule: RateRule;
}

/** Every rule in force: the config's rules, then each template's own rules, in scenario order. */
export function rulesInForce(run: Pick<SimulationRun, "scenario">): RuleInForce[] {
  const { config, templates } = run.scenario;
  return [
    ...config.rateLimit.rules.map((rule) => ({ templateId: null, rule })),
    ...templates.flatMap((t) => (t.rateLimitRules ?? []).map((rule) => ({ templateId: t.id, rule }))),
  ];
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
