/**
 * The machine's ceiling, measured with nothing else running: how many EVALSHA round trips Redis
 * answers one at a time on one connection, and how many single-row UPDATE commits Postgres takes
 * (one client, and 16 clients on rows of their own).
 */
import { Redis } from "ioredis";
import pg from "pg";

export interface Ceiling {
  /** One EVALSHA in flight at a time on one connection. */
  evalshaPerSecond: number;
  /** 50 in flight on one connection (ioredis writes them back to back): for context. */
  evalsha50InFlightPerSecond: number;
  /** Autocommit `UPDATE … WHERE id = $1` of one row, one client. */
  updateCommitsPerSecond1: number;
  /** The same with 16 clients, each on its own row. */
  updateCommitsPerSecond16: number;
  seconds: number;
}

const SECONDS = 2;

async function loopFor(ms: number, body: () => Promise<unknown>): Promise<number> {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) {
    await body();
    n += 1;
  }
  return n;
}

async function rate(lanes: number, body: (lane: number) => () => Promise<unknown>): Promise<number> {
  const start = Date.now();
  const counts = await Promise.all(
    Array.from({ length: lanes }, (_, lane) => loopFor(SECONDS * 1000, body(lane))),
  );
  return Math.round((counts.reduce((a, b) => a + b, 0) * 1000) / (Date.now() - start));
}

export async function measureCeiling(
  redisUrl: string,
  databaseUrl: string,
  schema: string,
): Promise<Ceiling> {
  const redis = new Redis(redisUrl);
  const key = `bench:ceiling:${process.pid}`;
  // The shape of a gate script: one key, a read and a write.
  redis.defineCommand("benchCeiling", {
    numberOfKeys: 1,
    lua: "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) return redis.call('ZCARD', KEYS[1])",
  });
  const script = redis as unknown as { benchCeiling: (key: string, arg: number) => Promise<number> };
  await script.benchCeiling(key, 0);
  const evalshaPerSecond = await rate(1, () => () => script.benchCeiling(key, 0));
  const evalsha50InFlightPerSecond = await rate(50, () => () => script.benchCeiling(key, 0));
  await redis.del(key);
  redis.disconnect();

  const pool = new pg.Pool({ connectionString: databaseUrl, max: 16 });
  const table = `${pg.escapeIdentifier(schema)}.ceiling`;
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`);
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id int PRIMARY KEY, v bigint NOT NULL)`);
  await pool.query(`INSERT INTO ${table} SELECT g, 0 FROM generate_series(1, 16) g ON CONFLICT DO NOTHING`);
  const clients = await Promise.all(Array.from({ length: 16 }, () => pool.connect()));
  const update = (lane: number) => () =>
    clients[lane].query(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [lane + 1]);
  const updateCommitsPerSecond1 = await rate(1, update);
  const updateCommitsPerSecond16 = await rate(16, update);
  for (const c of clients) c.release();
  await pool.query(`DROP TABLE ${table}`);
  await pool.end();
  return {
    evalshaPerSecond,
    evalsha50InFlightPerSecond,
    updateCommitsPerSecond1,
    updateCommitsPerSecond16,
    seconds: SECONDS,
  };
}
