import type { Logger } from "pino";
import { type AnyActorRef, createActor } from "xstate";
import { maskPhone } from "../infra/mask.js";
import { type LeadEnd, leadMachine, type StopReason } from "../machines/lead-machine.js";
import type { LeadRecord, Settled, Settlement } from "../machines/ports.js";
import type { Alerter } from "./alerter.js";
import { createGateSteps, type GateDeps, gateActorLogic, requestGate } from "./gates.js";
import type { LeadLog } from "./lead-log.js";

export interface LeadActorDeps extends GateDeps {
  alerter: Alerter;
  logger: Logger;
  /** Each lead's story in the log (gate results at debug); none when omitted. */
  leadLog?: LeadLog;
  /**
   * A lead was parked on this set. A line freed between the acquire and the park woke nobody: the
   * host looks at the set once more.
   */
  onParked?: (numberIds: string[]) => void;
  /** A lead woken for a line ended without taking one (another gate stopped it): pass the line on. */
  onWakeUnused?: () => void;
}

export interface RunningLead {
  readonly leadId: string;
  readonly token: string;
  /** Resolves once the end is persisted. Never rejects. */
  readonly done: Promise<LeadEnd | null>;
  /** Stop before the dial; ignored once dialling started. */
  stop(reason: StopReason): void;
}

/**
 * The runner of one claimed lead: binds the machine's gates and side effects to the ports, runs it to
 * a final state and persists that end with one compare-and-set on the claim token.
 */
export function createLeadRunner(deps: LeadActorDeps) {
  const { clock, config, store, alerter } = deps;
  const { steps, recordLater } = createGateSteps(deps);

  // The process's gate actor. It is also the parent of a lead actor run without a supervisor (the
  // supervisor's `leads` actor is otherwise): lead actors join one actor system instead of each
  // building one of their own (about 1 KB less per parked lead in bench/heap.ts). Inspecting a system
  // sees its lead actors: the gate results at debug.
  const gateActor = createActor(gateActorLogic(steps), {
    id: "gates",
    inspect: deps.leadLog?.inspector(),
  }).start();
  // The host's pre-dial checks stop with their lead: the one signal a lead has before its dial's.
  const precheckStops = new WeakMap<AnyActorRef, AbortController>();
  const signalFor = (lead: AnyActorRef) => {
    if ((deps.preDialChecks ?? []).length === 0) return undefined;
    const controller = new AbortController();
    precheckStops.set(lead, controller);
    return controller.signal;
  };

  const machine = leadMachine.provide({
    actions: {
      request: requestGate(gateActor, signalFor),
      alertRateLimited: ({ context }) => {
        const t = context.template;
        void alerter.raise(
          "rate_limit_blocked",
          `${t?.resellerId ?? "?"}:${context.lead.templateId}`,
          "Per-phone call limit reached; the lead waits until the window has room",
          {
            leadId: context.lead.id,
            // Not `phone`: the logger redacts that key, and this value is masked already.
            phoneMasked: maskPhone(context.lead.phone),
            templateId: context.lead.templateId,
          },
        );
      },
      alertNoNumber: ({ context }) => {
        const resellerId = context.template?.resellerId ?? "?";
        void alerter.raise(
          "no_outbound_number",
          `${resellerId}:${context.lead.templateId}`,
          "No AVAILABLE outbound number for the template: leads finish NUMBER_UNAVAILABLE",
          { resellerId, templateId: context.lead.templateId },
        );
      },
      alertStoreUnavailable: () => {
        void alerter.raise(
          "store_unavailable",
          "gate-store",
          "Gate store unavailable: channel gate fails closed",
        );
      },
      alertProviderRejected: ({ context, event }) => {
        const output = (event as { output?: { kind?: string; account?: boolean; reason?: string } }).output;
        if (output?.kind === "rejected" && !output.account) return;
        const provider = context.number?.provider ?? "?";
        void alerter.raise("provider_rejected", provider, "Provider refuses calls", {
          provider,
          numberId: context.number?.id ?? "?",
          reason: output?.reason ?? "notPlaced too often",
        });
      },
      noteFailOpen: ({ context, event }) => {
        const gate = context.held ? "record" : "peek";
        const error = String((event as { error?: unknown }).error);
        deps.emit("gate:failOpen", { leadId: context.lead.id, gate, error });
        void alerter.raise("store_unavailable", "gate-store", `Gate store unavailable: ${gate} failed open`);
      },
      noteFailClosed: ({ context, event }) => {
        const error = String((event as { error?: unknown }).error);
        deps.emit("gate:failClosed", { leadId: context.lead.id, gate: "record", error });
        void alerter.raise(
          "store_unavailable",
          "gate-store",
          "Gate store unavailable: record fails closed (a rule with failMode closed)",
        );
      },
      recordLater: ({ context }) => recordLater(context.lead, context.rules, clock.now()),
      noteReleaseFailed: ({ context, event }) =>
        deps.emit("error", {
          where: `release ${context.lead.id}`,
          error: (event as { error?: unknown }).error,
        }),
    },
  });

  /** `owner`: the parent actor, the supervisor's `leads` actor when it runs the lead. */
  return function run(lead: LeadRecord, owner: AnyActorRef = gateActor): RunningLead {
    const token = lead.token as string;
    const actor = createActor(machine, { input: { lead }, parent: owner });
    deps.leadLog?.track(actor, lead.id);
    const done = new Promise<LeadEnd | null>((resolve) => {
      actor.subscribe({
        complete: () => {
          const snapshot = actor.getSnapshot();
          const end = snapshot.output as LeadEnd;
          persist(lead, end, snapshot.context.precheckDefers).then(
            () => {
              const tookLine = end.end === "dialled" || end.end === "heldUnknown" || end.end === "parked";
              if (lead.parkedAt !== null && !tookLine) deps.onWakeUnused?.();
              resolve(end);
            },
            (error: unknown) => {
              deps.emit("error", { where: `persist ${lead.id}`, error });
              resolve(end);
            },
          );
        },
        error: (error) => {
          // A defect, not a gate outcome: the claim lease expires and another claim retries the lead.
          deps.logger.error({ leadId: lead.id, err: error }, "lead actor failed");
          deps.emit("error", { where: `actor ${lead.id}`, error });
          resolve(null);
        },
      });
    });
    actor.start();
    const stop = (reason: StopReason) => {
      actor.send({ type: "STOP", reason });
      precheckStops.get(actor)?.abort(new Error(`lead stopped: ${reason}`));
    };
    return { leadId: lead.id, token, done, stop };
  };

  /** `precheckDefers`: the attempt's count; written with a defer when it changed. */
  async function persist(lead: LeadRecord, end: LeadEnd, precheckDefers: number): Promise<void> {
    const token = lead.token as string;
    const now = clock.now();
    const leadId = lead.id;
    switch (end.end) {
      case "dropped":
        deps.emit("lead:dropped", { leadId });
        return;
      case "deferred": {
        const at = end.at ?? now + defaultDeferMs(end, deps.random) * (end.reason === "shutdown" ? 0 : 1);
        const settled = await settle(token, {
          kind: "defer",
          at,
          deferReason: end.reason,
          notPlacedStreak: end.notPlacedStreak,
          precheckDefers: precheckDefers === lead.precheckDefers ? undefined : precheckDefers,
          dialResult: end.dialResult,
        });
        if (settled?.status === "SCHEDULED") deps.emit("lead:deferred", { leadId, reason: end.reason, at });
        else if (settled) deps.emit("lead:finished", { leadId, outcome: settled.outcome ?? "" });
        return;
      }
      case "parked": {
        const settled = await settle(token, {
          kind: "defer",
          at: now,
          deferReason: "channel",
          parkOn: end.numberIds,
          precheckDefers: precheckDefers === lead.precheckDefers ? undefined : precheckDefers,
        });
        if (settled?.status === "SCHEDULED") {
          deps.emit("lead:parked", { leadId, numberIds: end.numberIds });
          // `at`: when its set is looked at again at the latest, if no release wakes it before.
          const at = now + config.channelWait.maxParkSeconds * 1000;
          deps.emit("lead:deferred", { leadId, reason: "channel", at });
          deps.onParked?.(end.numberIds);
        } else if (settled) deps.emit("lead:finished", { leadId, outcome: settled.outcome ?? "" });
        return;
      }
      case "finished":
        if (await settle(token, { kind: "finish", outcome: end.outcome, dialResult: end.dialResult })) {
          const reason = end.reason === undefined ? {} : { reason: end.reason };
          deps.emit("lead:finished", { leadId, outcome: end.outcome, ...reason });
        }
        return;
      case "dialled":
        if (await settle(token, { kind: "placed", callId: end.callId })) {
          deps.emit("lead:dialled", {
            leadId,
            numberId: end.numberId,
            callId: end.callId,
            dialRef: end.dialRef,
          });
        }
        return;
      case "heldUnknown":
        if (!(await settle(token, { kind: "unknown" }))) return;
        deps.emit("lead:heldUnknown", {
          leadId,
          numberId: end.numberId,
          dialRef: end.dialRef,
          reason: end.reason,
        });
        void alerter.raise("unknown_dial", end.numberId, "A dial got no usable reply; its line is held", {
          leadId,
          numberId: end.numberId,
          reason: end.reason,
        });
        return;
    }
  }

  /**
   * The lead as the settle left it, or null when it had moved on (cancelled, re-claimed). A settle
   * that fails is retried from the outbox: the compare-and-set makes a late one harmless.
   */
  async function settle(token: string, settlement: Settlement): Promise<Settled | null> {
    try {
      return await store.settle(token, settlement, clock.now());
    } catch (error) {
      deps.outbox.add({
        what: `settle ${settlement.kind} ${token}`,
        run: () => store.settle(token, settlement, clock.now()),
      });
      throw error;
    }
  }

  function defaultDeferMs(end: Extract<LeadEnd, { end: "deferred" }>, random: () => number): number {
    if (end.reason === "notPlaced") return Math.min(60, 5 * (end.notPlacedStreak ?? 1)) * 1000;
    if (end.reason === "precheck") return config.preDialCheck.failureDeferSeconds * 1000;
    const { min, max } = config.storeErrorDeferSeconds;
    return Math.round((min + random() * (max - min)) * 1000);
  }
}
