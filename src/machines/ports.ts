/**
 * Ports: the outside world as the lead machine and the supervisor see it.
 * Adapters live in src/infra (memory, redis, postgres, providers, alerts). Every time-dependent
 * decision takes the caller's `now` (epoch ms) so that a virtual clock can drive real adapters.
 */

// ---------------------------------------------------------------------------------------------
// Domain

/** Lifecycle of a lead row (design §7.3). */
export type LeadStatus = "SCHEDULED" | "CLAIMED" | "DIALING" | "PROCESSING" | "FINISHED";

/** Outcomes written by the dispatcher itself; call outcomes are free-form template words. */
export type DispatcherOutcome =
  | "NO_CONFIG"
  | "INVALID_PHONE"
  | "BLACKLISTED"
  | "NUMBER_UNAVAILABLE"
  | "PROVIDER_REJECTED"
  | "PRECHECK_FAILED"
  | "CANCELLED"
  | "EXPIRED"
  | "UNKNOWN";

/** Why a lead went back to the schedule (the `lead:deferred` reasons of one dispatch attempt). */
export type DeferReason =
  | "window"
  | "precheck"
  | "rateLimit"
  | "channel"
  | "notPlaced"
  | "throttled"
  | "store"
  | "shutdown";

export interface RateRule {
  maxCalls: number;
  windowSeconds: number;
  /**
   * What a dial does when the gate store cannot count this rule (design §7.6): `open` (the default)
   * dials and records later; `closed` defers the lead (a legal cap may prefer a missed call).
   */
  failMode?: "open" | "closed";
}

export type Weekday = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";

/** Hours of a window, without its zone (a regional override is judged in the callee's zones). */
export interface WindowHours {
  /** "HH:MM", inclusive. */
  start: string;
  /** "HH:MM", exclusive; end < start wraps past midnight. */
  end: string;
  /** Local weekdays on which the window opens (a wrapping window belongs to the day it opens); all when unset. */
  days?: Weekday[];
  /** Local dates ("YYYY-MM-DD", holidays) on which it does not open. */
  excludeDates?: string[];
}

export interface CallingWindow extends WindowHours {
  /** The zone used when neither the lead nor its number gives the callee's (design §7.8). */
  timeZone: string;
}

/**
 * After a call that ended with one of `afterOutcomes`, the phone takes no call from any template
 * with this same rule for `seconds` (design §7.6). Enforced in the atomic record step.
 */
export interface CooldownRule {
  seconds: number;
  afterOutcomes: string[];
  failMode?: "open" | "closed";
}

/** Which callees a regional override applies to; every given field must match. */
export interface RegionMatch {
  /** ISO 3166 country of the callee's number ("US"). */
  country?: string;
  /** NANP state or province postal code ("FL"). */
  region?: string;
  /** NANP area codes ("305"). */
  areaCodes?: string[];
}

/** Narrows a template for the callees it matches: a window that must also be open, rules added. */
export interface RegionalRule {
  match: RegionMatch;
  window?: WindowHours;
  rateLimitRules?: RateRule[];
  cooldowns?: CooldownRule[];
}

/** Where the zones a lead's windows are judged in came from (design §7.8). */
export type ZoneSource = "lead" | "number" | "template" | "none";

/** How near a local-presence pick is to the callee: same area code, region, country, or none of those. */
export type CallerIdMatch = "areaCode" | "region" | "country" | "pool";

/** Named sets of rules a template can take instead of writing them by hand (design §7.8). */
export type PresetName = "tcpa" | "florida" | "regF" | "trai";

export interface RetryPolicy {
  /** Placed calls at most, the first included. */
  maxAttempts: number;
  onOutcomes: string[];
  delaySeconds: number;
}

export interface Template {
  id: string;
  resellerId: string;
  /** Pinned outbound number; when unset the provider's shared pool is used. */
  numberId?: string;
  /** Provider of the pool; any provider when unset. */
  provider?: string;
  window?: CallingWindow;
  retry?: RetryPolicy;
  /** Replaces the dispatcher's rate-limit rules for this template. */
  rateLimitRules?: RateRule[];
  /** Cooldowns after chosen outcomes, beside the rate-limit rules. */
  cooldowns?: CooldownRule[];
  /** Overrides for callees in a country, state or area code; they narrow, never widen. */
  regions?: RegionalRule[];
  /** Calling-law presets, added to the template's own window and rules (each only narrows). */
  presets?: PresetName[];
  /** `local`: prefer pool numbers near the callee (area code, then region, then country). Default `pool`. */
  callerId?: "pool" | "local";
}

export type NumberStatus = "AVAILABLE" | "DISABLED";

export interface OutboundNumber {
  id: string;
  e164: string;
  provider: string;
  maxChannels: number;
  status: NumberStatus;
  /** Part of the shared pool of its provider. */
  pool: boolean;
}

/** What a caller submits. */
export interface LeadInput {
  id: string;
  phone: string;
  templateId: string;
  /** Epoch ms; defaults to now. */
  dueAt?: number;
  /** Epoch ms; a lead not dialled by then ends EXPIRED. */
  expiresAt?: number;
  /** IANA zone of the callee; overrides the template window's zone. */
  timeZone?: string;
  payload?: Record<string, unknown>;
}

/** The last dial of a lead (one dial-attempt row per makeCall in the durable store). */
export interface DialInfo {
  dialRef: string;
  numberId: string;
  at: number;
  callId: string | null;
  /** Sent, but no usable reply: held like a placed call until reconciled. */
  unknown: boolean;
  /** Whether the rate-limit member (the claim token) was recorded. */
  recorded: boolean;
}

export interface LeadRecord {
  id: string;
  phone: string;
  templateId: string;
  status: LeadStatus;
  outcome: string | null;
  /** Retry counter: placed calls that ended and were retried (design §7.2). */
  attempt: number;
  /** Consecutive notPlaced results. */
  notPlacedStreak: number;
  claimSeq: number;
  /** `leadId:claimSeq` of the current (or last) claim: names the hold, the rate-limit member, the dialRef. */
  token: string | null;
  owner: string | null;
  leaseUntil: number | null;
  /** When the lead may be claimed again (defers move it). */
  nextAttemptAt: number;
  /** When the current attempt became due (submit or retry); claims take the oldest first, so a lead
   *  that waited for a line keeps its place in line. */
  dueAt: number;
  expiresAt: number | null;
  timeZone: string | null;
  cancelRequested: boolean;
  dial: DialInfo | null;
  payload: Record<string, unknown>;
  /**
   * Why a SCHEDULED lead waits: the reason of the defer that parked it. Null for a new lead, once it
   * is claimed, and for a retry. A template whose window changes wakes the leads parked for `window`.
   */
  deferReason: DeferReason | null;
  /** Pre-dial check defers since the checks last let the lead proceed (capped by preDialCheck.maxDefers). */
  precheckDefers: number;
  /**
   * Parked: the candidate set (number ids, sorted) whose every line was busy. A parked lead holds
   * nothing and is not claimed until a line of the set comes free and wakes it (or it expires). Null
   * when it is not waiting for a line.
   */
  parkedOn: string[] | null;
  /**
   * When the lead first parked in this wait for a line: its place in the set's line, kept while it is
   * woken and parks again, cleared by any other defer and by its dial.
   */
  parkedAt: number | null;
  /** Whether the phone is on the block list, read with the claim; absent on other reads. */
  blocked?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Lead store (durable source of truth: Postgres, or memory)

/** How an actor (or an end signal) leaves a lead. Each kind is a compare-and-set on the token. */
export type Settlement =
  /**
   * CLAIMED|DIALING → SCHEDULED at `at`, parked for `deferReason` (null when not given).
   * `notPlacedStreak` / `precheckDefers` are written when given and kept otherwise. With `parkOn` the
   * lead is parked on that candidate set (deferReason "channel"; `at` is then ignored).
   */
  | {
      kind: "defer";
      at: number;
      parkOn?: string[];
      deferReason?: DeferReason;
      notPlacedStreak?: number;
      precheckDefers?: number;
      dialResult?: string;
    }
  /** CLAIMED|DIALING → FINISHED. */
  | { kind: "finish"; outcome: string; dialResult?: string }
  /** DIALING → PROCESSING with the provider's call id. */
  | { kind: "placed"; callId: string }
  /** DIALING → PROCESSING, unknown. */
  | { kind: "unknown" }
  /** PROCESSING → FINISHED (outcome), or SCHEDULED at `retryAt` with attempt + 1. */
  | { kind: "ended"; outcome: string; retryAt?: number }
  /** PROCESSING(unknown) → SCHEDULED at `at` (FINISHED CANCELLED when a cancel was requested). */
  | { kind: "unknownExpired"; at: number };

/** Statuses each settlement may start from; every settle is also a compare-and-set on the token. */
export const SETTLES_FROM: Readonly<Record<Settlement["kind"], readonly LeadStatus[]>> = {
  defer: ["CLAIMED", "DIALING"],
  finish: ["CLAIMED", "DIALING"],
  placed: ["DIALING"],
  unknown: ["DIALING"],
  ended: ["PROCESSING"],
  unknownExpired: ["PROCESSING"],
};

/** Where a settlement left the lead. */
export interface Settled {
  status: LeadStatus;
  outcome: string | null;
}

export interface DialRow {
  dialRef: string;
  numberId: string;
  at: number;
  recorded: boolean;
}

/**
 * What a gate store that lost its data (a Redis restart) must be told again, as the lead store knows
 * it (design §7.13).
 */
export interface GateRebuildRows {
  /** Every outbound number, whatever its status. */
  numberIds: string[];
  /** CLAIMED leads: their actors may hold a line taken before the loss and not have dialled yet. */
  claims: { token: string; leaseUntil: number }[];
  /** Dials whose line is still held: the lead is DIALING, or PROCESSING (in a call or held unknown). */
  liveDials: { token: string; numberId: string; at: number }[];
  /**
   * Dials that count for the rate limit, made after `now − windowMs`: placed, sent without a usable
   * reply (unknown, even once expired: it may have rung), or still dialling. Recorded or not: a dial
   * that failed open is recorded later anyway (design §7.6).
   */
  countedDials: { token: string; phone: string; at: number }[];
  /**
   * The window used: the caller's, or the largest window of a template's rules (its own, its presets'
   * and its regions') when that is longer.
   */
  windowMs: number;
  /**
   * Calls that ended with one of the `cooling` outcomes after `now − cooling.ms`: the cooldown marks
   * (design §7.6) to write back. Empty without `cooling`.
   */
  endedCalls: { phone: string; outcome: string; at: number }[];
}

/** What an operator pauses: all dispatch, one reseller's templates, or one template. */
export type PauseScope = { global: true } | { resellerId: string } | { templateId: string };

export interface Pause {
  scope: PauseScope;
  /** Epoch ms of the pause (caller's clock). */
  pausedAt: number;
}

export interface LeadStore {
  /** Idempotent by lead id: a second submit returns the existing lead. */
  submit(leads: LeadInput[], now: number): Promise<LeadRecord[]>;
  get(id: string): Promise<LeadRecord | null>;
  /**
   * Claim up to `limit` due SCHEDULED leads (nextAttemptAt ≤ now), by dueAt then id: status CLAIMED,
   * claimSeq + 1, a new token, owner and lease, deferReason and parkedOn cleared. Also takes over CLAIMED
   * leads whose lease expired; a DIALING lead whose lease expired becomes a held unknown dial (never
   * redialled blindly). Leads of a paused template or reseller, or every lead under a global pause, are
   * skipped. Each claimed lead carries `blocked`, the block list's verdict on its phone.
   *
   * Parked leads are not claimed, except once their expiresAt has passed (to finish EXPIRED). A due lead
   * that has not parked in this wait (parkedAt null), whose template has parked leads, joins their line
   * instead of being claimed: parked on the same set at `now`, without meeting the gates (it would find
   * the same lines busy). Joins are not limited by `limit` and are not returned.
   */
  claimDue(owner: string, now: number, limit: number, leaseMs: number): Promise<LeadRecord[]>;
  /** Earliest nextAttemptAt of a SCHEDULED lead that is not paused (expiresAt for a parked one), or null. */
  nextDueAt(): Promise<number | null>;
  renewLeases(tokens: string[], leaseUntil: number): Promise<void>;
  /**
   * CLAIMED + token → DIALING with its dial row, in one step; precheckDefers back to 0 (the checks let
   * it through). False when the claim was lost.
   */
  beginDial(token: string, row: DialRow): Promise<boolean>;
  /**
   * Compare-and-set on the token (see Settlement): the lead as it now is, or null when it had moved on.
   * A defer of a lead whose cancel was requested finishes it CANCELLED instead (design §7.16).
   */
  settle(token: string, settlement: Settlement, now: number): Promise<Settled | null>;
  /**
   * The end of a call whose dial is no longer its lead's current one (its unknown hold expired and the
   * lead moved on, §7.15): written on that dial's row (outcome, ended_at = `at`) when it has no end
   * yet, so a gate rebuild still finds its cooldown mark (§7.6, §7.13). The lead is not touched.
   * False when no dial row has that dialRef, or its call already ended.
   */
  endDial(dialRef: string, outcome: string, at: number): Promise<boolean>;
  /** SCHEDULED → nextAttemptAt = min(nextAttemptAt, at): wakes a waiting lead early. False otherwise. */
  expedite(id: string, at: number): Promise<boolean>;
  /**
   * SCHEDULED leads of a template parked for `reason` (their last defer's) → nextAttemptAt =
   * min(nextAttemptAt, at). Returns how many moved. A wake is a hint: each lead meets every gate again.
   */
  wakeParked(templateId: string, reason: DeferReason, at: number): Promise<number>;
  /**
   * Wakes up to `count` parked leads whose set contains `numberId`, and that no pause covers: each a
   * compare-and-set on the waiting row (still parked) → parkedOn null, due now. Order: fair by phone,
   * then parkedAt, dueAt, id. A phone's turn = its leads already served (woken and not yet dialled,
   * claimed, dialling or in a call) + its waiters ahead of this one: a phone's second waiter goes after
   * every other phone's first, also across wakes.
   * Returns the ids woken. A wake is a hint: each lead meets every gate again.
   */
  wakeWaiters(numberId: string, count: number, now: number): Promise<string[]>;
  /** How many leads are parked now. */
  waitingCount(): Promise<number>;
  /** The distinct sets leads are parked on, each with its count of waiters. */
  waitingSets(): Promise<{ numberIds: string[]; waiters: number }[]>;
  /** Stops claims of the scope's leads, for every process on this store. False when already paused. */
  pause(scope: PauseScope, now: number): Promise<boolean>;
  /** Lifts a pause (and wakes the store's listeners). False when the scope was not paused. */
  resume(scope: PauseScope): Promise<boolean>;
  /** Every pause in force, global first, then resellers, then templates, each by id. */
  pauses(): Promise<Pause[]>;
  /**
   * Find the lead of a dial by dialRef first (it names one dial), else by provider call id (the lead of
   * its latest dial row).
   */
  findByDial(ref: { callId?: string; dialRef?: string }): Promise<LeadRecord | null>;
  /** SCHEDULED/CLAIMED → FINISHED CANCELLED; DIALING/PROCESSING → cancel requested. Returns the lead. */
  cancel(id: string, now: number): Promise<LeadRecord | null>;
  /** Held unknown dials whose hold started at or before `dialAtOrBefore`. */
  expiredUnknownDials(dialAtOrBefore: number): Promise<LeadRecord[]>;
  /** Placed calls (PROCESSING, not unknown) dialled at or before `dialAtOrBefore`: no end signal came. */
  overdueCalls(dialAtOrBefore: number): Promise<LeadRecord[]>;
  /** Every lead (for reports and invariants). */
  list(): Promise<LeadRecord[]>;
  /**
   * The gate state to rebuild after a gate store restart (design §7.13), read in one consistent
   * snapshot. `windowMs`: the largest window of the dispatcher's rules (templates' rules may widen
   * it); null reads no counted dials (a cheap look at numbers, claims and live dials). `cooling`: the
   * longest cooldown in force and every outcome one follows; the dials that ended so are read too.
   */
  gateRebuildRows(
    now: number,
    windowMs: number | null,
    cooling?: { ms: number; outcomes: string[] },
  ): Promise<GateRebuildRows>;

  template(id: string): Promise<Template | null>;
  /**
   * The largest window (ms) of any stored template's rules (its own, its presets' and its regions'),
   * 0 when none has rules of its own.
   */
  templateWindowMs(): Promise<number>;
  /**
   * Every cooldown any stored template may apply (its own, its presets' and its regions'), in no
   * order, a repeated one maybe more than once: which call ends must be marked, and kept how long.
   */
  templateCooldowns(): Promise<CooldownRule[]>;
  /**
   * The template as `template(id)` would return it when that needs no I/O, else undefined. A store
   * without a cache leaves it out.
   */
  cachedTemplate?(id: string): Template | null | undefined;
  number(id: string): Promise<OutboundNumber | null>;
  /** AVAILABLE pool numbers of `provider` (all providers when undefined), by id. */
  poolNumbers(provider?: string): Promise<OutboundNumber[]>;
  isBlocked(phone: string): Promise<boolean>;

  /**
   * Inserts or replaces templates (the last of a repeated id wins). Returns the ids of the templates
   * that existed and whose calling window changed (added, removed or edited), in input order.
   */
  upsertTemplates(templates: Template[]): Promise<string[]>;
  upsertNumbers(numbers: OutboundNumber[]): Promise<void>;
  /** E.164 phones, as the dispatcher's validation normalised them: the lookup compares exactly. */
  block(phones: string[]): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Gate store (Redis with Lua, or memory). Phones appear only as `phoneKey` (HMAC of the E.164).

/** Per rule count, and when blocked the instant the blocking rules have room again (design §7.5). */
export type RateDecision =
  | { allowed: true; counts: number[] }
  | { allowed: false; counts: number[]; retryAt: number };

/** How a rate-limit call keeps and counts a phone's records beyond its own rules. */
export interface RateOptions {
  /**
   * Records younger than this stay, whatever `rules` says: the largest window of every rule in force
   * (config and every template), since one phone's records serve every template that calls it
   * (design §7.6). Default: the largest window of `rules`.
   */
  keepMs?: number;
  /**
   * Added to every window: a record at t counts while now < t + W + marginMs, so the cap also holds
   * as the provider sees the calls, a dial-row write after the record. Default 0.
   */
  marginMs?: number;
  /**
   * The lead's cooldowns (design §7.6): the phone is blocked while a call that ended with one of a
   * cooldown's outcomes ended less than its `seconds` ago (the marks `markEnd` wrote). None by default.
   */
  cooldowns?: readonly CooldownRule[];
}

export interface RateLimiter {
  /** Read-only apart from trimming records older than the largest window (and `keepMs`). */
  peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision>;
  /**
   * Atomic trim + count every rule + add `member` only if every rule is under its max.
   * With `enforce: false` (rateLimit.mode alertOnly) the member is added regardless and the
   * decision still tells whether it went over.
   */
  record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce?: boolean,
    options?: RateOptions,
  ): Promise<RateDecision>;
  /** Removes exactly that member. True when it was there. */
  undo(phoneKey: string, member: string): Promise<boolean>;
  /**
   * A call to the phone ended with `outcome` at `at`: the cooldowns listing that outcome count from
   * the latest such end (design §7.6). Kept at least `keepMs`; an older end never replaces a newer.
   */
  markEnd(phoneKey: string, outcome: string, at: number, keepMs: number): Promise<void>;
}

export interface AcquireRequest {
  numberId: string;
  maxChannels: number;
  /** The claim token: names the hold. */
  holder: string;
  now: number;
  leaseUntil: number;
  /** Lead id counted as a distinct waiter when no line is free (a count nothing reads since parking). */
  waiter: string;
  /** How long a waiter stays counted. */
  waiterTtlMs: number;
}

export type AcquireResult = { held: true } | { held: false; waiters: number };

export interface ChannelPool {
  /** Strict cap: holds with an unexpired lease never exceed maxChannels. Re-acquire by the same holder is a no-op success. */
  acquire(req: AcquireRequest): Promise<AcquireResult>;
  /** Idempotent by holder: true only when this call freed the holder's line. */
  release(numberId: string, holder: string): Promise<boolean>;
  /** Holders of unexpired holds on a number (the periodic sweep looks for holders nobody owns). */
  listHolders(numberId: string, now: number): Promise<string[]>;
  /** Lines held (unexpired) per number. */
  inUse(numberIds: string[], now: number): Promise<Map<string, number>>;
  /** Drops expired holds of a number; returns the holders freed. */
  reap(numberId: string, now: number): Promise<string[]>;
}

export interface AlertThrottle {
  /** True for the first call per key inside `windowMs` (shared across processes). */
  allow(key: string, windowMs: number, now: number): Promise<boolean>;
}

export type GateStore = RateLimiter &
  ChannelPool &
  AlertThrottle & {
    close(): Promise<void>;
    /**
     * The store's own clock (epoch ms, Redis `TIME`), when it has one: the processes sharing the store
     * offset-synchronise their clocks to it (design §7.7). The in-memory store has none.
     */
    serverTime?(): Promise<number>;
  };

// ---------------------------------------------------------------------------------------------
// Provider

export interface DialRequest {
  leadId: string;
  /** The lead's retry counter: (leadId, attempt) rings at most once. */
  attempt: number;
  to: string;
  from: string;
  numberId: string;
  dialRef: string;
  signal: AbortSignal;
}

export type DialResult =
  | { kind: "placed"; callId: string }
  /** Proved not placed: refused, 4xx, connect error. */
  | { kind: "notPlaced"; reason: string }
  /**
   * 429, or no provider pacing token in time (`pacing`: never sent; the lead defers without the
   * defer counting towards the notPlaced streak).
   */
  | { kind: "throttled"; retryAfterSeconds?: number; reason?: string; pacing?: boolean }
  /** Sent, but no usable reply: timeout after send, reset, broken body, 5xx, 2xx without call id. */
  | { kind: "unknown"; reason: string }
  /** Permanent refusal; `account` when the whole account is refused (P1 alert). */
  | { kind: "rejected"; reason: string; account?: boolean };

/** Where a call stands at the provider (design §7.19). */
export type CallStatus =
  /** Queued, ringing or in progress: its line stays held. */
  | { state: "live" }
  /** Over, with its outcome in the words the status callbacks use. */
  | { state: "ended"; outcome: string }
  /** The provider cannot tell (no such call, an error): the call is closed UNKNOWN. */
  | { state: "unknown" };

export interface Provider {
  readonly name: string;
  makeCall(req: DialRequest): Promise<DialResult>;
  /** Asked by the sweep before a call past maxCallMinutes is closed UNKNOWN; aborted on timeout. */
  callStatus?(callId: string, signal: AbortSignal): Promise<CallStatus>;
}

// ---------------------------------------------------------------------------------------------
// Alerts and time

export type Severity = "P0" | "P1" | "P2";

export type AlertKind =
  | "rate_limit_blocked"
  | "no_outbound_number"
  | "store_unavailable"
  | "unknown_dial"
  | "orphan_call_end"
  | "provider_rejected";

export interface Alert {
  kind: AlertKind;
  severity: Severity;
  /** Throttle key: one alert per key per window. */
  key: string;
  message: string;
  /** Already masked (phones as ***1234). */
  fields: Record<string, string | number>;
  at: number;
}

export interface AlertSink {
  send(alert: Alert): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Pre-dial checks (the host's own rules: a DNC lookup, a consent record, a CRM flag)

export interface PreDialCheckContext {
  lead: LeadRecord;
  template: Template;
  /** Aborted when the check runs out of time (preDialCheck.timeoutMs) or the attempt stops. */
  signal: AbortSignal;
}

export type PreDialVerdict =
  | { action: "proceed" }
  /** The lead ends FINISHED PRECHECK_FAILED. */
  | { action: "abort"; reason: string }
  /** Ask again in `seconds` (counts against preDialCheck.maxDefers). */
  | { action: "defer"; seconds: number };

export type PreDialCheck = (context: PreDialCheckContext) => Promise<PreDialVerdict>;

export interface Timer {
  cancel(): void;
}

/** The only source of time: wall clock in production, virtual in the simulator and tests. */
export interface Clock {
  now(): number;
  /** Runs `fn` once at `at` (epoch ms) or as soon as possible when that is past. */
  setTimer(at: number, fn: () => void): Timer;
}
