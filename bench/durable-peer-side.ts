/**
 * The same-durability peer: the minimal peer (bench/peer-side.ts) with the durable work dialgate does
 * per dial, in its own process (forked by bench/run.ts). Same BullMQ 5 jobs, Worker (concurrency 50),
 * rate-limiter-flexible limiter and redis-semaphore lines; then, on Postgres:
 *   1. before makeCall, one statement: the lead's compare-and-set to DIALING and its dial row
 *      (a lost CAS means someone else dialled: skip, the line goes back);
 *   2. after makeCall, one statement: the call id on the dial row and the lead PROCESSING;
 *   3. the call's end (its webhook, here at once and outside the job as a webhook would be), one
 *      statement: the end on the dial row (found by call id) and the lead FINISHED; then the line is
 *      released. A line is held from acquire to the end's write, as dialgate holds it.
 */
import { createRequire } from "node:module";
import { type Job, Queue, DelayedError as QueueDelayedError, Worker } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { Semaphore } from "redis-semaphore";
import {
  CostMeter,
  countingPool,
  flushedTransactions,
  SentCommands,
  serverPids,
  sum,
  transactionsBetween,
} from "./lib/counters.js";
import type { RunResult, RunSpec } from "./lib/protocol.js";
import { serveRuns } from "./lib/protocol.js";
import { ProviderLedger, slowest } from "./lib/provider.js";
import { percentile, perDial, round } from "./lib/stats.js";
import { expectedDials, makeLeads, NUMBERS, RULE } from "./lib/workload.js";

const REDIS_URL = process.env.REDIS_URL as string;
const DATABASE_URL = process.env.DATABASE_URL as string;
const SCHEMA = pg.escapeIdentifier(process.env.BENCH_SCHEMA as string);
const LEAD_TIME_MS = 400;
const TRAILING_MS = 50;
const CONCURRENCY = 50;
/** A permit outlives a call by being refreshed; a crashed holder's permit frees after this. */
const LOCK_TIMEOUT_MS = 60_000;

const counted = countingPool(
  new pg.Pool({ connectionString: DATABASE_URL, max: 10, application_name: "durable-peer-bench" }),
);
const pool = counted.pool;
pool.on("error", () => {});
await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
await pool.query(`
  CREATE TABLE IF NOT EXISTS ${SCHEMA}.leads (
    id text PRIMARY KEY, phone text NOT NULL, status text NOT NULL,
    dial_ref text, outcome text, due_at bigint NOT NULL)`);
await pool.query(`
  CREATE TABLE IF NOT EXISTS ${SCHEMA}.dial_attempts (
    dial_ref text PRIMARY KEY, lead_id text NOT NULL REFERENCES ${SCHEMA}.leads (id),
    number_id text NOT NULL, at bigint NOT NULL, call_id text, result text, result_at bigint,
    ended_at bigint)`);
await pool.query(
  `CREATE INDEX IF NOT EXISTS dial_attempts_call_id ON ${SCHEMA}.dial_attempts (call_id) WHERE call_id IS NOT NULL`,
);
const admin = new Redis(REDIS_URL);
// BullMQ brings its own ioredis 5; the gates use the app's ioredis 6. Both count what they send.
const bullmqRedis = createRequire(import.meta.resolve("bullmq"))("ioredis") as { default: unknown };
const sentCommands = new SentCommands().watch(Redis).watch(bullmqRedis.default);
const meter = new CostMeter(admin, await serverPids(admin, pool), counted, sentCommands);
const url = new URL(REDIS_URL);
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
  maxRetriesPerRequest: null,
};
/** The app's client for the limiter and the semaphores. */
const gates = new Redis(REDIS_URL);
let seq = 0;

serveRuns(runOnce, { pid: process.pid }, async () => {
  await pool.end();
  admin.disconnect();
  gates.disconnect();
});

async function runOnce(spec: RunSpec): Promise<RunResult> {
  const run = `q${++seq}-${process.pid}`;
  await pool.query(`TRUNCATE ${SCHEMA}.dial_attempts, ${SCHEMA}.leads`);
  const t0 = Date.now() + LEAD_TIME_MS + Math.ceil(spec.leads / 20);
  const leads = makeLeads(run, spec.leads, t0, spec.rate);
  const expected = expectedDials(leads);
  const ledger = new ProviderLedger(NUMBERS, new Map(leads.map((l) => [l.id, l.dueAt])));
  await pool.query(
    `INSERT INTO ${SCHEMA}.leads (id, phone, status, due_at)
     SELECT id, phone, 'SCHEDULED', due_at FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(id, phone, due_at)`,
    [leads.map((l) => l.id), leads.map((l) => l.phone), leads.map((l) => l.dueAt)],
  );
  const queue = new Queue(`dial-${run}`, { connection, prefix: "bench" });
  for (let i = 0; i < leads.length; i += 1000) {
    const now = Date.now();
    await queue.addBulk(
      leads.slice(i, i + 1000).map((l) => ({
        name: "dial",
        data: { leadId: l.id, phone: l.phone },
        opts: { jobId: l.id, delay: Math.max(0, l.dueAt - now), removeOnComplete: true, removeOnFail: 1000 },
      })),
    );
  }

  const limiter = new RateLimiterRedis({
    storeClient: gates,
    keyPrefix: `rl-${run}`,
    points: RULE.maxCalls,
    duration: RULE.windowSeconds,
  });
  let nextNumber = 0;
  /** A permit on the first number (round robin) with a free line. */
  async function acquireLine(): Promise<{ semaphore: Semaphore; numberId: string } | null> {
    const start = nextNumber++;
    for (let k = 0; k < NUMBERS.length; k++) {
      const number = NUMBERS[(start + k) % NUMBERS.length];
      const semaphore = new Semaphore(gates, `sem-${run}:${number.id}`, number.maxChannels, {
        lockTimeout: LOCK_TIMEOUT_MS,
        acquireAttemptsLimit: 1,
      });
      if (await semaphore.tryAcquire()) return { semaphore, numberId: number.id };
    }
    return null;
  }

  let processing = 0;
  let lastProcessingAt = 0;
  let ended = 0;
  let blocked = 0;
  let channelFull = 0;
  let lostCas = 0;
  let errors = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const check = () => {
    if (ended >= expected && ended + blocked >= spec.leads) finish();
  };

  const processor = async (job: Job<{ leadId: string; phone: string }>, token?: string) => {
    const { leadId, phone } = job.data;
    try {
      await limiter.consume(phone);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      await job.moveToDelayed(Date.now() + error.msBeforeNext, token);
      blocked += 1;
      check();
      throw new QueueDelayedError();
    }
    const line = await acquireLine();
    if (!line) {
      channelFull += 1;
      await limiter.reward(phone);
      await job.moveToDelayed(Date.now() + 1000 + Math.floor(Math.random() * 2000), token);
      throw new QueueDelayedError();
    }
    const dialRef = `${leadId}:${job.attemptsStarted}`;
    let rowCount: number | null;
    try {
      ({ rowCount } = await pool.query(
        `WITH lead AS (
           UPDATE ${SCHEMA}.leads SET status = 'DIALING', dial_ref = $2
           WHERE id = $1 AND status = 'SCHEDULED' RETURNING id)
         INSERT INTO ${SCHEMA}.dial_attempts (dial_ref, lead_id, number_id, at)
         SELECT $2, id, $3, $4 FROM lead`,
        [leadId, dialRef, line.numberId, Date.now()],
      ));
    } catch (error) {
      await line.semaphore.release();
      throw error;
    }
    if (rowCount !== 1) {
      lostCas += 1;
      await line.semaphore.release();
      return;
    }
    const callId = ledger.dial(leadId, phone, line.numberId);
    try {
      await pool.query(
        `WITH dial AS (
           UPDATE ${SCHEMA}.dial_attempts SET call_id = $2, result = 'placed', result_at = $3
           WHERE dial_ref = $1 RETURNING lead_id)
         UPDATE ${SCHEMA}.leads l SET status = 'PROCESSING' FROM dial WHERE l.id = dial.lead_id`,
        [dialRef, callId, Date.now()],
      );
      processing += 1;
      lastProcessingAt = Date.now();
    } finally {
      // The call ends at once: the provider frees the line, then its end webhook arrives — outside
      // this job, as a webhook would. The line stays held until the end is written.
      ledger.end(callId);
      callEnded(callId, line.semaphore).then(
        () => {
          ended += 1;
          check();
        },
        () => {
          errors += 1;
        },
      );
    }
  };
  /** The end webhook: the end written, then the line released. */
  const callEnded = async (callId: string, semaphore: Semaphore) => {
    try {
      await pool.query(
        `WITH dial AS (
           UPDATE ${SCHEMA}.dial_attempts SET result = 'ended', ended_at = $2
           WHERE call_id = $1 RETURNING lead_id)
         UPDATE ${SCHEMA}.leads l SET status = 'FINISHED', outcome = 'ANSWERED' FROM dial WHERE l.id = dial.lead_id`,
        [callId, Date.now()],
      );
    } finally {
      await semaphore.release();
    }
  };
  const worker = new Worker(`dial-${run}`, processor, {
    connection,
    prefix: "bench",
    concurrency: CONCURRENCY,
  });
  worker.on("error", () => {
    errors += 1;
  });
  worker.on("failed", () => {
    errors += 1;
  });
  await worker.waitUntilReady();

  const xactsBefore = await flushedTransactions(pool);
  const before = await meter.snapshot();
  /** Set-up that ran past the first due time would show as latency: reported. */
  const setupOverranMs = Math.max(0, Date.now() - t0);
  const timeoutMs = 30_000 + spec.leads * 5 + (spec.rate ? (spec.leads / spec.rate) * 1000 : 0);
  const complete = await Promise.race([
    finished.then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs)),
  ]);
  await new Promise((resolve) => setTimeout(resolve, TRAILING_MS));
  const cost = await meter.since(before);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
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
      rateLimitDelayed: blocked,
      channelFull,
      lostCas,
      errors,
      concurrency: CONCURRENCY,
      peakLines: Object.fromEntries(ledger.peakLines),
      slowest: slowest(ledger, 8),
      setupOverranMs,
    },
  };
}
