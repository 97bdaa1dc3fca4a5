/**
 * GET /readyz's source, Backend.readiness(), on real servers: pending migrations of a fresh schema,
 * then ready, then not ready once Redis is gone.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Backend, connectBackend } from "../../src/infra/backend.js";
import { pendingMigrations } from "../../src/infra/postgres/migrate.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";

let redis: RedisServer;
let postgres: PostgresServer;
let pool: pg.Pool;
let backend: Backend | undefined;

beforeAll(async () => {
  // Its own server: the test kills it.
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
});

afterAll(async () => {
  await backend?.close();
  await pool?.end();
  await redis?.stop();
  await postgres?.stop();
});

it("a schema never migrated has every migration pending", async () => {
  const pending = await pendingMigrations(pool, { schema: postgres.freshSchema() });
  expect(pending.length).toBeGreaterThan(0);
  expect(pending[0]).toMatch(/^001_/);
});

it("ready with both servers up and the schema current; not ready once Redis is gone", async () => {
  const schema = postgres.freshSchema();
  backend = await connectBackend({
    redisUrl: redis.url,
    databaseUrl: postgres.url,
    prefix: `dialgate-test:${randomUUID()}:`,
    schema,
    commandTimeoutMs: 500,
    migrate: true,
    logger: pino({ level: "silent" }),
  });
  expect(await pendingMigrations(pool, { schema })).toEqual([]);
  expect(await backend.readiness()).toEqual({
    ready: true,
    redis: true,
    postgres: true,
    pendingMigrations: [],
  });
  await redis.kill();
  expect(await backend.readiness()).toEqual({
    ready: false,
    redis: false,
    postgres: true,
    pendingMigrations: [],
  });
});
