/**
 * One chaos campaign: a fresh schema and key prefix on the test's own Redis and Postgres, dispatchers
 * wired as `dialgate run` wires them (connectBackend, LISTEN wake-ups, the periodic sweep), a
 * ChaosProvider outside all of them, and the measurements every chaos test prints and asserts: dials,
 * duplicate dials, over-cap, over-channel, lost leads, time to recover.
 */
import { randomUUID } from "node:crypto";
import pino from "pino";
import { generatedPhone } from "../../../src/cli/simulate/scenario.js";
import { createDispatcher, type Dispatcher } from "../../../src/dispatcher.js";
import { type Backend, connectBackend } from "../../../src/infra/backend.js";
import { SystemClock } from "../../../src/infra/clock.js";
import type { DispatcherConfigInput } from "../../../src/infra/config.js";
import { parseDialRef } from "../../../src/infra/dial-ref.js";
import type { LeadInput, LeadRecord } from "../../../src/machines/ports.js";
import { waitFor } from "../../multiprocess/run-process.js";
import {
  type Dial,
  duplicatePlacedAttempts,
  maxConcurrentByNumber,
  maxPlacedPerPhoneInWindow,
  overlappingCallsOfALead,
} from "../../multiprocess/sim-log.js";
import { ChaosProvider, type ProviderOptions } from "./provider.js";

export const SECRET = "chaos-secret-0123456789abcdef";
/** Tight enough that hot phones meet it within a test, and wide enough to span the fault. */
export const RULE = { maxCalls: 3, windowSeconds: 8 };
export const NUMBERS = ["c1", "c2", "c3"].map((id, i) => ({
  id,
  e164: `+1555030000${i + 1}`,
  provider: "sim",
  maxChannels: 3,
  pool: true,
}));
export const TEMPLATE = { id: "chaos", resellerId: "chaos-reseller" };
/**
 * Per-phone windows are measured on the dial time each request carries in its dialRef (stamped by the
 * dispatcher right after the rate-limit record, before the dial row is written), not on when the
 * request reached the provider, which a Postgres write and the event loops of two processes delay.
 * The record comes a moment before that stamp: windows are shortened by this much.
 */
export const STORE_SLACK_MS = 250;

/**
 * Wall-clock settings scaled down so that leases, holds and sweeps play out inside one test: a
 * process that died is taken over 2 s after its last renewal, an unknown dial is held 3 s, a call
 * with no end is closed after 12 s. A command timeout of 2 s, not 500 ms: two CPUs run Redis,
 * Postgres, every dispatcher and maybe other suites, and an event-loop stall must not pass for an
 * outage (a gate that fails open may exceed the cap by design, design §7.6). A dead Redis still fails
 * at once: commands are not queued while disconnected.
 */
const COMMAND_TIMEOUT_MS = 2000;
export const CONFIG: DispatcherConfigInput = {
  rateLimit: { rules: [RULE] },
  concurrency: 20,
  claimLeaseMs: 2000,
  channelWait: { maxParkSeconds: 2 },
  unknownDial: { holdMinutes: 0.05 },
  maxCallMinutes: 0.2,
  drainTimeoutMs: 3000,
  dial: { timeoutMs: 1500 },
  store: { commandTimeoutMs: COMMAND_TIMEOUT_MS },
  storeErrorDeferSeconds: { min: 0.2, max: 0.8 },
};

/** `count` leads over `phones` phones, round robin: with count > phones × maxCalls the cap must act. */
export function chaosLeads(count: number, phones: number): LeadInput[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `L${String(i).padStart(3, "0")}`,
    phone: generatedPhone(7, i % phones),
    templateId: TEMPLATE.id,
  }));
}

export interface Campaign {
  schema: string;
  prefix: string;
  provider: ChaosProvider;
  /** In-process dispatchers; the provider sends end signals to them in turn. */
  dispatchers: Dispatcher[];
  /** Failures the dispatchers absorbed ("error" events: outbox retries, persist and claim failures). */
  absorbedErrors(): number;
  /**
   * Actors that found their claimed lead taken over by another process (lead:dropped): with no
   * cancels in a campaign, only a claim lease judged expired while its owner still ran it does that.
   */
  droppedClaims(): number;
  /** Reads the leads from the first backend's store. */
  list(): Promise<LeadRecord[]>;
  /** Stops the dispatchers, closes their backends and the provider's HTTP server. */
  close(): Promise<void>;
}

export interface CampaignOptions {
  redisUrl: string;
  databaseUrl: string;
  schema: string;
  dispatchers: number;
  provider: ProviderOptions;
  config?: DispatcherConfigInput;
  /** How far each dispatcher's own clock is off the true time (ms), by index; none by default. */
  clockSkewMs?: number[];
}

/** The wall clock, `skewMs` off: a host whose clock is wrong. */
export class SkewedClock extends SystemClock {
  constructor(readonly skewMs: number) {
    super();
  }

  override now(): number {
    return super.now() + this.skewMs;
  }
}

const silent = pino({ level: "silent" });

export async function startCampaign(o: CampaignOptions): Promise<Campaign> {
  const prefix = `chaos:${randomUUID().slice(0, 8)}:`;
  const backends: Backend[] = [];
  const dispatchers: Dispatcher[] = [];
  const unlisten: (() => Promise<void>)[] = [];
  let next = 0;
  let errors = 0;
  let dropped = 0;
  const provider = new ChaosProvider(o.provider, () => {
    if (dispatchers.length === 0) return undefined;
    const d = dispatchers[next++ % dispatchers.length];
    return (end) => d.callEnded(end);
  });
  for (let k = 0; k < o.dispatchers; k++) {
    const backend = await connectBackend({
      redisUrl: o.redisUrl,
      databaseUrl: o.databaseUrl,
      prefix,
      schema: o.schema,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      migrate: k === 0,
      poolSize: 4,
      logger: silent,
    });
    backends.push(backend);
    const dispatcher = createDispatcher({
      config: { ...CONFIG, ...o.config },
      leadStore: backend.leadStore,
      gateStore: backend.gateStore,
      providers: [provider.adapter(k)],
      clock: new SkewedClock(o.clockSkewMs?.[k] ?? 0),
      logger: silent,
      hmacSecret: SECRET,
      owner: `chaos-${k}-${randomUUID().slice(0, 8)}`,
      sweepEveryMs: 1000,
      numbers: NUMBERS,
      templates: [TEMPLATE],
    });
    // Absorbed failures (outbox retries against a dead store) are expected here: counted.
    dispatcher.on("error", () => {
      errors += 1;
    });
    dispatcher.on("lead:dropped", () => {
      dropped += 1;
    });
    unlisten.push(await backend.onLeadsAdded(() => dispatcher.poke()));
    await dispatcher.start();
    dispatchers.push(dispatcher);
  }
  return {
    schema: o.schema,
    prefix,
    provider,
    dispatchers,
    absorbedErrors: () => errors,
    droppedClaims: () => dropped,
    list: () => backends[0].leadStore.list(),
    async close() {
      await Promise.all(dispatchers.map((d) => d.stop().catch(() => {})));
      await Promise.all(unlisten.map((u) => u().catch(() => {})));
      await Promise.all(backends.map((b) => b.close().catch(() => {})));
      await provider.close();
    },
  };
}

/**
 * Polls `list` until every lead is FINISHED and the provider has no end left to send. `finishedAt`
 * gets, per lead, when a poll first saw it FINISHED.
 */
export async function untilAllFinished(
  list: () => Promise<LeadRecord[]>,
  provider: ChaosProvider,
  count: number,
  timeoutMs: number,
  finishedAt = new Map<string, number>(),
): Promise<LeadRecord[]> {
  let leads: LeadRecord[] = [];
  await waitFor(
    async () => {
      leads = await list().catch(() => leads);
      for (const lead of leads)
        if (lead.status === "FINISHED" && !finishedAt.has(lead.id)) finishedAt.set(lead.id, Date.now());
      return (
        leads.length === count && leads.every((l) => l.status === "FINISHED") && provider.pendingEnds === 0
      );
    },
    {
      timeoutMs,
      intervalMs: 200,
      what: () =>
        `every lead FINISHED; now ${JSON.stringify(countBy(leads, (l) => l.status))}, ${provider.pendingEnds} ends pending`,
    },
  );
  return leads;
}

export interface ChaosReport {
  dials: number;
  placed: number;
  /** Placed calls of a (lead, attempt) after its first. */
  duplicateDials: number;
  /** Most placed calls of one phone in any window, past the rule's max. */
  overCap: number;
  /** Most calls at once on a number, past its lines, summed over the numbers. */
  overChannel: number;
  /** Submitted leads not FINISHED at the end (or missing). */
  lostLeads: number;
  /** From the end of the fault to the first call placed after it. */
  recoverMs: number | null;
  /** Calls of one lead in progress at once. */
  overlappingCalls: number;
  outcomes: Record<string, number>;
}

export function measure(
  dials: Dial[],
  leads: LeadRecord[],
  submitted: number,
  faultEndedAt: number,
  /**
   * `dialRef`: per-phone windows on the dial time each request carries; `provider`: on when the
   * requests reached the provider (the truth when the dispatchers' clocks disagree).
   */
  windowsBy: "dialRef" | "provider" = "dialRef",
): ChaosReport {
  const placed = dials.filter((d) => d.result === "placed");
  const stamped =
    windowsBy === "provider" ? dials : dials.map((d) => ({ ...d, at: parseDialRef(d.dialRef).at }));
  const worstPhone = maxPlacedPerPhoneInWindow(stamped, RULE.windowSeconds * 1000 - STORE_SLACK_MS);
  let overChannel = 0;
  for (const [numberId, most] of maxConcurrentByNumber(dials, 0)) {
    const lines = NUMBERS.find((n) => n.id === numberId)?.maxChannels ?? 0;
    overChannel += Math.max(0, most - lines);
  }
  const firstAfter = placed.find((d) => d.at >= faultEndedAt);
  return {
    dials: dials.length,
    placed: placed.length,
    duplicateDials: duplicatePlacedAttempts(dials).reduce((n, group) => n + group.length - 1, 0),
    overCap: Math.max(0, worstPhone.count - RULE.maxCalls),
    overChannel,
    lostLeads: submitted - leads.filter((l) => l.status === "FINISHED").length,
    recoverMs: firstAfter ? firstAfter.at - faultEndedAt : null,
    overlappingCalls: overlappingCallsOfALead(dials).length,
    outcomes: countBy(leads, (l) => String(l.outcome)),
  };
}

export function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}
