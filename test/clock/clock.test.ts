import { describe, expect, it } from "vitest";
import { ScaledClock, SyncedClock, SystemClock, VirtualClock } from "../../src/infra/clock.js";
import type { Clock } from "../../src/machines/ports.js";

/** Resolves with the clock reading inside the timer's callback. */
function readingWhenFired(clock: Clock, at: number): Promise<number> {
  return new Promise((resolve) => clock.setTimer(at, () => resolve(clock.now())));
}

describe("clocks", () => {
  it("a scaled clock's timers never fire before the clock reaches their time", async () => {
    // 997× makes every real delay a fraction of a millisecond off: rounding would wake them early.
    const clock = new ScaledClock(Date.UTC(2031, 0, 1), 997);
    const targets = Array.from({ length: 20 }, (_, i) => clock.now() + 1000 + i * 331);
    const readings = await Promise.all(targets.map((at) => readingWhenFired(clock, at)));
    for (const [i, reading] of readings.entries())
      expect(reading).toBeGreaterThanOrEqual(targets[i] as number);
  });

  it("the system clock's timers never fire before the wall clock reaches their time", async () => {
    const clock = new SystemClock();
    const at = clock.now() + 15;
    expect(await readingWhenFired(clock, at)).toBeGreaterThanOrEqual(at);
  });

  it("a cancelled timer never fires", async () => {
    const clock = new VirtualClock(0);
    let fired = false;
    clock
      .setTimer(10, () => {
        fired = true;
      })
      .cancel();
    clock.advanceTo(20);
    expect(fired).toBe(false);
    expect(clock.nextAt()).toBeNull();
  });

  it("a virtual clock fires timers in time order and never moves backwards", () => {
    const clock = new VirtualClock(100);
    const order: number[] = [];
    clock.setTimer(300, () => order.push(300));
    clock.setTimer(200, () => order.push(200));
    clock.setTimer(50, () => order.push(50)); // past: fires at the next advance
    clock.advanceTo(250);
    expect(order).toEqual([50, 200]);
    clock.advanceTo(10);
    expect(clock.now()).toBe(250);
  });
});

describe("SyncedClock (design §7.7)", () => {
  const T0 = Date.UTC(2031, 0, 1);

  it("takes the server's time, measured at the middle of the round trip", async () => {
    const local = new VirtualClock(T0);
    // The server runs 5 s ahead; its reply takes 40 ms of local time.
    const clock = new SyncedClock(local, async () => {
      const at = local.now() + 20 + 5000;
      local.advanceTo(local.now() + 40);
      return at;
    });
    expect(clock.now()).toBe(T0);
    expect(clock.syncedAt).toBeNull();
    expect(await clock.sync()).toBe(5000);
    expect(clock.now()).toBe(local.now() + 5000);
    expect(clock.syncedAt).toBe(clock.now());
  });

  it("keeps the last offset while the server does not answer", async () => {
    const local = new VirtualClock(T0);
    let down = false;
    const clock = new SyncedClock(local, async () => {
      if (down) throw new Error("connection refused");
      return local.now() - 3000;
    });
    await clock.sync();
    down = true;
    local.advanceTo(T0 + 60_000);
    await expect(clock.sync()).rejects.toThrow("connection refused");
    expect(clock.offsetMs).toBe(-3000);
    expect(clock.now()).toBe(T0 + 57_000);
  });

  it("fires a timer when its own time is reached, also after the offset moved", async () => {
    const local = new VirtualClock(T0);
    let offset = 2000;
    const clock = new SyncedClock(local, async () => local.now() + offset);
    await clock.sync();
    const fired: number[] = [];
    clock.setTimer(T0 + 10_000, () => fired.push(clock.now()));
    local.advanceTo(T0 + 7999);
    expect(fired).toEqual([]);
    // The server's clock turns out 1 s less ahead: the timer waits that much longer.
    offset = 1000;
    await clock.sync();
    local.advanceTo(T0 + 8000);
    expect(fired).toEqual([]);
    local.advanceTo(T0 + 9000);
    expect(fired).toEqual([T0 + 10_000]);
  });
});
