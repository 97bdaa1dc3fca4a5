import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

/** The repository's `migrations/` folder: `NNN_name.sql` files, applied in name order. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../../../migrations/", import.meta.url));

/**
 * Lower case, so the quoted name equals the unquoted one an operator types in psql; at most 48
 * characters, so the notification channel `<schema>.dialgate_leads` stays under Postgres' 64 bytes.
 */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,47}$/;

export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema)) {
    throw new TypeError(`Postgres schema must match ${SCHEMA_NAME}, got ${JSON.stringify(schema)}`);
  }
}

/** The channel the triggers of 001_init.sql (a lead became SCHEDULED) and 002_controls.sql (a resume) notify. */
export function leadsChannel(schema: string): string {
  return `${schema}.dialgate_leads`;
}

export interface MigrateOptions {
  /** Created when missing; every table of the store lives in it. */
  schema: string;
  /** Defaults to MIGRATIONS_DIR. */
  dir?: string;
}

interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

const CREATE_SCHEMA_MIGRATIONS = `
  CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;

/**
 * Applies the migrations not yet applied to `schema`, all in one transaction: a failure leaves the
 * schema as it was. Returns the names applied by this call (empty when already up to date).
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions): Promise<string[]> {
  assertSchemaName(options.schema);
  const migrations = await readMigrations(options.dir ?? MIGRATIONS_DIR);
  const schema = pg.escapeIdentifier(options.schema);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    // Processes starting together (tests, a fleet rolling out) wait here; the later ones find nothing to do.
    await client.query("SELECT pg_advisory_xact_lock(hashtext('dialgate.migrate'), hashtext($1))", [
      options.schema,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    // LOCAL: the pooled connection gets its own search_path back at commit.
    await client.query(`SET LOCAL search_path TO ${schema}`);
    await client.query(CREATE_SCHEMA_MIGRATIONS);
    const applied = await appliedChecksums(client);
    const names: string[] = [];
    for (const migration of migrations) {
      const checksum = applied.get(migration.name);
      if (checksum === migration.checksum) continue;
      // An edited migration would leave schemas that claim the same version but differ.
      if (checksum !== undefined) {
        throw new Error(
          `migration ${migration.name} changed after it was applied to schema ${options.schema}`,
        );
      }
      await client.query(migration.sql);
      await client.query("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", [
        migration.name,
        migration.checksum,
      ]);
      names.push(migration.name);
    }
    await client.query("COMMIT");
    return names;
  } catch (err) {
    await client.query("ROLLBACK").catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    throw err;
  } finally {
    // A connection that could not roll back is destroyed rather than handed to the next caller.
    client.release(broken);
  }
}

/**
 * Migrations of MIGRATIONS_DIR (or `dir`) not applied to `schema`, or applied with other contents:
 * empty when the schema is current. Read-only (for readiness checks).
 */
export async function pendingMigrations(pool: pg.Pool, options: MigrateOptions): Promise<string[]> {
  assertSchemaName(options.schema);
  const migrations = await readMigrations(options.dir ?? MIGRATIONS_DIR);
  const table = `${pg.escapeIdentifier(options.schema)}.schema_migrations`;
  let applied: Map<string, string>;
  try {
    const { rows } = await pool.query<{ name: string; checksum: string }>(
      `SELECT name, checksum FROM ${table}`,
    );
    applied = new Map(rows.map((row) => [row.name, row.checksum]));
  } catch (error) {
    // 42P01 undefined_table: never migrated, so every migration is pending.
    if ((error as { code?: string }).code !== "42P01") throw error;
    applied = new Map();
  }
  return migrations.filter((m) => applied.get(m.name) !== m.checksum).map((m) => m.name);
}

async function readMigrations(dir: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => /^\d+_.+\.sql$/.test(name)).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name), "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

async function appliedChecksums(client: pg.PoolClient): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; checksum: string }>(
    "SELECT name, checksum FROM schema_migrations",
  );
  return new Map(rows.map((row) => [row.name, row.checksum]));
}
