import { describe, expect, it } from "vitest";
import { ScaledClock, SystemClock, VirtualClock } from "../../src/infra/clock.js";
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
