import { readFile, writeFile } from "node:fs/promises";
import cliProgress from "cli-progress";
import { ValidationError } from "../../infra/config.js";
import { envLogLevel } from "../../infra/logger.js";
import { reportFailure, UsageError } from "../errors.js";
import { backendFactory, backendUnavailable, registerBackend } from "./backends.js";
import { type RunOptions, runScenario } from "./engine.js";
import { redisBackend, redisBackendUnavailable } from "./redis-backend.js";
import { buildReport, type Report } from "./report.js";
import { expandLeads, parseScenario, type Scenario } from "./scenario.js";
import { formatSummary, violations } from "./summary.js";

registerBackend("redis", redisBackend(), { unavailable: () => redisBackendUnavailable() });

export { type BackendFactory, registerBackend, type SimBackend } from "./backends.js";
export { type RedisBackendUrls, redisBackend } from "./redis-backend.js";
export type { Report } from "./report.js";
export { parseScenario, type Scenario, type ScenarioInput } from "./scenario.js";

/** Exit codes of `dialgate simulate`. */
const OK = 0;
const INVARIANT_BROKEN = 1;
const BAD_INPUT = 2;

/** Runs a parsed scenario (see `parseScenario`) and returns the report of simulate.md. */
export async function simulate(scenario: Scenario, options: RunOptions = {}): Promise<Report> {
  return buildReport(await runScenario(scenario, options));
}

/** A scenario file that could not be read or is not JSON. */
export class ScenarioFileError extends UsageError {
  override readonly name = "ScenarioFileError";
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** Reads and validates a scenario file. */
export async function readScenario(file: string): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ScenarioFileError(
      file,
      `cannot read (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ScenarioFileError(file, `is not valid JSON: ${(error as Error).message}`);
  }
  return parseScenario(raw);
}

/**
 * `dialgate simulate <file> [--backend memory|redis] [--json] [--out report.json]`.
 * Exit 0 when the run kept every invariant, 1 when it broke one, 2 for a bad file or backend.
 * stdout carries only the report (JSON with --json, else a summary); progress and logs go to stderr.
 */
export async function simulateCommand(
  file: string,
  options: { backend?: string; json?: boolean; out?: string } = {},
): Promise<number> {
  const backendName = options.backend ?? "memory";
  const backend = backendFactory(backendName);
  const unavailable = backend ? backendUnavailable(backendName) : null;
  if (!backend || unavailable) {
    console.error(`dialgate: ${unavailable ?? `unknown backend '${backendName}' (memory | redis)`}`);
    return BAD_INPUT;
  }
  let scenario: Scenario;
  try {
    scenario = await readScenario(file);
  } catch (error) {
    if (!(error instanceof ValidationError || error instanceof ScenarioFileError)) throw error;
    // One line per bad field, each naming the file: `dialgate: s.json: scenario.seed must be …`.
    return reportFailure(error, error instanceof ValidationError ? `${file}: ` : "");
  }

  // A bar redrawn between log lines would garble the trace.
  const quiet = options.json || envLogLevel("silent") !== "silent";
  const bar = quiet ? null : progressBar(expandLeads(scenario).length);
  let run: Awaited<ReturnType<typeof runScenario>>;
  try {
    run = await runScenario(scenario, {
      backend,
      onProgress: bar
        ? (done, _total, atSeconds) => bar.update(done, { at: formatClock(atSeconds) })
        : undefined,
    });
  } finally {
    bar?.stop();
  }
  const report = buildReport(run);
  const json = `${JSON.stringify(report, null, 2)}\n`;
  if (options.out) await writeFile(options.out, json);
  if (options.json) process.stdout.write(json);
  else
    process.stdout.write(
      formatSummary(report, run, `dialgate simulate ${file} (${backendName}, seed ${scenario.seed})`),
    );

  const broken = violations(report, run);
  for (const problem of broken) console.error(`dialgate: invariant broken: ${problem}`);
  return broken.length > 0 ? INVARIANT_BROKEN : OK;
}

function progressBar(total: number): cliProgress.SingleBar {
  const bar = new cliProgress.SingleBar(
    {
      format: "simulate [{bar}] {value}/{total} leads finished | virtual time {at}",
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { at: formatClock(0) });
  return bar;
}

/** Virtual seconds as `1d 02:03:04`. */
function formatClock(seconds: number): string {
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86_400);
  const hms = [Math.floor((s % 86_400) / 3600), Math.floor((s % 3600) / 60), s % 60]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
  return days > 0 ? `${days}d ${hms}` : hms;
}
