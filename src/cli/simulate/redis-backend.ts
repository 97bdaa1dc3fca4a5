import type { Redis } from "ioredis";
import pg from "pg";
import { PostgresLeadStore } from "../../infra/postgres/lead-store.js";
import { migrate } from "../../infra/postgres/migrate.js";
import { createRedisClient, RedisGateStore } from "../../infra/redis/gate-store.js";
import type { BackendFactory } from "./backends.js";
import { inOrderPorts } from "./in-order.js";

export interface RedisBackendUrls {
  /** `redis://host:port[/db]`; REDIS_URL when omitted. */
  redisUrl?: string;
  /** `postgresql://user@host:port/db`; DATABASE_URL when omitted. */
  databaseUrl?: string;
}

/**
 * A simulated provider is not a slow network: a store command that times out would be an outage the
 * scenario did not ask for (those are `storeDown` faults), so the bound is generous.
 */
const COMMAND_TIMEOUT_MS = 5000;
/** Lead-store reads of one batch run side by side on these; writes run one at a time (in-order.ts). */
const POOL_SIZE = 4;

/** Why `--backend redis` cannot run with this environment, or null. */
export function redisBackendUnavailable(env: NodeJS.ProcessEnv = process.env): string | null {
  return env.REDIS_URL && env.DATABASE_URL ? null : "the redis backend needs REDIS_URL and DATABASE_URL";
}

/**
 * `--backend redis`: a RedisGateStore and a PostgresLeadStore, each run on a key prefix and a schema of
 * its own (named after the run id, migrated first), both removed when the run closes. Behind the
 * in-order queue (in-order.ts) the run is the memory backend's run for the same seed, on real servers.
 */
export function redisBackend(urls: RedisBackendUrls = {}): BackendFactory {
  return async ({ runId }) => {
    const redisUrl = urls.redisUrl ?? process.env.REDIS_URL;
    const databaseUrl = urls.databaseUrl ?? process.env.DATABASE_URL;
    if (!redisUrl || !databaseUrl) throw new Error(`dialgate: ${redisBackendUnavailable({})}`);
    const id = runId.replaceAll("-", "").toLowerCase();
    const run = { redisUrl, databaseUrl, prefix: `dialgate-sim:${id}:`, schema: `sim_${id}` };

    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: POOL_SIZE,
      application_name: "dialgate-sim",
    });
    pool.on("error", () => {}); // a dropped idle connection; the next query reports the problem
    let redis: Redis | undefined;
    try {
      await migrate(pool, { schema: run.schema });
      redis = await createRedisClient(redisUrl, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
      redis.on("error", () => {});
    } catch (error) {
      redis?.disconnect();
      await pool.end().catch(() => {});
      await removeRun(run).catch(() => {});
      throw error;
    }
    const client = redis;
    const ports = inOrderPorts(
      new PostgresLeadStore(pool, { schema: run.schema }),
      new RedisGateStore(client, { prefix: run.prefix, rebuildWaitMs: COMMAND_TIMEOUT_MS }),
    );
    return {
      leadStore: ports.leadStore,
      gateStore: ports.gateStore,
      settleFn: () => ports.settle(),
      async close() {
        await pool.end();
        await client.quit().catch(() => client.disconnect());
        await removeRun(run);
      },
    };
  };
}

/** Drops the run's schema and deletes its keys, on connections of its own. */
async function removeRun(run: {
  redisUrl: string;
  databaseUrl: string;
  prefix: string;
  schema: string;
}): Promise<void> {
  const client = new pg.Client({ connectionString: run.databaseUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(run.schema)} CASCADE`);
  } finally {
    await client.end();
  }
  const redis = await createRedisClient(run.redisUrl, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${run.prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}
