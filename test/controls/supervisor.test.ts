/**
 * The supervisor's claims and wake-ups (design §3): a lead that falls due is claimed without waiting for
 * the read of the next wake-up, and a supervisor with every slot busy does not read it at all.
 */
import { describe, expect, it } from "vitest";
import type { RunningLead } from "../../src/actors/lead-actor.js";
import { Supervisor } from "../../src/actors/supervisor.js";
import { settle, VirtualClock } from "../../src/infra/clock.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import type { LeadRecord } from "../../src/machines/ports.js";
import { PHONE, T0, TEMPLATE } from "../support/harness.js";

/** A memory store whose nextDueAt reads are counted and can be held open, and its claims too. */
class WatchedStore extends MemoryLeadStore {
  reads = 0;
  hold: Promise<void> | null = null;
  holdClaims: Promise<void> | null = null;
  override async claimDue(owner: string, now: number, limit: number, leaseMs: number): Promise<LeadRecord[]> {
    await this.holdClaims;
    return super.claimDue(owner, now, limit, leaseMs);
  }
  override async nextDueAt(): Promise<number | null> {
    this.reads += 1;
    await this.hold;
    return super.nextDueAt();
  }
}

function world(concurrency: number) {
  const clock = new VirtualClock(T0);
  const store = new WatchedStore();
  const claimed: string[] = [];
  const finish = new Map<string, () => void>();
  const stops = new Map<string, string[]>();
  const supervisor = new Supervisor({
    store,
    clock,
    owner: "w1",
    concurrency,
    claimLeaseMs: 60_000,
    drainTimeoutMs: 1000,
    onError: (where, error) => {
      throw new Error(`${where}: ${String(error)}`);
    },
    run: (lead: LeadRecord): RunningLead => {
      claimed.push(lead.id);
      const done = new Promise<null>((resolve) => finish.set(lead.id, () => resolve(null)));
      stops.set(lead.id, []);
      const stop = (reason: string) => stops.get(lead.id)?.push(reason);
      return { leadId: lead.id, token: lead.token as string, done, stop };
    },
  });
  const submit = async (id: string, dueAt = clock.now()) => {
    await store.submit([{ id, phone: PHONE, templateId: TEMPLATE.id, dueAt }], clock.now());
    supervisor.poke();
    await settle();
  };
  return { clock, store, supervisor, claimed, finish, stops, submit };
}

describe("supervisor", () => {
  it("claims a lead that falls due while the wake-up read is out, without waiting for it", async () => {
    const w = world(10);
    w.supervisor.start();
    let open!: () => void;
    w.store.hold = new Promise((resolve) => {
      open = resolve;
    });
    await w.submit("A");
    expect(w.claimed).toEqual(["A"]);
    expect(w.store.reads, "the wake-up read is out").toBeGreaterThan(0);

    await w.submit("B");
    expect(w.claimed, "claimed while the read is still held").toEqual(["A", "B"]);
    open();
    for (const end of w.finish.values()) end();
    await w.supervisor.stop();
  });

  it("arms its wake-up at the next due time, and does not read it while every slot is busy", async () => {
    const w = world(1);
    w.supervisor.start();
    await w.submit("A");
    await w.submit("B", T0 + 5000);
    expect(w.claimed).toEqual(["A"]);
    const reads = w.store.reads;
    await w.submit("C");
    expect(w.claimed, "no free slot").toEqual(["A"]);
    expect(w.store.reads, "full: no wake-up read").toBe(reads);

    w.finish.get("A")?.();
    await settle();
    expect(w.claimed).toEqual(["A", "C"]);
    w.finish.get("C")?.();
    await settle();
    expect(w.claimed, "B is not due yet").toEqual(["A", "C"]);
    w.clock.advanceTo(T0 + 5000);
    await settle();
    expect(w.claimed).toEqual(["A", "C", "B"]);
    w.finish.get("B")?.();
    await w.supervisor.stop();
  });

  it("a stop while a claim is out stops the running leads at once and hands back what the claim brings", async () => {
    const w = world(2);
    w.supervisor.start();
    await w.submit("A");
    expect(w.claimed).toEqual(["A"]);
    let open!: () => void;
    w.store.holdClaims = new Promise((resolve) => {
      open = resolve;
    });
    await w.submit("B");
    expect(w.supervisor.snapshot.value, "the claim of B is out").toBe("claiming");

    const stopped = w.supervisor.stop();
    await settle();
    expect(w.stops.get("A"), "A is stopped without waiting for the claim").toEqual(["shutdown"]);
    open();
    await settle();
    expect(w.claimed).toEqual(["A", "B"]);
    expect(w.stops.get("B"), "B, claimed during the stop, is handed back").toEqual(["shutdown"]);
    expect(w.stops.get("A"), "told once").toEqual(["shutdown"]);
    for (const end of w.finish.values()) end();
    expect(await stopped).toEqual({ drained: true });
  });

  it("a drain that times out reports it, and leaves the committed dial running", async () => {
    const w = world(1);
    w.supervisor.start();
    await w.submit("A");
    const stopped = w.supervisor.stop();
    await settle();
    w.clock.advanceTo(T0 + 999);
    await settle();
    expect(w.supervisor.snapshot.value).toBe("draining");
    w.clock.advanceTo(T0 + 1000);
    expect(await stopped).toEqual({ drained: false });
    expect(w.supervisor.inFlight, "never cancelled").toBe(1);
    w.finish.get("A")?.();
    await settle();
    expect(w.supervisor.inFlight).toBe(0);
  });
});
