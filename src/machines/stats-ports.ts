/**
 * What the dispatcher counts, read by adapters that export it (src/infra/metrics.ts) through
 * `StatsSource`, so that no adapter depends on the Dispatcher class.
 */

export interface DispatcherStats {
  inFlight: number;
  outbox: number;
  claimed: number;
  dials: number;
  placed: number;
  heldUnknown: number;
  deferred: Record<string, number>;
  /** Leads parked for a line right now, in this lead store (as last read: after each park and wake). */
  waiting: number;
  finished: Record<string, number>;
  gates: { peek: number; record: number; recordRejected: number; channelExhausted: number; failOpen: number };
  alerts: number;
  /**
   * The clock's offset to the gate store's clock (ms, server minus local), and when it was last
   * measured (null: never, or no sync on this clock).
   */
  clock: { offsetMs: number; syncedAt: number | null };
}

/** Anything that can report the counters (the Dispatcher does). */
export interface StatsSource {
  stats(): DispatcherStats;
}
