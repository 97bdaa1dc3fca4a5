import type {
  AcquireRequest,
  AcquireResult,
  CooldownRule,
  GateStore,
  RateDecision,
  RateOptions,
  RateRule,
} from "../../machines/ports.js";

interface Hold {
  holder: string;
  leaseUntil: number;
}

const PACING_WINDOW_MS = 1000;

/**
 * Rate limits, cooldown marks, channel holds and alert throttle in one process: the embedded default.
 * Same semantics as the Lua scripts in lua/ (the contract suite runs both).
 */
export class MemoryGateStore implements GateStore {
  /** phoneKey → records (member, at) ordered by time. */
  #records = new Map<string, { member: string; at: number }[]>();
  /** phoneKey → outcome → the latest end of a call so, and until when it is kept (design §7.6). */
  #marks = new Map<string, Map<string, { at: number; keepUntil: number }>>();
  /** numberId → holds. */
  #holds = new Map<string, Hold[]>();
  /** numberId → waiter → counted until. */
  #waiters = new Map<string, Map<string, number>>();
  /** throttle key → allowed again at. */
  #throttle = new Map<string, number>();
  /** provider account → pacing tokens taken (ms), oldest first. */
  #pacing = new Map<string, number[]>();
  /** replay key → refused until. */
  #replays = new Map<string, number>();

  async peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision> {
    const decision = decide(this.#trim(phoneKey, rules, now, options), rules, now, options?.marginMs);
    return this.#cool(decision, phoneKey, now, options?.cooldowns);
  }

  async record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce = true,
    options?: RateOptions,
  ): Promise<RateDecision> {
    const records = this.#trim(phoneKey, rules, now, options);
    const decision = this.#cool(
      decide(records, rules, now, options?.marginMs),
      phoneKey,
      now,
      options?.cooldowns,
    );
    // A retried record that had already run is the same record: allowed, counted once.
    if (records.some((r) => r.member === member)) return { allowed: true, counts: decision.counts };
    if (decision.allowed || !enforce) {
      records.push({ member, at: now });
      records.sort((a, b) => a.at - b.at);
    }
    return decision;
  }

  async undo(phoneKey: string, member: string): Promise<boolean> {
    const records = this.#records.get(phoneKey);
    const index = records?.findIndex((r) => r.member === member) ?? -1;
    if (!records || index < 0) return false;
    records.splice(index, 1);
    return true;
  }

  async markEnd(phoneKey: string, outcome: string, at: number, keepMs: number): Promise<void> {
    const marks = this.#marks.get(phoneKey) ?? new Map<string, { at: number; keepUntil: number }>();
    this.#marks.set(phoneKey, marks);
    const mark = marks.get(outcome);
    const keepUntil = Math.max(mark?.keepUntil ?? 0, at + keepMs);
    marks.set(outcome, { at: Math.max(mark?.at ?? at, at), keepUntil });
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const holds = this.#liveHolds(req.numberId, req.now);
    const waiters = this.#waiters.get(req.numberId) ?? new Map<string, number>();
    this.#waiters.set(req.numberId, waiters);
    const mine = holds.find((h) => h.holder === req.holder);
    if (mine) {
      mine.leaseUntil = Math.max(mine.leaseUntil, req.leaseUntil);
      return { held: true };
    }
    if (holds.length < req.maxChannels) {
      holds.push({ holder: req.holder, leaseUntil: req.leaseUntil });
      waiters.delete(req.waiter);
      return { held: true };
    }
    waiters.set(req.waiter, req.now + req.waiterTtlMs);
    for (const [waiter, until] of waiters) if (until <= req.now) waiters.delete(waiter);
    return { held: false, waiters: waiters.size };
  }

  async release(numberId: string, holder: string): Promise<boolean> {
    const holds = this.#holds.get(numberId) ?? [];
    const index = holds.findIndex((h) => h.holder === holder);
    if (index < 0) return false;
    holds.splice(index, 1);
    return true;
  }

  async listHolders(numberId: string, now: number): Promise<string[]> {
    return (this.#holds.get(numberId) ?? []).filter((h) => h.leaseUntil > now).map((h) => h.holder);
  }

  async inUse(numberIds: string[], now: number): Promise<Map<string, number>> {
    const live = (id: string) => (this.#holds.get(id) ?? []).filter((h) => h.leaseUntil > now).length;
    return new Map(numberIds.map((id) => [id, live(id)]));
  }

  async reap(numberId: string, now: number): Promise<string[]> {
    const holds = this.#holds.get(numberId) ?? [];
    const expired = holds.filter((h) => h.leaseUntil <= now).map((h) => h.holder);
    this.#liveHolds(numberId, now);
    return expired;
  }

  async allow(key: string, windowMs: number, now: number): Promise<boolean> {
    const until = this.#throttle.get(key);
    if (until !== undefined && now < until) return false;
    this.#throttle.set(key, now + windowMs);
    return true;
  }

  /** PacingStore (PacedProvider): as lua/provider-pacing-1.lua, in one process. */
  async takePacingToken(
    account: string,
    callsPerSecond: number,
    now: number,
    _member: string,
  ): Promise<number> {
    const taken = (this.#pacing.get(account) ?? []).filter((at) => now < at + PACING_WINDOW_MS);
    this.#pacing.set(account, taken);
    if (taken.length < callsPerSecond) {
      taken.push(now);
      return 0;
    }
    const freeing = taken[taken.length - callsPerSecond] ?? now;
    return Math.max(1, Math.ceil(freeing + PACING_WINDOW_MS - now));
  }

  /** ReplayStore (callback handler): the alert throttle's rule, in its own space. */
  async claimOnce(key: string, windowMs: number, now: number): Promise<boolean> {
    for (const [old, until] of this.#replays) if (until <= now) this.#replays.delete(old);
    const until = this.#replays.get(key);
    if (until !== undefined && now < until) return false;
    this.#replays.set(key, now + windowMs);
    return true;
  }

  async forget(key: string): Promise<void> {
    this.#replays.delete(key);
  }

  async close(): Promise<void> {}

  /** Holders of a number right now (tests and invariants). */
  holders(numberId: string, now: number): string[] {
    return this.#liveHolds(numberId, now).map((h) => h.holder);
  }

  /** Members recorded for a phone key (tests). */
  members(phoneKey: string): string[] {
    return (this.#records.get(phoneKey) ?? []).map((r) => r.member);
  }

  /** `decision` with the phone's cooldowns folded in; marks past their keep are dropped (lazily). */
  #cool(
    decision: RateDecision,
    phoneKey: string,
    now: number,
    cooldowns: readonly CooldownRule[] = [],
  ): RateDecision {
    const marks = cooldowns.length > 0 ? this.#marks.get(phoneKey) : undefined;
    if (!marks) return decision;
    for (const [outcome, mark] of marks) if (mark.keepUntil <= now) marks.delete(outcome);
    if (marks.size === 0) this.#marks.delete(phoneKey);
    const ends = new Map([...marks].map(([outcome, mark]) => [outcome, mark.at]));
    return cooledDecision(decision, ends, cooldowns, now);
  }

  #liveHolds(numberId: string, now: number): Hold[] {
    const live = (this.#holds.get(numberId) ?? []).filter((h) => h.leaseUntil > now);
    this.#holds.set(numberId, live);
    return live;
  }

  /**
   * Drops records older than the largest window, or `keepMs` when longer (never below it: each rule
   * counts its own window, and other templates' rules count the same records), plus the margin.
   */
  #trim(phoneKey: string, rules: RateRule[], now: number, options: RateOptions = {}) {
    const largest = keptForMs(rules, options);
    const kept = (this.#records.get(phoneKey) ?? []).filter((r) => now < r.at + largest);
    this.#records.set(phoneKey, kept);
    return kept;
  }
}

/** How long a phone's records must stay: the largest window of `rules` or `keepMs`, plus the margin. */
export function keptForMs(rules: RateRule[], options: RateOptions = {}): number {
  const largest = Math.max(options.keepMs ?? 0, ...rules.map((r) => r.windowSeconds * 1000));
  return largest + (options.marginMs ?? 0);
}

/**
 * Counts each rule over its own half-open window (a record at t counts while now < t + W + margin).
 * For each rule at its max, room returns at the (count − max + 1)-th oldest record + W; the
 * decision waits for the latest of those (design §7.5).
 */
export function decide(
  records: { at: number }[],
  rules: RateRule[],
  now: number,
  marginMs = 0,
): RateDecision {
  const counts: number[] = [];
  let retryAt = -1;
  for (const rule of rules) {
    const windowMs = rule.windowSeconds * 1000 + marginMs;
    const inWindow = records.filter((r) => now < r.at + windowMs);
    counts.push(inWindow.length);
    if (inWindow.length >= rule.maxCalls) {
      const freeing = inWindow[inWindow.length - rule.maxCalls];
      retryAt = Math.max(retryAt, (freeing?.at ?? now) + windowMs);
    }
  }
  return retryAt < 0 ? { allowed: true, counts } : { allowed: false, counts, retryAt };
}

/**
 * `decision` with cooldowns folded in (design §7.6): blocked while, for some cooldown and one of its
 * outcomes, the latest end with it (`ends`) is less than the cooldown's seconds ago; then until the
 * latest such instant, or the rules' retryAt when that is later. The counts stay the rules'.
 */
export function cooledDecision(
  decision: RateDecision,
  ends: ReadonlyMap<string, number>,
  cooldowns: readonly CooldownRule[],
  now: number,
): RateDecision {
  let retryAt = decision.allowed ? -1 : decision.retryAt;
  for (const cooldown of cooldowns) {
    for (const outcome of cooldown.afterOutcomes) {
      const end = ends.get(outcome);
      if (end !== undefined && now < end + cooldown.seconds * 1000)
        retryAt = Math.max(retryAt, end + cooldown.seconds * 1000);
    }
  }
  return retryAt < 0 ? decision : { allowed: false, counts: decision.counts, retryAt };
}
