import PQueue from "p-queue";
import {
  type Actor,
  type AnyActorRef,
  createActor,
  fromCallback,
  fromPromise,
  type InspectionEvent,
  type SnapshotFrom,
  sendTo,
} from "xstate";
import type { LeadEnd } from "../machines/lead-machine.js";
import type { Clock, LeadRecord, LeadStore, Timer } from "../machines/ports.js";
import {
  type LeadsCommand,
  type NextDueOutput,
  type SupervisorEvent,
  supervisorMachine,
} from "../machines/supervisor-machine.js";
import type { RunningLead } from "./lead-actor.js";

export interface SupervisorOptions {
  store: LeadStore;
  clock: Clock;
  owner: string;
  concurrency: number;
  claimLeaseMs: number;
  drainTimeoutMs: number;
  /** Starts the lead actor of a claimed lead as a child of `parent`, the supervisor's `leads` actor. */
  run: (lead: LeadRecord, parent: AnyActorRef) => RunningLead;
  onError: (where: string, error: unknown) => void;
  onClaimed?: (lead: LeadRecord) => void;
  /** After each claim read (a claim may also have parked due leads behind their template's waiters). */
  onClaimRound?: () => void;
  /** Inspects the supervisor's actor system, the lead actors included (the lead log's gate results). */
  inspect?: ((event: InspectionEvent) => void) | undefined;
}

/**
 * One per process: runs the supervisor statechart (src/machines/supervisor-machine.ts) as an actor.
 * It claims due leads (never more than free concurrency), runs one lead actor per claim under a p-queue,
 * and wakes on `poke()` (a submit, a finished actor) or at the next due time: no polling delay between
 * a lead becoming due and its dispatch. On stop, actors before the dial are stopped (they release and
 * re-queue); committed dials are waited for, never cancelled.
 */
export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #queue: PQueue;
  readonly #running = new Map<string, RunningLead>();
  /** Lead actors told to stop for the shutdown. */
  readonly #told = new WeakSet<RunningLead>();
  readonly #actor: Actor<typeof supervisorMachine>;
  #stopped: Promise<{ drained: boolean }> | null = null;
  #renewal: Timer | null = null;

  constructor(options: SupervisorOptions) {
    this.#o = options;
    this.#queue = new PQueue({ concurrency: options.concurrency });
    const { store, clock, owner, claimLeaseMs, onError } = options;
    const machine = supervisorMachine.provide({
      actors: {
        nextDue: fromPromise<NextDueOutput>(async () => {
          const next = await store.nextDueAt();
          return next === null ? null : Math.max(0, next - clock.now());
        }),
        leads: fromCallback<LeadsCommand>(({ self, sendBack, receive }) => {
          let stopped = false;
          // Leads whose ends one batch of the store persisted end in one turn: one event for them all
          // (an event per lead would cost a supervisor transition per dial).
          let ended = 0;
          const leadEnded = () => {
            if (stopped || ended++ > 0) return;
            queueMicrotask(() => {
              const count = ended;
              ended = 0;
              if (!stopped) sendBack({ type: "LEAD_DONE", count });
            });
          };
          receive((command) => {
            if (command.type === "SPAWN") {
              for (const lead of command.leads) this.#spawn(lead, self, leadEnded);
            } else if (command.type === "STOP_ALL") {
              // Once each: a stop while claiming stops the leads running then, the drain the rest.
              for (const lead of this.#running.values()) {
                if (!this.#told.has(lead)) lead.stop("shutdown");
                this.#told.add(lead);
              }
            }
            // Else the done event a lead actor sends its parent: its runner has seen it already.
          });
          // After a drain that timed out, committed dials end on their own: nobody counts them any more.
          return () => {
            stopped = true;
          };
        }),
      },
      actions: {
        claim: ({ context, self }) => {
          const free = context.concurrency - context.running;
          store.claimDue(owner, clock.now(), free, claimLeaseMs).then(
            (leads) => {
              try {
                options.onClaimRound?.();
              } catch (error) {
                onError("claim round", error);
              }
              self.send({ type: "CLAIMED", leads });
            },
            (error: unknown) => self.send({ type: "CLAIM_FAILED", error }),
          );
        },
        spawnLeads: sendTo("leads", ({ event }) => ({
          type: "SPAWN" as const,
          leads: (event as Extract<SupervisorEvent, { type: "CLAIMED" }>).leads,
        })),
        stopLeads: sendTo("leads", { type: "STOP_ALL" as const }),
        noteClaimError: ({ event }) => onError("claim", (event as { error?: unknown }).error),
      },
    });
    this.#actor = createActor(machine, {
      input: { concurrency: options.concurrency, drainTimeoutMs: options.drainTimeoutMs },
      inspect: options.inspect,
      // The statechart's `after` delays run on the injectable clock.
      clock: {
        setTimeout: (fn: () => void, ms: number) => clock.setTimer(clock.now() + ms, fn),
        clearTimeout: (timer: unknown) => (timer as Timer).cancel(),
      },
    });
  }

  get inFlight(): number {
    return this.#running.size;
  }

  isRunning(leadId: string): boolean {
    return this.#running.has(leadId);
  }

  /** The supervisor statechart's current snapshot. */
  get snapshot(): SnapshotFrom<typeof supervisorMachine> {
    return this.#actor.getSnapshot();
  }

  start(): void {
    if (this.#stopped) return;
    this.#stopped = new Promise((resolve, reject) => {
      this.#actor.subscribe({
        complete: () => resolve(this.#actor.getSnapshot().output as { drained: boolean }),
        error: (error) => {
          this.#o.onError("supervisor", error);
          reject(error);
        },
      });
    });
    this.#actor.start();
  }

  /** Something may have become claimable. */
  poke(): void {
    if (this.#stopped && this.#actor.getSnapshot().status === "active") this.#actor.send({ type: "POKE" });
  }

  /** Stops the actor of a lead before its dial (cancel); no-op when it is not running here. */
  stopLead(leadId: string): void {
    this.#running.get(leadId)?.stop("cancel");
  }

  async stop(): Promise<{ drained: boolean }> {
    if (!this.#stopped) return { drained: true };
    if (this.#actor.getSnapshot().status === "active") this.#actor.send({ type: "STOP" });
    const result = await this.#stopped;
    if (result.drained) this.#renewal?.cancel();
    return result;
  }

  #spawn(lead: LeadRecord, parent: AnyActorRef, ended: () => void): void {
    this.#o.onClaimed?.(lead);
    const running = this.#o.run(lead, parent);
    this.#running.set(lead.id, running);
    this.#armRenewal();
    void this.#queue.add(async (): Promise<LeadEnd | null> => {
      try {
        return await running.done;
      } finally {
        this.#running.delete(lead.id);
        ended();
      }
    });
  }

  /** Renews the claim leases of live actors while there are any (design §7.20). */
  #armRenewal(): void {
    if (this.#renewal) return;
    const every = Math.max(1000, Math.floor(this.#o.claimLeaseMs / 3));
    this.#renewal = this.#o.clock.setTimer(this.#o.clock.now() + every, () => {
      this.#renewal = null;
      if (this.#running.size === 0) return;
      const tokens = [...this.#running.values()].map((l) => l.token);
      this.#o.store
        .renewLeases(tokens, this.#o.clock.now() + this.#o.claimLeaseMs)
        .catch((error: unknown) => this.#o.onError("renew leases", error));
      this.#armRenewal();
    });
  }
}
