import { assign, fromCallback, fromPromise, setup } from "xstate";
import type { LeadRecord } from "./ports.js";

/**
 * The supervisor of one process (design §3): claims due leads, never more than its free slots, hands
 * them to the `leads` actor that runs one lead actor each, and claims again when a slot frees, a lead
 * is submitted (POKE) or the next lead falls due. On STOP it stops claiming, has the leads before their
 * dial stopped, and waits for the rest up to the drain timeout: never cancels a dial.
 *
 *   claiming ⇄ full, claiming → idle (reading the next due time, waiting for it, or backing off after
 *   a failed claim) → claiming; any of them → draining → stopped
 *
 * The invoked actors (`nextDue`, `leads`) and the side-effect actions are supplied by `provide`
 * (src/actors/supervisor.ts), so this file does no I/O. A claim is the `claim` action answered by a
 * CLAIMED or CLAIM_FAILED event: one runs per ending lead on a busy dispatcher, and an invoked actor
 * (with its AbortController) each time would cost more than the claim's own work. Timers are `after`
 * delays on the actor's clock, the injectable one.
 */

export interface SupervisorInput {
  concurrency: number;
  drainTimeoutMs: number;
}

export interface SupervisorContext {
  concurrency: number;
  drainTimeoutMs: number;
  /** Lead actors started and not yet ended (their end persisted). */
  running: number;
  /** A poke or a freed slot came while a claim was out: claim once more after it. */
  again: boolean;
  /** STOP came while a claim was out: its leads are handed back as soon as it settles. */
  stopping: boolean;
  /** From the last wake-up read: milliseconds until the next lead falls due, null when none is. */
  dueInMs: NextDueOutput;
  /** The result of the stop: every lead actor ended within the drain timeout. */
  drained: boolean;
}

export type SupervisorEvent =
  /** Something may have become claimable (a submit, a resume, a wake, another process). */
  | { type: "POKE" }
  /** `count` lead actors ended (in one turn) and their ends are persisted: their slots are free. */
  | { type: "LEAD_DONE"; count: number }
  | { type: "STOP" }
  /** The answer to the claim that `claim` sent (a reply event, not an invoked actor per claim). */
  | { type: "CLAIMED"; leads: LeadRecord[] }
  | { type: "CLAIM_FAILED"; error: unknown };

/** What the `leads` actor is told. */
export type LeadsCommand =
  | { type: "SPAWN"; leads: LeadRecord[] }
  /** Every lead actor before its dial stops and re-queues its lead. */
  | { type: "STOP_ALL" };

/** `null`: nothing is scheduled; otherwise milliseconds until the next lead falls due (0: now). */
export type NextDueOutput = number | null;

/** Wait after a failed claim (or a failed read of the next due time) before claiming again. */
export const CLAIM_RETRY_MS = 1000;

/** How many leads a CLAIMED event brings (guards and actions see the union of the events). */
const claimedOf = (event: SupervisorEvent): number => (event.type === "CLAIMED" ? event.leads.length : 0);

export const supervisorMachine = setup({
  types: {
    input: {} as SupervisorInput,
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    output: {} as { drained: boolean },
  },
  actors: {
    nextDue: fromPromise<NextDueOutput>(async () => null),
    leads: fromCallback<LeadsCommand>(() => {}),
  },
  actions: {
    /** Claims up to the free slots; answered by CLAIMED or CLAIM_FAILED. */
    claim: () => {},
    /** Starts one lead actor per claimed lead, as children of `leads`. */
    spawnLeads: () => {},
    /** Leads before their dial stop (re-queued now); committed dials go on. */
    stopLeads: () => {},
    /** Reports the error of a failed claim or wake-up read. */
    noteClaimError: () => {},
    // One assign per claim answer: a busy dispatcher takes this path once per dial.
    countClaimed: assign(({ context, event }) => ({
      running: context.running + claimedOf(event),
      again: false,
    })),
  },
  guards: {
    isStopping: ({ context }) => context.stopping,
    isFullAfterClaim: ({ context, event }) => context.running + claimedOf(event) >= context.concurrency,
    // Every free slot was filled, or something changed while the claim was out: there may be more.
    isClaimAgain: ({ context, event }) =>
      context.again || claimedOf(event) >= context.concurrency - context.running,
    isDueNow: ({ context }) => context.dueInMs === 0,
    isNothingDue: ({ context }) => context.dueInMs === null,
    isDrained: ({ context }) => context.running === 0,
  },
  delays: {
    claimRetry: CLAIM_RETRY_MS,
    untilDue: ({ context }) => context.dueInMs ?? 0,
    drainTimeout: ({ context }) => context.drainTimeoutMs,
  },
}).createMachine({
  id: "supervisor",
  context: ({ input }) => ({
    concurrency: input.concurrency,
    drainTimeoutMs: input.drainTimeoutMs,
    running: 0,
    again: false,
    stopping: false,
    dueInMs: null,
    drained: false,
  }),
  // The parent of every lead actor for the supervisor's whole life (a drain that timed out leaves
  // committed dials running: they end on their own).
  invoke: { id: "leads", src: "leads" },
  initial: "claiming",
  output: ({ context }) => ({ drained: context.drained }),
  states: {
    claiming: {
      entry: "claim",
      on: {
        // Straight to the next state (no state in between): a busy dispatcher comes here once per dial.
        CLAIMED: [
          { guard: "isStopping", target: "draining", actions: ["spawnLeads", "countClaimed"] },
          { guard: "isFullAfterClaim", target: "full", actions: ["spawnLeads", "countClaimed"] },
          {
            guard: "isClaimAgain",
            target: "claiming",
            reenter: true,
            actions: ["spawnLeads", "countClaimed"],
          },
          { target: "idle", actions: ["spawnLeads", "countClaimed"] },
        ],
        CLAIM_FAILED: [
          { guard: "isStopping", target: "draining", actions: ["noteClaimError", assign({ again: false })] },
          { target: "idle.backingOff", actions: ["noteClaimError", assign({ again: false })] },
        ],
        POKE: { actions: assign({ again: true }) },
        LEAD_DONE: {
          actions: assign({ running: ({ context, event }) => context.running - event.count, again: true }),
        },
        // Leads before their dial stop now; the claim is not abandoned: what it claims is handed back
        // as soon as it settles, not left to its lease.
        STOP: { actions: [assign({ stopping: true }), "stopLeads"] },
      },
    },
    full: {
      on: {
        LEAD_DONE: {
          target: "claiming",
          actions: assign({ running: ({ context, event }) => context.running - event.count }),
        },
        STOP: "draining",
      },
    },
    idle: {
      initial: "readingNextDue",
      on: {
        POKE: "claiming",
        LEAD_DONE: {
          target: "claiming",
          actions: assign({ running: ({ context, event }) => context.running - event.count }),
        },
        STOP: "draining",
      },
      states: {
        // A poke while this read is out claims at once; the read's answer is then dropped.
        readingNextDue: {
          invoke: {
            id: "nextDue",
            src: "nextDue",
            onDone: {
              target: "dueKnown",
              actions: assign({ dueInMs: ({ event }) => event.output }),
            },
            onError: {
              target: "backingOff",
              actions: "noteClaimError",
            },
          },
        },
        dueKnown: {
          always: [
            { guard: "isDueNow", target: "#supervisor.claiming" },
            { guard: "isNothingDue", target: "nothingDue" },
            { target: "waitingForDue" },
          ],
        },
        waitingForDue: { after: { untilDue: "#supervisor.claiming" } },
        nothingDue: {},
        backingOff: { after: { claimRetry: "#supervisor.claiming" } },
      },
    },
    draining: {
      entry: "stopLeads",
      always: { guard: "isDrained", target: "stopped", actions: assign({ drained: true }) },
      after: { drainTimeout: "stopped" },
      on: {
        LEAD_DONE: { actions: assign({ running: ({ context, event }) => context.running - event.count }) },
      },
    },
    stopped: { type: "final" },
  },
});
