/**
 * The bench's Redis and Postgres: REDIS_URL / DATABASE_URL when set, else the test harness's own
 * throw-away servers (test/harness), stopped at the end.
 */
import { type PostgresServer, startPostgres } from "../../test/harness/postgres.js";
import { type RedisServer, startRedis } from "../../test/harness/redis.js";

export interface BenchServers {
  redisUrl: string;
  databaseUrl: string;
  /** A fresh schema for each side. */
  freshSchema(): string;
  /** Where they came from, for the report. */
  origin: { redis: "REDIS_URL" | "throw-away"; postgres: "DATABASE_URL" | "throw-away" };
  stop(): Promise<void>;
}

export async function startServers(): Promise<BenchServers> {
  let redis: RedisServer | undefined;
  let postgres: PostgresServer | undefined;
  try {
    [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  } catch (error) {
    await redis?.stop();
    await postgres?.stop();
    throw error;
  }
  const r = redis;
  const p = postgres;
  return {
    redisUrl: r.url,
    databaseUrl: p.url,
    freshSchema: () => p.freshSchema(),
    origin: {
      redis: process.env.REDIS_URL ? "REDIS_URL" : "throw-away",
      postgres: process.env.DATABASE_URL ? "DATABASE_URL" : "throw-away",
    },
    async stop() {
      await Promise.all([r.stop(), p.stop()]);
    },
  };
}
