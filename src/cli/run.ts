import { randomUUID } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { z } from "zod";
import { createDispatcher, type Dispatcher } from "../dispatcher.js";
import { LogAlertSink } from "../infra/alerts/log-sink.js";
import { SlackAlertSink } from "../infra/alerts/slack.js";
import { type Backend, connectBackend } from "../infra/backend.js";
import { SystemClock } from "../infra/clock.js";
import {
  configSchema,
  numberSchema,
  parseOrThrow,
  templateSchema,
  ValidationError,
} from "../infra/config.js";
import { createLogger } from "../infra/logger.js";
import { createMetricsHandler } from "../infra/metrics.js";
import { phoneKey } from "../infra/phone-key.js";
import { type SimDial, SimulatedProvider, simPlanSchema } from "../infra/providers/simulated.js";
import type { AlertSink, Clock, DialRequest, DialResult, Provider } from "../machines/ports.js";
import { EXIT_RUNTIME, EXIT_USAGE, UsageError } from "./errors.js";
import { checkSchemaName, missingEnvironment, weakHmacSecret } from "./migrate.js";
import {
  apiToken,
  buildProviders,
  createServiceHandler,
  httpSchema,
  type ProviderSetup,
  providerAccountSchema,
  ServiceConfigError,
} from "./service.js";

/**
 * `dialgate run`: the long-running dispatcher on the shared stores (REDIS_URL + DATABASE_URL). Any
 * number of these processes may run side by side; claims, leases and the Lua gates keep them apart.
 */

export interface RunOptions {
  /** JSON file of RunFile; also DIALGATE_CONFIG. */
  config?: string;
  schema: string;
  prefix: string;
  sweepEveryMs: number;
  /** Apply pending migrations before starting. */
  migrate?: boolean;
  /** Slack incoming-webhook URL for alerts (also DIALGATE_SLACK_WEBHOOK_URL); the log sink always runs. */
  slackWebhook?: string;
  /** Serve Prometheus metrics on GET /metrics at this port. */
  metricsPort?: number;
}

/** The optional `--config` file. Numbers and templates are upserted at start (idempotent by id). */
export const runFileSchema = z
  .object({
    config: configSchema.prefault({}),
    numbers: z.array(numberSchema).default([]),
    templates: z.array(templateSchema).default([]),
    /** Real provider accounts (Twilio, Plivo, Exotel); their secrets come from the environment. */
    providers: z.array(providerAccountSchema).default([]),
    /** The HTTP server: status callbacks, the lead API, metrics and health. None when omitted. */
    http: httpSchema.optional(),
    /** The simulated provider "sim", for numbers whose provider is "sim". */
    provider: z
      .object({
        default: simPlanSchema.partial({ result: true }).optional(),
        /** Answers by the lead's dial sequence in this process, then `default`. */
        perLead: z.record(z.string().min(1), z.array(simPlanSchema)).default({}),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((file, ctx) => {
    // The pacing wait is part of the dial: one still waiting at dial.timeoutMs is held unknown (its
    // line and record kept for unknownDial.holdMinutes) although it was never sent.
    file.providers.forEach((account, i) => {
      if (account.callsPerSecond !== undefined && account.pacingWaitMs >= file.config.dial.timeoutMs)
        ctx.addIssue({
          code: "custom",
          path: ["providers", i, "pacingWaitMs"],
          message: `must be less than config.dial.timeoutMs (${file.config.dial.timeoutMs})`,
        });
    });
  });

export type RunFile = z.output<typeof runFileSchema>;

/** Parses the JSON text of a run file; errors name the file and the path of every bad field. */
export function parseRunFile(text: string, file: string): RunFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file}: is not valid JSON: ${errorText(error)}`);
  }
  try {
    return parseOrThrow(runFileSchema, json, "");
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    // "run.json: config.concurrency must be ≥ 1, got 0", one per bad field
    throw ValidationError.of(
      error.issues.map((issue) => {
        const path = issue.path.replace(/^\./, "");
        return { ...issue, path: path ? `${file}: ${path}` : `${file}:` };
      }),
    );
  }
}

/** Runs until SIGTERM or SIGINT; resolves with the exit code. */
export async function runCommand(options: RunOptions, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const refusal =
    missingEnvironment(env, ["DIALGATE_HMAC_SECRET", "REDIS_URL", "DATABASE_URL"]) ??
    weakHmacSecret(env.DIALGATE_HMAC_SECRET as string);
  if (refusal) {
    console.error(refusal);
    return EXIT_USAGE;
  }
  checkSchemaName(options.schema);
  const configFile = options.config ?? env.DIALGATE_CONFIG;
  let text = "{}";
  if (configFile) {
    try {
      text = await readFile(configFile, "utf8");
    } catch (error) {
      // Worded as simulate words an unreadable scenario.
      console.error(
        `dialgate: ${configFile}: cannot read (${(error as NodeJS.ErrnoException).code ?? error})`,
      );
      return EXIT_USAGE;
    }
  }
  const file = parseRunFile(text, configFile ?? "(none)");
  const hmacSecret = env.DIALGATE_HMAC_SECRET as string;
  const logger = createLogger();
  const clock = new SystemClock();
  let dispatcher: Dispatcher | undefined;
  // Pacing tokens and replay claims are compared with other processes' in Redis: they take the
  // dispatcher's clock, synchronised to Redis TIME (design §7.7), once it exists (no dial runs before).
  const synced: Clock = {
    now: () => (dispatcher?.clock ?? clock).now(),
    setTimer: (at, fn) => (dispatcher?.clock ?? clock).setTimer(at, fn),
  };
  // The gate store exists only once connected; pacing asks it then (no dial runs before).
  let gates: Backend["gateStore"] | undefined;
  let token: string | null = null;
  let setup: ProviderSetup;
  try {
    if (file.http) token = apiToken(file.http, env);
    setup = buildProviders(file.providers, file.http, env, {
      clock: synced,
      logger,
      pacing: {
        takePacingToken: (...args) => (gates as Backend["gateStore"]).takePacingToken(...args),
      },
    });
  } catch (error) {
    if (!(error instanceof ServiceConfigError)) throw error;
    const where = configFile ?? "(no config file)";
    console.error(error.problems.map((problem) => `dialgate: ${where}: ${problem}`).join("\n"));
    return EXIT_USAGE;
  }
  let alertSinks: AlertSink[];
  try {
    alertSinks = alertSinksOf(logger, options.slackWebhook ?? env.DIALGATE_SLACK_WEBHOOK_URL);
  } catch (error) {
    console.error(`dialgate: --slack-webhook: ${errorText(error)}`);
    return EXIT_USAGE;
  }
  const shutdown = shutdownSignal(logger);
  const dialLog = env.DIALGATE_SIM_LOG ? new DialLog(env.DIALGATE_SIM_LOG, hmacSecret) : null;

  let backend: Backend;
  try {
    backend = await connectBackend({
      redisUrl: env.REDIS_URL as string,
      databaseUrl: env.DATABASE_URL as string,
      prefix: options.prefix,
      schema: options.schema,
      commandTimeoutMs: file.config.store.commandTimeoutMs,
      migrate: options.migrate,
      logger,
    });
  } catch (error) {
    dialLog?.close();
    // 42P01 undefined_table: the schema was never migrated.
    const hint =
      (error as { code?: string }).code === "42P01"
        ? ` (run \`dialgate migrate --schema ${options.schema}\` first, or pass --migrate)`
        : "";
    console.error(`dialgate: cannot connect to Redis and Postgres: ${errorText(error)}${hint}`);
    return EXIT_RUNTIME;
  }
  if (backend.migrated.length > 0) logger.info({ migrations: backend.migrated }, "migrations applied");
  gates = backend.gateStore;

  let unlisten: (() => Promise<void>) | undefined;
  let metrics: Server | undefined;
  let service: Server | undefined;
  try {
    const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const provider = new LoggedSimProvider(clock, file.provider, dialLog, (end) =>
      dispatcher?.callEnded(end),
    );
    const running = createDispatcher({
      config: file.config,
      leadStore: backend.leadStore,
      gateStore: backend.gateStore,
      providers: [provider, ...setup.providers],
      clock,
      logger,
      alertSinks,
      hmacSecret,
      owner,
      sweepEveryMs: options.sweepEveryMs,
      numbers: file.numbers,
      templates: file.templates,
    });
    dispatcher = running;
    running.on("error", ({ where, error }) => logger.warn({ where, err: error }, "dispatcher error"));
    // Listening before the first claim: a call placed at once must find its callback endpoint.
    if (file.http) {
      const http = file.http;
      try {
        service = await listen(
          createServer(
            // Node's own bound on a whole request, a little past the body timeout the handlers apply.
            {
              requestTimeout: http.bodyTimeoutMs + 1000,
              headersTimeout: Math.min(60_000, http.bodyTimeoutMs + 1000),
            },
            createServiceHandler({
              dispatcher: running,
              http,
              token,
              callbacks: setup.callbacks,
              replayStore: backend.gateStore,
              readiness: () => backend.readiness(),
              clock: synced,
            }),
          ),
          http.port,
          http.host,
        );
      } catch (error) {
        console.error(`dialgate: cannot serve HTTP on ${http.host}:${http.port}: ${errorText(error)}`);
        return EXIT_RUNTIME;
      }
      const { port } = service.address() as AddressInfo;
      logger.info(
        { host: http.host, port, api: token !== null, providers: [...setup.callbacks.keys()] },
        "http served",
      );
    }
    unlisten = await backend.onLeadsAdded(() => running.poke());
    await running.start();
    if (options.metricsPort !== undefined) {
      try {
        metrics = await serveMetrics(running, options.metricsPort);
      } catch (error) {
        console.error(`dialgate: cannot serve metrics on port ${options.metricsPort}: ${errorText(error)}`);
        return EXIT_RUNTIME;
      }
      logger.info({ port: options.metricsPort }, "metrics served on /metrics");
    }
    logger.info(
      { owner, schema: options.schema, prefix: options.prefix, sweepEveryMs: options.sweepEveryMs },
      "dialgate run started",
    );

    const signal = await shutdown;
    logger.info({ signal }, "stopping: no new claims; leads before their dial are re-queued");
    const { drained } = await running.stop();
    if (!drained) logger.warn("drain timeout: some dials were still in flight");
    // The simulated calls live in this process: let them end, so their ends reach the store.
    const ended = await provider.callsEnded(running.config.drainTimeoutMs);
    if (!ended) logger.warn("drain timeout: simulated calls still in progress are left to the sweep");
    logger.info({ stats: running.stats() }, "dialgate run stopped");
    return 0;
  } finally {
    if (metrics) await closeServer(metrics);
    if (service) await closeServer(service);
    await dispatcher?.stop().catch(() => {});
    await unlisten?.().catch(() => {});
    await closeQuietly(backend, logger);
    dialLog?.close();
  }
}

/** The log always gets the alerts; Slack too when a webhook is configured. Throws on a bad URL. */
export function alertSinksOf(logger: Logger, slackWebhook: string | undefined): AlertSink[] {
  const sinks: AlertSink[] = [new LogAlertSink(logger)];
  if (slackWebhook) sinks.push(new SlackAlertSink({ webhookUrl: slackWebhook }));
  return sinks;
}

/** GET /metrics on `port` (all interfaces), resolved once listening. */
function serveMetrics(dispatcher: Dispatcher, port: number): Promise<Server> {
  return listen(createServer(createMetricsHandler(dispatcher)), port);
}

function listen(server: Server, port: number, host?: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

async function closeQuietly(backend: Backend, logger: Logger): Promise<void> {
  try {
    await backend.close();
  } catch (error) {
    logger.warn({ err: error }, "closing the backend failed");
  }
}

/**
 * Resolves with the first SIGTERM/SIGINT. A second one exits at once (an operator who means it), with
 * code 1: in-flight dials were not waited for.
 */
function shutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        logger.warn({ signal }, "second signal: exiting without draining");
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

// ---------------------------------------------------------------------------------------------
// The simulated provider "sim", with its dials appended to DIALGATE_SIM_LOG.

/** One line of DIALGATE_SIM_LOG. The phone appears only as its phoneKey (HMAC with the secret). */
export type SimLogLine = Omit<SimDial, "to"> & { pid: number; phoneKey: string };

/**
 * Appends JSON lines synchronously, so a line is on disk before the dispatcher learns the result: a
 * process killed right after still leaves the truth behind. Each dial gets a line when it is invoked
 * (result null) and one when its result came back; readers keep the last line per dialRef.
 */
class DialLog {
  readonly #fd: number;
  readonly #secret: string;

  constructor(path: string, secret: string) {
    this.#fd = openSync(path, "a");
    this.#secret = secret;
  }

  write(
    req: DialRequest,
    fields: Omit<SimLogLine, "pid" | "leadId" | "attempt" | "dialRef" | "numberId" | "phoneKey">,
  ) {
    const line: SimLogLine = {
      pid: process.pid,
      leadId: req.leadId,
      attempt: req.attempt,
      dialRef: req.dialRef,
      numberId: req.numberId,
      phoneKey: phoneKey(this.#secret, req.to),
      ...fields,
    };
    writeSync(this.#fd, `${JSON.stringify(line)}\n`);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

type CallEnd = { callId: string; dialRef: string; outcome: string };

/**
 * The SimulatedProvider on the wall clock. Its calls live in this process, so on shutdown their ends
 * are waited for (callsEnded), or the store would keep them until the maxCallMinutes sweep.
 */
class LoggedSimProvider implements Provider {
  readonly name = "sim";
  readonly #sim: SimulatedProvider;
  /**
   * The SimulatedProvider numbers its calls sim-1, sim-2, … per instance: across processes those
   * collide, and an end signal found by call id would finish another process's call. Prefixed here
   * with a per-process id, as a real provider's call ids are unique.
   */
  readonly #callIdPrefix = `sim-${randomUUID()}-`;
  readonly #clock: Clock;
  readonly #log: DialLog | null;
  /** Placed calls whose end has not been applied yet. */
  readonly #ringing = new Set<string>();
  #allEnded: (() => void) | null = null;

  constructor(
    clock: Clock,
    plans: RunFile["provider"],
    log: DialLog | null,
    onCallEnd: (end: CallEnd) => Promise<unknown> | undefined,
  ) {
    this.#clock = clock;
    this.#log = log;
    this.#sim = new SimulatedProvider({
      clock,
      name: this.name,
      default: plans.default && { result: "placed", ...plans.default },
      perLead: plans.perLead,
      onCallEnd: (end) => {
        const callId = this.#globalId(end.callId);
        Promise.resolve(onCallEnd({ ...end, callId }))
          .catch(() => {}) // the dispatcher reports its own errors; the sweep closes what is left
          .finally(() => this.#ended(callId));
      },
    });
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    const at = this.#clock.now();
    this.#log?.write(req, { at, resultAt: null, result: null, callId: null, endsAt: null, outcome: null });
    try {
      const result = await this.#sim.makeCall(req);
      if (result.kind !== "placed") return result;
      const callId = this.#globalId(result.callId);
      this.#ringing.add(callId);
      return { ...result, callId };
    } finally {
      this.#settled(req, at);
    }
  }

  /** Resolves true once every placed call has ended, false after `timeoutMs`. */
  callsEnded(timeoutMs: number): Promise<boolean> {
    if (this.#ringing.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimer(this.#clock.now() + timeoutMs, () => resolve(false));
      this.#allEnded = () => {
        timer.cancel();
        resolve(true);
      };
    });
  }

  #globalId(callId: string): string {
    return `${this.#callIdPrefix}${callId.replace(/^sim-/, "")}`;
  }

  #ended(callId: string): void {
    this.#ringing.delete(callId);
    if (this.#ringing.size === 0) this.#allEnded?.();
  }

  /** Logs the dial's result and forgets it: the provider's own list would grow for ever. */
  #settled(req: DialRequest, at: number): void {
    const dials = this.#sim.dials;
    const index = dials.findLastIndex((d) => d.dialRef === req.dialRef);
    const dial = index >= 0 ? dials[index] : undefined;
    if (index >= 0) dials.splice(index, 1);
    this.#log?.write(req, {
      at: dial?.at ?? at,
      resultAt: dial?.resultAt ?? this.#clock.now(),
      result: dial?.result ?? "throw",
      callId: dial?.callId ? this.#globalId(dial.callId) : null,
      endsAt: dial?.endsAt ?? null,
      outcome: dial?.outcome ?? null,
    });
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
