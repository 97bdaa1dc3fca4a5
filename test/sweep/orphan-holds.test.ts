import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import { VirtualClock } from "../../src/infra/clock.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";

const T0 = Date.UTC(2031, 0, 6, 12);
const LEASE = 60_000;

async function setup() {
  const clock = new VirtualClock(T0);
  const store = new MemoryLeadStore();
  const gates = new MemoryGateStore();
  const dispatcher = createDispatcher({
    clock,
    leadStore: store,
    gateStore: gates,
    logger: pino({ level: "silent" }),
    config: { claimLeaseMs: LEASE },
    numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 5, pool: true }],
    templates: [{ id: "t1", resellerId: "r1" }],
  });
  await store.upsertNumbers([
    { id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 5, status: "AVAILABLE", pool: true },
  ]);
  const hold = (holder: string) =>
    gates.acquire({
      numberId: "n1",
      maxChannels: 5,
      holder,
      now: T0,
      leaseUntil: T0 + 3600_000,
      waiter: holder,
      waiterTtlMs: 1,
    });
  return { clock, store, gates, dispatcher, hold };
}

describe("orphan channel holds (design §7.10)", () => {
  it("a hold no lead owns is released; holds of live dials and live claims are kept", async () => {
    const { store, gates, dispatcher, hold } = await setup();
    await store.submit(
      [
        { id: "dialling", phone: "+14155550123", templateId: "t1", dueAt: T0 },
        { id: "claimed", phone: "+14155552671", templateId: "t1", dueAt: T0 },
      ],
      T0,
    );
    const [a, b] = await store.claimDue("other-process", T0, 2, LEASE);
    await store.beginDial(a.token as string, {
      dialRef: `${a.token}@${T0}`,
      numberId: "n1",
      at: T0,
      recorded: true,
    });
    await hold(a.token as string);
    await hold(b.token as string);
    await hold("gone:1"); // a process died after its acquire; its lead moved on long ago

    expect(await dispatcher.releaseOrphanHolds()).toBe(1);
    expect((await gates.listHolders("n1", T0)).sort()).toEqual([a.token, b.token].sort());
  });

  it("a claim whose lease ran out more than a lease ago loses its hold", async () => {
    const { clock, store, gates, dispatcher, hold } = await setup();
    await store.submit([{ id: "stale", phone: "+14155550123", templateId: "t1", dueAt: T0 }], T0);
    const [lead] = await store.claimDue("dead-process", T0, 1, LEASE);
    await hold(lead.token as string);

    clock.advanceTo(T0 + LEASE + LEASE / 2);
    expect(await dispatcher.releaseOrphanHolds(), "one lease of grace: it may still be renewing").toBe(0);
    clock.advanceTo(T0 + 2 * LEASE + 1);
    expect(await dispatcher.releaseOrphanHolds()).toBe(1);
    expect(await gates.listHolders("n1", clock.now())).toEqual([]);
  });
});
