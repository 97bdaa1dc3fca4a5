/**
 * What the bench orchestrator (bench/run.ts) and its side processes (bench/dialgate-side.ts,
 * bench/peer-side.ts, bench/durable-peer-side.ts, bench/heap.ts) say to each other over the fork IPC channel.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Violations } from "./provider.js";

export interface RunSpec {
  /** peak: every lead due at once (a backlog); paced: one due every 1000/rate ms. */
  mode: "peak" | "paced";
  leads: number;
  rate: number | null;
  /** A warm-up or profile run: printed apart, never in the medians. */
  label: string;
  /** dialgate side only: count store calls by call site, or take a CPU profile. */
  profile?: "calls" | "cpu";
}

export interface RunResult {
  label: string;
  mode: RunSpec["mode"];
  leads: number;
  rate: number | null;
  expectedDials: number;
  dials: number;
  complete: boolean;
  /** Dials that reached PROCESSING per second, from the first due time to the last of them. */
  dialsPerSecond: number;
  /** Due time → makeCall, at the provider (ms). */
  p50Ms: number;
  p99Ms: number;
  cpuMsPerDial: number;
  /** Executed by Redis (INFO commandstats delta): each command inside a Lua script counts. */
  redisCommandsPerDial: number;
  /** Sent by the side's clients: an EVALSHA counts once. */
  redisCommandsSentPerDial: number;
  /** Round trips of the side's clients: a pipeline or a script over many keys counts once. */
  redisRoundTripsPerDial: number;
  pgStatementsPerDial: number;
  /** pg_stat_database xact_commit + xact_rollback delta per dial (a cross-check of the count). */
  pgTransactionsPerDial: number | null;
  redisServerCpuMsPerDial: number | null;
  postgresServerCpuMsPerDial: number | null;
  /** Per dial, by command: executed (commandstats) and sent. */
  commands: Record<string, number>;
  sentCommands: Record<string, number>;
  violations: Violations;
  /** Side-specific notes: gates failed open, deferrals, peak lines per number… */
  notes: Record<string, unknown>;
  /** Present on a profile run. */
  profile?: unknown;
}

export type ToSide = { type: "run"; spec: RunSpec } | { type: "exit" };
export type FromSide =
  | { type: "ready"; info: Record<string, unknown> }
  | { type: "result"; result: RunResult }
  | { type: "heap"; result: unknown }
  | { type: "failed"; error: string };

export interface SideEnv {
  REDIS_URL: string;
  DATABASE_URL: string;
  BENCH_SCHEMA: string;
}

/** A side process: node with tsx, --expose-gc and room for 100k parked actors. */
export class Side {
  readonly #child;
  readonly #inbox: FromSide[] = [];
  #waiting: ((message: FromSide) => void) | null = null;
  readonly exited: Promise<number | null>;

  constructor(script: string, env: SideEnv, extraArgs: string[] = []) {
    const file = fileURLToPath(new URL(`../${script}`, import.meta.url));
    this.#child = fork(file, [], {
      execArgv: ["--import", "tsx", "--expose-gc", ...extraArgs],
      env: { ...process.env, ...env },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.#child.on("message", (message: FromSide) => {
      const waiting = this.#waiting;
      if (waiting) {
        this.#waiting = null;
        waiting(message);
      } else this.#inbox.push(message);
    });
    this.exited = new Promise((resolve) => this.#child.once("exit", (code) => resolve(code)));
  }

  next(): Promise<FromSide> {
    const queued = this.#inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      this.#waiting = resolve;
      this.exited.then((code) => reject(new Error(`side process exited (${code}) without answering`)));
    });
  }

  async run(spec: RunSpec): Promise<RunResult> {
    this.#child.send({ type: "run", spec } satisfies ToSide);
    const message = await this.next();
    if (message.type === "failed") throw new Error(message.error);
    if (message.type !== "result") throw new Error(`unexpected ${message.type}`);
    return message.result;
  }

  async close(): Promise<void> {
    if (this.#child.connected) this.#child.send({ type: "exit" } satisfies ToSide);
    await this.exited;
  }
}

/** The side's end of the channel: answers each run request with `handle`. */
export function serveRuns(
  handle: (spec: RunSpec) => Promise<RunResult>,
  ready: Record<string, unknown>,
  onExit: () => Promise<void>,
) {
  const send = (message: FromSide) => process.send?.(message);
  process.on("message", (message: ToSide) => {
    if (message.type === "exit") {
      onExit().finally(() => process.exit(0));
      return;
    }
    handle(message.spec).then(
      (result) => send({ type: "result", result }),
      (error: unknown) =>
        send({
          type: "failed",
          error: error instanceof Error ? (error.stack ?? error.message) : String(error),
        }),
    );
  });
  send({ type: "ready", info: ready });
}
