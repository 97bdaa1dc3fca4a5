import type {
  AcquireRequest,
  AcquireResult,
  GateStore,
  RateDecision,
  RateOptions,
  RateRule,
} from "../../machines/ports.js";
import { isRebuildable } from "../../machines/rebuild-ports.js";
import type { Fault } from "./scenario.js";

/** What a gate-store command gets while a `storeDown` fault is active. */
export class StoreDownError extends Error {
  override readonly name = "StoreDownError";
  constructor(readonly command: string) {
    super(`gate store down (simulated fault): ${command} refused`);
  }
}

/**
 * Whether a fault of `kind` covers the instant `now` (epoch ms). Intervals are half-open,
 * [fromSeconds, toSeconds) after `startAt`.
 */
export function faultActive(faults: readonly Fault[], kind: Fault["kind"], startAt: number) {
  const intervals = faults
    .filter((f) => f.kind === kind)
    .map((f) => [startAt + f.fromSeconds * 1000, startAt + f.toSeconds * 1000] as const);
  return (now: number): boolean => intervals.some(([from, to]) => now >= from && now < to);
}

/**
 * `inner` behind a FaultInjectingGateStore. A store that can forget (Redis, design §7.13) keeps its
 * `rebuildFrom` and `ensureReady`, so the dispatcher still wires the rebuild through the wrapper and
 * rebuilds a fresh Redis at start, before the clock runs, rather than inside the first acquires.
 */
export function injectStoreFaults(inner: GateStore, isDown: () => boolean): GateStore {
  const wrapper = new FaultInjectingGateStore(inner, isDown);
  return isRebuildable(inner)
    ? Object.assign(wrapper, {
        rebuildFrom: inner.rebuildFrom.bind(inner),
        ensureReady: inner.ensureReady.bind(inner),
      })
    : wrapper;
}

/**
 * A gate store that refuses every command at once while `isDown()` says so: the fault is injected at
 * the port, so the memory and the Redis backend see the same outage.
 */
export class FaultInjectingGateStore implements GateStore {
  readonly #inner: GateStore;
  readonly #isDown: () => boolean;

  constructor(inner: GateStore, isDown: () => boolean) {
    this.#inner = inner;
    this.#isDown = isDown;
  }

  peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision> {
    return this.#guard("peek", () => this.#inner.peek(phoneKey, rules, now, options));
  }

  record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce?: boolean,
    options?: RateOptions,
  ): Promise<RateDecision> {
    return this.#guard("record", () => this.#inner.record(phoneKey, member, rules, now, enforce, options));
  }

  undo(phoneKey: string, member: string): Promise<boolean> {
    return this.#guard("undo", () => this.#inner.undo(phoneKey, member));
  }

  markEnd(phoneKey: string, outcome: string, at: number, keepMs: number): Promise<void> {
    return this.#guard("markEnd", () => this.#inner.markEnd(phoneKey, outcome, at, keepMs));
  }

  acquire(req: AcquireRequest): Promise<AcquireResult> {
    return this.#guard("acquire", () => this.#inner.acquire(req));
  }

  release(numberId: string, holder: string): Promise<boolean> {
    return this.#guard("release", () => this.#inner.release(numberId, holder));
  }

  listHolders(numberId: string, now: number): Promise<string[]> {
    return this.#guard("listHolders", () => this.#inner.listHolders(numberId, now));
  }

  inUse(numberIds: string[], now: number): Promise<Map<string, number>> {
    return this.#guard("inUse", () => this.#inner.inUse(numberIds, now));
  }

  reap(numberId: string, now: number): Promise<string[]> {
    return this.#guard("reap", () => this.#inner.reap(numberId, now));
  }

  allow(key: string, windowMs: number, now: number): Promise<boolean> {
    return this.#guard("allow", () => this.#inner.allow(key, windowMs, now));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #guard<T>(command: string, run: () => Promise<T>): Promise<T> {
    return this.#isDown() ? Promise.reject(new StoreDownError(command)) : run();
  }
}
