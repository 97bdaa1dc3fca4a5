/**
 * Waiting for a line across `dialgate run` processes (design §7.11), on the wall clock: one number with
 * one line, leads parked in the lead store, woken through it from another process, and a wake-up lost
 * with the process that freed the line.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { dialgate, RunProcess, waitFor } from "./run-process.js";
import { isPlaced, maxConcurrentByNumber, readDials } from "./sim-log.js";

const SECRET = "multiprocess-park-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
const HOLD_MINUTES = 0.1;
const HOLD_MS = HOLD_MINUTES * 60_000;
const STORE_SLACK_MS = 250;

let redis: RedisServer;
let postgres: PostgresServer;
let pool: pg.Pool;
let tmp: string;
const processes: RunProcess[] = [];
const clients: Redis[] = [];

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 4 });
  pool.on("error", () => {});
  tmp = await mkdtemp(join(tmpdir(), "dialgate-park-"));
});

afterAll(async () => {
  for (const p of processes) p.kill("SIGKILL");
  await Promise.all(processes.map((p) => p.exited));
  for (const c of clients) c.disconnect();
  await pool?.end();
  await redis?.stop();
  await postgres?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Two `dialgate run` processes on a fresh schema and prefix, one pool number with one line. */
async function startPair(maxParkSeconds: number) {
  const schema = postgres.freshSchema();
  const prefix = `dialgate-park:${randomUUID()}:`;
  const env = { REDIS_URL: redis.url, DATABASE_URL: postgres.url, DIALGATE_HMAC_SECRET: SECRET };
  const migrated = await dialgate(["migrate", "--schema", schema], env);
  expect(migrated, migrated.stderr).toMatchObject({ code: 0 });
  const configFile = join(tmp, `${schema}.json`);
  await writeFile(
    configFile,
    JSON.stringify({
      config: {
        channelWait: { maxParkSeconds },
        claimLeaseMs: 2000,
        unknownDial: { holdMinutes: HOLD_MINUTES },
        maxCallMinutes: 0.1,
        drainTimeoutMs: 3000,
        store: { commandTimeoutMs: 3000 },
      },
      numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 1, pool: true }],
      templates: [{ id: "t1", resellerId: "r1" }],
      provider: { default: { result: "placed", latencyMs: 50, callSeconds: 1, outcome: "ANSWERED" } },
    }),
  );
  const logs = [0, 1].map((k) => join(tmp, `${schema}-p${k}.jsonl`));
  const pair = logs.map(
    (log, k) =>
      new RunProcess(`p${k}`, ["--config", configFile, "--schema", schema, "--prefix", prefix], {
        ...env,
        DIALGATE_SIM_LOG: log,
      }),
  );
  processes.push(...pair);
  await Promise.all(pair.map((p) => p.started()));
  const client = await createRedisClient(redis.url, { commandTimeoutMs: 3000 });
  clients.push(client);
  return {
    pair,
    logs,
    store: new PostgresLeadStore(pool, { schema }),
    gates: new RedisGateStore(client, { prefix }),
  };
}

type Pair = Awaited<ReturnType<typeof startPair>>;

/** Holds n1's only line as a process of its own would (no lead, no call), then parks `W` behind it. */
async function parkBehindHeldLine(p: Pair): Promise<void> {
  const now = Date.now();
  const held = await p.gates.acquire({
    numberId: "n1",
    maxChannels: 1,
    holder: "elsewhere:1",
    now,
    leaseUntil: now + 600_000,
    waiter: "elsewhere",
    waiterTtlMs: 60_000,
  });
  expect(held).toEqual({ held: true });
  await p.store.submit([{ id: "W", phone: "+919812100001", templateId: "t1" }], Date.now());
  await waitFor(async () => (await p.store.get("W"))?.parkedOn !== null, {
    timeoutMs: 20_000,
    intervalMs: 50,
    what: "W to be parked on n1",
  });
  expect(await p.store.get("W")).toMatchObject({ status: "SCHEDULED", parkedOn: ["n1"] });
}

async function dialOf(p: Pair, leadId: string, timeoutMs: number) {
  let dial: Awaited<ReturnType<typeof readDials>>[number] | undefined;
  await waitFor(
    async () => {
      dial = (await readDials(p.logs)).find((d) => d.leadId === leadId && isPlaced(d));
      return dial !== undefined;
    },
    { timeoutMs, intervalMs: 50, what: `${leadId} to be dialled` },
  );
  return dial as NonNullable<typeof dial>;
}

async function stopPair(p: Pair): Promise<void> {
  for (const proc of p.pair) proc.kill("SIGTERM");
  const exits = await Promise.all(p.pair.map((proc) => proc.exited));
  expect(exits).toEqual([
    { code: 0, signal: null },
    { code: 0, signal: null },
  ]);
}

describe("waiting for a line across dialgate run processes", () => {
  it("a line freed in one process wakes, through the store, a waiter that another process claims and dials", async () => {
    // Re-examination an hour out: only the wake can get W dialled within this test.
    const p = await startPair(3600);
    await parkBehindHeldLine(p);
    const claimsBefore = (await p.store.get("W"))?.claimSeq ?? 0;

    // This test process frees the line and wakes the waiter: the compare-and-set on W's row and the
    // leads trigger's NOTIFY are all the dialgate processes learn of it.
    expect(await p.gates.release("n1", "elsewhere:1")).toBe(true);
    expect(await p.store.wakeWaiters("n1", 1, Date.now())).toEqual(["W"]);

    const dial = await dialOf(p, "W", 20_000);
    expect(p.pair.map((proc) => proc.pid)).toContain(dial.pid);
    expect((await p.store.get("W"))?.claimSeq).toBe(claimsBefore + 1);
    await stopPair(p);
  }, 60_000);

  it("the process freeing a line dies before waking: the waiter is still dialled within maxParkSeconds, no line over its cap", async () => {
    const p = await startPair(3);
    await parkBehindHeldLine(p);
    // Another waiter behind W, on a dialgate process's own line this time.
    await p.store.submit([{ id: "X", phone: "+919812100002", templateId: "t1" }], Date.now());

    // Freed, and its process gone before any wake: nobody calls wakeWaiters.
    expect(await p.gates.release("n1", "elsewhere:1")).toBe(true);
    const freedAt = Date.now();

    const w = await dialOf(p, "W", 20_000);
    // Within maxParkSeconds of its park at the latest (measured from the free, a later instant).
    expect(w.at - freedAt).toBeLessThanOrEqual(3000 + 2000);
    // X follows on W's released line, not on a timer.
    const x = await dialOf(p, "X", 20_000);
    expect(x.at).toBeGreaterThan(w.at);
    const dials = await readDials(p.logs);
    for (const [numberId, most] of maxConcurrentByNumber(dials, HOLD_MS - STORE_SLACK_MS))
      expect(most, numberId).toBeLessThanOrEqual(1);
    expect(dials.filter(isPlaced).map((d) => d.leadId)).toEqual(["W", "X"]);
    await stopPair(p);
  }, 60_000);
});
