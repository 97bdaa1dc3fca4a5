import { largestWindowMs } from "../infra/calling-law.js";
import { SystemClock } from "../infra/clock.js";
import type { DispatcherConfig } from "../infra/config.js";
import { phoneKey } from "../infra/phone-key.js";
import type { Clock, LeadStore } from "../machines/ports.js";
import type { GateState, GateStateSource } from "../machines/rebuild-ports.js";

/**
 * Redis is a cache of what the lead store knows (design §7.13): after a restart it has forgotten the
 * holds of live calls, the rate-limit records and the cooldown marks, and its gates stay closed until they are written
 * back. This module reads them from the lead store; the gate store (src/infra/redis) decides when a
 * rebuild is needed, makes sure one process runs it, and writes the result.
 */

export interface GateStateSourceDeps {
  store: LeadStore;
  clock: Clock;
  config: DispatcherConfig;
  hmacSecret: string;
  /** The largest window of every rule in force (RuleWindows); the config's rules alone by default. */
  keepMs?: () => number;
  /**
   * The longest cooldown in force and every outcome one follows (RuleWindows): the call ends whose
   * marks are written back (design §7.6). None: no marks.
   */
  cooling?: () => { ms: number; outcomes: string[] };
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
  /** Every rule in force and the margin: the records the gates will count again (design §7.6). */
  const ruleWindowMs = () =>
    (deps.keepMs?.() ?? largestWindowMs(config.rateLimit.rules)) + config.rateLimit.marginMs;
  const leaseMs = config.maxCallMinutes * 60_000 + HOLD_MARGIN_MS;
  /**
   * CLAIM_POLL_MS on the dispatcher's clock or in real time, whichever ends first. Claims move on by
   * their actors' store calls, not by the clock: a virtual clock stands still while a port call (the
   * acquire that waits for this rebuild) is outstanding (design §7.7), and must not stall the read. A
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
    const cooling = deps.cooling?.();
    const rows = await store.gateRebuildRows(now, ruleWindowMs(), cooling);
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
      ends: rows.endedCalls.map((end) => ({
        phoneKey: phoneKey(deps.hmacSecret, end.phone),
        outcome: end.outcome,
        at: end.at,
      })),
      coolMs: cooling?.ms ?? 0,
    };
  };
  return { numberIds, read };
}
