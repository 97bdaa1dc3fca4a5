/**
 * A Postgres for tests: DATABASE_URL when set (a shared server: only fresh schemas are touched), else a
 * throw-away cluster of our own, in a temp dir, on a free port. Never touches the machine's shared
 * Postgres on 5432 unless DATABASE_URL says so, and never stops it.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const exec = promisify(execFile);

export interface PostgresServer {
  url: string;
  /** A schema name unique to this run (`t_` + random hex). On a shared server stop() drops them. */
  freshSchema(): string;
  /** False for a shared DATABASE_URL server: restart() refuses to touch it. */
  readonly disposable: boolean;
  /** Fast shutdown and start on the same port: every open connection is dropped. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<PostgresServer> {
  const shared = process.env.DATABASE_URL;
  return shared ? useSharedServer(shared) : startThrowAwayCluster();
}

function schemaNames() {
  const names: string[] = [];
  return {
    names,
    fresh(): string {
      const name = `t_${randomBytes(6).toString("hex")}`;
      names.push(name);
      return name;
    },
  };
}

function useSharedServer(url: string): PostgresServer {
  const schemas = schemaNames();
  return {
    url,
    freshSchema: schemas.fresh,
    disposable: false,
    async restart() {
      throw new Error("restart() needs a throw-away cluster: unset DATABASE_URL");
    },
    async stop() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        for (const name of schemas.names) {
          await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(name)} CASCADE`);
        }
      } finally {
        await client.end();
      }
    },
  };
}

async function startThrowAwayCluster(): Promise<PostgresServer> {
  const bin = await postgresBinDir();
  const dir = await mkdtemp(join(tmpdir(), "dialgate-pg-"));
  const data = join(dir, "data");
  const port = await freePort();
  const user = await postgresUser();
  if (user.owner) await chown(dir, user.owner.uid, user.owner.gid);
  const pgCtl = (...args: string[]) =>
    user.argv(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "log"), ...args]);
  // The socket goes in our dir too, so nothing else on the machine is touched.
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;

  try {
    await exec(...user.argv(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]));
    // -w: pg_ctl returns once the server accepts connections.
    await exec(...pgCtl("-w", "-o", serverOptions, "start"));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  // A test run that dies without stop() must not leave a server behind.
  const stopOnExit = () => {
    try {
      execFileSync(...pgCtl("-m", "immediate", "stop"), { stdio: "ignore" });
    } catch {
      // Already down: nothing to clean up.
    }
  };
  process.once("exit", stopOnExit);

  const schemas = schemaNames();
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    freshSchema: schemas.fresh,
    disposable: true,
    async restart() {
      await exec(...pgCtl("-w", "-m", "fast", "-o", serverOptions, "restart"));
    },
    async stop() {
      process.removeListener("exit", stopOnExit);
      try {
        await exec(...pgCtl("-w", "-m", "immediate", "stop"));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH). */
async function postgresBinDir(): Promise<string> {
  try {
    const { stdout } = await exec("pg_config", ["--bindir"]);
    const bin = stdout.trim();
    if ((await readdir(bin)).includes("initdb")) return bin;
  } catch {
    // No pg_config, or the client-only package: fall through to the server install.
  }
  const versions = (await readdir("/usr/lib/postgresql").catch(() => []))
    .map(Number)
    .filter(Number.isInteger)
    .sort((a, b) => b - a);
  if (versions.length === 0) throw new Error("no PostgreSQL server found: install it or set DATABASE_URL");
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

type Argv = [file: string, args: string[]];

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` system user. */
async function postgresUser(): Promise<{
  owner: { uid: number; gid: number } | null;
  argv(...cmd: Argv): Argv;
}> {
  if (process.getuid?.() !== 0) return { owner: null, argv: (file, args) => [file, args] };
  const id = async (flag: "-u" | "-g") => Number((await exec("id", [flag, "postgres"])).stdout);
  return {
    owner: { uid: await id("-u"), gid: await id("-g") },
    argv: (file, args) => ["runuser", ["-u", "postgres", "--", file, ...args]],
  };
}

/** A port nobody listens on right now (the OS picks it). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP port from the OS");
  return address.port;
}
