import type { Alert, CallerIdMatch, DeferReason, PauseScope, ZoneSource } from "./machines/ports.js";

/** Everything a dispatcher tells its host. Payloads never carry a phone number. */
export interface DispatcherEvents {
  /** A lead was claimed and its actor started. */
  "lead:claimed": { leadId: string; token: string };
  /**
   * makeCall was invoked (whatever its result comes to be). `callerId`: for a template that asks for
   * local presence, how near the chosen number is to the callee (design §7.9).
   */
  "lead:dialling": {
    leadId: string;
    token: string;
    numberId: string;
    dialRef: string;
    callerId?: CallerIdMatch;
  };
  /**
   * The window gate judged the lead's windows (design §7.8) in `zones`, found from `zoneSource`: the
   * lead's timeZone, the callee's number, or the template's window. Only for leads with a window.
   */
  "lead:window": { leadId: string; zones: string[]; zoneSource: ZoneSource; open: boolean };
  /** makeCall returned; `result` is the provider's classification. */
  "lead:dialResult": { leadId: string; numberId: string; dialRef: string; result: string };
  /** The provider placed the call: the lead is PROCESSING and holds its line until the call ends. */
  "lead:dialled": { leadId: string; numberId: string; callId: string; dialRef: string };
  /** Sent but no usable reply: line and record held until an end signal or the unknown-dial hold ends. */
  "lead:heldUnknown": { leadId: string; numberId: string; dialRef: string; reason: string };
  /** The lead went back to the schedule. */
  "lead:deferred": { leadId: string; reason: DeferReason | "retry" | "unknownExpired"; at: number };
  /** The lead reached FINISHED; `reason` says why the pre-dial checks aborted (PRECHECK_FAILED). */
  "lead:finished": { leadId: string; outcome: string; reason?: string };
  /** The host's pre-dial checks answered (combined); failures of single checks come as `error`. */
  "lead:prechecked": { leadId: string; verdict: "proceed" | "abort" | "defer" };
  /** The actor found the lead no longer its own and touched nothing. */
  "lead:dropped": { leadId: string };
  /** A gate decided without the store (peek or record failed open). */
  "gate:failOpen": { leadId: string; gate: "peek" | "record"; error: string };
  /** The record failed and a rule of the lead fails closed: the lead defers instead of dialling. */
  "gate:failClosed": { leadId: string; gate: "record"; error: string };
  /** A gate ran: peek/record with their verdicts, channel with exhaustion. */
  "gate:result": {
    leadId: string;
    gate: "peek" | "record" | "channel";
    verdict: "allowed" | "blocked" | "recorded" | "rejected" | "held" | "exhausted";
  };
  /** No free line on any candidate number: the lead parks on that set until a released line wakes it. */
  "channel:waiting": { leadId: string; numberIds: string[]; dueAt: number };
  /** The lead is parked on a set of numbers (persisted): it waits, holding nothing, for a line. */
  "lead:parked": { leadId: string; numberIds: string[] };
  /** Parked leads were woken because lines of `numberId` came free (or the set check found one free). */
  "channel:woken": { numberId: string; leadIds: string[] };
  /** A channel hold was given back. */
  "channel:released": { numberId: string; holder: string };
  /** An operator paused dispatch of a scope (for every process on the lead store). */
  "dispatch:paused": { scope: PauseScope };
  /** An operator lifted a pause. */
  "dispatch:resumed": { scope: PauseScope };
  /** A template's calling window changed: its leads parked for the window were woken. */
  "window:changed": { templateId: string; woken: number };
  /** An alert passed its throttle and went to the sinks. */
  alert: Alert;
  /** Something failed that the dispatcher absorbed (sink down, outbox retry, persist failure). */
  error: { where: string; error: unknown };
}

export type DispatcherEventName = keyof DispatcherEvents;
