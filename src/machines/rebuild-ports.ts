import type { GateStore } from "./ports.js";

/**
 * The port between a gate store that can forget (Redis) and the lead store it is rebuilt from
 * (design §7.13). Shared by the Redis adapter and the rebuild actor, so it lives beside the machine.
 */

/** What a gate store that forgot its data writes back. */
export interface GateState {
  /** The clock reading of the snapshot: holds whose lease ends at or before it are not restored. */
  now: number;
  /** Every number to mark ready again. */
  numberIds: string[];
  /** The lines of live calls (DIALING, PROCESSING). */
  holds: { numberId: string; holder: string; leaseUntil: number }[];
  /** The rate-limit records of the largest window. */
  records: { phoneKey: string; member: string; at: number }[];
  /** That largest window (ms): how long the records must be kept. */
  windowMs: number;
  /** Ends with an outcome some cooldown follows (design §7.6): per phone and outcome, the latest counts. */
  ends: { phoneKey: string; outcome: string; at: number }[];
  /** The longest cooldown in force (ms): how long the marks must be kept. */
  coolMs: number;
}

/** Where a gate store that forgot its data reads it back from: the lead store. */
export interface GateStateSource {
  /** Every number the lead store knows (a cheap read: to see whether any lacks its epoch key). */
  numberIds(): Promise<string[]>;
  /**
   * The whole state. `isAcquiring(token)`: the gate store's own acquire for that claim is running
   * right now, so the claim holds no line yet and the read need not wait for it.
   */
  read(isAcquiring: (token: string) => boolean): Promise<GateState>;
}

export type RebuildReport =
  | { kind: "rebuilt"; numbers: number; holds: number; records: number; marks: number; tookMs: number }
  | { kind: "failed"; error: unknown };

/** A gate store that can forget (Redis, design §7.13). The memory store never does: it is always ready. */
export interface RebuildableGateStore extends GateStore {
  /** From now on a forgotten number is rebuilt from `source` before its channel gate opens. */
  rebuildFrom(source: GateStateSource, report?: (report: RebuildReport) => void): void;
  /**
   * Rebuilds now, and waits for it, when a number of the lead store lacks its epoch key (a fresh or
   * restarted Redis, a new number), so that the first acquires need not wait or fail closed.
   * Returns at once when another process holds the rebuild lock.
   */
  ensureReady(): Promise<void>;
}

export function isRebuildable(store: GateStore): store is RebuildableGateStore {
  const candidate = store as Partial<RebuildableGateStore>;
  return typeof candidate.rebuildFrom === "function" && typeof candidate.ensureReady === "function";
}
