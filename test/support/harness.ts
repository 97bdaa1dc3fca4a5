/**
 * A real dispatcher on a backend (in-memory by default, or Redis + Postgres: see backends.ts), a
 * virtual clock and a chosen provider, with everything a behaviour test asserts on close at hand: the
 * gate store's ledger and call log, every event the dispatcher emitted, and helpers that move time.
 * On a real backend the stores sit behind the simulator's in-order queue, so the clock moves only when
 * no port call is outstanding (design §7.7) and a run does not depend on round-trip timing.
 */
import pino from "pino";
import { inOrderPorts } from "../../src/cli/simulate/in-order.js";
import { randomStream } from "../../src/cli/simulate/random.js";
import { createDispatcher, type Dispatcher, type DispatcherOptions } from "../../src/dispatcher.js";
import type { DispatcherEventName, DispatcherEvents } from "../../src/events.js";
import { runVirtual, settle, VirtualClock } from "../../src/infra/clock.js";
import type { DispatcherConfigInput } from "../../src/infra/config.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import type { Alert, AlertKind, LeadRecord, LeadStore, Provider } from "../../src/machines/ports.js";
import { memoryBackend, type TestBackend } from "./backends.js";
import { FaultyGateStore } from "./faulty-gate-store.js";

/** Monday 2031-01-06 06:00 UTC (01:00 in New York, 11:30 in Kolkata), far from the wall clock. */
export const T0 = Date.UTC(2031, 0, 6, 6, 0, 0);
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const HMAC_SECRET = "test-secret";

/** Valid (libphonenumber) customer phones. */
export const PHONES = [
  "+14155550123",
  "+14155552671",
  "+12025550143",
  "+12125551234",
  "+919876543210",
  "+919876543211",
  "+15005550006",
  "+919000000001",
] as const;
export const PHONE = PHONES[0];

export const NUMBER = {
  id: "num-1",
  e164: "+15550000001",
  provider: "sim",
  maxChannels: 20,
  status: "AVAILABLE",
  pool: true,
} as const;

export const TEMPLATE = { id: "tpl-1", resellerId: "res-1" } as const;

export const silentLogger = pino({ level: "silent" });

/** The same jitter every run: the simulator's seeded stream. */
export function seededRandom(seed = 42): () => number {
  return randomStream(seed, 0);
}

const EVENT_NAMES = [
  "lead:claimed",
  "lead:window",
  "lead:dialling",
  "lead:dialResult",
  "lead:dialled",
  "lead:heldUnknown",
  "lead:deferred",
  "lead:finished",
  "lead:dropped",
  "gate:failOpen",
  "gate:failClosed",
  "gate:result",
  "channel:waiting",
  "channel:released",
  "lead:parked",
  "channel:woken",
  "alert",
  "error",
] as const satisfies readonly DispatcherEventName[];

export type Recorded = {
  [K in DispatcherEventName]: { name: K; payload: DispatcherEvents[K]; at: number };
}[DispatcherEventName];

export interface HarnessOptions<P extends Provider = Provider> {
  config?: DispatcherConfigInput;
  numbers?: unknown[];
  templates?: unknown[];
  blockedPhones?: string[];
  /** Built on the harness clock; gets the dispatcher lazily (for end signals). */
  provider: (clock: VirtualClock, dispatcher: () => Dispatcher) => P;
  start?: number;
  /** Where the stores live; memory by default. */
  backend?: TestBackend;
  /** The lead store instead of the backend's (a MemoryLeadStore with hooks). */
  leadStore?: LeadStore;
  /** Wraps the lead store the dispatcher uses (to make it fail for a while, say). */
  wrapLeadStore?: (store: LeadStore) => LeadStore;
  extra?: Partial<DispatcherOptions>;
}

/** Builds and starts the dispatcher. */
export async function createHarness<P extends Provider>(options: HarnessOptions<P>) {
  const h = await build(options);
  await h.dispatcher.start();
  await h.settle();
  return h;
}

async function build<P extends Provider>(options: HarnessOptions<P>) {
  const clock = new VirtualClock(options.start ?? T0);
  const backend = options.backend ?? memoryBackend;
  const stores = await backend.stores();
  const base = options.leadStore ?? stores.leads;
  const leadStore = options.wrapLeadStore?.(base) ?? base;
  const ports = backend.real ? inOrderPorts(leadStore, stores.gates) : null;
  const direct = ports?.gateStore ?? stores.gates;
  const inspect = ports?.alongside(stores.inspect) ?? stores.inspect;
  const gates = new FaultyGateStore({ clock, inner: direct, inspect });
  const leads = ports?.leadStore ?? leadStore;
  const settleAll = ports ? () => ports.settle() : () => settle();
  let dispatcher: Dispatcher | undefined;
  const provider = options.provider(clock, () => dispatcher as Dispatcher);
  dispatcher = createDispatcher({
    config: options.config,
    leadStore: leads,
    gateStore: gates,
    providers: [provider],
    clock,
    logger: silentLogger,
    hmacSecret: HMAC_SECRET,
    owner: "test-process",
    random: seededRandom(),
    numbers: options.numbers ?? [NUMBER],
    templates: options.templates ?? [TEMPLATE],
    blockedPhones: options.blockedPhones,
    ...options.extra,
  });
  const events: Recorded[] = [];
  for (const name of EVENT_NAMES) {
    dispatcher.on(name, (payload: unknown) => events.push({ name, payload, at: clock.now() } as Recorded));
  }
  const d = dispatcher;

  /** The events named `name`, with the clock reading when each was emitted. */
  const timed = <K extends DispatcherEventName>(name: K) =>
    events.filter((e) => e.name === name) as { name: K; payload: DispatcherEvents[K]; at: number }[];
  const of = <K extends DispatcherEventName>(name: K): DispatcherEvents[K][] =>
    timed(name).map((e) => e.payload);

  return {
    clock,
    backend: backend.name,
    gates,
    /** The real gate store, not through the faulty wrapper (nor its log): to set the scene. */
    direct,
    leads,
    provider,
    dispatcher: d,
    events,
    timed,
    of,
    alerts: (kind?: AlertKind): Alert[] => of("alert").filter((a) => kind === undefined || a.kind === kind),
    /** The phone's key in the gate store. */
    key: (phone: string) => phoneKey(HMAC_SECRET, phone),
    /** Rate-limit members recorded for the phone. */
    members: (phone: string) => gates.inspect.members(phoneKey(HMAC_SECRET, phone)),
    /** Holders of the number's lines right now. */
    holders: (numberId: string = NUMBER.id) => gates.inspect.holders(numberId, clock.now()),
    lead: async (id: string): Promise<LeadRecord> => {
      const lead = await leads.get(id);
      if (!lead) throw new Error(`no lead ${id}`);
      return lead;
    },
    /** Runs every timer up to `now + ms`, then stands at exactly that instant. */
    advance: async (ms: number) => {
      const until = clock.now() + ms;
      await runVirtual(clock, { until, settleFn: settleAll });
      clock.advanceTo(until);
      await settleAll();
    },
    /** Runs timers until `isDone()` or `ms` of virtual time passed; returns whether it got done. */
    runUntil: async (isDone: () => boolean, ms: number) => {
      await runVirtual(clock, { until: clock.now() + ms, isDone, settleFn: settleAll });
      return isDone();
    },
    /** Waits until nothing can happen any more without the clock moving. */
    settle: settleAll,
  };
}
