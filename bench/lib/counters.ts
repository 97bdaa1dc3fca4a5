/**
 * What a run cost, as deltas between two snapshots: this process's CPU, Redis commands (INFO
 * commandstats) and Redis server CPU, Postgres statements counted at the pg client and Postgres
 * transactions from pg_stat_database, and the servers' own CPU when they run on this machine.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type pg from "pg";

/** pool.query, counted: every statement a store sends through the pool. */
export interface CountingPool {
  pool: pg.Pool;
  statements(): number;
}

export function countingPool(pool: pg.Pool): CountingPool {
  let count = 0;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    count += 1;
    return query(...args);
  };
  return { pool, statements: () => count };
}

/**
 * Commands as clients send them (an EVALSHA is one, whatever its script runs), counted by patching
 * `sendCommand` of an ioredis class: pipelines and scripts pass through it too. Round trips are
 * counted beside them: a command sent on its own is one, a pipeline (explicit, MULTI or ioredis's
 * auto-pipelining) is one for all its commands, a script over many keys is one — so a batch that
 * serves n dials adds 1/n to each dial's share.
 */
export class SentCommands {
  readonly counts = new Map<string, number>();
  readonly #trips = { n: 0 };

  /** Counts every command sent by instances of `RedisClass` (ioredis 5 or 6). */
  watch(RedisClass: unknown): this {
    const proto = (
      RedisClass as {
        prototype: {
          sendCommand: (command: { name: string }, stream?: unknown, ...rest: unknown[]) => unknown;
        };
      }
    ).prototype;
    const send = proto.sendCommand;
    const counts = this.counts;
    const trips = this.#trips;
    // ioredis hands every command of one pipeline exec the same write stream, marked `isPipeline`:
    // its first command counts the round trip.
    const pipelines = new WeakSet<object>();
    proto.sendCommand = function (this: unknown, command, stream, ...rest) {
      counts.set(command.name, (counts.get(command.name) ?? 0) + 1);
      const pipeline = (stream as { isPipeline?: boolean } | undefined)?.isPipeline === true;
      if (!pipeline) trips.n += 1;
      else if (!pipelines.has(stream as object)) {
        pipelines.add(stream as object);
        trips.n += 1;
      }
      return send.call(this, command, stream, ...rest);
    };
    return this;
  }

  snapshot(): Map<string, number> {
    return new Map(this.counts);
  }

  get roundTrips(): number {
    return this.#trips.n;
  }
}

export async function commandStats(redis: Redis): Promise<Map<string, number>> {
  const text = await redis.info("commandstats");
  const calls = new Map<string, number>();
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1], Number(match[2]));
  return calls;
}

/** Commands between two commandstats, without the INFO calls that read them. */
export function commandDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>();
  for (const [name, calls] of after) {
    if (name === "info") continue;
    const d = calls - (before.get(name) ?? 0);
    if (d > 0) delta.set(name, d);
  }
  return delta;
}

export const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** CPU ms of a local process (utime + stime), or null when it is not on this machine. */
export function processCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After the name: state(0) ppid(1) … utime(11) stime(12), in clock ticks (100 per second on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return null;
  }
}

function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return null;
  }
}

/** Every process whose parent is `ppid` (the postmaster's backends and workers), plus itself. */
function familyOf(ppid: number): number[] {
  const pids = [ppid];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (Number.isInteger(pid) && parentOf(pid) === ppid) pids.push(pid);
  }
  return pids;
}

/** The servers' processes, when local: Redis by INFO process_id, Postgres by a backend's parent. */
export interface ServerPids {
  redis: number | null;
  postmaster: number | null;
}

export async function serverPids(redis: Redis, pool: pg.Pool): Promise<ServerPids> {
  const info = await redis.info("server");
  const redisPid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  const { rows } = await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  const postmaster = parentOf(rows[0].pid);
  return {
    redis: processCpuMs(redisPid) === null ? null : redisPid,
    postmaster: postmaster !== null && processCpuMs(postmaster) !== null ? postmaster : null,
  };
}

/** CPU ms of the whole Postgres server: the postmaster and every child it has now. */
export function postgresCpuMs(postmaster: number | null): number | null {
  if (postmaster === null) return null;
  let ms = 0;
  for (const pid of familyOf(postmaster)) ms += processCpuMs(pid) ?? 0;
  return ms;
}

export async function pgTransactions(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()",
  );
  return Number(rows[0].n);
}

export interface Snapshot {
  cpu: NodeJS.CpuUsage;
  commands: Map<string, number>;
  sent: Map<string, number>;
  roundTrips: number;
  redisCpuMs: number | null;
  postgresCpuMs: number | null;
  statements: number;
  at: number;
}

export interface RunCost {
  cpuMs: number;
  /** Executed by the server (INFO commandstats): commands inside Lua scripts count one by one. */
  commands: Map<string, number>;
  /** Sent by this process's clients: an EVALSHA counts once. */
  sent: Map<string, number>;
  /** Round trips of this process's clients (see SentCommands). */
  roundTrips: number;
  redisCpuMs: number | null;
  postgresCpuMs: number | null;
  /** Statements sent through the counted pool. */
  statements: number;
  wallMs: number;
}

export class CostMeter {
  constructor(
    readonly redis: Redis,
    readonly pids: ServerPids,
    readonly counted: CountingPool | null,
    readonly sent: SentCommands,
  ) {}

  async snapshot(): Promise<Snapshot> {
    const sent = this.sent.snapshot();
    const commands = await commandStats(this.redis);
    // After the INFO, so that reading it is not a round trip of the run.
    const roundTrips = this.sent.roundTrips;
    return {
      cpu: process.cpuUsage(),
      commands,
      sent,
      roundTrips,
      redisCpuMs: this.pids.redis === null ? null : processCpuMs(this.pids.redis),
      postgresCpuMs: postgresCpuMs(this.pids.postmaster),
      statements: this.counted?.statements() ?? 0,
      at: Date.now(),
    };
  }

  /** `after` is taken first thing, so reading INFO does not count as this run's CPU. */
  async since(before: Snapshot): Promise<RunCost> {
    const cpu = process.cpuUsage(before.cpu);
    const statements = (this.counted?.statements() ?? 0) - before.statements;
    const sent = commandDelta(before.sent, this.sent.snapshot());
    const roundTrips = this.sent.roundTrips - before.roundTrips;
    const at = Date.now();
    const after = await this.snapshot();
    return {
      cpuMs: (cpu.user + cpu.system) / 1000,
      commands: commandDelta(before.commands, after.commands),
      sent,
      roundTrips,
      redisCpuMs: diff(before.redisCpuMs, after.redisCpuMs),
      postgresCpuMs: diff(before.postgresCpuMs, after.postgresCpuMs),
      statements,
      wallMs: at - before.at,
    };
  }
}

function diff(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : b - a;
}

/**
 * Transactions Postgres has counted (pg_stat_database), after asking every pool connection to flush
 * its statistics: a backend otherwise reports them up to a second late. `flushes`: the transactions
 * that asking took.
 */
export async function flushedTransactions(
  target: pg.Pool,
): Promise<{ transactions: number; flushes: number } | null> {
  try {
    const clients = await Promise.all(Array.from({ length: target.totalCount }, () => target.connect()));
    for (const c of clients) await c.query("SELECT pg_stat_force_next_flush()");
    for (const c of clients) c.release();
    return { transactions: await pgTransactions(target), flushes: clients.length };
  } catch {
    return null;
  }
}

/** Transactions between two flushed reads, without our own: the read of `before`, the flushes of `after`. */
export function transactionsBetween(
  before: { transactions: number } | null,
  after: { transactions: number; flushes: number } | null,
): number | null {
  return before && after ? after.transactions - before.transactions - 1 - after.flushes : null;
}
