/**
 * The simulator moves its virtual clock only when no port call is outstanding (design §7.7).
 * A Redis rebuild runs inside the acquire that found a forgotten number, so while it waits for claims
 * to move on the clock stands still: that wait must end without virtual time passing.
 */
import { describe, expect, it } from "vitest";
import { createGateStateSource } from "../../src/actors/gate-rebuild.js";
import { VirtualClock } from "../../src/infra/clock.js";
import { configSchema } from "../../src/infra/config.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import type { GateState } from "../../src/machines/rebuild-ports.js";

const T0 = Date.UTC(2031, 0, 1);

describe("gate rebuild on a virtual clock that stands still", () => {
  it("the read sees a claim move on to its dial without the clock moving", async () => {
    const clock = new VirtualClock(T0);
    const store = new MemoryLeadStore();
    await store.submit([{ id: "a", phone: "+14155550123", templateId: "t" }], T0);
    const [claim] = await store.claimDue("w1", T0, 1, 60_000);
    const token = claim.token as string;
    const source = createGateStateSource({ store, clock, config: configSchema.parse({}), hmacSecret: "s" });

    let state: GateState | undefined;
    const reading = source
      .read(() => false)
      .then((s) => {
        state = s;
      });
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(state).toBeUndefined();

    await store.beginDial(token, { dialRef: `${token}@${T0}`, numberId: "n1", at: T0, recorded: true });
    await reading;
    expect(clock.now()).toBe(T0);
    expect(state?.holds).toEqual([{ numberId: "n1", holder: token, leaseUntil: expect.any(Number) }]);
  });
});
