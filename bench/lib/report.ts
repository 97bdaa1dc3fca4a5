/** The bench's summary: medians per side, the comparison table, the targets. */
import type { Ceiling } from "./ceiling.js";
import type { MachineInfo } from "./machine.js";
import type { RunResult } from "./protocol.js";
import type { Violations } from "./provider.js";
import { median, round } from "./stats.js";

export interface SideRuns {
  warmUp: RunResult[];
  peak: RunResult[];
  paced: RunResult[];
  /** Instrumented runs, out of the medians. */
  profile: RunResult[];
  /** What-if runs (dialgate with one client-side change), out of the medians. */
}

export interface SideSummary {
  /** Leads of each backlog run (sized from the side's warm-up rate). */
  backlogLeads: number;
  dialsPerSecond: number;
  peakP50Ms: number;
  peakP99Ms: number;
  pacedRate: number;
  pacedP50Ms: number;
  pacedP99Ms: number;
  cpuMsPerDial: number;
  pacedCpuMsPerDial: number;
  redisCommandsSentPerDial: number;
  redisRoundTripsPerDial: number;
  pacedRedisRoundTripsPerDial: number;
  redisCommandsPerDial: number;
  pgStatementsPerDial: number;
  pacedPgStatementsPerDial: number;
  pgTransactionsPerDial: number | null;
  redisServerCpuMsPerDial: number | null;
  postgresServerCpuMsPerDial: number | null;
  /** Summed over every run of the side, warm-ups and profile included. */
  violations: Violations;
  incompleteRuns: number;
}

export interface HeapResult {
  check: { bytesPerActor: number; grossBytesPerActor: number; microsPerActorToPark: number };
  makeCall: { bytesPerActor: number; grossBytesPerActor: number; microsPerActorToPark: number };
  parts: { bytesEach: Record<string, number> };
}

const med = (runs: RunResult[], pick: (r: RunResult) => number | null) => {
  const values = runs.map(pick).filter((v): v is number => v !== null);
  return values.length === 0 ? null : round(median(values), 3);
};

/** One run on one line, as the bench prints its progress. */
export function briefRun(r: RunResult): string {
  return (
    `${r.dials}/${r.expectedDials} dials, ${r.dialsPerSecond} dials/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ` +
    `${r.cpuMsPerDial} CPU ms/dial, Redis ${r.redisCommandsSentPerDial} sent/dial (${r.redisRoundTripsPerDial} round trips), PG ${r.pgStatementsPerDial} stmts/dial, ` +
    `violations ${JSON.stringify(r.violations)}${r.complete ? "" : " (INCOMPLETE)"}`
  );
}

export function summarise(side: SideRuns): SideSummary {
  const all = [...side.warmUp, ...side.peak, ...side.paced, ...side.profile];
  const violations = { overCap: 0, overChannels: 0, duplicateDials: 0 };
  for (const run of all) {
    violations.overCap += run.violations.overCap;
    violations.overChannels += run.violations.overChannels;
    violations.duplicateDials += run.violations.duplicateDials;
  }
  const { peak, paced } = side;
  return {
    backlogLeads: peak[0]?.leads ?? 0,
    dialsPerSecond: med(peak, (r) => r.dialsPerSecond) ?? Number.NaN,
    peakP50Ms: med(peak, (r) => r.p50Ms) ?? Number.NaN,
    peakP99Ms: med(peak, (r) => r.p99Ms) ?? Number.NaN,
    pacedRate: paced[0]?.rate ?? Number.NaN,
    pacedP50Ms: med(paced, (r) => r.p50Ms) ?? Number.NaN,
    pacedP99Ms: med(paced, (r) => r.p99Ms) ?? Number.NaN,
    cpuMsPerDial: med(peak, (r) => r.cpuMsPerDial) ?? Number.NaN,
    pacedCpuMsPerDial: med(paced, (r) => r.cpuMsPerDial) ?? Number.NaN,
    redisCommandsSentPerDial: med(peak, (r) => r.redisCommandsSentPerDial) ?? Number.NaN,
    redisRoundTripsPerDial: med(peak, (r) => r.redisRoundTripsPerDial) ?? Number.NaN,
    pacedRedisRoundTripsPerDial: med(paced, (r) => r.redisRoundTripsPerDial) ?? Number.NaN,
    redisCommandsPerDial: med(peak, (r) => r.redisCommandsPerDial) ?? Number.NaN,
    pgStatementsPerDial: med(peak, (r) => r.pgStatementsPerDial) ?? Number.NaN,
    pacedPgStatementsPerDial: med(paced, (r) => r.pgStatementsPerDial) ?? Number.NaN,
    pgTransactionsPerDial: med(peak, (r) => r.pgTransactionsPerDial),
    redisServerCpuMsPerDial: med(peak, (r) => r.redisServerCpuMsPerDial),
    postgresServerCpuMsPerDial: med(peak, (r) => r.postgresServerCpuMsPerDial),
    violations,
    incompleteRuns: all.filter((r) => !r.complete).length,
  };
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  pass: boolean;
  /** How far from the goal: "x× short" / "with y to spare". */
  margin: string;
}

const ratio = (a: number, b: number) => round(a / b, 2);
const atLeast = (value: number, goal: number, unit = "") =>
  value >= goal ? `${round(value - goal, 2)}${unit} to spare` : `${round(goal / value, 2)}× short`;
const atMost = (value: number, goal: number, unit = "") =>
  value <= goal ? `${round(goal - value, 2)}${unit} to spare` : `${round(value / goal, 2)}× over`;
const violationFree = (s: SideSummary) =>
  s.violations.overCap + s.violations.overChannels + s.violations.duplicateDials === 0;

export function evaluateTargets(d: SideSummary, p: SideSummary, heap: HeapResult): Target[] {
  const zeroViolations = violationFree(d);
  const throughput = ratio(d.dialsPerSecond, p.dialsPerSecond);
  const cpu = ratio(d.cpuMsPerDial, p.cpuMsPerDial);
  const heapKb = round(heap.makeCall.bytesPerActor / 1024, 2);
  return [
    {
      name: "throughput vs minimal peer, zero violations on our side",
      goal: "≥ 2× peer, 0 violations",
      measured: `${throughput}× (${d.dialsPerSecond} vs ${p.dialsPerSecond} dials/s); violations ${zeroViolations ? 0 : JSON.stringify(d.violations)}`,
      pass: throughput >= 2 && zeroViolations,
      margin: atLeast(throughput, 2, "×"),
    },
    {
      name: "CPU per dial vs minimal peer",
      goal: "≤ 0.8× peer",
      measured: `${cpu}× (${d.cpuMsPerDial} vs ${p.cpuMsPerDial} ms)`,
      pass: cpu <= 0.8,
      margin: atMost(cpu, 0.8, "×"),
    },
    {
      name: "Redis commands per successful dial (sent; an EVALSHA is one)",
      goal: "≤ 4",
      measured: `${d.redisCommandsSentPerDial} sent (${d.redisCommandsPerDial} executed incl. inside Lua)`,
      pass: d.redisCommandsSentPerDial <= 4,
      margin: atMost(d.redisCommandsSentPerDial, 4),
    },
    {
      name: "Postgres statements per successful dial",
      goal: "≤ 3",
      measured: `${d.pgStatementsPerDial} at peak, ${d.pacedPgStatementsPerDial} at half peak`,
      pass: d.pgStatementsPerDial <= 3 && d.pacedPgStatementsPerDial <= 3,
      margin: atMost(Math.max(d.pgStatementsPerDial, d.pacedPgStatementsPerDial), 3),
    },
    {
      name: "p99 due → makeCall at half the peak rate",
      goal: "≤ 50 ms",
      measured: `${d.pacedP99Ms} ms at ${d.pacedRate} dials/s (p50 ${d.pacedP50Ms} ms)`,
      pass: d.pacedP99Ms <= 50,
      margin: atMost(d.pacedP99Ms, 50, " ms"),
    },
    {
      name: "heap per in-flight lead actor",
      goal: "≤ 4 KB",
      measured: `${heapKb} KB parked at makeCall (${round(heap.check.bytesPerActor / 1024, 2)} KB at check)`,
      pass: heapKb <= 4,
      margin: atMost(heapKb, 4, " KB"),
    },
  ];
}

/**
 * The figures of the lean-engine issue (12), against both peers of the same bench run: CPU per dial,
 * throughput against the minimal and the same-durability peer, p99 at half peak, Redis round trips.
 */
export function evaluateLeanTargets(d: SideSummary, minimal: SideSummary, durable: SideSummary): Target[] {
  const violations = violationFree(d) ? "0" : JSON.stringify(d.violations);
  const vsMinimal = ratio(d.dialsPerSecond, minimal.dialsPerSecond);
  const vsDurable = ratio(d.dialsPerSecond, durable.dialsPerSecond);
  return [
    {
      name: "CPU per dial, backlog",
      goal: "≤ 0.40 ms",
      measured: `${d.cpuMsPerDial} ms (minimal peer ${minimal.cpuMsPerDial}, durable peer ${durable.cpuMsPerDial})`,
      pass: d.cpuMsPerDial <= 0.4,
      margin: atMost(d.cpuMsPerDial, 0.4, " ms"),
    },
    {
      name: "throughput vs minimal peer, zero violations on our side",
      goal: "≥ 1× peer, 0 violations",
      measured: `${vsMinimal}× (${d.dialsPerSecond} vs ${minimal.dialsPerSecond} dials/s); violations ${violations}`,
      pass: vsMinimal >= 1 && violationFree(d),
      margin: atLeast(vsMinimal, 1, "×"),
    },
    {
      name: "throughput vs same-durability peer, zero violations on our side",
      goal: "≥ 2× peer, 0 violations",
      measured: `${vsDurable}× (${d.dialsPerSecond} vs ${durable.dialsPerSecond} dials/s); violations ${violations}`,
      pass: vsDurable >= 2 && violationFree(d),
      margin: atLeast(vsDurable, 2, "×"),
    },
    {
      name: "p99 due → makeCall at half the peak rate",
      goal: "≤ 50 ms",
      measured: `${d.pacedP99Ms} ms at ${d.pacedRate} dials/s (p50 ${d.pacedP50Ms} ms)`,
      pass: d.pacedP99Ms <= 50,
      margin: atMost(d.pacedP99Ms, 50, " ms"),
    },
    {
      name: "Redis round trips per dial (a pipeline or a batched script counts once, shared by its dials)",
      goal: "≤ 2",
      measured: `${d.redisRoundTripsPerDial} at peak, ${d.pacedRedisRoundTripsPerDial} at half peak (commands at peak: ${d.redisCommandsSentPerDial} sent, ${d.redisCommandsPerDial} executed per commandstats)`,
      // Both loads, as for the Postgres statements: a full backlog fills every batch, half peak need not.
      pass: Math.max(d.redisRoundTripsPerDial, d.pacedRedisRoundTripsPerDial) <= 2,
      margin: atMost(Math.max(d.redisRoundTripsPerDial, d.pacedRedisRoundTripsPerDial), 2),
    },
  ];
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows
    .map((r, i) => {
      const line = r
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
        .join("  ");
      return i === 0 ? `${line}\n${widths.map((w) => "-".repeat(w)).join("  ")}` : line;
    })
    .join("\n");
}

const f = (v: number | null, digits = 2) =>
  v === null || Number.isNaN(v) ? "n/a" : String(round(v, digits));
const x = (a: number | null, b: number | null) => (a === null || b === null ? "" : `${f(a / b)}×`);
const line = (t: Target) =>
  `  ${t.pass ? "PASS" : "MISS"}  ${t.name}: ${t.measured}; goal ${t.goal}; ${t.margin}`;
const v = (s: Violations) => `${s.overCap} / ${s.overChannels} / ${s.duplicateDials}`;

export function formatReport(input: {
  sizes: Record<string, unknown> & { runs: number };
  machine: MachineInfo;
  ceiling: Ceiling;
  dialgate: SideSummary;
  peer: SideSummary;
  durablePeer: SideSummary;
  heap: HeapResult;
  targets: Target[];
  leanTargets: Target[];
}): string {
  const { sizes, machine: m, ceiling: c, dialgate: d, peer: p, durablePeer: q, heap, targets } = input;
  /** A figure of each side, then dialgate ÷ each peer when `ratios`. */
  const row = (
    label: string,
    pick: (s: SideSummary) => string,
    ratios?: (s: SideSummary) => number | null,
  ) => [
    label,
    pick(d),
    pick(p),
    pick(q),
    ratios ? x(ratios(d), ratios(p)) : "",
    ratios ? x(ratios(d), ratios(q)) : "",
  ];
  const lines: string[] = [];
  lines.push(
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB; node ${m.node}, redis-server ${m.redisServer}, postgres ${m.postgres} (fsync ${m.postgresSettings.fsync}, synchronous_commit ${m.postgresSettings.synchronous_commit})`,
    `dialgate ${m.dialgate.version} @ ${m.dialgate.commit}${m.dialgate.dirty ? " (+ uncommitted src changes)" : ""}; ${Object.entries(
      m.packages,
    )
      .map(([k, ver]) => `${k} ${ver}`)
      .join(", ")}`,
    `sizes: ${Object.entries(sizes)
      .map(([k, val]) => `${k}=${val}`)
      .join(", ")}`,
    "",
    table([
      [
        `median of ${sizes.runs} runs`,
        "dialgate",
        "minimal peer",
        "durable peer",
        "dialgate ÷ minimal",
        "dialgate ÷ durable",
      ],
      row("backlog leads per run (sized from the warm-up rate)", (s) => f(s.backlogLeads, 0)),
      row(
        "dials/s, backlog (due → makeCall → PROCESSING)",
        (s) => f(s.dialsPerSecond, 1),
        (s) => s.dialsPerSecond,
      ),
      row("due → makeCall p50 / p99 ms, backlog", (s) => `${f(s.peakP50Ms, 0)} / ${f(s.peakP99Ms, 0)}`),
      row("paced at half its peak: dials/s", (s) => f(s.pacedRate, 0)),
      row("due → makeCall p50 / p99 ms, half peak", (s) => `${f(s.pacedP50Ms, 0)} / ${f(s.pacedP99Ms, 0)}`),
      row(
        "CPU ms per dial (side process), backlog",
        (s) => f(s.cpuMsPerDial, 3),
        (s) => s.cpuMsPerDial,
      ),
      row(
        "CPU ms per dial, half peak",
        (s) => f(s.pacedCpuMsPerDial, 3),
        (s) => s.pacedCpuMsPerDial,
      ),
      row(
        "Redis round trips per dial (a pipeline or batch counts once), backlog",
        (s) => f(s.redisRoundTripsPerDial),
        (s) => s.redisRoundTripsPerDial,
      ),
      row("Redis round trips per dial, half peak", (s) => f(s.pacedRedisRoundTripsPerDial)),
      row(
        "Redis commands per dial, sent",
        (s) => f(s.redisCommandsSentPerDial),
        (s) => s.redisCommandsSentPerDial,
      ),
      row(
        "Redis commands per dial, executed (commandstats)",
        (s) => f(s.redisCommandsPerDial),
        (s) => s.redisCommandsPerDial,
      ),
      row(
        "Postgres statements per dial (pg client), backlog",
        (s) => f(s.pgStatementsPerDial),
        (s) => s.pgStatementsPerDial,
      ),
      row("Postgres statements per dial, half peak", (s) => f(s.pacedPgStatementsPerDial)),
      row("Postgres transactions per dial (pg_stat_database)", (s) => f(s.pgTransactionsPerDial)),
      row(
        "Redis server CPU ms per dial",
        (s) => f(s.redisServerCpuMsPerDial, 3),
        (s) => s.redisServerCpuMsPerDial,
      ),
      row(
        "Postgres server CPU ms per dial",
        (s) => f(s.postgresServerCpuMsPerDial, 3),
        (s) => s.postgresServerCpuMsPerDial,
      ),
      row("violations: over cap / over channels / duplicate dials", (s) => v(s.violations)),
      [
        "heap per in-flight lead actor, parked at makeCall / check",
        `${f(heap.makeCall.bytesPerActor / 1024)} / ${f(heap.check.bytesPerActor / 1024)} KB`,
        "",
        "",
        "",
        "",
      ],
    ]),
    "",
    `ceiling (nothing else running, ${c.seconds} s each): EVALSHA ${c.evalshaPerSecond}/s unpipelined (${c.evalsha50InFlightPerSecond}/s with 50 in flight); single-row UPDATE commits ${c.updateCommitsPerSecond1}/s with 1 client, ${c.updateCommitsPerSecond16}/s with 16`,
    `dialgate's share at its peak: Redis ${f((100 * d.dialsPerSecond * d.redisCommandsSentPerDial) / c.evalshaPerSecond, 1)}% of the unpipelined EVALSHA round trips; Postgres ${f((100 * d.dialsPerSecond * d.pgStatementsPerDial) / c.updateCommitsPerSecond16, 1)}% of the 16-client UPDATE commits` +
      ` (dials/s those ceilings would allow at dialgate's cost per dial: Redis ${f(c.evalshaPerSecond / d.redisCommandsSentPerDial, 0)}, Postgres ${f(c.updateCommitsPerSecond16 / d.pgStatementsPerDial, 0)})`,
    `heap parts, bytes each: ${Object.entries(heap.parts.bytesEach)
      .map(([k, b]) => `${k} ${b}`)
      .join(
        ", ",
      )}; whole in-flight lead at check ${heap.check.bytesPerActor}, at makeCall ${heap.makeCall.bytesPerActor}`,
    "",
    "targets (a benchmark, not a test):",
    ...targets.map(line),
    "lean-engine figures (issue 12), against both peers of this run:",
    ...input.leanTargets.map(line),
  );
  if (d.incompleteRuns + p.incompleteRuns + q.incompleteRuns > 0)
    lines.push(
      `WARNING: runs that did not finish in time: dialgate ${d.incompleteRuns}, minimal peer ${p.incompleteRuns}, durable peer ${q.incompleteRuns}`,
    );
  return lines.join("\n");
}
