/** Cooldown marks (design §7.6) fail like the other rate-limit commands in both fault injectors. */
import { describe, expect, it } from "vitest";
import { injectStoreFaults, StoreDownError } from "../../src/cli/simulate/faults.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { FaultyGateStore, StoreTimeoutError } from "../support/faulty-gate-store.js";

const rules = [{ maxCalls: 1, windowSeconds: 60 }];
const cool = { cooldowns: [{ seconds: 60, afterOutcomes: ["ANSWERED"] }] };

describe("markEnd under injected faults", () => {
  it("storeDown refuses it at the port, and passes it through otherwise", async () => {
    let down = true;
    const store = injectStoreFaults(new MemoryGateStore(), () => down);
    await expect(store.markEnd("k", "ANSWERED", 0, 60_000)).rejects.toBeInstanceOf(StoreDownError);
    await expect(store.markEnd("k", "ANSWERED", 0, 60_000)).rejects.toThrow("markEnd refused");
    down = false;
    expect(await store.peek("k", rules, 1, cool)).toEqual({ allowed: true, counts: [0] });
    await store.markEnd("k", "ANSWERED", 0, 60_000);
    expect(await store.peek("k", rules, 1, cool)).toEqual({ allowed: false, counts: [0], retryAt: 60_000 });
  });

  it("FaultyGateStore fails it by name, before or after it ran, and logs the call", async () => {
    const store = new FaultyGateStore();
    store.fail(["markEnd"]);
    await expect(store.markEnd("k", "ANSWERED", 0, 60_000)).rejects.toBeInstanceOf(StoreTimeoutError);
    expect(await store.peek("k", rules, 1, cool)).toMatchObject({ allowed: true });
    store.fail(["markEnd"], { mode: "after" });
    await expect(store.markEnd("k", "ANSWERED", 0, 60_000)).rejects.toBeInstanceOf(StoreTimeoutError);
    expect(await store.peek("k", rules, 1, cool)).toMatchObject({ allowed: false, retryAt: 60_000 });
    expect(store.calls.filter((c) => c.op === "markEnd")).toMatchObject([
      { subject: "k", name: "ANSWERED", failed: true },
      { subject: "k", name: "ANSWERED", failed: true },
    ]);
  });
});
