import type { Logger } from "pino";
import type { InspectionEvent } from "xstate";
import type { DispatcherEventName, DispatcherEvents } from "../events.js";
import { maskPhoneLike } from "../infra/mask.js";

type Subscribe = <K extends DispatcherEventName>(
  name: K,
  listener: (payload: DispatcherEvents[K]) => void,
) => void;

/** The gate actor's replies to a lead actor (GateReply). */
const DONE = "gate.done.";
const ERROR = "gate.error.";

/**
 * The story of each lead in the log: one pino child per lead (`leadId`, never the phone) with each
 * gate's result at debug and each dial, defer, park (waiting for a line) and finish at info. A child
 * is made on the lead's first line at an enabled level and forgotten when its run ends, so a level
 * that is off costs one `isLevelEnabled` per event and no child at all.
 */
export class LeadLog {
  readonly #logger: Logger;
  /** Children of the leads that logged since their run began. */
  readonly #children = new Map<string, Logger>();
  /** Lead actor → its lead's id, for the inspection events that carry only the actor. */
  readonly #actors = new WeakMap<object, string>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** The lead's child logger. */
  of(leadId: string): Logger {
    let child = this.#children.get(leadId);
    if (!child) {
      child = this.#logger.child({ leadId });
      this.#children.set(leadId, child);
    }
    return child;
  }

  /** Logs the dispatcher's lead events: dial, dialled, defer, park and finish at info, the rest at debug. */
  attach(on: Subscribe): void {
    const info = (leadId: string, fields: object, msg: string) => {
      if (this.#logger.isLevelEnabled("info")) this.of(leadId).info(fields, msg);
    };
    const debug = (leadId: string, fields: object, msg: string) => {
      if (this.#logger.isLevelEnabled("debug")) this.of(leadId).debug(fields, msg);
    };
    on("lead:claimed", ({ leadId, token }) => debug(leadId, { token }, "claimed"));
    on("gate:failOpen", ({ leadId, gate, error }) =>
      debug(leadId, { gate, error: maskPhoneLike(error) }, `gate ${gate} failed open`),
    );
    on("lead:prechecked", ({ leadId, verdict }) => debug(leadId, { verdict }, `pre-dial checks: ${verdict}`));
    on("channel:waiting", ({ leadId, numberIds, dueAt }) =>
      info(leadId, { numberIds, dueAt }, `parked: waiting for a line on ${numberIds.join(", ")}`),
    );
    on("lead:window", ({ leadId, zones, zoneSource, open }) =>
      debug(
        leadId,
        { zones, zoneSource },
        `calling window ${open ? "open" : "closed"} in ${zones.join(", ")}`,
      ),
    );
    on("lead:dialling", ({ leadId, numberId, dialRef, callerId }) =>
      info(leadId, { numberId, dialRef, callerId }, `dial from ${numberId}`),
    );
    on("lead:dialResult", ({ leadId, dialRef, result }) =>
      debug(leadId, { dialRef, result }, `dial result: ${result}`),
    );
    on("lead:dialled", ({ leadId, numberId, callId }) => {
      info(leadId, { numberId, callId }, "dialled: call placed");
      this.#ended(leadId);
    });
    on("lead:heldUnknown", ({ leadId, numberId, dialRef, reason }) => {
      info(leadId, { numberId, dialRef, reason: maskPhoneLike(reason) }, "dial unknown: line held");
      this.#ended(leadId);
    });
    on("lead:deferred", ({ leadId, reason, at }) => {
      info(leadId, { reason, at }, `deferred: ${reason}`);
      this.#ended(leadId);
    });
    on("lead:finished", ({ leadId, outcome, reason }) => {
      const fields = reason === undefined ? { outcome } : { outcome, reason: maskPhoneLike(reason) };
      info(leadId, fields, `finished: ${outcome}`);
      this.#ended(leadId);
    });
    on("lead:dropped", ({ leadId }) => {
      debug(leadId, {}, "dropped: no longer this process's lead");
      this.#ended(leadId);
    });
  }

  /** Names the lead an actor runs, for `inspect`. */
  track(actor: object, leadId: string): void {
    this.#actors.set(actor, leadId);
  }

  /**
   * An XState inspector that logs each gate's reply (its `kind` only: outputs carry the
   * lead, phone included) at debug. Installed only when debug is on: inspection costs every actor.
   */
  inspector(): ((event: InspectionEvent) => void) | undefined {
    if (!this.#logger.isLevelEnabled("debug")) return undefined;
    return (inspection) => {
      if (inspection.type !== "@xstate.event") return;
      const type = inspection.event.type;
      const done = type.startsWith(DONE);
      if (!done && !type.startsWith(ERROR)) return;
      const leadId = this.#actors.get(inspection.actorRef);
      if (leadId === undefined || !this.#logger.isLevelEnabled("debug")) return;
      const gate = type.slice(done ? DONE.length : ERROR.length);
      const result = done ? gateResult(inspection.event.output) : "error";
      this.of(leadId).debug({ gate, result }, `gate ${gate}: ${result}`);
    };
  }

  #ended(leadId: string): void {
    this.#children.delete(leadId);
  }
}

/** `kind` of a gate's output (every gate answers one), with the outcome or number it names. */
function gateResult(output: unknown): string {
  if (output === null || typeof output !== "object") return "done";
  const { kind, outcome, number } = output as {
    kind?: unknown;
    outcome?: unknown;
    number?: { id?: unknown };
  };
  if (typeof kind !== "string") return "done";
  if (typeof outcome === "string") return `${kind} ${outcome}`;
  if (typeof number?.id === "string") return `${kind} ${number.id}`;
  return kind;
}
