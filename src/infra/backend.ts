import type { Redis } from "ioredis";
import pg from "pg";
import type { Logger } from "pino";
import type { GateStore } from "../machines/ports.js";
import { createLogger } from "./logger.js";
import { type LeadsListener, PostgresLeadStore } from "./postgres/lead-store.js";
import { migrate, pendingMigrations } from "./postgres/migrate.js";
import type { ReplayStore } from "./providers/callbacks.js";
import type { PacingStore } from "./providers/paced.js";
import { createRedisClient, RedisGateStore } from "./redis/gate-store.js";

export interface BackendOptions {
  /** `redis://host:port[/db]`. */
  redisUrl: string;
  /** `postgresql://user@host:port/db`. */
  databaseUrl: string;
  /** Prepended to every Redis key, e.g. `dialgate:`. */
  prefix: string;
  /** Postgres schema of the lead store (see migrate.ts for the allowed names). */
  schema: string;
  /** Longest wait for one Redis command (design §7.20 `store.commandTimeoutMs`). */
  commandTimeoutMs: number;
  /** Apply pending migrations to `schema` before returning. Default false. */
  migrate?: boolean;
  /** Connections of the Postgres pool. Default 10. */
  poolSize?: number;
  /** Where connection trouble is reported. Default: a pino logger on stderr. */
  logger?: Logger;
}

export interface Readiness {
  ready: boolean;
  redis: boolean;
  postgres: boolean;
  /** Migrations not applied to the schema; null when Postgres did not answer. */
  pendingMigrations: string[] | null;
}

/** The shared stores of a multi-process deployment: Postgres for leads, Redis for the gates. */
export interface Backend {
  readonly leadStore: PostgresLeadStore;
  /** Also the callback handlers' replay store and the providers' pacing store. */
  readonly gateStore: GateStore & ReplayStore & PacingStore;
  /** Migrations applied by this connect (empty when `migrate` was false or nothing was pending). */
  readonly migrated: string[];
  /** Calls `listener` when a lead becomes SCHEDULED in the schema, from any process (Postgres LISTEN). */
  onLeadsAdded(listener: LeadsListener): Promise<() => Promise<void>>;
  /** Whether Redis and Postgres answer and the schema's migrations are current (GET /readyz). */
  readiness(): Promise<Readiness>;
  /** Stops listeners, ends the pool, quits Redis. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connects both stores, or neither: when one connection fails, what was already open is closed before
 * the error is thrown. Connection errors after that are logged, never thrown at the event loop; the
 * store calls themselves fail (Redis within commandTimeoutMs) and the dispatcher handles that.
 */
export async function connectBackend(options: BackendOptions): Promise<Backend> {
  const logger = (options.logger ?? createLogger()).child({ component: "backend" });
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolSize ?? 10,
    application_name: "dialgate",
  });
  // An idle connection that the server drops emits here; without a listener Node would crash.
  pool.on("error", (error) => logger.warn({ err: error }, "postgres connection lost (pool)"));

  let redis: Redis | undefined;
  let leadStore: PostgresLeadStore | undefined;
  try {
    const migrated = options.migrate ? await migrate(pool, { schema: options.schema }) : [];
    leadStore = new PostgresLeadStore(pool, { schema: options.schema });
    // Fails fast on a wrong URL or a schema that was never migrated, rather than at the first claim.
    await leadStore.nextDueAt();
    redis = await createRedisClient(options.redisUrl, { commandTimeoutMs: options.commandTimeoutMs });
    logRedisConnection(redis, logger);
    const gateStore = new RedisGateStore(redis, { prefix: options.prefix });
    const store = leadStore;
    const client = redis;
    let closing: Promise<void> | undefined;
    return {
      leadStore: store,
      gateStore,
      migrated,
      onLeadsAdded: (listener) => store.onLeadsAdded(listener),
      async readiness() {
        const [redisUp, pending] = await Promise.all([
          client.ping().then(
            (reply) => reply === "PONG",
            () => false,
          ),
          pendingMigrations(pool, { schema: options.schema }).catch(() => null),
        ]);
        const postgres = pending !== null;
        return {
          ready: redisUp && postgres && pending.length === 0,
          redis: redisUp,
          postgres,
          pendingMigrations: pending,
        };
      },
      close() {
        closing ??= (async () => {
          await store.close();
          await pool.end();
          // QUIT needs an answer; a dead server cannot give one, so drop the socket instead.
          await client.quit().catch(() => client.disconnect());
        })();
        return closing;
      },
    };
  } catch (error) {
    await leadStore?.close().catch(() => {});
    redis?.disconnect();
    await pool.end().catch(() => {});
    throw error;
  }
}

/**
 * One warning per outage instead of one per reconnect attempt (the client retries every second),
 * and a note when it is back.
 */
function logRedisConnection(client: Redis, logger: Logger): void {
  let down = false;
  client.on("error", (error: Error) => {
    if (down) return;
    down = true;
    logger.warn({ err: error }, "redis connection lost; gate calls fail until it is back");
  });
  client.on("ready", () => {
    if (!down) return;
    down = false;
    logger.info("redis connection back");
  });
}
