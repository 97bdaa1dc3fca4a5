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
