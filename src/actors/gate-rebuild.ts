import { SystemClock } from "../infra/clock.js";
import type { DispatcherConfig } from "../infra/config.js";
import { phoneKey } from "../infra/phone-key.js";
import type { Clock, GateStore, LeadStore } from "../machines/ports.js";
import { largestWindowMs } from "./rule-windows.js";

/**
 * Redis is a cache of what the lead store knows (spec §7.13): after a restart it has forgotten the
 * holds of live calls and the rate-limit records, and its gates stay closed until they are written
 * back. This module reads them from the lead store; the gate store (src/infra/redis) decides when a
 * rebuild is needed, makes sure one process runs it, and writes the result.
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
  | { kind: "rebuilt"; numbers: number; holds: number; records: number; tookMs: number }
  | { kind: "failed"; error: unknown };

/** A gate store that can forget (Redis, spec §7.13). The memory store never does: it is always ready. */
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

export interface GateStateSourceDeps {
  store: LeadStore;
  clock: Clock;
  config: DispatcherConfig;
  hmacSecret: string;
  /** The largest window of every rule in force (RuleWindows); the config's rules alone by default. */
  keepMs?: () => number;
}

/** Same as the margin of a hold taken at the channel gate (src/actors/gates.ts). */
const HOLD_MARGIN_MS = 10 * 60_000;
/** How often the read looks again whether the claims it waits for have moved on. */
const CLAIM_POLL_MS = 50;
const realTime = new SystemClock();

/**
 * The gate state as the lead store knows it.
 *
 * A claim that took its line before Redis forgot it, and writes its dial row only after the dial rows
 * were read, would dial on a line nobody restored. So the read first waits until every lead CLAIMED
 * when it started has moved on (to DIALING, where its dial row shows, or back to the schedule), or its
 * claim lease has run out (its owner is gone). Claims made after that start cannot hold a forgotten
 * line: the channel gate of a forgotten number refuses until the rebuild is done. The wait is short:
 * with the gates closed, claims fail at the channel gate and defer.
 */
export function createGateStateSource(deps: GateStateSourceDeps): GateStateSource {
  const { store, clock, config } = deps;
  /** Every rule in force and the margin: the records the gates will count again (spec §7.6). */
  const ruleWindowMs = () =>
    (deps.keepMs?.() ?? largestWindowMs(config.rateLimit.rules)) + config.rateLimit.marginMs;
  const leaseMs = config.maxCallMinutes * 60_000 + HOLD_MARGIN_MS;
  /**
   * CLAIM_POLL_MS on the dispatcher's clock or in real time, whichever ends first. Claims move on by
   * their actors' store calls, not by the clock: a virtual clock stands still while a port call (the
   * acquire that waits for this rebuild) is outstanding (spec §7.7), and must not stall the read. A
   * lease still runs out on the dispatcher's clock.
   */
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timers = [clock, realTime].map((c) =>
        c.setTimer(c.now() + ms, () => {
          for (const timer of timers) timer.cancel();
          resolve();
        }),
      );
    });

  const numberIds = async () => (await store.gateRebuildRows(clock.now(), null)).numberIds;

  const read = async (isAcquiring: (token: string) => boolean): Promise<GateState> => {
    let waiting = (await store.gateRebuildRows(clock.now(), null)).claims;
    for (;;) {
      waiting = waiting.filter((claim) => !isAcquiring(claim.token));
      if (waiting.length === 0) break;
      await sleep(CLAIM_POLL_MS);
      const now = clock.now();
      const current = new Map(
        (await store.gateRebuildRows(now, null)).claims.map((c) => [c.token, c.leaseUntil]),
      );
      waiting = waiting.filter((claim) => (current.get(claim.token) ?? 0) > now);
    }

    const now = clock.now();
    const rows = await store.gateRebuildRows(now, ruleWindowMs());
    return {
      now,
      numberIds: rows.numberIds,
      holds: rows.liveDials.map((dial) => ({
        numberId: dial.numberId,
        holder: dial.token,
        leaseUntil: dial.at + leaseMs,
      })),
      records: rows.countedDials.map((dial) => ({
        phoneKey: phoneKey(deps.hmacSecret, dial.phone),
        member: dial.token,
        at: dial.at,
      })),
      windowMs: rows.windowMs,
    };
  };
  return { numberIds, read };
}
