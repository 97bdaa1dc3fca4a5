import { randomUUID } from "node:crypto";
import { createDispatcher, type DispatcherStats } from "../../dispatcher.js";
import { runVirtual, VirtualClock } from "../../infra/clock.js";
import { createLogger, envLogLevel } from "../../infra/logger.js";
import { type SimDial, SimulatedProvider } from "../../infra/providers/simulated.js";
import type {
  Alert,
  CallerIdMatch,
  LeadInput,
  LeadRecord,
  Provider,
  ZoneSource,
} from "../../machines/ports.js";
import { type BackendFactory, memoryBackend } from "./backends.js";
import { faultActive, injectStoreFaults } from "./faults.js";
import { DISPATCHER_STREAM, randomStream } from "./random.js";
import { expandLeads, type Scenario, type SimLead } from "./scenario.js";

export interface RunOptions {
  /** The stores to run on; memory by default. */
  backend?: BackendFactory;
  /** After every step of the virtual clock. */
  onProgress?(doneLeads: number, total: number, atSeconds: number): void;
}

/** One deferral as the dispatcher announced it (epoch ms). */
export interface DeferEvent {
  at: number;
  until: number;
  reason: string;
}

/** The zones the window gate judged a lead's windows in (its last `lead:window`). */
export interface WindowZones {
  zones: string[];
  zoneSource: ZoneSource;
}

/** Everything a run observed; `buildReport` turns it into the report of simulate.md. */
export interface SimulationRun {
  scenario: Scenario;
  startAt: number;
  untilAt: number;
  leads: SimLead[];
  /** Every makeCall as the provider saw it, in order: the ground truth of the invariants. */
  dials: readonly SimDial[];
  defers: Map<string, DeferEvent[]>;
  alerts: Alert[];
  gates: DispatcherStats["gates"];
  /** When each finished lead reached FINISHED (epoch ms). */
  finishedAt: Map<string, number>;
  /** The lead store at the end. */
  stored: LeadRecord[];
  /** The claim owner of this run's dispatcher: the only live owner (design §7.4). */
  owner: string;
  /** Per lead, the last `lead:window` (leads that never met a window are absent). */
  windowZones: Map<string, WindowZones>;
  /** Per dialRef, the caller-ID match `lead:dialling` announced (local-presence templates only). */
  callerIds: Map<string, CallerIdMatch>;
}

const OWNER = "simulate";

/**
 * Runs the real dispatcher against the simulated provider on a virtual clock starting at `startAt`,
 * until every lead is FINISHED or the horizon. The dispatcher is left as it is at the end, not
 * stopped: `stop()` would re-queue actors before their dial and wait for dials in flight, and the
 * horizon is a hard stop ("calls still in progress then are left as they are").
 */
export async function runScenario(scenario: Scenario, options: RunOptions = {}): Promise<SimulationRun> {
  const startAt = Date.parse(scenario.startAt);
  const untilAt = startAt + Math.round(scenario.untilSeconds * 1000);
  const clock = new VirtualClock(startAt);
  const backend = await (options.backend ?? memoryBackend)({ runId: randomUUID(), clock });
  try {
    const leads = expandLeads(scenario);
    const logger = createLogger(envLogLevel("silent"), clock);
    const storeDown = faultActive(scenario.faults, "storeDown", startAt);
    const provider = new SimulatedProvider({
      clock,
      default: { result: "placed", ...scenario.provider.default },
      perLead: scenario.provider.perLead,
      isDown: faultActive(scenario.faults, "providerDown", startAt),
      onCallEnd: (end) => {
        dispatcher.callEnded(end).catch((error: unknown) => logger.error({ err: error }, "callEnded failed"));
      },
    });
    const dispatcher = createDispatcher({
      config: scenario.config,
      leadStore: backend.leadStore,
      gateStore: injectStoreFaults(backend.gateStore, () => storeDown(clock.now())),
      providers: providersByName(scenario, provider),
      clock,
      logger,
      hmacSecret: `simulate-${scenario.seed}`,
      owner: OWNER,
      random: randomStream(scenario.seed, DISPATCHER_STREAM),
      numbers: scenario.numbers,
      templates: scenario.templates,
    });

    const defers = new Map<string, DeferEvent[]>();
    const finishedAt = new Map<string, number>();
    const alerts: Alert[] = [];
    const windowZones = new Map<string, WindowZones>();
    const callerIds = new Map<string, CallerIdMatch>();
    dispatcher.on("lead:window", ({ leadId, zones, zoneSource }) => {
      windowZones.set(leadId, { zones: [...zones], zoneSource });
    });
    dispatcher.on("lead:dialling", ({ dialRef, callerId }) => {
      if (callerId !== undefined) callerIds.set(dialRef, callerId);
    });
    dispatcher.on("lead:deferred", ({ leadId, reason, at }) => {
      const list = defers.get(leadId) ?? [];
      defers.set(leadId, list);
      list.push({ at: clock.now(), until: at, reason });
    });
    dispatcher.on("lead:finished", ({ leadId }) => {
      if (!finishedAt.has(leadId)) finishedAt.set(leadId, clock.now());
    });
    dispatcher.on("alert", (alert) => alerts.push(alert));
    dispatcher.on("error", ({ where, error }) => logger.warn({ err: error, where }, "dispatcher error"));

    const total = leads.length;
    const progress = () => options.onProgress?.(finishedAt.size, total, (clock.now() - startAt) / 1000);
    await dispatcher.submit(leads.map((lead) => toLeadInput(lead, startAt)));
    await dispatcher.start();
    await runVirtual(clock, {
      until: untilAt,
      isDone: () => finishedAt.size >= total,
      settleFn: backend.settleFn,
      onStep: progress,
    });
    progress();

    return {
      scenario,
      startAt,
      untilAt,
      leads,
      dials: provider.dials,
      defers,
      alerts,
      gates: dispatcher.stats().gates,
      finishedAt,
      stored: await backend.leadStore.list(),
      owner: OWNER,
      windowZones,
      callerIds,
    };
  } finally {
    await backend.close();
  }
}

/**
 * One simulated provider, exposed under every provider name the numbers use: a lead's dial sequence
 * (which `perLead` is indexed by) and the dial log stay one, whichever pool number a dial goes through.
 */
function providersByName(scenario: Scenario, provider: SimulatedProvider): Provider[] {
  const names = new Set(scenario.numbers.map((n) => n.provider));
  return [...names].map((name) => ({ name, makeCall: (req) => provider.makeCall(req) }));
}

function toLeadInput(lead: SimLead, startAt: number): LeadInput {
  return {
    id: lead.id,
    phone: lead.phone,
    templateId: lead.templateId,
    dueAt: startAt + lead.dueAtMs,
    ...(lead.expiresAtMs !== undefined && { expiresAt: startAt + lead.expiresAtMs }),
    ...(lead.timeZone !== undefined && { timeZone: lead.timeZone }),
    ...(lead.payload !== undefined && { payload: lead.payload }),
  };
}
