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
  finished: Record<string, number>;
  gates: { peek: number; record: number; recordRejected: number; channelExhausted: number; failOpen: number };
  alerts: number;
}

/** Anything that can report the counters (the Dispatcher does). */
export interface StatsSource {
  stats(): DispatcherStats;
}
