import type { SimulationRun } from "./engine.js";
import { isPlaced, type Report, type RuleReport } from "./report.js";

/** An invariant the run broke, in words; empty when the dispatcher kept every promise. */
export function violations(report: Report, run: SimulationRun): string[] {
  const found: string[] = [];
  const inv = report.invariants;
  for (const number of run.scenario.numbers) {
    const max = inv.maxConcurrentByNumber[number.id] ?? 0;
    if (max > number.maxChannels)
      found.push(`number ${number.id} had ${max} calls at once (maxChannels ${number.maxChannels})`);
  }
  // alertOnly dials over the cap by design.
  if (run.scenario.config.rateLimit.mode === "block") {
    for (const rule of inv.rateRules) {
      if (rule.violations > 0)
        found.push(
          `${rule.violations} call(s) over ${ruleName(rule, inv.rateRules)}: a phone got ` +
            `${rule.maxDialsPerPhone} calls within ${rule.windowSeconds} s (max ${rule.maxCalls})`,
        );
    }
  }
  const law = inv.callingLaw;
  if (law.outsideWindow > 0)
    found.push(`${law.outsideWindow} call(s) outside a calling window in the callee's local time`);
  // A cooldown is kept by the record step, like the caps: alertOnly lets it pass by design too.
  if (law.inCooldown > 0 && run.scenario.config.rateLimit.mode === "block")
    found.push(`${law.inCooldown} call(s) inside a cooldown after an earlier call's end`);
  if (inv.duplicateDials > 0) found.push(`${inv.duplicateDials} duplicate dial(s)`);
  if (inv.lostLeads > 0) found.push(`${inv.lostLeads} lost lead(s)`);
  return found;
}

/** Seconds of placed calls, ring to hang-up. */
export function totalCallSeconds(run: SimulationRun): number {
  let ms = 0;
  for (const d of run.dials)
    if (isPlaced(d) && d.endsAt !== null && d.resultAt !== null) ms += d.endsAt - d.resultAt;
  return ms / 1000;
}

/** Lines of the AVAILABLE numbers. */
export function totalLines(run: SimulationRun): number {
  return run.scenario.numbers
    .filter((n) => n.status === "AVAILABLE")
    .reduce((sum, n) => sum + n.maxChannels, 0);
}

/** The human-readable report printed without --json. */
export function formatSummary(report: Report, run: SimulationRun, title: string): string {
  const { totals, invariants: inv, gates } = report;
  const broken = violations(report, run);
  const callSeconds = totalCallSeconds(run);
  const lines = totalLines(run);
  const ideal = lines > 0 ? callSeconds / lines : 0;
  const ratio =
    totals.pending > 0
      ? ` (the horizon: ${totals.pending} lead(s) not finished)`
      : ideal > 0
        ? ` (×${(report.makespanSeconds / ideal).toFixed(2)} of call time ÷ lines)`
        : "";
  const rows: [string, string][] = [
    ["leads", `${totals.leads}  finished ${totals.leads - totals.pending}  pending ${totals.pending}`],
    ["dials", `${totals.dials}  placed ${totals.placed}`],
    ["finished", pairs(totals.finished)],
    ["deferred", pairs(totals.deferred)],
    ["gates", pairs(gates)],
    // Only for runs that met a window or chose a local number.
    ...optionalRow("zones from", totals.zoneSource),
    ...optionalRow("caller ID", totals.callerId),
    [
      "alerts",
      `${report.alerts.length}${report.alerts.length ? `  ${pairs(countBy(report.alerts, (a) => a.kind))}` : ""}`,
    ],
    ["", ""],
    [
      "max concurrent",
      run.scenario.numbers
        .map((n) => `${n.id} ${inv.maxConcurrentByNumber[n.id] ?? 0}/${n.maxChannels}`)
        .join("  "),
    ],
    [
      "max per phone",
      inv.rateRules
        .map(
          (r) =>
            `${r.maxDialsPerPhone}/${r.maxCalls} per ${r.windowSeconds} s` +
            (r.templateId === null ? "" : ` (${[r.templateId, ...ruleSource(r)].join(" ")})`),
        )
        .join("  "),
    ],
    [
      "calling law",
      `outside window ${inv.callingLaw.outsideWindow}  in cooldown ${inv.callingLaw.inCooldown}`,
    ],
    ["duplicate dials", String(inv.duplicateDials)],
    ["lost leads", String(inv.lostLeads)],
    ["invariants", broken.length === 0 ? "ok" : `BROKEN: ${broken.join("; ")}`],
    ["", ""],
    ["makespan", `${fixed(report.makespanSeconds)} s${ratio}`],
    ["call time ÷ lines", `${fixed(callSeconds)} s ÷ ${lines} = ${fixed(ideal)} s`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  const body = rows
    .map(([label, value]) => (label ? `  ${label.padEnd(width)}  ${value || "-"}` : ""))
    .join("\n");
  return `${title}\n\n${body}\n`;
}

/**
 * "config rule 0", "template t2 rule 1", "template t2 preset florida rule 0", "template t2 region 1
 * rule 0": the rule's place in its list.
 */
function ruleName(rule: RuleReport, all: readonly RuleReport[]): string {
  const sameList = (r: RuleReport) =>
    r.templateId === rule.templateId && r.preset === rule.preset && r.region === rule.region;
  const index = all.filter(sameList).indexOf(rule);
  if (rule.templateId === null) return `config rule ${index}`;
  return ["template", rule.templateId, ...ruleSource(rule), "rule", index].join(" ");
}

/** Where a template's rule comes from, in words: nothing for its own, else its preset or region. */
function ruleSource(rule: RuleReport): string[] {
  if (rule.preset !== undefined) return ["preset", rule.preset];
  if (rule.region !== undefined) return ["region", String(rule.region)];
  return [];
}

function optionalRow(label: string, record: Record<string, number>): [string, string][] {
  return Object.keys(record).length > 0 ? [[label, pairs(record)]] : [];
}

function pairs(record: Record<string, number>): string {
  const entries = Object.entries(record);
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join("  ") : "-";
}

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

function fixed(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
