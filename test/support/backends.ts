/**
 * The backends a suite runs against, one describe per backend: the in-memory stores, and Redis +
 * Postgres on the harness's own servers (test/harness). What a test inspects of the gate store
 * (holders of a number, rate-limit members of a phone) is read the same way from both.
 */
import type { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { migrate } from "../../src/infra/postgres/migrate.js";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import type { GateStore, LeadStore } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";

/** Reads of the gate store's data that no port offers: what the assertions compare. */
export interface GateInspector {
  /** Holders of the number whose lease runs past `now`. */
  holders(numberId: string, now: number): Promise<string[]>;
  /** Rate-limit members recorded for the phone key (expired ones too, until a command trims them). */
  members(phoneKey: string): Promise<string[]>;
}

/** Fresh, empty stores of one backend. */
export interface Stores {
  gates: GateStore;
  inspect: GateInspector;
  leads: LeadStore;
}

export interface TestBackend {
  readonly name: "memory" | "redis+postgres";
  /**
   * True for a real backend: its port calls take real round trips, so a dispatcher on it runs behind
   * the simulator's in-order queue (src/cli/simulate/in-order.ts), whose `settle` waits for them.
   */
  readonly real: boolean;
  stores(): Promise<Stores>;
}

export const memoryBackend: TestBackend = {
  name: "memory",
  real: false,
  async stores() {
    const gates = new MemoryGateStore();
    return { gates, inspect: memoryInspector(gates), leads: new MemoryLeadStore() };
  },
};

export function memoryInspector(store: MemoryGateStore): GateInspector {
  return {
    holders: async (numberId, now) => store.holders(numberId, now),
    members: async (phoneKey) => store.members(phoneKey),
  };
}

export interface RealBackendOptions {
  /**
   * `schema`: every `stores()` gets a schema of its own, migrated (a few tens of ms). `reset`: one
   * schema for the whole file, emptied by each `stores()` (for suites that need hundreds of worlds).
   */
  isolation: "schema" | "reset";
}

/**
 * Redis + Postgres on the harness's servers, started by the describe that calls `useBackend`. Each
 * `stores()` gets a key prefix of its own; the keys and schemas are removed at the end.
 */
export function realBackend(options: RealBackendOptions): TestBackend & {
  start(): Promise<void>;
  stop(): Promise<void>;
} {
  let redisServer: RedisServer | undefined;
  let pgServer: PostgresServer | undefined;
  let redis: Redis | undefined;
  let pool: pg.Pool | undefined;
  let shared: { schema: string; reset: string } | undefined;
  let count = 0;
  const run = `t${process.pid}x${Date.now().toString(36)}`;

  const need = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("realBackend: call useBackend() in the describe first");
    return value;
  };

  async function sharedSchema(db: pg.Pool, server: PostgresServer) {
    if (shared) return shared;
    const schema = server.freshSchema();
    await migrate(db, { schema });
    shared = { schema, reset: await deleteEverything(db, schema) };
    return shared;
  }

  return {
    name: "redis+postgres",
    real: true,
    async start() {
      redisServer = await startRedis();
      pgServer = await startPostgres();
      // Reads of one in-order batch run side by side on these; writes one at a time.
      pool = new pg.Pool({ connectionString: pgServer.url, max: 4 });
      pool.on("error", () => {});
      redis = await createRedisClient(redisServer.url, { commandTimeoutMs: 5000 });
      redis.on("error", () => {});
    },
    async stop() {
      if (redis && redisServer && !redisServer.disposable) await deleteKeys(redis, `${run}:*`);
      await redis?.quit().catch(() => redis?.disconnect());
      await pool?.end();
      await redisServer?.stop();
      await pgServer?.stop();
    },
    async stores() {
      const client = need(redis);
      const db = need(pool);
      const server = need(pgServer);
      let schema: string;
      if (options.isolation === "reset") {
        const reset = await sharedSchema(db, server);
        await db.query(reset.reset);
        schema = reset.schema;
      } else {
        schema = server.freshSchema();
        await migrate(db, { schema });
      }
      const prefix = `${run}:${++count}:`;
      return {
        gates: new RedisGateStore(client, { prefix, rebuildWaitMs: 5000 }),
        inspect: redisInspector(client, prefix),
        leads: new PostgresLeadStore(db, { schema }),
      };
    },
  };
}

/** The keys of src/infra/redis/gate-store.ts, read with plain sorted-set commands. */
export function redisInspector(client: Redis, prefix: string): GateInspector {
  return {
    holders: (numberId, now) => client.zrangebyscore(`${prefix}{n:${numberId}}:holds`, `(${now}`, "+inf"),
    members: (phoneKey) => client.zrange(`${prefix}{p:${phoneKey}}:rl`, "0", "-1"),
  };
}

/** Registers the real backend's servers with the enclosing describe (a no-op for memory). */
export function useBackend(backend: TestBackend): void {
  if (!("start" in backend)) return;
  const real = backend as ReturnType<typeof realBackend>;
  beforeAll(() => real.start(), 60_000);
  afterAll(() => real.stop(), 60_000);
}

/**
 * One statement list that empties every table of the schema (but its migrations), children before the
 * tables they reference: DELETE on a few rows takes a fraction of a millisecond, TRUNCATE ~50 ms.
 */
async function deleteEverything(db: pg.Pool, schema: string): Promise<string> {
  const tables = await db.query<{ name: string }>(
    "SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_migrations'",
    [schema],
  );
  const references = await db.query<{ child: string; parent: string }>(
    `SELECT child.relname AS child, parent.relname AS parent FROM pg_constraint c
     JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
     WHERE c.contype = 'f' AND c.connamespace = $1::regnamespace`,
    [schema],
  );
  let left = tables.rows.map((t) => t.name);
  const ordered: string[] = [];
  while (left.length > 0) {
    const referenced = (name: string) =>
      references.rows.some((r) => r.parent === name && r.child !== name && left.includes(r.child));
    const free = left.filter((name) => !referenced(name));
    if (free.length === 0) throw new Error(`cyclic foreign keys in ${schema}: ${left.join(", ")}`);
    ordered.push(...free);
    left = left.filter((name) => !free.includes(name));
  }
  const q = (name: string) => `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
  return ordered.map((name) => `DELETE FROM ${q(name)};`).join(" ");
}

async function deleteKeys(client: Redis, pattern: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await client.unlink(...keys);
  } while (cursor !== "0");
}
