/**
 * A dispatcher on the in-memory backend and a virtual clock, with a provider that records every dial:
 * the setting of the operator-control, pre-dial-check and calling-window tests.
 */
import pino from "pino";
import { createDispatcher, type Dispatcher, type DispatcherOptions } from "../../src/dispatcher.js";
import type { DispatcherEventName, DispatcherEvents } from "../../src/events.js";
import { runVirtual, settle, VirtualClock } from "../../src/infra/clock.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import type { DialRequest, DialResult, LeadRecord, LeadStore, Provider } from "../../src/machines/ports.js";

/** Monday 2031-01-06 06:00 UTC: 01:00 in New York, 06:00 in London, 11:30 in Kolkata. */
export const T0 = Date.UTC(2031, 0, 6, 6, 0, 0);
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const SECRET = "controls-test-secret";
export const PHONES = ["+14155550123", "+14155552671", "+12025550143", "+12125551234", "+919876543210"];

export const NUMBER = {
  id: "num-1",
  e164: "+15550000001",
  provider: "sim",
  maxChannels: 50,
  status: "AVAILABLE",
  pool: true,
} as const;

/** Places every call, unless an answer is queued; records the dials (time, lead, request). */
export class RecordingProvider implements Provider {
  readonly name = "sim";
  readonly dials: { leadId: string; at: number; req: DialRequest }[] = [];
  readonly #answers: (() => Promise<DialResult>)[] = [];
  #ids = 0;

  constructor(private readonly clock: { now(): number }) {}

  /** The next makeCall answers with `answer()` instead of placing the call. */
  queue(answer: () => Promise<DialResult>): void {
    this.#answers.push(answer);
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    this.dials.push({ leadId: req.leadId, at: this.clock.now(), req });
    const answer = this.#answers.shift();
    return answer ? answer() : { kind: "placed", callId: `call-${++this.#ids}` };
  }

  dialled(leadId: string): number[] {
    return this.dials.filter((d) => d.leadId === leadId).map((d) => d.at);
  }
}

export interface WorldOptions extends Partial<DispatcherOptions> {
  start?: number;
}

export type Recorded = { [K in DispatcherEventName]: { name: K; payload: DispatcherEvents[K]; at: number } };

/** Builds and starts a dispatcher; `options` override the defaults. */
export async function createWorld(options: WorldOptions = {}) {
  const clock = new VirtualClock(options.start ?? T0);
  const provider = new RecordingProvider(clock);
  const gates = new MemoryGateStore();
  const store: LeadStore = options.leadStore ?? new MemoryLeadStore();
  const dispatcher: Dispatcher = createDispatcher({
    clock,
    leadStore: store,
    gateStore: gates,
    providers: [provider],
    logger: pino({ level: "silent" }),
    hmacSecret: SECRET,
    owner: "controls-test",
    random: () => 0.5,
    numbers: [NUMBER],
    ...options,
  });
  const events: Recorded[DispatcherEventName][] = [];
  const names: DispatcherEventName[] = [
    "lead:claimed",
    "lead:dialling",
    "lead:deferred",
    "lead:finished",
    "lead:dropped",
    "lead:prechecked",
    "dispatch:paused",
    "dispatch:resumed",
    "window:changed",
    "error",
  ];
  for (const name of names) {
    dispatcher.on(name, (payload: unknown) =>
      events.push({ name, payload, at: clock.now() } as Recorded[DispatcherEventName]),
    );
  }
  await dispatcher.start();
  await settle();

  const of = <K extends DispatcherEventName>(name: K) =>
    events.filter((e) => e.name === name) as Recorded[K][];

  return {
    clock,
    provider,
    gates,
    store,
    dispatcher,
    events,
    /** Payloads of the events named `name`. */
    of: <K extends DispatcherEventName>(name: K): DispatcherEvents[K][] => of(name).map((e) => e.payload),
    /** The events named `name` with the clock reading when each came. */
    timed: of,
    lead: async (id: string): Promise<LeadRecord> => {
      const lead = await store.get(id);
      if (!lead) throw new Error(`no lead ${id}`);
      return lead;
    },
    members: (phone: string) => gates.members(phoneKey(SECRET, phone)),
    holders: () => gates.holders(NUMBER.id, clock.now()),
    /** Runs every timer up to `now + ms`, then stands at exactly that instant. */
    advance: async (ms: number) => {
      const until = clock.now() + ms;
      await runVirtual(clock, { until });
      clock.advanceTo(until);
      await settle();
    },
    settle: () => settle(),
  };
}

export type World = Awaited<ReturnType<typeof createWorld>>;
