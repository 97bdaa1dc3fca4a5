/**
 * The dialgate side of the bench, in its own process (forked by bench/run.ts): one dispatcher per run
 * on Postgres + Redis, wired as `dialgate run` wires it (PostgresLeadStore on a pool of 10,
 * RedisGateStore on a client with the command timeout, LISTEN wake-ups, the 5 s sweep, default
 * config), with the instant provider.
 * A call ends the moment its lead is PROCESSING, through `dispatcher.callEnded`.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import pino from "pino";
import { createDispatcher } from "../src/dispatcher.js";
import { SystemClock } from "../src/infra/clock.js";
import { REDACT_PATHS } from "../src/infra/logger.js";
import { PostgresLeadStore } from "../src/infra/postgres/lead-store.js";
import { migrate } from "../src/infra/postgres/migrate.js";
import { createRedisClient, RedisGateStore } from "../src/infra/redis/gate-store.js";
import type { Provider, Weekday } from "../src/machines/ports.js";
import {
  CostMeter,
  countingPool,
  flushedTransactions,
  SentCommands,
  serverPids,
  sum,
  transactionsBetween,
} from "./lib/counters.js";
import { type ProfileReport, Profiler } from "./lib/profile.js";
import type { RunResult, RunSpec } from "./lib/protocol.js";
import { serveRuns } from "./lib/protocol.js";
import { ProviderLedger, slowest } from "./lib/provider.js";
import { percentile, perDial, round } from "./lib/stats.js";
import { expectedDials, makeLeads, NUMBERS, RULE, TEMPLATE } from "./lib/workload.js";

const REDIS_URL = process.env.REDIS_URL as string;
const DATABASE_URL = process.env.DATABASE_URL as string;
const SCHEMA = process.env.BENCH_SCHEMA as string;
/** From setup to the first due time: the dispatcher is started and idle before it. */
const LEAD_TIME_MS = 400;
/** After the last end: the supervisor's trailing claims and wake-ups belong to the run. */
const TRAILING_MS = 50;
const COMMAND_TIMEOUT_MS = 500;

const counted = countingPool(
  new pg.Pool({ connectionString: DATABASE_URL, max: 10, application_name: "dialgate-bench" }),
);
const pool = counted.pool;
pool.on("error", () => {});
const admin = new Redis(REDIS_URL);
await migrate(pool, { schema: SCHEMA });
const meter = new CostMeter(admin, await serverPids(admin, pool), counted, new SentCommands().watch(Redis));
// `dialgate run` logs at info; here to /dev/null, so the cost stays and the terminal stays quiet.
const logger = pino(
  { name: "dialgate", level: "info", redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
  pino.destination("/dev/null"),
);
let seq = 0;

serveRuns(runOnce, { pid: process.pid }, async () => {
  await pool.end();
  admin.disconnect();
});

/**
 * BENCH_LAW=1: the template carries a calling law that never closes and never cools (design §7.8):
 * a window of whole days in the callee's zone, a second rule, a cooldown on an outcome no call has and
 * local presence, so every lead pays for the law's paths without the workload's dials changing.
 */
const LAW_TEMPLATE = {
  ...TEMPLATE,
  window: {
    start: "00:00",
    end: "00:00",
    timeZone: "UTC",
    days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as Weekday[],
  },
  rateLimitRules: [RULE, { maxCalls: RULE.maxCalls, windowSeconds: 7 * 86400 }],
  cooldowns: [{ seconds: 3600, afterOutcomes: ["VOICEMAIL"] }],
  callerId: "local" as const,
};

async function runOnce(spec: RunSpec): Promise<RunResult> {
  const run = `d${++seq}`;
  const schema = pg.escapeIdentifier(SCHEMA);
  await pool.query(`TRUNCATE ${schema}.dial_attempts, ${schema}.leads`);
  const t0 = Date.now() + LEAD_TIME_MS + Math.ceil(spec.leads / 50);
  const leads = makeLeads(run, spec.leads, t0, spec.rate);
  const expected = expectedDials(leads);
  const ledger = new ProviderLedger(NUMBERS, new Map(leads.map((l) => [l.id, l.dueAt])));
  const store = new PostgresLeadStore(pool, { schema: SCHEMA });
  await store.submit(
    leads.map((l) => ({ id: l.id, phone: l.phone, templateId: TEMPLATE.id, dueAt: l.dueAt })),
    Date.now(),
  );
  const client = await createRedisClient(REDIS_URL, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  client.on("error", () => {});
  const gates = new RedisGateStore(client, { prefix: `bench:${run}:${randomUUID().slice(0, 8)}:` });

  const provider: Provider = {
    name: "sim",
    makeCall: async (req) => ({ kind: "placed", callId: ledger.dial(req.leadId, req.to, req.numberId) }),
  };
  const dispatcher = createDispatcher({
    leadStore: store,
    gateStore: gates,
    providers: [provider],
    clock: new SystemClock(),
    logger,
    hmacSecret: "bench-secret-0123456789",
    owner: `bench-${process.pid}-${run}`,
    // `dialgate run`'s default.
    sweepEveryMs: 5000,
    numbers: NUMBERS,
    templates: [process.env.BENCH_LAW === "1" ? LAW_TEMPLATE : TEMPLATE],
  });
  const profiler = spec.profile ? new Profiler(spec.profile, { store, gates, client, pool }) : null;

  let processing = 0;
  let lastProcessingAt = 0;
  let ended = 0;
  let blocked = 0;
  let failOpen = 0;
  let errors = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const check = () => {
    if (ended >= expected && ended + blocked >= spec.leads) finish();
  };
  dispatcher.on("lead:dialled", ({ callId }) => {
    processing += 1;
    lastProcessingAt = Date.now();
    // The call ends at once: the provider frees the line, then the end signal reaches the dispatcher.
    ledger.end(callId);
    dispatcher.callEnded({ callId, outcome: "ANSWERED" }).then(
      (result) => {
        if (result.kind === "ended") ended += 1;
        check();
      },
      () => {
        errors += 1;
      },
    );
  });
  dispatcher.on("lead:deferred", ({ reason }) => {
    if (reason === "rateLimit") blocked += 1;
    check();
  });
  dispatcher.on("gate:failOpen", () => {
    failOpen += 1;
  });
  dispatcher.on("error", () => {
    errors += 1;
  });

  const unlisten = await store.onLeadsAdded(() => dispatcher.poke());
  await dispatcher.start();
  const xactsBefore = await flushedTransactions(pool);
  const before = await meter.snapshot();
  /** Set-up that ran past the first due time would show as latency: reported. */
  const setupOverranMs = Math.max(0, Date.now() - t0);
  await profiler?.start();
  const timeoutMs = 30_000 + spec.leads * 5 + (spec.rate ? (spec.leads / spec.rate) * 1000 : 0);
  const complete = await Promise.race([
    finished.then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs)),
  ]);
  await new Promise((resolve) => setTimeout(resolve, TRAILING_MS));
  const profile: Partial<ProfileReport> | undefined = await profiler?.stop(processing);
  const cost = await meter.since(before);
  const stats = dispatcher.stats();

  await dispatcher.stop();
  await unlisten();
  await store.close();
  await gates.close();
  client.disconnect();
  const xacts = transactionsBetween(xactsBefore, await flushedTransactions(pool));

  const dials = ledger.dials;
  return {
    label: spec.label,
    mode: spec.mode,
    leads: spec.leads,
    rate: spec.rate,
    expectedDials: expected,
    dials,
    complete,
    dialsPerSecond: round((processing * 1000) / Math.max(1, lastProcessingAt - t0), 1),
    p50Ms: percentile(ledger.latencies, 50),
    p99Ms: percentile(ledger.latencies, 99),
    cpuMsPerDial: round(cost.cpuMs / dials, 3),
    redisCommandsPerDial: round(sum(cost.commands) / dials, 2),
    redisCommandsSentPerDial: round(sum(cost.sent) / dials, 2),
    redisRoundTripsPerDial: round(cost.roundTrips / dials, 2),
    pgStatementsPerDial: round(cost.statements / dials, 2),
    pgTransactionsPerDial: xacts === null ? null : round(xacts / dials, 2),
    redisServerCpuMsPerDial: cost.redisCpuMs === null ? null : round(cost.redisCpuMs / dials, 3),
    postgresServerCpuMsPerDial: cost.postgresCpuMs === null ? null : round(cost.postgresCpuMs / dials, 3),
    commands: perDial(cost.commands, dials),
    sentCommands: perDial(cost.sent, dials),
    violations: ledger.violations(),
    notes: {
      processing,
      ended,
      rateLimitDeferred: blocked,
      failOpen,
      errors,
      concurrency: dispatcher.config.concurrency,
      deferred: stats.deferred,
      peakLines: Object.fromEntries(ledger.peakLines),
      slowest: slowest(ledger, 8),
      setupOverranMs,
    },
    ...(profile && { profile }),
  };
}
