import { describe, expect, it } from "vitest";
import { faultActive, injectStoreFaults, StoreDownError } from "../../src/cli/simulate/faults.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";

const START = Date.parse("2026-01-01T00:00:00Z");

describe("simulated faults", () => {
  it("cover the half-open interval [fromSeconds, toSeconds) of their kind only", () => {
    const faults = [
      { kind: "storeDown" as const, fromSeconds: 10, toSeconds: 20 },
      { kind: "providerDown" as const, fromSeconds: 0, toSeconds: 100 },
    ];
    const storeDown = faultActive(faults, "storeDown", START);
    expect(storeDown(START + 9_999)).toBe(false);
    expect(storeDown(START + 10_000)).toBe(true);
    expect(storeDown(START + 19_999)).toBe(true);
    expect(storeDown(START + 20_000)).toBe(false);
    expect(faultActive([], "providerDown", START)(START)).toBe(false);
  });

  it("storeDown refuses every gate-store command at once, at the port, and passes them through otherwise", async () => {
    let down = true;
    const store = injectStoreFaults(new MemoryGateStore(), () => down);
    const rules = [{ maxCalls: 1, windowSeconds: 60 }];
    const acquire = {
      numberId: "n1",
      maxChannels: 1,
      holder: "L1:1",
      now: 0,
      leaseUntil: 1000,
      waiter: "L1",
      waiterTtlMs: 1000,
    };
    await expect(store.peek("k", rules, 0)).rejects.toBeInstanceOf(StoreDownError);
    await expect(store.record("k", "L1:1", rules, 0)).rejects.toThrow("record refused");
    await expect(store.acquire(acquire)).rejects.toThrow("acquire refused");
    await expect(store.release("n1", "L1:1")).rejects.toThrow("release refused");
    await expect(store.undo("k", "L1:1")).rejects.toThrow("undo refused");
    await expect(store.inUse(["n1"], 0)).rejects.toThrow("inUse refused");
    await expect(store.reap("n1", 0)).rejects.toThrow("reap refused");
    await expect(store.allow("a", 1000, 0)).rejects.toThrow("allow refused");

    down = false;
    await expect(store.record("k", "L1:1", rules, 0)).resolves.toMatchObject({ allowed: true });
    await expect(store.peek("k", rules, 1)).resolves.toMatchObject({ allowed: false, counts: [1] });
    await expect(store.acquire(acquire)).resolves.toEqual({ held: true });
    await expect(store.inUse(["n1"], 0)).resolves.toEqual(new Map([["n1", 1]]));
  });
});
