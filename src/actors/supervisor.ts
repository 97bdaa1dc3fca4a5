import PQueue from "p-queue";
import type { LeadEnd } from "../machines/lead-machine.js";
import type { Clock, LeadRecord, LeadStore, Timer } from "../machines/ports.js";
import type { RunningLead } from "./lead-actor.js";

export interface SupervisorOptions {
  store: LeadStore;
  clock: Clock;
  owner: string;
  concurrency: number;
  claimLeaseMs: number;
  drainTimeoutMs: number;
  run: (lead: LeadRecord) => RunningLead;
  onError: (where: string, error: unknown) => void;
  onClaimed?: (lead: LeadRecord) => void;
  /** After each claim read (a claim may also have parked due leads behind their template's waiters). */
  onClaimRound?: () => void;
}

/** Wait after a failed claim before trying again. */
const CLAIM_RETRY_MS = 1000;

/**
 * One per process. Claims due leads (never more than free concurrency), runs one lead actor per claim
 * under a p-queue, and wakes on `poke()` (a submit, a finished actor) or at the next due time: no
 * polling delay between a lead becoming due and its dispatch. On stop, actors before the dial are
 * stopped (they release and re-queue); committed dials are waited for, never cancelled.
 */
export class Supervisor {
  readonly #o: SupervisorOptions;
  readonly #queue: PQueue;
  readonly #running = new Map<string, RunningLead>();
  #started = false;
  #stopping = false;
  #pumping = false;
  #pumpAgain = false;
  #wakeReads = 0;
  #wake: Timer | null = null;
  #renewal: Timer | null = null;

  constructor(options: SupervisorOptions) {
    this.#o = options;
    this.#queue = new PQueue({ concurrency: options.concurrency });
  }

  get inFlight(): number {
    return this.#running.size;
  }

  isRunning(leadId: string): boolean {
    return this.#running.has(leadId);
  }

  start(): void {
    this.#started = true;
    this.poke();
  }

  /** Something may have become claimable. */
  poke(): void {
    if (!this.#started || this.#stopping) return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    void this.#pump();
  }

  /** Stops the actor of a lead before its dial (cancel); no-op when it is not running here. */
  stopLead(leadId: string): void {
    this.#running.get(leadId)?.stop("cancel");
  }

  async stop(): Promise<{ drained: boolean }> {
    this.#stopping = true;
    this.#wake?.cancel();
    for (const lead of this.#running.values()) lead.stop("shutdown");
    const all = Promise.all([...this.#running.values()].map((l) => l.done)).then(() => true);
    let timer: Timer | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = this.#o.clock.setTimer(this.#o.clock.now() + this.#o.drainTimeoutMs, () => resolve(false));
    });
    const drained = await Promise.race([all, timeout]);
    timer?.cancel();
    if (drained) this.#renewal?.cancel();
    return { drained };
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    let full = false;
    try {
      do {
        this.#pumpAgain = false;
        const free = this.#o.concurrency - this.#running.size;
        full = free <= 0;
        if (full || this.#stopping) break;
        const claims = await this.#o.store.claimDue(
          this.#o.owner,
          this.#o.clock.now(),
          free,
          this.#o.claimLeaseMs,
        );
        this.#o.onClaimRound?.();
        for (const lead of claims) this.#spawn(lead);
        if (claims.length === free) this.#pumpAgain = true;
      } while (this.#pumpAgain && !this.#stopping);
    } catch (error) {
      this.#o.onError("claim", error);
      this.#armAt(this.#o.clock.now() + CLAIM_RETRY_MS);
      return;
    } finally {
      this.#pumping = false;
    }
    if (this.#pumpAgain) this.poke();
    // Full: a finishing actor pokes us. Else the wake-up is read outside the pump, so that a lead
    // falling due while the read is out is claimed at once.
    else if (!full) void this.#armWake();
  }

  #spawn(lead: LeadRecord): void {
    this.#o.onClaimed?.(lead);
    const running = this.#o.run(lead);
    this.#running.set(lead.id, running);
    this.#armRenewal();
    void this.#queue.add(async (): Promise<LeadEnd | null> => {
      try {
        return await running.done;
      } finally {
        this.#running.delete(lead.id);
        this.poke();
      }
    });
  }

  /** Arms the wake-up for the next due lead; only the latest of overlapping reads arms it. */
  async #armWake(): Promise<void> {
    const read = ++this.#wakeReads;
    let next: number | null;
    try {
      next = await this.#o.store.nextDueAt();
    } catch (error) {
      this.#o.onError("claim", error);
      next = this.#o.clock.now() + CLAIM_RETRY_MS;
    }
    if (read !== this.#wakeReads || this.#stopping || next === null) return;
    if (next > this.#o.clock.now()) this.#armAt(next);
    else this.poke();
  }

  #armAt(at: number): void {
    this.#wake?.cancel();
    this.#wake = this.#o.clock.setTimer(at, () => {
      this.#wake = null;
      this.poke();
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
