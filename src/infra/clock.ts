import type { Clock, Timer } from "../machines/ports.js";

/** Wall-clock time; the one place in src/ that reads it. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimer(at: number, fn: () => void): Timer {
    return wallTimer(at, () => this.now(), 1, fn, true);
  }
}

/**
 * Wall-clock time running `scale` times faster from `start`: the demo plays an hour-long campaign
 * with realistic call lengths and rate windows in under a minute.
 */
export class ScaledClock implements Clock {
  readonly #realStart = Date.now();
  constructor(
    readonly start: number,
    readonly scale: number,
  ) {}

  now(): number {
    return this.start + Math.round((Date.now() - this.#realStart) * this.scale);
  }

  setTimer(at: number, fn: () => void): Timer {
    return wallTimer(at, () => this.now(), this.scale, fn, false);
  }
}

/**
 * A local clock offset-synchronised to a server's clock (Redis `TIME`, design §7.7), so that processes
 * whose clocks disagree still put one time into the scripts and statements that compare them: scores
 * of the rate windows, channel and claim leases, dial times. `sync()` measures the offset over one
 * round trip (its error is at most half of that round trip); a failed sync keeps the last offset, so
 * a process whose server is away goes on with the time it last agreed on.
 */
export class SyncedClock implements Clock {
  #offsetMs = 0;
  #syncedAt: number | null = null;

  constructor(
    readonly local: Clock,
    readonly serverTime: () => Promise<number>,
  ) {}

  /** Server time minus local time, as last measured (0 before the first sync). */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  /** When the last sync succeeded (this clock's time), or null. */
  get syncedAt(): number | null {
    return this.#syncedAt;
  }

  now(): number {
    return this.local.now() + this.#offsetMs;
  }

  /** Fires once `now() >= at`, re-armed when a sync moved the offset meanwhile. */
  setTimer(at: number, fn: () => void): Timer {
    let timer: Timer;
    let cancelled = false;
    const arm = () => {
      timer = this.local.setTimer(at - this.#offsetMs, () => {
        if (cancelled) return;
        if (this.now() >= at) fn();
        else arm();
      });
    };
    arm();
    return {
      cancel: () => {
        cancelled = true;
        timer.cancel();
      },
    };
  }

  /** Measures the offset; rejects (keeping the last one) when the server does not answer. */
  async sync(): Promise<number> {
    const sent = this.local.now();
    const server = await this.serverTime();
    const received = this.local.now();
    // The server read its clock somewhere in the round trip: assume the middle.
    this.#offsetMs = Math.round(server - (sent + received) / 2);
    this.#syncedAt = this.now();
    return this.#offsetMs;
  }
}

/** setTimeout caps its delay at 2^31 − 1 ms. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Runs `fn` once `now() >= at`, never before: a timer that wakes early (rounding, a scaled clock)
 * sleeps again, so a deadline checked against `now()` in `fn` has really passed.
 */
function wallTimer(at: number, now: () => number, scale: number, fn: () => void, unref: boolean): Timer {
  let handle: NodeJS.Timeout | undefined;
  const sleep = (wait: number) => {
    handle = setTimeout(wake, Math.min(MAX_DELAY_MS, Math.ceil(wait / scale)));
    if (unref) handle.unref();
  };
  const wake = () => {
    const wait = at - now();
    if (wait > 0) sleep(wait);
    else fn();
  };
  sleep(Math.max(0, at - now()));
  return { cancel: () => clearTimeout(handle) };
}

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Time that moves only when told to: the simulator and the tests advance it when no port call is
 * outstanding, so a day of traffic runs in seconds and every run with one seed is the same.
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Pending[] = [];

  constructor(start: number) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(at: number, fn: () => void): Timer {
    const timer: Pending = { at: Math.max(at, this.#now), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** When the next live timer fires, or null. */
  nextAt(): number | null {
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    let next: number | null = null;
    for (const t of this.#timers) if (next === null || t.at < next) next = t.at;
    return next;
  }

  /** Moves to `at` (never backwards) and fires every timer due by then, in time order. */
  advanceTo(at: number): void {
    this.#now = Math.max(this.#now, at);
    const due = this.#timers
      .filter((t) => !t.cancelled && t.at <= this.#now)
      .sort((a, b) => a.at - b.at || a.seq - b.seq);
    this.#timers = this.#timers.filter((t) => !due.includes(t));
    for (const t of due) if (!t.cancelled) t.fn();
  }
}

/**
 * Lets every promise chain that can run, run: on the in-memory backend all port calls finish in
 * microtasks, so after this nothing is in flight and the virtual clock may move.
 */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Drives a virtual clock: settle, then jump to the next timer, until none is left before `until`
 * or `isDone()` says so. `settleFn` waits for outstanding port calls (real backends need more than
 * a few event-loop turns).
 */
export async function runVirtual(
  clock: VirtualClock,
  options: { until: number; isDone?: () => boolean; settleFn?: () => Promise<void>; onStep?: () => void },
): Promise<void> {
  const wait = options.settleFn ?? (() => settle());
  for (;;) {
    await wait();
    if (options.isDone?.()) return;
    const next = clock.nextAt();
    if (next === null || next > options.until) return;
    clock.advanceTo(next);
    options.onStep?.();
  }
}
