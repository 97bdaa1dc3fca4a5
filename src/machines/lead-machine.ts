import { assign, setup } from "xstate";
import type { DeferReason, DialResult, LeadRecord, OutboundNumber, RateRule, Template } from "./ports.js";

export type { DeferReason } from "./ports.js";

/**
 * One dispatch attempt of one lead (design §2). Gates run in order:
 *   checking → window → prechecking → peekingRateLimit → selectingNumber → acquiringChannel →
 *   recordingAttempt → dialing
 * When every candidate line is busy the attempt ends `parked`: the lead waits on that set's line in
 * the lead store, holding nothing, until a released line wakes it (design §7.11).
 * A gate state asks the process's gate actor for its step on entry (`request`, supplied by `provide`,
 * so this file does no I/O) and moves on the reply, `gate.done.<gate>` or `gate.error.<gate>`. No child
 * actor per gate: one lead is one actor. A stop before the hold leaves the state and its reply
 * is ignored; from acquiringChannel on, a stop waits for the reply (design §7.12).
 * Nothing is held before acquiringChannel; from there every reject, failure or stop goes through
 * `releasing`, the one place that gives back the line and undoes the rate-limit record.
 */

// ---- gate outputs (what each gate's reply carries) -------------------------------------------

export type CheckOutput =
  | { kind: "ok"; template: Template; rules: RateRule[] }
  /** The lead is no longer ours to dispatch: touch nothing. */
  | { kind: "drop" }
  | { kind: "finish"; outcome: "NO_CONFIG" | "INVALID_PHONE" | "BLACKLISTED" | "EXPIRED" };
export type WindowOutput = { kind: "open" } | { kind: "closed"; opensAt: number };
/** The host's pre-dial checks, combined; `abort` also when the lead was deferred too often. */
export type PrecheckOutput =
  | { kind: "proceed" }
  | { kind: "abort"; reason: string }
  | { kind: "defer"; deferAt: number };
/** `over`: at the limit in rateLimit.mode alertOnly: alert, but go on. */
export type PeekOutput = { kind: "allowed" } | { kind: "blocked"; deferAt: number } | { kind: "over" };
/** `candidates`: every number the lead may dial from (the pinned one, or the pool), `number` first. */
export type SelectOutput =
  | { kind: "selected"; number: OutboundNumber; candidates: OutboundNumber[] }
  | { kind: "none" };
/** `held`: a line of `number` (a candidate that had one free); `full`: every candidate's lines busy. */
export type AcquireOutput = { kind: "held"; number: OutboundNumber } | { kind: "full"; parkOn: string[] };
export type RecordOutput = { kind: "recorded" } | { kind: "rejected"; deferAt: number } | { kind: "over" };
export type BeginDialOutput = { kind: "written"; dialRef: string } | { kind: "lost" };
/** The provider's answer and the clock reading when it came. */
export type CallOutput = DialResult & { at: number };

export interface GateInput {
  lead: LeadRecord;
  template: Template | null;
  rules: RateRule[];
  number: OutboundNumber | null;
  candidates: OutboundNumber[];
  dialRef: string | null;
  recorded: boolean;
}
export interface ReleaseInput {
  lead: LeadRecord;
  number: OutboundNumber | null;
  held: boolean;
  recorded: boolean;
}

/** What the attempt left behind; the runner persists it with one compare-and-set. */
export type LeadEnd =
  /** `at: null` = the runner picks the time (store errors: jittered 5–30 s; shutdown: now). */
  | { end: "deferred"; reason: DeferReason; at: number | null; notPlacedStreak?: number; dialResult?: string }
  /** `reason`: why the pre-dial checks aborted (PRECHECK_FAILED). */
  | { end: "finished"; outcome: string; dialResult?: string; reason?: string }
  | { end: "dropped" }
  /** Every candidate line was busy: the runner parks the lead on that set until a line comes free. */
  | { end: "parked"; numberIds: string[] }
  | { end: "dialled"; callId: string; numberId: string; dialRef: string }
  | { end: "heldUnknown"; numberId: string; dialRef: string; reason: string };

export type StopReason = "shutdown" | "cancel";
export type LeadEvent = { type: "STOP"; reason: StopReason };

/** The gates, in the order of design §2; `release` gives back what the attempt took. */
export type GateName =
  | "check"
  | "window"
  | "precheck"
  | "peek"
  | "selectNumber"
  | "acquire"
  | "record"
  | "beginDial"
  | "makeCall"
  | "release";
/** The gate actor's answer to one request: the step's output, or what it threw. */
export type GateReply =
  | { type: `gate.done.${GateName}`; output: unknown }
  | { type: `gate.error.${GateName}`; error: unknown };

export interface LeadContext {
  lead: LeadRecord;
  template: Template | null;
  rules: RateRule[];
  number: OutboundNumber | null;
  candidates: OutboundNumber[];
  /** A channel hold may exist (set before the acquire result is known to be safe on errors). */
  held: boolean;
  recorded: boolean;
  dialRef: string | null;
  stop: StopReason | null;
  end: LeadEnd | null;
  /** Pre-dial check defers in a row: the lead's count, + 1 on a precheck defer, 0 once the checks pass. */
  precheckDefers: number;
}

/** After this many notPlaced results in a row the lead ends PROVIDER_REJECTED (design §7.2). */
export const MAX_NOT_PLACED_IN_A_ROW = 10;

export const gateInput = (context: LeadContext): GateInput => ({
  lead: context.lead,
  template: context.template,
  rules: context.rules,
  number: context.number,
  candidates: context.candidates,
  dialRef: context.dialRef,
  recorded: context.recorded,
});

export const releaseInput = (context: LeadContext): ReleaseInput => ({
  lead: context.lead,
  number: context.number,
  held: context.held,
  recorded: context.recorded,
});

/** The entry action of a gate state: ask the gate actor for `gate`'s step. */
const request = (gate: GateName) => ({ type: "request", params: { gate } }) as const;

/** The end a stop leads to: a shutdown re-queues the lead now; a cancel already finished it in the store. */
const stopEnd = (stop: StopReason | null): LeadEnd =>
  stop === "cancel" ? { end: "dropped" } : { end: "deferred", reason: "shutdown", at: null };

const notPlacedBackoffSeconds = (streak: number) => Math.min(60, 5 * streak);

/** Before the channel gate nothing is held: a stop ends the attempt at once. */
const stopBeforeHold = [
  { guard: "isStopCancel", target: "dropped", actions: "endCancelled" },
  { target: "deferred", actions: "endRequeuedNow" },
] as const;

export const leadMachine = setup({
  types: {
    context: {} as LeadContext,
    input: {} as { lead: LeadRecord },
    events: {} as LeadEvent | GateReply,
    output: {} as LeadEnd,
  },

  guards: {
    isStopRequested: ({ context }) => context.stop !== null,
    isStopCancel: ({ event }) => (event as LeadEvent).reason === "cancel",
    isDropped: ({ event }) => out<CheckOutput>(event).kind === "drop",
    isNotDispatchable: ({ event }) => out<CheckOutput>(event).kind === "finish",
    isWindowClosed: ({ event }) => out<WindowOutput>(event).kind === "closed",
    isPrecheckAborted: ({ event }) => out<PrecheckOutput>(event).kind === "abort",
    isPrecheckDeferred: ({ event }) => out<PrecheckOutput>(event).kind === "defer",
    isRateBlocked: ({ event }) => out<PeekOutput>(event).kind === "blocked",
    isRateOver: ({ event }) => out<PeekOutput | RecordOutput>(event).kind === "over",
    isNoNumber: ({ event }) => out<SelectOutput>(event).kind === "none",
    isChannelFull: ({ event }) => out<AcquireOutput>(event).kind === "full",
    isRecordRejected: ({ event }) => out<RecordOutput>(event).kind === "rejected",
    // The record step throws RecordFailedClosedError when a rule or cooldown of the lead fails closed.
    isFailClosed: ({ event }) =>
      ((event as { error?: { name?: unknown } }).error?.name ?? null) === "RecordFailedClosedError",
    isDialRowLost: ({ event }) => out<BeginDialOutput>(event).kind === "lost",
    isPlaced: ({ event }) => out<CallOutput>(event).kind === "placed",
    isUnknown: ({ event }) => out<CallOutput>(event).kind === "unknown",
    isThrottled: ({ event }) => out<CallOutput>(event).kind === "throttled",
    isRejected: ({ event }) => out<CallOutput>(event).kind === "rejected",
    isNotPlacedTooOften: ({ context }) => context.lead.notPlacedStreak + 1 >= MAX_NOT_PLACED_IN_A_ROW,
    endsDeferred: ({ context }) => context.end?.end === "deferred",
    endsFinished: ({ context }) => context.end?.end === "finished",
  },
  actions: {
    // Side effects, supplied by the runner; the definitions here keep the machine pure.
    /** Send the gate actor this gate's request, with the lead actor as `replyTo`. */
    request: (_, _params: { gate: GateName }) => {},
    alertRateLimited: () => {},
    alertNoNumber: () => {},
    alertStoreUnavailable: () => {},
    alertProviderRejected: () => {},
    noteFailOpen: () => {},
    noteFailClosed: () => {},
    recordLater: () => {},
    noteReleaseFailed: () => {},
    noteStop: assign({ stop: ({ event }) => (event as LeadEvent).reason }),
    /** Cancelled: the store already finished the lead; touch nothing more. */
    endCancelled: assign({ end: stopEnd("cancel") }),
    /** Shutdown: back to the schedule, due now. */
    endRequeuedNow: assign({ end: stopEnd("shutdown") }),
  },
}).createMachine({
  id: "lead",
  context: ({ input }) => ({
    lead: input.lead,
    template: null,
    rules: [],
    number: null,
    candidates: [],
    held: false,
    recorded: false,
    dialRef: null,
    stop: null,
    end: null,
    precheckDefers: input.lead.precheckDefers,
  }),
  output: ({ context }) => context.end as LeadEnd,
  initial: "checking",
  states: {
    checking: {
      entry: request("check"),
      on: {
        STOP: stopBeforeHold,
        "gate.done.check": [
          { guard: "isDropped", target: "dropped", actions: assign({ end: { end: "dropped" } }) },
          {
            guard: "isNotDispatchable",
            target: "finished",
            actions: assign({
              end: ({ event }) => ({
                end: "finished",
                outcome: (event.output as { outcome: string }).outcome,
              }),
            }),
          },
          {
            target: "window",
            actions: assign(({ event }) => {
              const ok = event.output as Extract<CheckOutput, { kind: "ok" }>;
              return { template: ok.template, rules: ok.rules };
            }),
          },
        ],
        "gate.error.check": { target: "deferred", actions: assign({ end: storeDefer }) },
      },
    },
    window: {
      entry: request("window"),
      on: {
        STOP: stopBeforeHold,
        "gate.done.window": [
          {
            guard: "isWindowClosed",
            target: "deferred",
            actions: assign({
              end: deferredAt("window", "opensAt"),
            }),
          },
          { target: "prechecking" },
        ],
        "gate.error.window": { target: "deferred", actions: assign({ end: storeDefer }) },
      },
    },
    prechecking: {
      // The host's checks may take seconds: they run before anything is held.
      entry: request("precheck"),
      on: {
        STOP: stopBeforeHold,
        "gate.done.precheck": [
          {
            guard: "isPrecheckAborted",
            target: "finished",
            actions: assign({
              end: ({ event }) => ({
                end: "finished",
                outcome: "PRECHECK_FAILED",
                reason: (event.output as { reason: string }).reason,
              }),
            }),
          },
          {
            guard: "isPrecheckDeferred",
            target: "deferred",
            actions: assign({
              end: deferredAt("precheck"),
              precheckDefers: ({ context }) => context.precheckDefers + 1,
            }),
          },
          { target: "peekingRateLimit", actions: assign({ precheckDefers: 0 }) },
        ],
        // The runner's gate turns a failing check into a defer; this is the gate itself failing.
        "gate.error.precheck": {
          target: "deferred",
          actions: assign({
            end: { end: "deferred", reason: "precheck", at: null },
            precheckDefers: ({ context }) => context.precheckDefers + 1,
          }),
        },
      },
    },
    peekingRateLimit: {
      entry: request("peek"),
      on: {
        STOP: stopBeforeHold,
        "gate.done.peek": [
          {
            guard: "isRateBlocked",
            target: "deferred",
            actions: [
              "alertRateLimited",
              assign({
                end: deferredAt("rateLimit"),
              }),
            ],
          },
          { guard: "isRateOver", target: "selectingNumber", actions: "alertRateLimited" },
          { target: "selectingNumber" },
        ],
        // Fail open: a read-only count is not worth a missed call; record is the authoritative cap.
        "gate.error.peek": { target: "selectingNumber", actions: "noteFailOpen" },
      },
    },
    selectingNumber: {
      entry: request("selectNumber"),
      on: {
        STOP: stopBeforeHold,
        "gate.done.selectNumber": [
          {
            // A missing number is a misconfiguration, never a retry loop.
            guard: "isNoNumber",
            target: "finished",
            actions: ["alertNoNumber", assign({ end: { end: "finished", outcome: "NUMBER_UNAVAILABLE" } })],
          },
          {
            target: "acquiringChannel",
            actions: assign(({ event }) => {
              const selected = event.output as Extract<SelectOutput, { kind: "selected" }>;
              return { number: selected.number, candidates: selected.candidates };
            }),
          },
        ],
        "gate.error.selectNumber": { target: "deferred", actions: assign({ end: storeDefer }) },
      },
    },
    acquiringChannel: {
      // A stop waits for the store call to settle, then releases what it took (design §7.12).
      entry: request("acquire"),
      on: {
        STOP: { actions: "noteStop" },
        "gate.done.acquire": [
          {
            // No timed retry: the lead waits on the set, holding nothing, until a line comes free.
            guard: "isChannelFull",
            target: "parked",
            actions: assign({
              end: ({ event }) => ({
                end: "parked",
                numberIds: (event.output as Extract<AcquireOutput, { kind: "full" }>).parkOn,
              }),
            }),
          },
          {
            guard: "isStopRequested",
            target: "releasing",
            actions: assign({ held: true, number: heldNumber, end: ({ context }) => stopEnd(context.stop) }),
          },
          { target: "recordingAttempt", actions: assign({ held: true, number: heldNumber }) },
        ],
        // Fail closed: capacity can't be proven. The command may still have run: release by name.
        "gate.error.acquire": {
          target: "releasing",
          actions: ["alertStoreUnavailable", assign({ held: true, end: storeDefer })],
        },
      },
    },
    recordingAttempt: {
      entry: request("record"),
      on: {
        STOP: { actions: "noteStop" },
        "gate.done.record": [
          {
            // Lost the race: another actor on the same phone recorded after our peek.
            guard: "isRecordRejected",
            target: "releasing",
            actions: [
              "alertRateLimited",
              assign({
                end: deferredAt("rateLimit"),
              }),
            ],
          },
          {
            guard: "isStopRequested",
            target: "releasing",
            actions: assign({ recorded: true, end: ({ context }) => stopEnd(context.stop) }),
          },
          {
            guard: "isRateOver",
            target: "dialing",
            actions: ["alertRateLimited", assign({ recorded: true })],
          },
          { target: "dialing", actions: assign({ recorded: true }) },
        ],
        "gate.error.record": [
          {
            guard: "isStopRequested",
            target: "releasing",
            actions: ["recordLater", assign({ end: ({ context }) => stopEnd(context.stop) })],
          },
          {
            // A legal cap may prefer a missed call to an extra one (failMode closed, design §7.6). The
            // command may still have run: undo it by name.
            guard: "isFailClosed",
            target: "releasing",
            actions: ["noteFailClosed", assign({ recorded: true, end: storeDefer })],
          },
          { target: "dialing", actions: ["noteFailOpen", "recordLater"] },
        ],
      },
    },
    dialing: {
      // Committed: a stop never cancels a dial that has started (design §3).
      initial: "writingDialRow",
      states: {
        writingDialRow: {
          entry: request("beginDial"),
          on: {
            "gate.done.beginDial": [
              {
                // The lead was cancelled or re-claimed meanwhile: makeCall never runs.
                guard: "isDialRowLost",
                target: "#lead.releasing",
                actions: assign({ end: { end: "dropped" } }),
              },
              {
                target: "placingCall",
                actions: assign({ dialRef: ({ event }) => (event.output as { dialRef: string }).dialRef }),
              },
            ],
            // No dial without its dial row.
            "gate.error.beginDial": { target: "#lead.releasing", actions: assign({ end: storeDefer }) },
          },
        },
        placingCall: {
          entry: request("makeCall"),
          on: {
            "gate.done.makeCall": [
              {
                guard: "isPlaced",
                target: "#lead.inCall",
                actions: assign({
                  end: ({ event, context }) => ({
                    end: "dialled",
                    callId: (event.output as { callId: string }).callId,
                    numberId: context.number?.id ?? "",
                    dialRef: context.dialRef ?? "",
                  }),
                }),
              },
              {
                // Sent, no usable reply: keep the line and the record; never redial blindly.
                guard: "isUnknown",
                target: "#lead.heldUnknown",
                actions: assign({
                  end: ({ event, context }) => ({
                    end: "heldUnknown",
                    numberId: context.number?.id ?? "",
                    dialRef: context.dialRef ?? "",
                    reason: (event.output as { reason: string }).reason,
                  }),
                }),
              },
              {
                guard: "isRejected",
                target: "#lead.releasing",
                actions: [
                  "alertProviderRejected",
                  assign({ end: { end: "finished", outcome: "PROVIDER_REJECTED", dialResult: "rejected" } }),
                ],
              },
              {
                guard: "isThrottled",
                target: "#lead.releasing",
                actions: assign({
                  end: ({ event, context }) => throttledDefer(context, event.output as CallOutput),
                }),
              },
              {
                guard: "isNotPlacedTooOften",
                target: "#lead.releasing",
                actions: [
                  "alertProviderRejected",
                  assign({ end: { end: "finished", outcome: "PROVIDER_REJECTED", dialResult: "notPlaced" } }),
                ],
              },
              {
                target: "#lead.releasing",
                actions: assign({
                  end: ({ event, context }) => notPlacedDefer(context, (event.output as CallOutput).at),
                }),
              },
            ],
            // The provider adapter threw before any reply: nothing was placed.
            "gate.error.makeCall": [
              {
                guard: "isNotPlacedTooOften",
                target: "#lead.releasing",
                actions: [
                  "alertProviderRejected",
                  assign({ end: { end: "finished", outcome: "PROVIDER_REJECTED", dialResult: "notPlaced" } }),
                ],
              },
              {
                target: "#lead.releasing",
                actions: assign({ end: ({ context }) => notPlacedDefer(context, null) }),
              },
            ],
          },
        },
      },
    },
    releasing: {
      entry: request("release"),
      on: {
        "gate.done.release": [
          { guard: "endsDeferred", target: "deferred" },
          { guard: "endsFinished", target: "finished" },
          { target: "dropped" },
        ],
        // The release gate hands what it could not give back to the outbox; never block here.
        "gate.error.release": [
          { guard: "endsDeferred", target: "deferred", actions: "noteReleaseFailed" },
          { guard: "endsFinished", target: "finished", actions: "noteReleaseFailed" },
          { target: "dropped", actions: "noteReleaseFailed" },
        ],
      },
    },
    deferred: { type: "final" },
    parked: { type: "final" },
    finished: { type: "final" },
    dropped: { type: "final" },
    inCall: { type: "final" },
    heldUnknown: { type: "final" },
  },
});

function out<T>(event: unknown): T {
  return (event as { output: T }).output;
}

/** The number whose line the acquire took (another candidate when the selected one was full). */
function heldNumber({ event }: { event: unknown }): OutboundNumber {
  return out<Extract<AcquireOutput, { kind: "held" }>>(event).number;
}

/** The end of a gate that said "not now": deferred to the instant in its output (`deferAt`, or `opensAt`). */
function deferredAt(reason: DeferReason, key: "deferAt" | "opensAt" = "deferAt") {
  return ({ event }: { event: unknown }): LeadEnd => ({
    end: "deferred",
    reason,
    at: out<Record<string, number>>(event)[key] as number,
  });
}

function storeDefer(): LeadEnd {
  return { end: "deferred", reason: "store", at: null };
}

function notPlacedDefer(context: LeadContext, at: number | null): LeadEnd {
  const streak = context.lead.notPlacedStreak + 1;
  return {
    end: "deferred",
    reason: "notPlaced",
    at: at === null ? null : at + notPlacedBackoffSeconds(streak) * 1000,
    notPlacedStreak: streak,
    dialResult: "notPlaced",
  };
}

function throttledDefer(context: LeadContext, output: CallOutput): LeadEnd {
  // Waiting for our own pacing is no refusal by the provider: the streak stays.
  const pacing = output.kind === "throttled" && output.pacing === true;
  const streak = context.lead.notPlacedStreak + (pacing ? 0 : 1);
  const retryAfter = output.kind === "throttled" ? output.retryAfterSeconds : undefined;
  return {
    end: "deferred",
    reason: "throttled",
    at: output.at + (retryAfter ?? notPlacedBackoffSeconds(streak)) * 1000,
    notPlacedStreak: streak,
    dialResult: "throttled",
  };
}
