import { isValidPhoneNumber } from "libphonenumber-js";
import { type AnyActorRef, fromCallback } from "xstate";
import type { DispatcherEvents } from "../events.js";
import { hasCallingLaw, type LeadLaw, lawOf, NEARNESS_RANK, nearness } from "../infra/calling-law.js";
import type { DispatcherConfig } from "../infra/config.js";
import { dialRefOf, parseDialRef } from "../infra/dial-ref.js";
import { placeOf } from "../infra/geo.js";
import { decide } from "../infra/memory/gate-store.js";
import { phoneKey } from "../infra/phone-key.js";
import {
  type AcquireOutput,
  type BeginDialOutput,
  type CallOutput,
  type CheckOutput,
  type GateInput,
  type GateName,
  type GateReply,
  gateInput,
  type LeadContext,
  type PeekOutput,
  type PrecheckOutput,
  type RecordOutput,
  type ReleaseInput,
  releaseInput,
  type SelectOutput,
  type WindowOutput,
} from "../machines/lead-machine.js";
import type {
  CallerIdMatch,
  Clock,
  CooldownRule,
  DialResult,
  GateStore,
  LeadRecord,
  LeadStore,
  OutboundNumber,
  PreDialCheck,
  Provider,
  RateDecision,
  RateOptions,
  RateRule,
  Template,
} from "../machines/ports.js";
import { lawWindowDecision } from "./calling-window.js";
import type { Outbox } from "./outbox.js";
import { runPreDialChecks } from "./pre-dial-checks.js";
import { RuleWindows } from "./rule-windows.js";

export interface GateDeps {
  config: DispatcherConfig;
  store: LeadStore;
  gates: GateStore;
  providers: ReadonlyMap<string, Provider>;
  clock: Clock;
  outbox: Outbox;
  hmacSecret: string;
  /** Uniform in [0, 1): seeded in the simulator. */
  random: () => number;
  emit: <K extends keyof DispatcherEvents>(name: K, payload: DispatcherEvents[K]) => void;
  /** The host's checks, run in `prechecking`; none by default. */
  preDialChecks?: readonly PreDialCheck[];
  /** Shared pool line counts; the host calls `changed()` whenever a line is freed. */
  lineCounts: PoolLineCounts;
  /** A provider's reply that came after dial.timeoutMs had made its dial unknown. */
  onLateDialResult?: (dialRef: string, result: DialResult) => void;
  /** How long a phone's records are kept (every rule in force); the config's rules alone by default. */
  ruleWindows?: RuleWindows;
}

/** A store error at the record step of a lead whose rules include one with `failMode: "closed"`. */
export class RecordFailedClosedError extends Error {
  override readonly name = "RecordFailedClosedError";
  constructor(
    readonly leadId: string,
    readonly cause: unknown,
  ) {
    super(`rate-limit record of lead ${leadId} failed and a rule fails closed: ${String(cause)}`);
  }
}

/** True when a store error must defer the dial: some rule or cooldown of the lead fails closed (design §7.6). */
export function failsClosed(
  rules: readonly RateRule[] | undefined,
  cooldowns: readonly CooldownRule[] = [],
): boolean {
  return [...(rules ?? []), ...cooldowns].some((rule) => rule.failMode === "closed");
}

/**
 * Line counts of a pool, read once for every selection that starts while the read is in flight and
 * no line was taken or freed here since it was sent: the leads of one wave share one read, and none
 * sees counts older than this process's own last acquire or release (design §7.9). The selections that
 * share a read also see each other's picks, so one wave spreads over the pool instead of all trying
 * the same number. The acquire stays the authority.
 */
export class PoolLineCounts {
  readonly #gates: GateStore;
  readonly #reads = new Map<
    string,
    { read: Promise<Map<string, number>>; epoch: number; picked: Map<string, number> }
  >();
  #epoch = 0;

  constructor(gates: GateStore) {
    this.#gates = gates;
  }

  /** A line was taken or freed in this process: later selections read afresh. */
  changed(): void {
    this.#epoch += 1;
  }

  /**
   * The pool number with the most free lines, less those picked on the same read; ties by id. With
   * `rank` (local presence, design §7.9) the lowest rank among the numbers with a free line wins
   * first, then the most free; when none has a free line, the most free, then the lowest rank.
   */
  async pick(
    pool: OutboundNumber[],
    now: number,
    rank?: (n: OutboundNumber) => number,
  ): Promise<OutboundNumber> {
    const entry = this.#entry(pool, now);
    const used = await entry.read;
    let best = pool[0] as OutboundNumber;
    let [bestFree, bestRank] = [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
    for (const n of pool) {
      const free = n.maxChannels - (used.get(n.id) ?? 0) - (entry.picked.get(n.id) ?? 0);
      const r = rank ? rank(n) : 0;
      if (isBetterPick(free, r, bestFree, bestRank)) [best, bestFree, bestRank] = [n, free, r];
    }
    entry.picked.set(best.id, (entry.picked.get(best.id) ?? 0) + 1);
    return best;
  }

  #entry(pool: OutboundNumber[], now: number) {
    const ids = pool.map((n) => n.id);
    const key = ids.join("\n");
    const shared = this.#reads.get(key);
    if (shared && shared.epoch === this.#epoch) return shared;
    const entry = {
      read: this.#gates.inUse(ids, now),
      epoch: this.#epoch,
      picked: new Map<string, number>(),
    };
    this.#reads.set(key, entry);
    const forget = () => {
      if (this.#reads.get(key) === entry) this.#reads.delete(key);
    };
    entry.read.then(forget, forget);
    return entry;
  }
}

/** A free line first; among free lines the nearest, then the most free; among none the most free. */
function isBetterPick(free: number, rank: number, bestFree: number, bestRank: number): boolean {
  if (free > 0 !== bestFree > 0) return free > 0;
  if (free > 0 && rank !== bestRank) return rank < bestRank;
  return free > bestFree || (free === bestFree && rank < bestRank);
}

/** Channel holds outlive the longest call by this much; expiry is for crashed holders only. */
const HOLD_MARGIN_MS = 10 * 60_000;
/** A lead passes the window gate only when its window stays open this much longer (design §7.8). */
export const WINDOW_MARGIN_MS = 60_000;
/** Spread for actors that lost one race, so they do not return as a herd (design §7.5). */
const RACE_JITTER_MS = 1000;

/** The steps the gate actor runs for the lead actors, one per gate state of the lead machine. */
export interface GateSteps {
  check(input: GateInput): Promise<CheckOutput>;
  window(input: GateInput): Promise<WindowOutput>;
  /** `signal`: aborted when the lead stops; the host's checks stop with it. */
  precheck(input: GateInput, signal?: AbortSignal): Promise<PrecheckOutput>;
  peek(input: GateInput): Promise<PeekOutput>;
  selectNumber(input: GateInput): Promise<SelectOutput>;
  acquire(input: GateInput): Promise<AcquireOutput>;
  record(input: GateInput): Promise<RecordOutput>;
  beginDial(input: GateInput): Promise<BeginDialOutput>;
  makeCall(input: GateInput): Promise<CallOutput>;
  release(input: ReleaseInput): Promise<void>;
}

/** What a lead actor sends the gate actor on entering a gate state. */
export interface GateRequest {
  type: "gate.request";
  gate: GateName;
  input: GateInput | ReleaseInput;
  /** The lead actor: it gets `gate.done.<gate>` with the step's output, or `gate.error.<gate>`. */
  replyTo: AnyActorRef;
  /** Only the pre-dial checks get one, and only when the host has checks. */
  signal?: AbortSignal;
}

/**
 * The gate actor of a process: one long-lived actor runs the gate steps of every lead actor and replies
 * by event. A gate is a message, not a child actor per call: that child (and its AbortController) was
 * most of a lead's CPU.
 */
export function gateActorLogic(steps: GateSteps) {
  return fromCallback<GateRequest>(({ receive }) => {
    receive((request) => {
      // Its lead actors are its children: their done and error events come here too, unasked.
      if (request.type !== "gate.request") return;
      const step = steps[request.gate] as (input: unknown, signal?: AbortSignal) => Promise<unknown>;
      step(request.input, request.signal).then(
        (output) => reply(request, { type: `gate.done.${request.gate}`, output }),
        (error: unknown) => reply(request, { type: `gate.error.${request.gate}`, error }),
      );
    });
  });
}

/** A lead stopped before its hold has already ended: nobody waits for this reply. */
function reply(request: GateRequest, event: GateReply): void {
  if (request.replyTo.getSnapshot().status === "active") request.replyTo.send(event);
}

/**
 * The lead machine's `request` action over `gateActor`. `signalFor` gives a lead actor the signal of
 * its pre-dial checks (none without checks).
 */
export function requestGate(
  gateActor: AnyActorRef,
  signalFor: (lead: AnyActorRef) => AbortSignal | undefined = () => undefined,
) {
  return ({ context, self }: { context: LeadContext; self: AnyActorRef }, { gate }: { gate: GateName }) => {
    const request: GateRequest = {
      type: "gate.request",
      gate,
      input: gate === "release" ? releaseInput(context) : gateInput(context),
      replyTo: self,
      signal: gate === "precheck" ? signalFor(self) : undefined,
    };
    gateActor.send(request);
  };
}

/** The precheck of a lead that can't be stopped (no signal was given). */
const NEVER_ABORTED = new AbortController().signal;

/** The gate steps of the lead machine, over the ports. Each one is a single step of design §2. */
export function createGateSteps(deps: GateDeps) {
  const { config, store, gates, clock } = deps;
  const { lineCounts } = deps;
  /** The phone's HMAC, computed once per claimed lead (peek, record and undo all use it). */
  const keys = new WeakMap<LeadRecord, string>();
  const keyOf = (lead: LeadRecord) => {
    const known = keys.get(lead);
    if (known !== undefined) return known;
    const key = phoneKey(deps.hmacSecret, lead.phone);
    keys.set(lead, key);
    return key;
  };
  const enforcing = config.rateLimit.mode === "block";
  const ruleWindows = deps.ruleWindows ?? new RuleWindows(config.rateLimit.rules);
  /**
   * Each claimed lead's calling law (design §7.8), worked out once per attempt; none for a template
   * that has nothing but rate-limit rules.
   */
  const laws = new WeakMap<LeadRecord, LeadLaw | null>();
  const lawFor = ({ lead, template, rules }: Pick<GateInput, "lead" | "template" | "rules">) => {
    let law = laws.get(lead);
    if (law === undefined) {
      law = template && hasCallingLaw(template) ? lawOf(template, lead, rules) : null;
      laws.set(lead, law);
    }
    return law;
  };
  const rateOptions = (law?: LeadLaw | null): RateOptions => ({
    keepMs: ruleWindows.keepMs,
    marginMs: config.rateLimit.marginMs,
    ...(law && law.cooldowns.length > 0 && { cooldowns: law.cooldowns }),
  });
  /**
   * Records of fail-open dials (the store failed at record time), by token, until they are in the
   * store and the dial is known to stand. While the store is away they are this process's only memory
   * of those dials, so a fail-open dial counts them first (design §7.6); once it is back, the next
   * record on the phone writes them before it decides, not at the outbox's next (backed-off) try.
   */
  const pendingRecords = new Map<string, LateRecord>();
  /** Writes a fail-open dial's record; kept track of until its dial stands or is released. */
  const writeLate = async (token: string, late: LateRecord) => {
    await gates.record(late.key, token, late.rules, late.at, false, rateOptions());
    late.written = true;
    if (late.stands && pendingRecords.get(token) === late) pendingRecords.delete(token);
  };
  /** What the pending records of a phone say about one more dial now. */
  const pendingDecision = (key: string, rules: RateRule[], now: number): RateDecision => {
    const records = [...pendingRecords.values()].filter((r) => r.key === key).sort((a, b) => a.at - b.at);
    return decide(records, rules, now, config.rateLimit.marginMs);
  };
  /**
   * When each token's rate-limit record was made: its dial row takes the same instant, so the dial
   * times in the store are exactly what the limiter counted (and what a rebuild restores).
   */
  const recordedAt = new Map<string, number>();

  const check = async ({ lead }: GateInput): Promise<CheckOutput> => {
    if (lead.expiresAt !== null && lead.expiresAt <= clock.now())
      return { kind: "finish", outcome: "EXPIRED" };
    // The claim read the lead (and its block-list verdict) an instant ago. When the template is in
    // memory nothing has waited since, so that read stands; after a wait on the store another process
    // may have cancelled or re-claimed the lead meanwhile (then touch nothing): read it again, with
    // the block list, in one round trip that a batching store shares with the other leads. A cancel
    // that lands after this check is caught by the dial row's compare-and-set (step 7).
    const cached = store.cachedTemplate?.(lead.templateId);
    const template = cached === undefined ? await store.template(lead.templateId) : cached;
    if (!template) return { kind: "finish", outcome: "NO_CONFIG" };
    ruleWindows.widenTemplate(template);
    if (!isValidPhoneNumber(lead.phone)) return { kind: "finish", outcome: "INVALID_PHONE" };
    if (cached === undefined || lead.blocked === undefined) {
      const [blocked, current] = await Promise.all([store.isBlocked(lead.phone), store.get(lead.id)]);
      if (blocked) return { kind: "finish", outcome: "BLACKLISTED" };
      if (current?.status !== "CLAIMED" || current.token !== lead.token) return { kind: "drop" };
    } else if (lead.blocked) return { kind: "finish", outcome: "BLACKLISTED" };
    const rules = template.rateLimitRules ?? config.rateLimit.rules;
    // The law's rules: the template's (or the dispatcher's), its presets' and its callee's regions'.
    laws.delete(lead);
    return { kind: "ok", template, rules: lawFor({ lead, template, rules })?.rules ?? rules };
  };

  const window = async (input: GateInput): Promise<WindowOutput> => {
    const law = lawFor(input);
    if (!law || law.windows.length === 0) return { kind: "open" };
    const now = clock.now();
    let decision = lawWindowDecision(law.windows, law.zones, now);
    // The call goes out a few steps later: a lead passes only when the window is still open by then.
    if (decision.open) decision = lawWindowDecision(law.windows, law.zones, now + windowMarginMs);
    const { zones, zoneSource } = law;
    deps.emit("lead:window", { leadId: input.lead.id, zones, zoneSource, open: decision.open });
    return decision.open ? { kind: "open" } : { kind: "closed", opensAt: decision.opensAt };
  };

  const checks = deps.preDialChecks ?? [];
  /**
   * How long the window must stay open after the window gate (design §7.8): the host's checks may take
   * their whole timeout, and the store steps and the dial row a moment more.
   */
  const windowMarginMs = WINDOW_MARGIN_MS + (checks.length > 0 ? config.preDialCheck.timeoutMs : 0);
  const precheck = async ({ lead, template }: GateInput, signal?: AbortSignal): Promise<PrecheckOutput> => {
    // Without checks the state passes straight through: no I/O, no clock reading.
    if (checks.length === 0) return { kind: "proceed" };
    const { timeoutMs, maxDefers, failureDeferSeconds } = config.preDialCheck;
    const outcome = await runPreDialChecks({
      checks,
      lead,
      template: template as Template,
      clock,
      timeoutMs,
      failureDeferSeconds,
      signal: signal ?? NEVER_ABORTED,
      onError: (error) => deps.emit("error", { where: `precheck ${lead.id}`, error }),
    });
    deps.emit("lead:prechecked", { leadId: lead.id, verdict: outcome.action });
    if (outcome.action === "proceed") return { kind: "proceed" };
    if (outcome.action === "abort") return { kind: "abort", reason: outcome.reason };
    if (lead.precheckDefers >= maxDefers) {
      return {
        kind: "abort",
        reason: `deferred by the pre-dial checks ${lead.precheckDefers} times in a row`,
      };
    }
    return { kind: "defer", deferAt: clock.now() + Math.round(outcome.seconds * 1000) };
  };

  const peek = async (input: GateInput): Promise<PeekOutput> => {
    const { lead, rules } = input;
    const decision = await gates.peek(keyOf(lead), rules, clock.now(), rateOptions(lawFor(input)));
    deps.emit("gate:result", {
      leadId: lead.id,
      gate: "peek",
      verdict: decision.allowed ? "allowed" : "blocked",
    });
    if (decision.allowed) return { kind: "allowed" };
    return enforcing ? { kind: "blocked", deferAt: decision.retryAt } : { kind: "over" };
  };

  const selectNumber = async ({ lead, template }: GateInput): Promise<SelectOutput> => {
    if (template?.numberId) {
      const pinned = await store.number(template.numberId);
      if (pinned?.status === "AVAILABLE") return { kind: "selected", number: pinned, candidates: [pinned] };
    }
    const pool = await store.poolNumbers(template?.provider);
    const number = await leastBusy(pool, rankFor(lead, template));
    return number ? { kind: "selected", number, candidates: pool } : { kind: "none" };
  };

  /**
   * The pool number with the most free lines, ties by id (design §7.9); with local presence the
   * nearest to the callee that has a free line.
   */
  async function leastBusy(
    pool: OutboundNumber[],
    rank: ((n: OutboundNumber) => number) | undefined,
  ): Promise<OutboundNumber | undefined> {
    if (pool.length <= 1) return pool[0];
    try {
      return await lineCounts.pick(pool, clock.now(), rank);
    } catch {
      return pool[0]; // the channel gate meets the outage and fails closed there, with its alert
    }
  }

  const acquire = async ({ lead, template, number, candidates }: GateInput): Promise<AcquireOutput> => {
    if (!number || !lead.token) throw new Error("acquire needs a number and a claim token");
    const token = lead.token;
    const tryLine = async (n: OutboundNumber) => {
      const now = clock.now();
      const result = await gates.acquire({
        numberId: n.id,
        maxChannels: n.maxChannels,
        holder: token,
        now,
        leaseUntil: now + config.maxCallMinutes * 60_000 + HOLD_MARGIN_MS,
        waiter: lead.id,
        waiterTtlMs: config.channelWait.maxParkSeconds * 1000,
      });
      lineCounts.changed();
      deps.emit("gate:result", {
        leadId: lead.id,
        gate: "channel",
        verdict: result.held ? "held" : "exhausted",
      });
      return result.held;
    };
    if (await tryLine(number)) return { kind: "held", number };
    // The selection read shared counts that may be stale: before parking, look at the other
    // candidates afresh and try those that show a free line, most free first.
    const others = candidates.filter((n) => n.id !== number.id);
    if (others.length > 0) {
      const used = await gates.inUse(
        others.map((n) => n.id),
        clock.now(),
      );
      const rank = rankFor(lead, template) ?? (() => 0);
      const free = others
        .map((n) => ({ n, free: n.maxChannels - (used.get(n.id) ?? 0), rank: rank(n) }))
        .filter((c) => c.free > 0)
        .sort((a, b) => a.rank - b.rank || b.free - a.free || (a.n.id < b.n.id ? -1 : 1));
      for (const { n } of free) {
        try {
          if (await tryLine(n)) return { kind: "held", number: n };
        } catch (error) {
          // The command may have run: give the line back by name before failing closed (the lead's
          // release step frees only the selected number's line), through the outbox if need be.
          await releaseLine(deps, n.id, token);
          throw error;
        }
      }
    }
    const parkOn = (candidates.length > 0 ? candidates : [number]).map((n) => n.id).sort();
    deps.emit("channel:waiting", { leadId: lead.id, numberIds: parkOn, dueAt: lead.dueAt });
    return { kind: "full", parkOn };
  };

  const record = async (input: GateInput): Promise<RecordOutput> => {
    const { lead, rules } = input;
    const token = lead.token as string;
    const now = clock.now();
    const law = lawFor(input);
    let decision: RateDecision;
    try {
      for (const [other, late] of pendingRecords)
        if (late.key === keyOf(lead) && !late.written) await writeLate(other, late);
      decision = await gates.record(keyOf(lead), token, rules, now, enforcing, rateOptions(law));
    } catch (error) {
      if (failsClosed(rules, law?.cooldowns)) throw new RecordFailedClosedError(lead.id, error);
      // Failing open: the store cannot count, but this process still knows the dials it made while
      // it could not record them. Those alone at a rule's max: defer like a lost race.
      const pending = pendingDecision(keyOf(lead), rules, now);
      if (pending.allowed || !enforcing) throw error;
      // The timed-out command may still have run: take its record back by name (design §7.12).
      const key = keyOf(lead);
      deps.outbox.add({ what: `undo ${token}`, run: () => gates.undo(key, token) });
      deps.emit("gate:result", { leadId: lead.id, gate: "record", verdict: "rejected" });
      return { kind: "rejected", deferAt: pending.retryAt + Math.floor(deps.random() * RACE_JITTER_MS) };
    }
    const verdict = decision.allowed || !enforcing ? "recorded" : "rejected";
    if (verdict === "recorded") recordedAt.set(token, now);
    deps.emit("gate:result", { leadId: lead.id, gate: "record", verdict });
    if (decision.allowed) return { kind: "recorded" };
    if (!enforcing) return { kind: "over" };
    return { kind: "rejected", deferAt: decision.retryAt + Math.floor(deps.random() * RACE_JITTER_MS) };
  };

  const beginDial = async ({ lead, number, recorded }: GateInput): Promise<BeginDialOutput> => {
    const token = lead.token as string;
    const at = recordedAt.get(token) ?? clock.now();
    recordedAt.delete(token);
    const dialRef = dialRefOf(token, at);
    const written = await store.beginDial(token, {
      dialRef,
      numberId: (number as OutboundNumber).id,
      at,
      recorded,
    });
    return written ? { kind: "written", dialRef } : { kind: "lost" };
  };

  const makeCall = async ({ lead, template, number, dialRef }: GateInput): Promise<CallOutput> => {
    const from = number as OutboundNumber;
    const ref = dialRef as string;
    const provider = deps.providers.get(from.provider);
    const callerId =
      template?.callerId === "local" ? nearness(placeOf(lead.phone), placeOf(from.e164)) : undefined;
    const result = provider ? await dialWithTimeout(provider, lead, from, ref, callerId) : noAdapter(from);
    const late = pendingRecords.get(lead.token as string);
    if (late && (result.kind === "placed" || result.kind === "unknown")) {
      // The dial stands: its record stays for good once written (no release will take it back).
      late.stands = true;
      if (late.written) pendingRecords.delete(lead.token as string);
    }
    deps.emit("lead:dialResult", { leadId: lead.id, numberId: from.id, dialRef: ref, result: result.kind });
    return { ...result, at: clock.now() };
  };

  async function dialWithTimeout(
    provider: Provider,
    lead: LeadRecord,
    from: OutboundNumber,
    dialRef: string,
    callerId: CallerIdMatch | undefined,
  ): Promise<DialResult> {
    const leadId = lead.id;
    const controller = new AbortController();
    let timedOut = false;
    let timer: { cancel(): void } | undefined;
    // The dial is unknown at the timeout whether or not the provider honours its signal: a promise
    // that never settles must not hold the lead in DIALING (nor its actor, its lease or the drain).
    const timeout = new Promise<DialResult>((resolve) => {
      timer = clock.setTimer(clock.now() + config.dial.timeoutMs, () => {
        timedOut = true;
        controller.abort();
        resolve({ kind: "unknown", reason: "timeout" });
      });
    });
    const token = parseDialRef(dialRef).token;
    deps.emit("lead:dialling", { leadId, token, numberId: from.id, dialRef, ...(callerId && { callerId }) });
    let call: Promise<DialResult>;
    try {
      call = provider.makeCall({
        leadId,
        attempt: lead.attempt,
        to: lead.phone,
        from: from.e164,
        numberId: from.id,
        dialRef,
        signal: controller.signal,
      });
    } catch (error) {
      call = Promise.reject(error);
    }
    call.then(
      (result) => {
        if (timedOut) deps.onLateDialResult?.(dialRef, result);
      },
      () => {}, // a late throw proves nothing: the dial stays unknown
    );
    try {
      return usableReply(await Promise.race([call, timeout]));
    } catch (error) {
      // After the timeout fired the request may have gone out: never assume it did not ring.
      if (controller.signal.aborted) return { kind: "unknown", reason: "timeout" };
      throw error;
    } finally {
      timer?.cancel();
    }
  }

  const release = async ({ lead, number, held, recorded }: ReleaseInput): Promise<void> => {
    const token = lead.token as string;
    recordedAt.delete(token);
    if (held && number) await releaseLine(deps, number.id, token);
    const key = keyOf(lead);
    const late = pendingRecords.get(token);
    if (late) pendingRecords.delete(token); // the dial did not happen: stop counting it
    if (late && !late.written) {
      // The record is still queued: undo after it, in order.
      deps.outbox.add({ what: `undo ${token}`, run: () => gates.undo(key, token) });
    } else if (recorded || late) {
      try {
        await gates.undo(key, token);
      } catch {
        deps.outbox.add({ what: `undo ${token}`, run: () => gates.undo(key, token) });
      }
    }
  };

  /** Local presence (design §7.9): a pool number's rank by nearness to the callee, nearest 0. */
  function rankFor(lead: LeadRecord, template: Template | null) {
    if (template?.callerId !== "local") return undefined;
    const callee = placeOf(lead.phone);
    return (n: OutboundNumber) => NEARNESS_RANK[nearness(callee, placeOf(n.e164))];
  }

  /** The record of a dial made while the store failed open, written when it is back (design §7.6). */
  function recordLater(lead: GateInput["lead"], rules: GateInput["rules"], at: number): void {
    const token = lead.token as string;
    const late: LateRecord = { key: keyOf(lead), at, rules, written: false, stands: false };
    pendingRecords.set(token, late);
    deps.outbox.add({ what: `record ${token}`, run: () => writeLate(token, late) });
  }

  const steps: GateSteps = {
    check,
    window,
    precheck,
    peek,
    selectNumber,
    acquire,
    record,
    beginDial,
    makeCall,
    release,
  };
  return { steps, recordLater };
}

/**
 * Gives a line back by name and announces it (`channel:released` wakes a lead parked for it). When the
 * store fails the outbox gives it back later: freed later is freed all the same, and wakes one too.
 */
export async function releaseLine(
  deps: Pick<GateDeps, "gates" | "outbox" | "emit">,
  numberId: string,
  holder: string,
): Promise<void> {
  const release = async () => {
    if (await deps.gates.release(numberId, holder)) deps.emit("channel:released", { numberId, holder });
  };
  try {
    await release();
  } catch {
    deps.outbox.add({ what: `release ${numberId} ${holder}`, run: release });
  }
}

/** The rate-limit record of a dial made while the store failed open (design §7.6). */
interface LateRecord {
  key: string;
  at: number;
  rules: RateRule[];
  /** In the store now. */
  written: boolean;
  /** The dial was placed or is unknown: no release will take the record back. */
  stands: boolean;
}

const REPLY_KINDS = new Set<unknown>(["placed", "notPlaced", "throttled", "unknown", "rejected"]);

/**
 * The provider's reply as the lead machine can act on it. A broken one (no object, a kind nobody
 * knows) is unknown: the request may have rung, so it is never taken for "not placed" and redialled.
 */
function usableReply(reply: unknown): DialResult {
  const result = reply as DialResult | null | undefined;
  if (!REPLY_KINDS.has(result?.kind)) return { kind: "unknown", reason: "a reply of no known kind" };
  // A call id is what an end signal and callStatus find the call by: without one it is unknown.
  const placed = result as Extract<DialResult, { kind: "placed" }>;
  if (placed.kind === "placed" && (typeof placed.callId !== "string" || !placed.callId.trim()))
    return { kind: "unknown", reason: "placed without a call id" };
  return result as DialResult;
}

function noAdapter(number: OutboundNumber): DialResult {
  return { kind: "rejected", reason: `no provider adapter named '${number.provider}'`, account: true };
}
