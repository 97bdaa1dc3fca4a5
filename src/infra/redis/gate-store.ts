import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import calculateSlot from "cluster-key-slot";
import { type Cluster, Redis } from "ioredis";
import type {
  AcquireRequest,
  AcquireResult,
  CooldownRule,
  RateDecision,
  RateOptions,
  RateRule,
} from "../../machines/ports.js";
import type {
  GateState,
  GateStateSource,
  RebuildableGateStore,
  RebuildReport,
} from "../../machines/rebuild-ports.js";
import { SystemClock } from "../clock.js";
import { Batcher } from "../postgres/batch.js";

/** Client command name → script in lua/, named `<name>-<numKeys>.lua`. */
const SCRIPTS = {
  dialgateRateLimitPeek: "rate-limit-peek-2",
  dialgateRateLimitRecord: "rate-limit-record-2",
  dialgateRateLimitUndo: "rate-limit-undo-2",
  dialgateRateLimitRestore: "rate-limit-restore-2",
  dialgateCoolMark: "cool-mark-1",
  dialgateChannelAcquire: "channel-acquire-3",
  dialgateChannelRelease: "channel-release-3",
  dialgateChannelRestore: "channel-restore-3",
  dialgateChannelReap: "channel-reap-1",
  dialgateAlertThrottle: "alert-throttle-1",
  dialgateRebuildUnlock: "rebuild-unlock-1",
  dialgateProviderPacing: "provider-pacing-1",
} as const;

type ScriptCommand = keyof typeof SCRIPTS;
type RedisClient = Redis | Cluster;

/** The gate operations of one event-loop turn that go to Redis together, one script call per kind. */
const BATCHED = [
  "dialgateRateLimitPeek",
  "dialgateRateLimitRecord",
  "dialgateRateLimitUndo",
  "dialgateChannelAcquire",
  "dialgateChannelRelease",
] as const satisfies readonly ScriptCommand[];
type BatchedCommand = (typeof BATCHED)[number];
const batchCommand = (command: BatchedCommand) => `${command}Batch`;

interface ScriptOp {
  keys: string[];
  args: (string | number)[];
}
type OpAnswer = { ok: true; reply: unknown } | { ok: false; error: unknown };

/**
 * A script run over many operations: the script's own body, once per operation (its keys and its
 * arguments, each list prefixed by its length), under pcall so one operation's error is its own.
 * Returns one `{ 1, reply }` or `{ 0, message }` per operation. Each body still sees only its own
 * keys, so it decides exactly as it would alone; the batch is one atomic run instead of many.
 */
function batchLua(lua: string, numberOfKeys: number): string {
  return `local function op(KEYS, ARGV)
${lua}
end
local out, a = {}, 1
for i = 1, #KEYS / ${numberOfKeys} do
  local keys, args = {}, {}
  for k = 1, ${numberOfKeys} do keys[k] = KEYS[(i - 1) * ${numberOfKeys} + k] end
  local n = tonumber(ARGV[a])
  for j = 1, n do args[j] = ARGV[a + j] end
  a = a + n + 1
  local ok, reply = pcall(op, keys, args)
  if ok then
    out[i] = { 1, reply }
  else
    out[i] = { 0, type(reply) == 'table' and reply.err or tostring(reply) }
  end
end
return out
`;
}

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
  /**
   * How long an acquire that finds its number not rebuilt (design §7.13) waits for the rebuild before it
   * fails closed with GateStoreNotReadyError. Real time, like the command timeout. Default 500 ms
   * (`connect` uses the command timeout).
   */
  rebuildWaitMs?: number;
  /**
   * Expiry of the lock that lets one process rebuild: after a process died mid-rebuild, another one
   * takes over this much later. Default 120 000 ms.
   */
  rebuildLockMs?: number;
}

/**
 * The channel gate of a number whose holds Redis forgot (a restart, or a number it never saw) until
 * the lead store's live calls are written back (design §7.13). The lead machine treats it like any
 * store error at that gate: fail closed, alert, defer.
 */
export class GateStoreNotReadyError extends Error {
  override readonly name = "GateStoreNotReadyError";
  constructor(readonly numberId: string) {
    super(`gate store not ready for number ${numberId}: its channel holds are being rebuilt`);
  }
}

/** Reply of channel-acquire-3 when the number's epoch key is missing. */
const NOT_READY = -1;
const DAY_MS = 86_400_000;
/** Restore scripts sent at once while rebuilding (one per phone or number). */
const RESTORE_BATCH = 500;

/**
 * Rate limits, cooldown marks, channel holds and alert throttle in Redis, one Lua script per operation
 * (lua/).
 * Every time-dependent decision takes the caller's `now`, so a virtual clock can drive it; Redis TTLs
 * only collect idle keys. Each script touches the keys of one hash tag (`{p:…}`, `{n:…}`, `{a:…}`),
 * so it runs unchanged on Redis Cluster.
 *
 * Restarts (design §7.13): once `rebuildFrom` gave it a source (the dispatcher does), the store treats
 * Redis as a cache of the lead store. Each number has an epoch key in its own slot; a number without
 * one (Redis restarted empty, a cluster node lost its slots, or the number is new) refuses every
 * acquire. The first acquire that meets such a number starts a rebuild, under a lock so that one
 * process runs it: read the live calls, the counted dials and the ended calls from the lead store,
 * write the records and the cooldown marks, then the holds and the epoch key of every number. That
 * acquire waits up to `rebuildWaitMs` for it and tries once more, else it fails closed. Since every
 * dial passes the channel gate before its record, nothing dials on a forgotten number until its live
 * calls are back. Without a source Redis is the only truth and no epoch key is needed.
 */
export class RedisGateStore implements RebuildableGateStore {
  readonly #client: RedisClient;
  readonly #prefix: string;
  readonly #rebuildWaitMs: number;
  readonly #rebuildLockMs: number;
  /** Set by connect(): the store made the client, so close() quits it. */
  #ownsClient = false;
  #rebuild: { source: GateStateSource; report: (report: RebuildReport) => void } | null = null;
  /** The rebuild this process runs (or tried to lock) right now. */
  #rebuilding: Promise<void> | null = null;
  /** Numbers whose acquire found no epoch key since the last rebuild began: marked even if unlisted. */
  readonly #forgotten = new Set<string>();
  /** Holders whose acquire runs right now (with a count, should one holder ask twice at once). */
  readonly #acquiring = new Map<string, number>();
  /**
   * Alert throttle windows opened while Redis was unreachable. The alerter then throttles in process
   * (design §7.14) and lets the first alert through; a Redis that comes back empty has no trace of it,
   * so these windows are kept here and checked first.
   */
  readonly #offlineThrottle = new Map<string, number>();
  readonly #realTime = new SystemClock();
  /** The operations of one event-loop turn, by script (no cap on batches in flight: Redis pipelines). */
  readonly #batchers = new Map(
    BATCHED.map((command) => [
      command,
      new Batcher<ScriptOp, OpAnswer>({
        run: (ops) => this.#runBatch(command, ops),
        maxInFlight: Number.POSITIVE_INFINITY,
      }),
    ]),
  );

  /** Uses `client` without taking it over: close() leaves it open. */
  constructor(client: RedisClient, options: RedisGateStoreOptions) {
    this.#client = client;
    this.#prefix = options.prefix;
    this.#rebuildWaitMs = options.rebuildWaitMs ?? 500;
    this.#rebuildLockMs = options.rebuildLockMs ?? 120_000;
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT (a restarted or flushed server).
    for (const [command, script] of Object.entries(LUA)) client.defineCommand(command, script);
    // The batch scripts take their number of keys as the first argument: it is the batch's.
    for (const command of BATCHED) {
      client.defineCommand(batchCommand(command), {
        lua: batchLua(LUA[command].lua, LUA[command].numberOfKeys),
      });
    }
  }

  /** A store on its own client (see createRedisClient); close() quits that client. */
  static async connect(
    url: string,
    options: RedisGateStoreOptions & RedisClientOptions,
  ): Promise<RedisGateStore> {
    const store = new RedisGateStore(await createRedisClient(url, options), {
      rebuildWaitMs: options.commandTimeoutMs,
      ...options,
    });
    store.#ownsClient = true;
    return store;
  }

  async peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision> {
    const args = [now, ...keepArgs(options), ...coolArgs(options?.cooldowns), ...ruleArgs(rules)];
    return toDecision(await this.#batched("dialgateRateLimitPeek", this.#rateKeys(phoneKey), args));
  }

  async record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce = true,
    options?: RateOptions,
  ): Promise<RateDecision> {
    const args = [
      now,
      member,
      enforce ? 1 : 0,
      ...keepArgs(options),
      ...coolArgs(options?.cooldowns),
      ...ruleArgs(rules),
    ];
    return toDecision(await this.#batched("dialgateRateLimitRecord", this.#rateKeys(phoneKey), args));
  }

  async markEnd(phoneKey: string, outcome: string, at: number, keepMs: number): Promise<void> {
    await this.#run("dialgateCoolMark", [this.#cool(phoneKey)], [keepMs, outcome, at]);
  }

  async undo(phoneKey: string, member: string): Promise<boolean> {
    const keys = [this.#phone(phoneKey), this.#undone(phoneKey)];
    return (await this.#batched("dialgateRateLimitUndo", keys, [member])) === 1;
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    if (!this.#rebuild) return (await this.#acquireOnce(req)) as AcquireResult;
    this.#acquiring.set(req.holder, (this.#acquiring.get(req.holder) ?? 0) + 1);
    try {
      const first = await this.#acquireOnce(req);
      if (first !== NOT_READY) return first;
      await this.#awaitRebuild(req.numberId);
      const second = await this.#acquireOnce(req);
      if (second !== NOT_READY) return second;
      throw new GateStoreNotReadyError(req.numberId);
    } finally {
      const count = (this.#acquiring.get(req.holder) ?? 1) - 1;
      if (count > 0) this.#acquiring.set(req.holder, count);
      else this.#acquiring.delete(req.holder);
    }
  }

  async release(numberId: string, holder: string): Promise<boolean> {
    const keys = [this.#holds(numberId), this.#epoch(numberId), this.#released(numberId)];
    return (await this.#batched("dialgateChannelRelease", keys, [holder, this.#needEpoch])) === 1;
  }

  async listHolders(numberId: string, now: number): Promise<string[]> {
    return this.#client.zrangebyscore(this.#holds(numberId), `(${now}`, "+inf");
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
    const offlineUntil = this.#offlineThrottle.get(key);
    if (offlineUntil !== undefined) {
      if (now < offlineUntil) return false;
      this.#offlineThrottle.delete(key);
    }
    try {
      return (await this.#run("dialgateAlertThrottle", [this.#throttle(key)], [now, windowMs])) === 1;
    } catch (error) {
      // The alerter lets this one through in process (its window was not open either, or we would
      // have answered above): open the same window here.
      this.#offlineThrottle.set(key, now + windowMs);
      throw error;
    }
  }

  /**
   * ReplayStore (callback handler): the alert throttle's script on a key of its own, so a callback
   * replayed to another process is refused the same way. The key is hashed: signatures are long.
   */
  async claimOnce(key: string, windowMs: number, now: number): Promise<boolean> {
    return (await this.#run("dialgateAlertThrottle", [this.#replay(key)], [now, windowMs])) === 1;
  }

  async forget(key: string): Promise<void> {
    await this.#client.del(this.#replay(key));
  }

  /** PacingStore (PacedProvider): one sliding second per provider account, for every process. */
  async takePacingToken(
    account: string,
    callsPerSecond: number,
    now: number,
    member: string,
  ): Promise<number> {
    return Number(
      await this.#run("dialgateProviderPacing", [this.#pacing(account)], [now, callsPerSecond, member]),
    );
  }

  async serverTime(): Promise<number> {
    const [seconds, micros] = await this.#client.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  rebuildFrom(source: GateStateSource, report: (report: RebuildReport) => void = () => {}): void {
    this.#rebuild = { source, report };
  }

  async ensureReady(): Promise<void> {
    const source = this.#rebuild?.source;
    if (!source) return;
    const ids = await source.numberIds();
    const marked = await Promise.all(ids.map((id) => this.#client.exists(this.#epoch(id))));
    const missing = ids.filter((_, i) => marked[i] === 0);
    if (missing.length === 0) return;
    for (const id of missing) this.#forgotten.add(id);
    await this.#startRebuild();
  }

  async close(): Promise<void> {
    if (!this.#ownsClient) return;
    // QUIT needs an answer; a dead server cannot give one, so drop the socket instead.
    await this.#client.quit().catch(() => this.#client.disconnect());
  }

  /** One acquire script run: the result, or NOT_READY when the number awaits its rebuild. */
  async #acquireOnce(req: AcquireRequest): Promise<AcquireResult | typeof NOT_READY> {
    const keys = [this.#holds(req.numberId), this.#waiters(req.numberId), this.#epoch(req.numberId)];
    const args = [
      req.now,
      req.maxChannels,
      req.holder,
      req.leaseUntil,
      req.waiter,
      req.waiterTtlMs,
      this.#needEpoch,
    ];
    const [held, waiters] = (await this.#batched("dialgateChannelAcquire", keys, args)) as [number, number];
    if (held === NOT_READY) return NOT_READY;
    return held === 1 ? { held: true } : { held: false, waiters };
  }

  /** 1 once a source was given: epoch keys are then in use (channel-acquire-3, channel-release-3). */
  get #needEpoch(): number {
    return this.#rebuild ? 1 : 0;
  }

  /** Starts the rebuild (or joins the one running) and waits for it at most rebuildWaitMs. */
  async #awaitRebuild(numberId: string): Promise<void> {
    this.#forgotten.add(numberId);
    const rebuilding = this.#startRebuild();
    let timer: { cancel(): void } | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = this.#realTime.setTimer(this.#realTime.now() + this.#rebuildWaitMs, resolve);
    });
    // A failed rebuild is reported by #runRebuild; this acquire just finds the number still not ready.
    await Promise.race([rebuilding.catch(() => {}), waited]);
    timer?.cancel();
  }

  /** The rebuild running in this process, or a new one. */
  #startRebuild(): Promise<void> {
    this.#rebuilding ??= this.#runRebuild().finally(() => {
      this.#rebuilding = null;
    });
    return this.#rebuilding;
  }

  /** One rebuild, when this process wins the lock; another process's rebuild otherwise. */
  async #runRebuild(): Promise<void> {
    const rebuild = this.#rebuild;
    if (!rebuild) return;
    const owner = randomUUID();
    const lock = this.#rebuildLock();
    if ((await this.#client.set(lock, owner, "PX", this.#rebuildLockMs, "NX")) !== "OK") return;
    const started = this.#realTime.now();
    try {
      const forgotten = [...this.#forgotten];
      this.#forgotten.clear();
      const state = await rebuild.source.read((token) => this.#acquiring.has(token));
      // Records and cooldown marks first: once a number is marked its dials pass the channel gate and
      // record.
      const records = await this.#restoreRecords(state);
      const marks = await this.#restoreMarks(state);
      const { numbers, holds } = await this.#restoreHolds(state, forgotten);
      const tookMs = this.#realTime.now() - started;
      rebuild.report({ kind: "rebuilt", numbers, holds, records, marks, tookMs });
    } catch (error) {
      rebuild.report({ kind: "failed", error });
      throw error;
    } finally {
      await this.#run("dialgateRebuildUnlock", [lock], [owner]).catch(() => {});
    }
  }

  /** Writes the counted dials back, one script per phone. Returns the records written. */
  async #restoreRecords(state: GateState): Promise<number> {
    const byPhone = groupBy(state.records, (r) => r.phoneKey);
    const keepMs = state.windowMs * 2 + DAY_MS;
    const written = await inBatches([...byPhone], ([key, records]) =>
      this.#run(
        "dialgateRateLimitRestore",
        [this.#phone(key), this.#undone(key)],
        [keepMs, ...records.flatMap((r) => [r.member, r.at])],
      ),
    );
    return written.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  /**
   * Writes the cooldown marks back (design §7.6), one script per phone: the latest end per outcome,
   * never replacing a newer mark made since the read. Returns the marks written.
   */
  async #restoreMarks(state: GateState): Promise<number> {
    const byPhone = groupBy(state.ends, (e) => e.phoneKey);
    const written = await inBatches([...byPhone], ([key, ends]) =>
      this.#run(
        "dialgateCoolMark",
        [this.#cool(key)],
        [state.coolMs, ...ends.flatMap((e) => [e.outcome, e.at])],
      ),
    );
    return written.reduce<number>((sum, n) => sum + Number(n), 0);
  }

  /**
   * Writes the holds of live calls back and marks every number ready, one script per number: the
   * lead store's numbers, those of live calls, and those whose acquire asked.
   */
  async #restoreHolds(state: GateState, forgotten: string[]): Promise<{ numbers: number; holds: number }> {
    const byNumber = groupBy(state.holds, (h) => h.numberId);
    const numberIds = new Set([...state.numberIds, ...byNumber.keys(), ...forgotten]);
    const written = await inBatches([...numberIds], (id) =>
      this.#run(
        "dialgateChannelRestore",
        [this.#holds(id), this.#epoch(id), this.#released(id)],
        [state.now, String(state.now), ...(byNumber.get(id) ?? []).flatMap((h) => [h.holder, h.leaseUntil])],
      ),
    );
    return {
      numbers: numberIds.size,
      holds: written.reduce<number>((sum, n) => sum + Math.max(0, Number(n)), 0),
    };
  }

  /**
   * One operation, sent with the others of this event-loop turn: the leads of one wave at the same
   * gate then cost one script call (per hash slot on a cluster) instead of one each.
   */
  async #batched(command: BatchedCommand, keys: string[], args: (string | number)[]): Promise<unknown> {
    const answer = await (this.#batchers.get(command) as Batcher<ScriptOp, OpAnswer>).add({ keys, args });
    if (!answer.ok) throw answer.error;
    return answer.reply;
  }

  /** A batch's operations, one answer each, in order; a cluster runs one call per hash slot. */
  async #runBatch(command: BatchedCommand, ops: ScriptOp[]): Promise<OpAnswer[]> {
    const answers: OpAnswer[] = [];
    const indexed = ops.map((op, i) => ({ op, i }));
    const groups = this.#client.isCluster
      ? [...groupBy(indexed, ({ op }) => String(calculateSlot(op.keys[0] as string))).values()]
      : [indexed];
    await Promise.all(
      groups.map(async (group) => {
        const replies = await this.#runGroup(
          command,
          group.map(({ op }) => op),
        );
        for (const [j, { i }] of group.entries()) answers[i] = replies[j] as OpAnswer;
      }),
    );
    return answers;
  }

  /** Operations whose keys share one slot: the plain script for one, the batch script for more. */
  async #runGroup(command: BatchedCommand, ops: ScriptOp[]): Promise<OpAnswer[]> {
    try {
      if (ops.length === 1) {
        const [op] = ops as [ScriptOp];
        return [{ ok: true, reply: await this.#run(command, op.keys, op.args) }];
      }
      const keys = ops.flatMap((op) => op.keys);
      const args = ops.flatMap((op) => [op.args.length, ...op.args]);
      const run = (
        this.#client as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>
      )[batchCommand(command)] as (...a: (string | number)[]) => Promise<unknown>;
      const replies = (await run.call(this.#client, keys.length, ...keys, ...args)) as [number, unknown][];
      return ops.map((_, i) => {
        const [ok, reply] = replies[i] ?? [0, "no reply in the batch"];
        return ok === 1
          ? { ok: true, reply }
          : { ok: false, error: new Error(`${command}: ${String(reply)}`) };
      });
    } catch (error) {
      // The call itself failed (a timeout, the connection): its operations fail as each would alone,
      // and the other slots' calls keep their answers.
      return ops.map(() => ({ ok: false, error }));
    }
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

  /** A phone's cooldown marks, in the slot of its records. */
  #cool(phoneKey: string): string {
    return `${this.#prefix}{p:${phoneKey}}:cool`;
  }

  /** The keys of rate-limit-peek-2 and rate-limit-record-2. */
  #rateKeys(phoneKey: string): string[] {
    return [this.#phone(phoneKey), this.#cool(phoneKey)];
  }

  #holds(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:holds`;
  }

  #waiters(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:waiters`;
  }

  #epoch(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:epoch`;
  }

  #released(numberId: string): string {
    return `${this.#prefix}{n:${numberId}}:released`;
  }

  #undone(phoneKey: string): string {
    return `${this.#prefix}{p:${phoneKey}}:undone`;
  }

  /** Its own slot: a plain SET NX / scripted compare-and-delete, never in a script with other keys. */
  #rebuildLock(): string {
    return `${this.#prefix}{rebuild}:lock`;
  }

  #pacing(account: string): string {
    return `${this.#prefix}{c:${account}}:pacing`;
  }

  #replay(key: string): string {
    return `${this.#prefix}{r:${createHash("sha256").update(key).digest("hex")}}:replay`;
  }

  #throttle(key: string): string {
    return `${this.#prefix}{a:${key}}:throttle`;
  }
}

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

/** Runs `fn` over `items`, RESTORE_BATCH at a time (a rebuild may write many thousand phones). */
async function inBatches<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += RESTORE_BATCH) {
    results.push(...(await Promise.all(items.slice(i, i + RESTORE_BATCH).map(fn))));
  }
  return results;
}

/** keepMs and marginMs as the rate-limit scripts read them (0 = only the rules decide). */
function keepArgs(options: RateOptions = {}): number[] {
  return [options.keepMs ?? 0, options.marginMs ?? 0];
}

/**
 * Cooldowns as the rate-limit scripts read them: a count, then one (outcome, windowMs) pair per
 * outcome of each cooldown. None: just the 0, and the scripts read no mark.
 */
function coolArgs(cooldowns: readonly CooldownRule[] = []): (string | number)[] {
  const pairs = cooldowns.flatMap((c) => c.afterOutcomes.map((outcome) => [outcome, c.seconds * 1000]));
  return [pairs.length, ...pairs.flat()];
}

/** Rules as the scripts read them: (maxCalls, windowMs) pairs. */
function ruleArgs(rules: RateRule[]): number[] {
  return rules.flatMap((rule) => [rule.maxCalls, rule.windowSeconds * 1000]);
}

/** `{ allowed, retryAt, ...counts }` from rate-limit-peek-2 / rate-limit-record-2. */
function toDecision(reply: unknown): RateDecision {
  const [allowed, retryAt, ...counts] = reply as number[];
  return allowed === 1 ? { allowed: true, counts } : { allowed: false, counts, retryAt };
}

export interface RedisClientOptions {
  /** Longest wait for any one command before it fails (design §7.20: `store.commandTimeoutMs`, 500). */
  commandTimeoutMs: number;
}

/**
 * A client that answers within a bound even when Redis is dead (design §4): every command times out after
 * `commandTimeoutMs`, and while disconnected commands fail at once instead of queueing for a server
 * that may never come back (a queued write could also run long after its caller gave up).
 * Resolves once connected; rejects, closing the client, when the first connection fails.
 */
export async function createRedisClient(url: string, options: RedisClientOptions): Promise<Redis> {
  const client = new Redis(url, {
    commandTimeout: options.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command that was in flight when the connection dropped has failed its caller by the command
    // timeout; sending it again after the reconnect would run it behind the caller's back.
    autoResendUnfulfilledCommands: false,
    // Reconnect forever, but never wait more than a second between tries: a restarted Redis is back
    // in use quickly (ioredis' default waits up to 5 s).
    retryStrategy: (times) => Math.min(50 * 2 ** times, 1000),
    // Without an offline queue, commands sent before the first connection would fail: connect first.
    lazyConnect: true,
    // The commands of one event-loop turn (a wave of leads at the same gate) go out in one write.
    enableAutoPipelining: true,
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw error;
  }
  return client;
}
