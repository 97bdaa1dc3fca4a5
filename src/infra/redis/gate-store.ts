import { readFileSync } from "node:fs";
import { type Cluster, Redis } from "ioredis";
import type {
  AcquireRequest,
  AcquireResult,
  GateStore,
  RateDecision,
  RateRule,
} from "../../machines/ports.js";

/** Client command name → script in lua/, named `<name>-<numKeys>.lua`. */
const SCRIPTS = {
  dialgateRateLimitPeek: "rate-limit-peek-1",
  dialgateRateLimitRecord: "rate-limit-record-1",
  dialgateRateLimitUndo: "rate-limit-undo-1",
  dialgateChannelAcquire: "channel-acquire-2",
  dialgateChannelRelease: "channel-release-1",
  dialgateChannelReap: "channel-reap-1",
  dialgateAlertThrottle: "alert-throttle-1",
} as const;

type ScriptCommand = keyof typeof SCRIPTS;
type RedisClient = Redis | Cluster;

/** Reads a script and splices in its `--- @include "includes/x"` lines (shared Lua is included, not pasted). */
function loadLua(name: string): string {
  const text = readFileSync(new URL(`../../../lua/${name}.lua`, import.meta.url), "utf8");
  return text.replace(/^--- @include "(.+)"$/gm, (_line, include: string) => loadLua(include));
}

const LUA = Object.fromEntries(
  Object.entries(SCRIPTS).map(([command, file]) => [
    command,
    { lua: loadLua(file), numberOfKeys: Number(file.slice(file.lastIndexOf("-") + 1)) },
  ]),
) as Record<ScriptCommand, { lua: string; numberOfKeys: number }>;

export interface RedisGateStoreOptions {
  /** Prepended to every key, e.g. `dialgate:`. */
  prefix: string;
}

/**
 * Rate limits, channel holds and alert throttle in Redis, one Lua script per operation (lua/).
 * Every time-dependent decision takes the caller's `now`, so a virtual clock can drive it; Redis TTLs
 * only collect idle keys. Each script touches the keys of one hash tag (`{p:…}`, `{n:…}`, `{a:…}`),
 * so it runs unchanged on Redis Cluster.
 */
export class RedisGateStore implements GateStore {
  readonly #client: RedisClient;
  readonly #prefix: string;
  /** Set by connect(): the store made the client, so close() quits it. */
  #ownsClient = false;

  /** Uses `client` without taking it over: close() leaves it open. */
  constructor(client: RedisClient, options: RedisGateStoreOptions) {
    this.#client = client;
    this.#prefix = options.prefix;
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or flushed server).
    for (const [command, script] of Object.entries(LUA)) client.defineCommand(command, script);
  }

  /** A store on its own client (see createRedisClient); close() quits that client. */
  static async connect(
    url: string,
    options: RedisGateStoreOptions & RedisClientOptions,
  ): Promise<RedisGateStore> {
    const store = new RedisGateStore(await createRedisClient(url, options), options);
    store.#ownsClient = true;
    return store;
  }

  async peek(phoneKey: string, rules: RateRule[], now: number): Promise<RateDecision> {
    const reply = await this.#run(
      "dialgateRateLimitPeek",
      [this.#phone(phoneKey)],
      [now, ...ruleArgs(rules)],
    );
    return toDecision(reply);
  }

  async record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce = true,
  ): Promise<RateDecision> {
    const args = [now, member, enforce ? 1 : 0, ...ruleArgs(rules)];
    return toDecision(await this.#run("dialgateRateLimitRecord", [this.#phone(phoneKey)], args));
  }

  async undo(phoneKey: string, member: string): Promise<boolean> {
    return (await this.#run("dialgateRateLimitUndo", [this.#phone(phoneKey)], [member])) === 1;
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const keys = [this.#holds(req.numberId), this.#waiters(req.numberId)];
    const args = [req.now, req.maxChannels, req.holder, req.leaseUntil, req.waiter, req.waiterTtlMs];
    const [held, waiters] = (await this.#run("dialgateChannelAcquire", keys, args)) as [number, number];
    return held === 1 ? { held: true } : { held: false, waiters };
  }

  async release(numberId: string, holder: string): Promise<boolean> {
    return (await this.#run("dialgateChannelRelease", [this.#holds(numberId)], [holder])) === 1;
  }

  async inUse(numberIds: string[], now: number): Promise<Map<string, number>> {
    // One single-key read per number, sent together: the client writes them back to back on one
    // connection. Not a MULTI/pipeline object: on a cluster the numbers live in different slots.
    const counts = await Promise.all(
      numberIds.map((id) => this.#client.zcount(this.#holds(id), `(${now}`, "+inf")),
    );
    return new Map(numberIds.map((id, i) => [id, counts[i]]));
  }

  async reap(numberId: string, now: number): Promise<string[]> {
    return (await this.#run("dialgateChannelReap", [this.#holds(numberId)], [now])) as string[];
  }

  async allow(key: string, windowMs: number, now: number): Promise<boolean> {
    return (await this.#run("dialgateAlertThrottle", [this.#throttle(key)], [now, windowMs])) === 1;
  }

  async close(): Promise<void> {
    if (!this.#ownsClient) return;
    // QUIT needs an answer; a dead server cannot give one, so drop the socket instead.
    await this.#client.quit().catch(() => this.#client.disconnect());
  }

  #run(command: ScriptCommand, keys: string[], args: (string | number)[]): Promise<unknown> {
    const run = (
      this.#client as unknown as Record<ScriptCommand, (...a: (string | number)[]) => Promise<unknown>>
    )[command];
    return run.call(this.#client, ...keys, ...args);
  }

  #phone(phoneKey: string): string {
    return `${this.#prefix}{p:${phoneKey}}:rl`;
  }

  #holds(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:holds`;
  }

  #waiters(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:waiters`;
  }

  #throttle(key: string): string {
    return `${this.#prefix}{a:${key}}:throttle`;
  }
}

/** Rules as the scripts read them: (maxCalls, windowMs) pairs. */
function ruleArgs(rules: RateRule[]): number[] {
  return rules.flatMap((rule) => [rule.maxCalls, rule.windowSeconds * 1000]);
}

/** `{ allowed, retryAt, ...counts }` from rate-limit-peek-1 / rate-limit-record-1. */
function toDecision(reply: unknown): RateDecision {
  const [allowed, retryAt, ...counts] = reply as number[];
  return allowed === 1 ? { allowed: true, counts } : { allowed: false, counts, retryAt };
}

export interface RedisClientOptions {
  /** Longest wait for any one command before it fails (spec §7.20: `store.commandTimeoutMs`, 500). */
  commandTimeoutMs: number;
}

/**
 * A client that answers within a bound even when Redis is dead (spec §4): every command times out after
 * `commandTimeoutMs`, and while disconnected commands fail at once instead of queueing for a server
 * that may never come back (a queued write could also run long after its caller gave up).
 * Resolves once connected; rejects, closing the client, when the first connection fails.
 */
export async function createRedisClient(url: string, options: RedisClientOptions): Promise<Redis> {
  const client = new Redis(url, {
    commandTimeout: options.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Reconnect forever, but never wait more than a second between tries: a restarted Redis is back
    // in use quickly (ioredis' default waits up to 5 s).
    retryStrategy: (times) => Math.min(50 * 2 ** times, 1000),
    // Without an offline queue, commands sent before the first connection would fail: connect first.
    lazyConnect: true,
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw error;
  }
  return client;
}
