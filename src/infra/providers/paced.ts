import type { Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";

/**
 * Where pacing tokens are taken: the gate stores implement it (MemoryGateStore in one process,
 * RedisGateStore for every process on that Redis, lua/provider-pacing-1.lua).
 */
export interface PacingStore {
  /** 0 when a token of `account` was taken at `now`, else the ms until one is free. */
  takePacingToken(account: string, callsPerSecond: number, now: number, member: string): Promise<number>;
}

export interface PacingOptions {
  /** The provider account the tokens belong to (shared by every process dialling through it). */
  account: string;
  callsPerSecond: number;
  /** Longest wait for a token; past it the dial is not sent and the lead defers (`throttled`). */
  maxWaitMs: number;
  store: PacingStore;
  clock: Clock;
  /** Told when the store failed and the dial went ahead unpaced. */
  onStoreError?: (error: unknown) => void;
}

/**
 * A provider account's calls-per-second limit (design §7.19) in front of its adapter: each dial takes a
 * pacing token first, waiting for one a short bounded time. A dial that gets none in time is never
 * sent and comes back `throttled` with `pacing: true`: the lead defers without it counting as a
 * provider refusal. A store that fails lets the dial through: the provider's own 429 is the backstop.
 */
export class PacedProvider implements Provider {
  readonly name: string;
  readonly #inner: Provider;
  readonly #o: PacingOptions;

  constructor(inner: Provider, options: PacingOptions) {
    if (!Number.isInteger(options.callsPerSecond) || options.callsPerSecond < 1)
      throw new RangeError(`callsPerSecond must be an integer ≥ 1, got ${options.callsPerSecond}`);
    this.#inner = inner;
    this.#o = options;
    this.name = inner.name;
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    const { clock, store, account, callsPerSecond, maxWaitMs } = this.#o;
    const deadline = clock.now() + maxWaitMs;
    for (let attempt = 0; ; attempt++) {
      if (req.signal.aborted) return { kind: "notPlaced", reason: `${this.name}: aborted while pacing` };
      let waitMs: number;
      try {
        waitMs = await store.takePacingToken(
          account,
          callsPerSecond,
          clock.now(),
          `${req.dialRef}#${attempt}`,
        );
      } catch (error) {
        this.#o.onStoreError?.(error);
        waitMs = 0;
      }
      if (waitMs <= 0) return this.#inner.makeCall(req);
      if (clock.now() + waitMs > deadline) {
        return {
          kind: "throttled",
          retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
          reason: `${this.name}: no pacing token within ${maxWaitMs} ms (${callsPerSecond}/s)`,
          pacing: true,
        };
      }
      await pause(clock, waitMs, req.signal);
    }
  }
}

/** Resolves after `ms` on the clock, or at once when `signal` aborts. */
function pause(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      timer.cancel();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = clock.setTimer(clock.now() + ms, done);
    signal.addEventListener("abort", done, { once: true });
  });
}
