/** The machine and the versions a bench result belongs to. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { Redis } from "ioredis";
import pg from "pg";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  redisServer: string;
  postgres: string;
  /** Settings of the Postgres that bear on write throughput. */
  postgresSettings: Record<string, string>;
  dialgate: { version: string; commit: string; dirty: boolean };
  /** Installed versions of the packages on the measured path. */
  packages: Record<string, string>;
}

const PACKAGES = [
  "xstate",
  "ioredis",
  "pg",
  "p-queue",
  "pino",
  "zod",
  "libphonenumber-js",
  "bullmq",
  "rate-limiter-flexible",
  "redis-semaphore",
  "tsx",
];

function installed(name: string): string {
  try {
    const file = new URL(`../../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

function git(...args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: new URL("../..", import.meta.url), encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}

export async function machineInfo(redisUrl: string, databaseUrl: string): Promise<MachineInfo> {
  const redis = new Redis(redisUrl);
  const redisVersion = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "?";
  redis.disconnect();
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const setting = async (name: string) => (await client.query(`SHOW ${name}`)).rows[0][name] as string;
  const postgres = await setting("server_version");
  const postgresSettings = {
    fsync: await setting("fsync"),
    synchronous_commit: await setting("synchronous_commit"),
    shared_buffers: await setting("shared_buffers"),
  };
  await client.end();
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return {
    cpuModel: cpus()[0]?.model ?? "?",
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    redisServer: redisVersion,
    postgres,
    postgresSettings,
    dialgate: {
      version: pkg.version,
      commit: git("rev-parse", "--short", "HEAD"),
      dirty: git("status", "--porcelain", "--", "src", "lua", "migrations") !== "",
    },
    packages: Object.fromEntries(PACKAGES.map((name) => [name, installed(name)])),
  };
}
