/**
 * A GateStore in front of a real one (a MemoryGateStore by default, or a RedisGateStore) that can fail
 * chosen operations the way a dead Redis does (a command timeout), spy on every call, and pause calls
 * at hooks. It also keeps the ledger the model-based tests check "released exactly once" against:
 * which holds and records really came to exist, and which release/undo really freed them.
 */

import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import type {
  AcquireRequest,
  AcquireResult,
  Clock,
  GateStore,
  RateDecision,
  RateOptions,
  RateRule,
} from "../../src/machines/ports.js";
import { isRebuildable, type RebuildableGateStore } from "../../src/machines/rebuild-ports.js";
import { type GateInspector, memoryInspector } from "./backends.js";

export type GateOp =
  | "peek"
  | "record"
  | "undo"
  | "markEnd"
  | "acquire"
  | "release"
  | "inUse"
  | "reap"
  | "allow";

/**
 * `before`: the command never reached the store. `after`: it ran, and its reply was lost (a timed-out
 * command may still have run, design §7.12).
 */
export type FaultMode = "before" | "after";

export interface Fault {
  mode: FaultMode;
  /** Virtual milliseconds until the error surfaces (the command timeout); 0 = at once. */
  delayMs: number;
}

/** What a timed-out Redis command looks like to the adapter's caller. */
export class StoreTimeoutError extends Error {
  override readonly name = "StoreTimeoutError";
  constructor(readonly op: GateOp) {
    super(`gate store ${op}: command timed out`);
  }
}

export interface GateCall {
  op: GateOp;
  /** The clock reading when the call was made. */
  at: number;
  /** The first argument: phone key (rate limit), number id (channels) or throttle key. */
  subject: string;
  /** Member (record/undo), outcome (markEnd) or holder (acquire/release). */
  name?: string;
  failed: boolean;
}

type Hook = (call: GateCall) => void | Promise<void>;

export class FaultyGateStore implements GateStore {
  /** The real store behind: port calls that pass go there. */
  readonly inner: GateStore;
  /** Reads of the real store's holds and records (for the ledger and the assertions). */
  readonly inspect: GateInspector;
  /** The real store's, when it can forget (Redis): the dispatcher wires its rebuild through here. */
  readonly rebuildFrom?: RebuildableGateStore["rebuildFrom"];
  readonly ensureReady?: RebuildableGateStore["ensureReady"];
  readonly calls: GateCall[] = [];
  /** holder → times a hold for it came into existence. */
  readonly holdsTaken = new Map<string, number>();
  /** holder → times a release really freed it. */
  readonly holdsFreed = new Map<string, number>();
  /** member → times it was really added. */
  readonly recordsAdded = new Map<string, number>();
  /** member → times an undo really removed it. */
  readonly recordsUndone = new Map<string, number>();
  readonly #faults = new Map<GateOp, Fault>();
  readonly #hooks = new Map<GateOp, Hook>();
  readonly #clock: Clock | undefined;

  constructor(options: { inner?: GateStore; inspect?: GateInspector; clock?: Clock } = {}) {
    if (options.inner && !options.inspect)
      throw new TypeError("FaultyGateStore: an inner store needs `inspect`");
    const memory = new MemoryGateStore();
    this.inner = options.inner ?? memory;
    this.inspect = options.inspect ?? memoryInspector(memory);
    this.#clock = options.clock;
    const inner = this.inner;
    if (isRebuildable(inner)) {
      this.rebuildFrom = (source, report) => inner.rebuildFrom(source, report);
      this.ensureReady = () => inner.ensureReady();
    }
  }

  /** From now on `ops` fail until healed. */
  fail(ops: GateOp[], fault: Partial<Fault> = {}): void {
    for (const op of ops) this.#faults.set(op, { mode: fault.mode ?? "before", delayMs: fault.delayMs ?? 0 });
  }

  heal(ops?: GateOp[]): void {
    for (const op of ops ?? [...this.#faults.keys()]) this.#faults.delete(op);
  }

  /** Runs `hook` before every `op` (after it is logged); an async hook pauses the call. */
  before(op: GateOp, hook: Hook | null): void {
    if (hook) this.#hooks.set(op, hook);
    else this.#hooks.delete(op);
  }

  count(op: GateOp, subject?: string): number {
    return this.calls.filter((c) => c.op === op && (subject === undefined || c.subject === subject)).length;
  }

  async peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision> {
    return this.#run({ op: "peek", subject: phoneKey }, () => this.inner.peek(phoneKey, rules, now, options));
  }

  async record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce?: boolean,
    options?: RateOptions,
  ): Promise<RateDecision> {
    return this.#run({ op: "record", subject: phoneKey, name: member }, async () => {
      const had = (await this.inspect.members(phoneKey)).includes(member);
      const decision = await this.inner.record(phoneKey, member, rules, now, enforce, options);
      if (!had && (await this.inspect.members(phoneKey)).includes(member)) bump(this.recordsAdded, member);
      return decision;
    });
  }

  async undo(phoneKey: string, member: string): Promise<boolean> {
    return this.#run({ op: "undo", subject: phoneKey, name: member }, async () => {
      const removed = await this.inner.undo(phoneKey, member);
      if (removed) bump(this.recordsUndone, member);
      return removed;
    });
  }

  async markEnd(phoneKey: string, outcome: string, at: number, keepMs: number): Promise<void> {
    return this.#run({ op: "markEnd", subject: phoneKey, name: outcome }, () =>
      this.inner.markEnd(phoneKey, outcome, at, keepMs),
    );
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    return this.#run({ op: "acquire", subject: req.numberId, name: req.holder }, async () => {
      const had = (await this.inspect.holders(req.numberId, req.now)).includes(req.holder);
      const result = await this.inner.acquire(req);
      if (result.held && !had) bump(this.holdsTaken, req.holder);
      return result;
    });
  }

  async release(numberId: string, holder: string): Promise<boolean> {
    return this.#run({ op: "release", subject: numberId, name: holder }, async () => {
      const freed = await this.inner.release(numberId, holder);
      if (freed) bump(this.holdsFreed, holder);
      return freed;
    });
  }

  async listHolders(numberId: string, now: number): Promise<string[]> {
    return this.inner.listHolders(numberId, now);
  }

  async inUse(numberIds: string[], now: number): Promise<Map<string, number>> {
    return this.#run({ op: "inUse", subject: numberIds.join(",") }, () => this.inner.inUse(numberIds, now));
  }

  async reap(numberId: string, now: number): Promise<string[]> {
    return this.#run({ op: "reap", subject: numberId }, () => this.inner.reap(numberId, now));
  }

  async allow(key: string, windowMs: number, now: number): Promise<boolean> {
    return this.#run({ op: "allow", subject: key }, () => this.inner.allow(key, windowMs, now));
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  async #run<T>(call: Omit<GateCall, "at" | "failed">, command: () => Promise<T>): Promise<T> {
    const entry: GateCall = { ...call, at: this.#clock?.now() ?? 0, failed: false };
    this.calls.push(entry);
    await this.#hooks.get(call.op)?.(entry);
    const fault = this.#faults.get(call.op);
    if (!fault) return command();
    entry.failed = true;
    if (fault.mode === "after") await command();
    await this.#wait(fault.delayMs);
    throw new StoreTimeoutError(call.op);
  }

  #wait(ms: number): Promise<void> {
    const clock = this.#clock;
    if (ms <= 0 || !clock) return Promise.resolve();
    return new Promise((resolve) => clock.setTimer(clock.now() + ms, resolve));
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
