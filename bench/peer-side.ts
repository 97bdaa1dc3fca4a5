/**
 * The peer: the same workload built the way a Node team would without dialgate, in its own process
 * (forked by bench/run.ts). One BullMQ 5 job per lead, delayed to its due time; one Worker
 * (concurrency 50) whose processor runs the gates with off-the-shelf parts:
 *   1. rate-limiter-flexible RateLimiterRedis per phone (7 per 3600 s); refused → job delayed
 *      until the limiter's msBeforeNext (DelayedError);
 *   2. redis-semaphore Semaphore per number (maxChannels), tried number by number; none free → the
 *      point is given back and the job delayed 1–3 s;
 *   3. one compare-and-set UPDATE of the lead's row to PROCESSING (a lost CAS means someone else
 *      dialled: skip), then makeCall; the call ends at once and the permit is released.
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
  new pg.Pool({ connectionString: DATABASE_URL, max: 10, application_name: "peer-bench" }),
);
const pool = counted.pool;
pool.on("error", () => {});
await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
await pool.query(`
  CREATE TABLE IF NOT EXISTS ${SCHEMA}.leads (
    id text PRIMARY KEY, phone text NOT NULL, status text NOT NULL,
    number_id text, dialled_at bigint, due_at bigint NOT NULL)`);
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
  const run = `p${++seq}-${process.pid}`;
  await pool.query(`TRUNCATE ${SCHEMA}.leads`);
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
    try {
      const { rowCount } = await pool.query(
        `UPDATE ${SCHEMA}.leads SET status = 'PROCESSING', number_id = $2, dialled_at = $3
         WHERE id = $1 AND status = 'SCHEDULED'`,
        [leadId, line.numberId, Date.now()],
      );
      if (rowCount !== 1) {
        lostCas += 1;
        return;
      }
      const callId = ledger.dial(leadId, phone, line.numberId);
      processing += 1;
      lastProcessingAt = Date.now();
      ledger.end(callId); // the call ends at once
    } finally {
      await line.semaphore.release();
    }
    ended += 1;
    check();
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
