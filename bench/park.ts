/**
 * `npm run bench:park`: what waiting for a line costs. Runs, on the simulator's virtual clock,
 *  1. 5,000 leads on 1,000 phones over 20 pool numbers × 2 lines (45 s calls), memory backend, beside
 *     the same campaign with ample lines;
 *  2. the 500-lead / 4-line campaign of examples/busy-lines.json with the redis backend (Redis +
 *     Postgres: REDIS_URL / DATABASE_URL when set, else the test harness's throw-away servers).
 * Prints wall time, channel-gate meetings and peeks per dial, makespan against
 * dials × callSeconds ÷ lines, duplicate dials and lost leads. BENCH_PARK_SKIP_REDIS=1 skips run 2.
 */
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import {
  parseScenario,
  type Report,
  redisBackend,
  type ScenarioInput,
  simulate,
} from "../src/cli/simulate/index.js";
import { startServers } from "./lib/servers.js";

const CALL_SECONDS = 45;

function campaign(lines: number): ScenarioInput {
  return {
    seed: 11,
    startAt: "2026-01-01T00:00:00Z",
    untilSeconds: 86_400,
    numbers: Array.from({ length: 20 }, (_, i) => ({
      id: `n${String(i + 1).padStart(2, "0")}`,
      e164: `+1555000${String(i + 1).padStart(4, "0")}`,
      provider: "sim",
      maxChannels: lines,
      status: "AVAILABLE",
      pool: true,
    })),
    templates: [{ id: "t1", resellerId: "r1" }],
    leads: [{ generate: { count: 5000, phones: 1000, templateId: "t1", spreadSeconds: 0 } }],
    provider: {
      default: { result: "placed", latencyMs: 80, callSeconds: CALL_SECONDS, outcome: "ANSWERED" },
    },
  } as ScenarioInput;
}

interface Figures {
  label: string;
  wallSeconds: number;
  report: Report;
  lines: number;
}

async function run(label: string, input: ScenarioInput, lines: number, options = {}): Promise<Figures> {
  const scenario = parseScenario(input);
  const started = performance.now();
  const report = await simulate(scenario, options);
  return { label, wallSeconds: (performance.now() - started) / 1000, report, lines };
}

function show(f: Figures): void {
  const { totals, gates, invariants, makespanSeconds } = f.report;
  const dials = totals.dials;
  // Every acquire either holds a line (each dial held one) or finds the candidate set full.
  const meetings = gates.record + gates.recordRejected + gates.channelExhausted;
  const ideal = (dials * CALL_SECONDS) / f.lines;
  const per = (n: number) => (dials === 0 ? "-" : (n / dials).toFixed(2));
  console.info(
    [
      `${f.label}:`,
      `wall ${f.wallSeconds.toFixed(1)} s,`,
      `${dials} dials,`,
      `channel-gate meetings/dial ${per(meetings)} (${gates.channelExhausted} exhausted),`,
      `peeks/dial ${per(gates.peek)} (${gates.peek}),`,
      `makespan ${makespanSeconds} s vs ideal ${Math.round(ideal)} s (${((makespanSeconds / ideal - 1) * 100).toFixed(1)} %),`,
      `duplicate dials ${invariants.duplicateDials}, lost leads ${invariants.lostLeads},`,
      `pending ${totals.pending}`,
    ].join(" "),
  );
}

const contended = await run("5,000 leads / 40 lines (memory)", campaign(2), 40);
show(contended);
const ample = await run("5,000 leads / ample lines (memory)", campaign(500), 10_000);
show(ample);
console.info(`wall time contended ÷ ample: ${(contended.wallSeconds / ample.wallSeconds).toFixed(2)}`);

if (process.env.BENCH_PARK_SKIP_REDIS !== "1") {
  const busy = JSON.parse(await readFile(new URL("../examples/busy-lines.json", import.meta.url), "utf8"));
  const servers = await startServers();
  try {
    const backend = redisBackend({ redisUrl: servers.redisUrl, databaseUrl: servers.databaseUrl });
    show(await run("500 leads / 4 lines (redis)", busy, 4, { backend }));
  } finally {
    await servers.stop();
  }
}
