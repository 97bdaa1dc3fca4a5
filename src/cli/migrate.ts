import pg from "pg";
import { ValidationError } from "../infra/config.js";
import { assertSchemaName, migrate } from "../infra/postgres/migrate.js";

export interface MigrateCommandOptions {
  schema: string;
}

/**
 * `dialgate migrate`: applies the pending migrations of `migrations/` to DATABASE_URL, in one
 * transaction. Idempotent: a second run applies nothing. Prints what it applied on stdout.
 */
export async function migrateCommand(
  options: MigrateCommandOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const refusal = missingEnvironment(env, ["DATABASE_URL"]);
  if (refusal) {
    console.error(refusal);
    return 2;
  }
  checkSchemaName(options.schema);
  const pool = new pg.Pool({
    connectionString: env.DATABASE_URL,
    max: 1,
    application_name: "dialgate-migrate",
  });
  pool.on("error", () => {}); // an idle connection dropped; the query in progress reports its own error
  try {
    const applied = await migrate(pool, { schema: options.schema });
    if (applied.length === 0) console.log(`schema ${options.schema} is up to date`);
    for (const name of applied) console.log(`applied ${name} to schema ${options.schema}`);
    return 0;
  } catch (error) {
    // One transaction: nothing of this run was applied.
    console.error(
      `dialgate: migrate of schema ${options.schema} failed, nothing applied: ${(error as Error).message}`,
    );
    return 1;
  } finally {
    await pool.end();
  }
}

/** Refusals before anything connects: a clear sentence, exit code 2. */
export function missingEnvironment(env: NodeJS.ProcessEnv, needs: readonly string[]): string | null {
  const messages: Record<string, string> = {
    DIALGATE_HMAC_SECRET:
      "DIALGATE_HMAC_SECRET is not set. It keys the phone hashes that name every rate-limit window in " +
      "Redis: give every dialgate process the same long random value (rotating it resets every rate window).",
    REDIS_URL: "REDIS_URL is not set (e.g. redis://127.0.0.1:6379).",
    DATABASE_URL: "DATABASE_URL is not set (e.g. postgresql://dialgate@127.0.0.1:5432/dialgate).",
  };
  const missing = needs.filter((name) => !env[name]?.trim());
  return missing.length === 0
    ? null
    : missing.map((name) => `dialgate: ${messages[name] ?? name}`).join("\n");
}

/**
 * Hex characters a DIALGATE_HMAC_SECRET needs at least: 32 random bytes written as hex. The secret is
 * all that keeps a phone from being recovered from its Redis key by trying every number.
 */
export const MIN_HMAC_SECRET_LENGTH = 64;

/** Refusal of a DIALGATE_HMAC_SECRET too short to hold 32 bytes of entropy, or null. */
export function weakHmacSecret(secret: string): string | null {
  const length = secret.trim().length;
  if (length >= MIN_HMAC_SECRET_LENGTH) return null;
  return (
    `dialgate: DIALGATE_HMAC_SECRET is too short (${length} characters): it needs at least ` +
    `${MIN_HMAC_SECRET_LENGTH}, e.g. 32 random bytes as hex from \`openssl rand -hex 32\`.`
  );
}

/** `--schema` / DIALGATE_SCHEMA as a ValidationError (exit code 2) rather than a stack trace. */
export function checkSchemaName(schema: string): void {
  try {
    assertSchemaName(schema);
  } catch (error) {
    throw new ValidationError(
      "--schema",
      schema,
      (error as Error).message.replace(/^Postgres schema /, "").replace(/, got .*$/, ""),
    );
  }
}
