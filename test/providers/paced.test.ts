/**
 * Provider pacing (design §7.19): callsPerSecond per provider account, shared through the gate store,
 * on memory and on Redis (two connections, as two processes), on a virtual clock.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import { settle, VirtualClock } from "../../src/infra/clock.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { PacedProvider, type PacingStore } from "../../src/infra/providers/paced.js";
import { RedisGateStore } from "../../src/infra/redis/gate-store.js";
import type { DialRequest, DialResult, Provider } from "../../src/machines/ports.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { NUMBER, PHONES, silentLogger, T0, TEMPLATE } from "../support/harness.js";

class CountingProvider implements Provider {
  readonly name = "twilio";
  readonly sent: number[] = [];
  constructor(private readonly clock: VirtualClock) {}
  async makeCall(_req: DialRequest): Promise<DialResult> {
    this.sent.push(this.clock.now());
    return { kind: "placed", callId: `CA${this.sent.length}` };
  }
}

function request(dialRef: string, signal = new AbortController().signal): DialRequest {
  return {
    leadId: dialRef,
    attempt: 0,
    to: "+14155550123",
    from: "+15550000001",
    numberId: "n",
    dialRef,
    signal,
  };
}

function pacingCases(name: string, stores: () => Promise<[PacingStore, PacingStore]>) {
  describe(`pacing through the ${name} gate store`, () => {
    it("takes callsPerSecond tokens per 1000 ms and says how long until the next one", async () => {
      const [store] = await stores();
      const account = `AC-${randomUUID()}`;
      expect(await store.takePacingToken(account, 2, T0, "a")).toBe(0);
      expect(await store.takePacingToken(account, 2, T0 + 300, "b")).toBe(0);
      expect(await store.takePacingToken(account, 2, T0 + 400, "c")).toBe(600);
      // Half-open: the token taken at T0 stops counting at T0 + 1000.
      expect(await store.takePacingToken(account, 2, T0 + 999, "c")).toBe(1);
      expect(await store.takePacingToken(account, 2, T0 + 1000, "c")).toBe(0);
      expect(await store.takePacingToken(`AC-${randomUUID()}`, 2, T0 + 1000, "d")).toBe(0);
    });

    it("two processes on one account keep its calls per second between them", async () => {
      const [a, b] = await stores();
      const clock = new VirtualClock(T0);
      const account = `AC-${randomUUID()}`;
      const inner = new CountingProvider(clock);
      const paced = [a, b].map(
        (store) => new PacedProvider(inner, { account, callsPerSecond: 2, maxWaitMs: 0, store, clock }),
      );
      const results = await Promise.all(
        [0, 1, 2, 3].map((i) => (paced[i % 2] as PacedProvider).makeCall(request(`lead-${i}:1@${T0}`))),
      );
      expect(results.filter((r) => r.kind === "placed")).toHaveLength(2);
      const refused = results.filter((r) => r.kind === "throttled");
      expect(refused).toHaveLength(2);
      expect(refused[0]).toMatchObject({ kind: "throttled", pacing: true, retryAfterSeconds: 1 });
      expect(inner.sent).toHaveLength(2);
    });
  });
}

pacingCases("memory", async () => {
  const store = new MemoryGateStore();
  return [store, store];
});

let redis: RedisServer;
const opened: RedisGateStore[] = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const store of opened) await store.close();
  await redis?.stop();
});

pacingCases("redis", async () => {
  const prefix = `dialgate-test:${randomUUID()}:`;
  const pair = await Promise.all([
    RedisGateStore.connect(redis.url, { prefix, commandTimeoutMs: 2000 }),
    RedisGateStore.connect(redis.url, { prefix, commandTimeoutMs: 2000 }),
  ]);
  opened.push(...pair);
  return pair;
});

describe("PacedProvider", () => {
  it("waits for a token within maxWaitMs, then dials", async () => {
    const clock = new VirtualClock(T0);
    const inner = new CountingProvider(clock);
    const store = new MemoryGateStore();
    const paced = new PacedProvider(inner, {
      account: "AC1",
      callsPerSecond: 1,
      maxWaitMs: 1500,
      store,
      clock,
    });
    expect((await paced.makeCall(request("a:1@0"))).kind).toBe("placed");
    const second = paced.makeCall(request("b:1@0"));
    await settle();
    expect(inner.sent).toEqual([T0]);
    clock.advanceTo(clock.nextAt() as number);
    expect(await second).toMatchObject({ kind: "placed" });
    expect(inner.sent).toEqual([T0, T0 + 1000]);
  });

  it("an abort while waiting sends nothing: not placed", async () => {
    const clock = new VirtualClock(T0);
    const inner = new CountingProvider(clock);
    const store = new MemoryGateStore();
    const paced = new PacedProvider(inner, {
      account: "AC1",
      callsPerSecond: 1,
      maxWaitMs: 5000,
      store,
      clock,
    });
    await paced.makeCall(request("a:1@0"));
    const controller = new AbortController();
    const second = paced.makeCall(request("b:1@0", controller.signal));
    await settle();
    controller.abort();
    expect((await second).kind).toBe("notPlaced");
    expect(inner.sent).toHaveLength(1);
  });

  it("a store that fails lets the dial through and says so", async () => {
    const clock = new VirtualClock(T0);
    const inner = new CountingProvider(clock);
    const errors: unknown[] = [];
    const store: PacingStore = { takePacingToken: () => Promise.reject(new Error("redis down")) };
    const paced = new PacedProvider(inner, {
      account: "AC1",
      callsPerSecond: 1,
      maxWaitMs: 0,
      store,
      clock,
      onStoreError: (e) => errors.push(e),
    });
    expect((await paced.makeCall(request("a:1@0"))).kind).toBe("placed");
    expect(errors).toHaveLength(1);
  });

  it("a lead deferred for pacing keeps its notPlaced streak (no PROVIDER_REJECTED for waiting on ourselves)", async () => {
    const clock = new VirtualClock(T0);
    const inner = new CountingProvider(clock);
    const gates = new MemoryGateStore();
    const store = new MemoryLeadStore();
    const paced = new PacedProvider(inner, {
      account: "AC1",
      callsPerSecond: 1,
      maxWaitMs: 0,
      store: gates,
      clock,
    });
    const dispatcher = createDispatcher({
      clock,
      gateStore: gates,
      leadStore: store,
      providers: [paced],
      logger: silentLogger,
      numbers: [{ ...NUMBER, provider: "twilio" }],
      templates: [TEMPLATE],
    });
    await dispatcher.start();
    await dispatcher.submit(
      PHONES.slice(0, 3).map((phone, i) => ({ id: `lead-${i}`, phone, templateId: TEMPLATE.id })),
    );
    for (let i = 0; i < 10; i++) await settle();
    expect(inner.sent).toHaveLength(1);
    const leads = await store.list();
    const waiting = leads.filter((l) => l.status === "SCHEDULED");
    expect(waiting).toHaveLength(2);
    for (const lead of waiting) {
      expect(lead.deferReason).toBe("throttled");
      expect(lead.notPlacedStreak).toBe(0);
      expect(lead.nextAttemptAt).toBe(T0 + 1000);
    }
    await dispatcher.stop();
  });
});
