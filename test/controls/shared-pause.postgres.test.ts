/**
 * Pause and resume shared across processes: two dispatchers on one Postgres lead store and one Redis
 * gate store (real servers, design §4), on the wall clock. A pause made in one stops the other's claims
 * of that template; a resume made by a process that is no longer running reaches the other one
 * through the store's notification, so it dispatches at once rather than at some later poll.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDispatcher, type Dispatcher } from "../../src/dispatcher.js";
import { SystemClock } from "../../src/infra/clock.js";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { migrate } from "../../src/infra/postgres/migrate.js";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import type { LeadRecord } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { NUMBER, PHONES, RecordingProvider, SECRET } from "./world.js";

const TEMPLATES = [
  { id: "paused", resellerId: "acme" },
  { id: "open", resellerId: "acme" },
];

let postgres: PostgresServer;
let redis: RedisServer;
let pool: pg.Pool;
const clients: Redis[] = [];
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 8 });
  pool.on("error", () => {});
}, 60_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  for (const client of clients) client.disconnect();
  await pool?.end();
  await Promise.all([postgres?.stop(), redis?.stop()]);
});

/** One "process": its own lead store object, Redis client, provider and dispatcher on the shared data. */
async function startProcess(schema: string, prefix: string, name: string) {
  const clock = new SystemClock();
  const store = new PostgresLeadStore(pool, { schema });
  const client = await createRedisClient(redis.url, { commandTimeoutMs: 500 });
  clients.push(client);
  const provider = new RecordingProvider(clock);
  const dispatcher: Dispatcher = createDispatcher({
    clock,
    leadStore: store,
    gateStore: new RedisGateStore(client, { prefix }),
    providers: [provider],
    logger: pino({ level: "silent" }),
    hmacSecret: SECRET,
    owner: name,
    numbers: [NUMBER],
    templates: TEMPLATES,
  });
  const claimed: string[] = [];
  dispatcher.on("lead:claimed", ({ leadId }) => claimed.push(leadId));
  const unlisten = await store.onLeadsAdded(() => dispatcher.poke());
  closers.push(
    unlisten,
    () => dispatcher.stop(),
    () => store.close(),
  );
  await dispatcher.start();
  return { dispatcher, provider, store, claimed, unlisten };
}

async function waitFor(
  what: string,
  done: () => Promise<boolean> | boolean,
  timeoutMs = 5000,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await done()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("pause shared across processes (Postgres + Redis)", () => {
  it("a pause in one process stops the other's claims of that template; resume dispatches promptly", async () => {
    const schema = postgres.freshSchema();
    await migrate(pool, { schema });
    const prefix = `dialgate-controls:${randomUUID()}:`;
    const a = await startProcess(schema, prefix, "process-a");
    const b = await startProcess(schema, prefix, "process-b");

    expect(await a.dispatcher.pause({ templateId: "paused" })).toBe(true);
    expect(await b.dispatcher.pauses()).toEqual([
      { scope: { templateId: "paused" }, pausedAt: expect.any(Number) },
    ]);

    const leads = [
      ...["p1", "p2", "p3"].map((id, i) => ({ id, phone: PHONES[i], templateId: "paused" })),
      ...["o1", "o2"].map((id, i) => ({ id, phone: PHONES[3 + i], templateId: "open" })),
    ];
    await b.dispatcher.submit(leads);
    const byId = async () => new Map((await b.store.list()).map((l): [string, LeadRecord] => [l.id, l]));
    await waitFor("the open template's leads to be dialled", async () => {
      const all = await byId();
      return ["o1", "o2"].every((id) => all.get(id)?.status === "PROCESSING");
    });
    // Long enough for any claim loop to show itself.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const id of ["p1", "p2", "p3"]) {
      expect((await byId()).get(id)).toMatchObject({ status: "SCHEDULED", claimSeq: 0 });
    }
    expect([...a.claimed, ...b.claimed].filter((id) => id.startsWith("p"))).toEqual([]);

    // The process that paused stops running; its resume must still wake the other one.
    await a.dispatcher.stop();
    await a.unlisten();
    const resumedAt = Date.now();
    expect(await a.dispatcher.resume({ templateId: "paused" })).toBe(true);
    const tookMs = await waitFor(
      "the paused template's leads to be dialled by the other process",
      () => ["p1", "p2", "p3"].every((id) => b.provider.dialled(id).length === 1),
      3000,
    );
    expect(tookMs).toBeLessThan(2000);
    expect(b.provider.dials.filter((d) => d.leadId.startsWith("p")).every((d) => d.at >= resumedAt)).toBe(
      true,
    );
    expect(a.provider.dials).toEqual(
      expect.not.arrayContaining([expect.objectContaining({ leadId: expect.stringMatching(/^p/) })]),
    );
  }, 30_000);

  it("a global pause made by one process holds the other entirely; resume wakes it", async () => {
    const schema = postgres.freshSchema();
    await migrate(pool, { schema });
    const prefix = `dialgate-controls:${randomUUID()}:`;
    const operator = await startProcess(schema, prefix, "operator");
    await operator.dispatcher.stop();
    const worker = await startProcess(schema, prefix, "worker");

    await operator.dispatcher.pause({ global: true });
    await worker.dispatcher.submit([{ id: "g1", phone: PHONES[0], templateId: "open" }]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(worker.claimed).toEqual([]);

    await operator.dispatcher.resume({ global: true });
    await waitFor("g1 to be dialled", () => worker.provider.dialled("g1").length === 1, 3000);
  }, 30_000);
});
