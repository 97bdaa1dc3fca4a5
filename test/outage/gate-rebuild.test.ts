/**
 * The gate store after Redis forgot everything (design §7.13): the channel gate of a forgotten number
 * stays closed until the live calls and the rate-limit records are written back from the lead store,
 * one process rebuilds, and nothing released or undone meanwhile comes back. Real Redis servers of the
 * test's own (they are flushed and killed).
 */
import { setTimeout as delay } from "node:timers/promises";
import { Cluster, type Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createGateStateSource } from "../../src/actors/gate-rebuild.js";
import { runVirtual, VirtualClock } from "../../src/infra/clock.js";
import { configSchema, parseOrThrow } from "../../src/infra/config.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import {
  createRedisClient,
  GateStoreNotReadyError,
  RedisGateStore,
} from "../../src/infra/redis/gate-store.js";
import type { AcquireRequest, RateRule } from "../../src/machines/ports.js";
import type { GateState, GateStateSource, RebuildReport } from "../../src/machines/rebuild-ports.js";
import { type RedisServer, startRedis, startRedisCluster } from "../harness/redis.js";

const T0 = Date.UTC(2031, 0, 1);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const PREFIX = "dg:";
const hourly: RateRule[] = [{ maxCalls: 7, windowSeconds: 3600 }];

let server: RedisServer;
const clients: (Redis | Cluster)[] = [];

beforeAll(async () => {
  server = await startRedis({ disposable: true });
});
afterAll(async () => {
  await server?.stop();
});
beforeEach(async () => {
  const admin = await connect();
  await admin.flushall();
});
afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect();
});

async function connect(url = server.url): Promise<Redis> {
  const client = await createRedisClient(url, { commandTimeoutMs: 1000 });
  client.on("error", () => {});
  clients.push(client);
  return client;
}

async function openStore(options: { rebuildWaitMs?: number } = {}): Promise<RedisGateStore> {
  return new RedisGateStore(await connect(), { prefix: PREFIX, rebuildWaitMs: 1000, ...options });
}

/** A source that returns `state` (filled in with defaults), counts its reads and can be held. */
function scriptedSource(state: Partial<GateState> = {}) {
  let release: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();
  let reading: () => void = () => {};
  const control = {
    reads: 0,
    /** Resolves once the next read has started. */
    started: new Promise<void>((resolve) => {
      reading = resolve;
    }),
    /** Reads wait until `resume()`. */
    hold() {
      gate = new Promise<void>((resolve) => {
        release = resolve;
      });
    },
    resume: () => release(),
    source: {
      numberIds: async () => state.numberIds ?? [],
      read: async () => {
        control.reads += 1;
        reading();
        await gate;
        return {
          now: T0,
          numberIds: [],
          holds: [],
          records: [],
          windowMs: HOUR,
          ends: [],
          coolMs: 0,
          ...state,
        };
      },
    } satisfies GateStateSource,
  };
  return control;
}

const acquire = (store: RedisGateStore, holder: string, over: Partial<AcquireRequest> = {}) =>
  store.acquire({
    numberId: "n1",
    maxChannels: 2,
    holder,
    now: T0,
    leaseUntil: T0 + HOUR,
    waiter: holder.split(":")[0],
    waiterTtlMs: 10_000,
    ...over,
  });

describe("RedisGateStore rebuild after Redis forgot its data", () => {
  it("a fresh Redis opens a number's channel gate after one rebuild, inside the first acquire", async () => {
    const store = await openStore();
    const read = scriptedSource({ numberIds: ["n1"] });
    store.rebuildFrom(read.source);
    expect(await acquire(store, "a:1")).toEqual({ held: true });
    expect(await acquire(store, "b:1")).toEqual({ held: true });
    expect(read.reads).toBe(1);
    const admin = await connect();
    expect(await admin.get(`${PREFIX}{n:n1}:epoch`)).toBe(String(T0));
    // A number the lead store did not list yet (added since) gets its own rebuild, then its key.
    expect(await acquire(store, "c:1", { numberId: "n9" })).toEqual({ held: true });
    expect(read.reads).toBe(2);
    expect(await admin.exists(`${PREFIX}{n:n9}:epoch`)).toBe(1);
  });

  it("ensureReady rebuilds, and waits for it, only when a number lacks its epoch key", async () => {
    const store = await openStore();
    const read = scriptedSource({ numberIds: ["n1", "n2"] });
    store.rebuildFrom(read.source);
    await store.ensureReady();
    expect(read.reads).toBe(1);
    const admin = await connect();
    expect(await admin.exists(`${PREFIX}{n:n1}:epoch`, `${PREFIX}{n:n2}:epoch`)).toBe(2);
    await store.ensureReady();
    expect(read.reads).toBe(1);
    // A cluster node that restarted alone forgets only the numbers in its slots.
    await admin.del(`${PREFIX}{n:n2}:epoch`);
    await store.ensureReady();
    expect(read.reads).toBe(2);
    expect(await acquire(store, "a:1", { numberId: "n2" })).toEqual({ held: true });
  });

  it("the holds of live calls are back before any line is given, and count toward maxChannels", async () => {
    const store = await openStore();
    const read = scriptedSource({
      numberIds: ["n1", "n2"],
      holds: [
        { numberId: "n1", holder: "live1:1", leaseUntil: T0 + HOUR },
        { numberId: "n1", holder: "live2:1", leaseUntil: T0 + 2 * HOUR },
        // A lease already over holds nothing: not restored.
        { numberId: "n2", holder: "old:1", leaseUntil: T0 },
      ],
    });
    store.rebuildFrom(read.source);
    expect(await acquire(store, "new:1")).toEqual({ held: false, waiters: 1 });
    expect(await store.inUse(["n1", "n2"], T0)).toEqual(
      new Map([
        ["n1", 2],
        ["n2", 0],
      ]),
    );
    const admin = await connect();
    expect(await admin.zscore(`${PREFIX}{n:n1}:holds`, "live2:1")).toBe(String(T0 + 2 * HOUR));
    // The restored holds are ordinary holds: released by name, their line is free again.
    expect(await store.release("n1", "live1:1")).toBe(true);
    expect(await acquire(store, "new:1")).toEqual({ held: true });
  });

  it("fails closed with GateStoreNotReadyError while the rebuild is slower than rebuildWaitMs", async () => {
    const store = await openStore({ rebuildWaitMs: 100 });
    const read = scriptedSource({ numberIds: ["n1"] });
    read.hold();
    store.rebuildFrom(read.source);
    const started = performance.now();
    const error = await acquire(store, "a:1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GateStoreNotReadyError);
    expect(error).toMatchObject({ name: "GateStoreNotReadyError", numberId: "n1" });
    expect(performance.now() - started).toBeLessThan(400);
    // Still closed, and no second read starts while the first one runs.
    await expect(acquire(store, "b:1")).rejects.toBeInstanceOf(GateStoreNotReadyError);
    expect(read.reads).toBe(1);
    read.resume();
    await expect.poll(() => acquire(store, "a:1"), { timeout: 2000 }).toEqual({ held: true });
  });

  it("a line released while the rebuild runs is not brought back by it", async () => {
    const store = await openStore();
    const read = scriptedSource({
      numberIds: ["n1"],
      holds: [
        { numberId: "n1", holder: "ended:1", leaseUntil: T0 + HOUR },
        { numberId: "n1", holder: "live:1", leaseUntil: T0 + HOUR },
      ],
    });
    read.hold();
    store.rebuildFrom(read.source);
    const first = acquire(store, "a:1").catch((e: unknown) => e);
    await read.started;
    // The call ended after the read: its end signal releases a line Redis does not have yet.
    expect(await store.release("n1", "ended:1")).toBe(false);
    read.resume();
    expect(await first).toEqual({ held: true });
    const admin = await connect();
    expect((await admin.zrange(`${PREFIX}{n:n1}:holds`, "0", "-1")).sort()).toEqual(["a:1", "live:1"]);
    expect(await admin.exists(`${PREFIX}{n:n1}:released`)).toBe(0);
  });

  it("restores the records of the window, keeps those still there, and skips records undone meanwhile", async () => {
    const store = await openStore();
    await store.record("hmac1", "kept:1", hourly, T0 + 5);
    const read = scriptedSource({
      numberIds: ["n1"],
      records: [
        { phoneKey: "hmac1", member: "kept:1", at: T0 },
        { phoneKey: "hmac1", member: "lost:1", at: T0 + 1 },
        { phoneKey: "hmac1", member: "undone:1", at: T0 + 2 },
        { phoneKey: "hmac2", member: "other:1", at: T0 + 3 },
      ],
    });
    read.hold();
    store.rebuildFrom(read.source);
    const first = acquire(store, "a:1");
    await read.started;
    // A dial proved not placed after the read: its record was undone before the rebuild wrote it.
    expect(await store.undo("hmac1", "undone:1")).toBe(false);
    read.resume();
    expect(await first).toEqual({ held: true });
    expect(await store.peek("hmac1", hourly, T0 + 10)).toEqual({ allowed: true, counts: [2] });
    expect(await store.peek("hmac2", hourly, T0 + 10)).toEqual({ allowed: true, counts: [1] });
    const admin = await connect();
    expect(await admin.zscore(`${PREFIX}{p:hmac1}:rl`, "kept:1")).toBe(String(T0 + 5));
    expect(await admin.pttl(`${PREFIX}{p:hmac1}:rl`)).toBeGreaterThan(2 * HOUR);
  });

  it("restores the cooldown marks, never over a newer mark made since the read (design §7.6)", async () => {
    const store = await openStore();
    // A call that ended after the read: its mark is newer than the rows the rebuild writes.
    await store.markEnd("hmac1", "ANSWERED", T0 + 500, HOUR);
    const read = scriptedSource({
      numberIds: ["n1"],
      ends: [
        { phoneKey: "hmac1", outcome: "ANSWERED", at: T0 },
        { phoneKey: "hmac1", outcome: "BUSY", at: T0 + 1 },
        { phoneKey: "hmac2", outcome: "ANSWERED", at: T0 + 2 },
        { phoneKey: "hmac2", outcome: "ANSWERED", at: T0 + 1 },
      ],
      coolMs: DAY,
    });
    const reports: RebuildReport[] = [];
    store.rebuildFrom(read.source, (report) => reports.push(report));
    expect(await acquire(store, "a:1")).toEqual({ held: true });
    expect(reports).toMatchObject([{ kind: "rebuilt", marks: 2 }]);
    const cool = { cooldowns: [{ seconds: 600, afterOutcomes: ["ANSWERED"] }] };
    expect(await store.peek("hmac1", hourly, T0 + 600, cool)).toEqual({
      allowed: false,
      counts: [0],
      retryAt: T0 + 500 + 600_000,
    });
    expect(await store.peek("hmac2", hourly, T0 + 600, cool)).toEqual({
      allowed: false,
      counts: [0],
      retryAt: T0 + 2 + 600_000,
    });
    const admin = await connect();
    expect(await admin.hgetall(`${PREFIX}{p:hmac1}:cool`)).toEqual({
      ANSWERED: String(T0 + 500),
      BUSY: String(T0 + 1),
    });
    expect(await admin.pttl(`${PREFIX}{p:hmac2}:cool`)).toBeGreaterThan(2 * DAY);
  });

  it("one process rebuilds: another one fails closed until the epoch keys appear", async () => {
    const [a, b] = [await openStore(), await openStore({ rebuildWaitMs: 50 })];
    const readA = scriptedSource({ numberIds: ["n1"] });
    const readB = scriptedSource({ numberIds: ["n1"] });
    readA.hold();
    a.rebuildFrom(readA.source);
    b.rebuildFrom(readB.source);
    const first = acquire(a, "a:1");
    await readA.started;
    await expect(acquire(b, "b:1")).rejects.toBeInstanceOf(GateStoreNotReadyError);
    readA.resume();
    expect(await first).toEqual({ held: true });
    expect(await acquire(b, "b:1")).toEqual({ held: true });
    expect([readA.reads, readB.reads]).toEqual([1, 0]);
    // The lock is given back: a later loss is rebuilt at once, here by b.
    await (await connect()).flushall();
    expect(await acquire(b, "c:1")).toEqual({ held: true });
    expect(readB.reads).toBe(1);
  });

  it("a later rebuild never brings back a line released on a number that was ready", async () => {
    const store = await openStore();
    // The lead store still lists the call (its end is not written yet): a stale read.
    const read = scriptedSource({
      numberIds: ["n1"],
      holds: [{ numberId: "n1", holder: "live:1", leaseUntil: T0 + HOUR }],
    });
    store.rebuildFrom(read.source);
    expect(await acquire(store, "a:1")).toEqual({ held: true });
    expect(await store.release("n1", "live:1")).toBe(true);
    // A new number starts another rebuild, with the same read.
    expect(await acquire(store, "x:1", { numberId: "n2" })).toEqual({ held: true });
    expect(read.reads).toBe(2);
    expect(await store.inUse(["n1"], T0)).toEqual(new Map([["n1", 1]]));
  });

  it("keeps an alert throttle window opened while Redis was down after it comes back empty", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const store = new RedisGateStore(await connect(own.url), { prefix: PREFIX });
      await own.kill();
      // The alerter lets this one through in process (design §7.14) ...
      await expect(store.allow("store_unavailable:gate-store", 60_000, T0)).rejects.toThrow();
      await own.restart();
      await expect
        .poll(() => store.peek("hmac1", hourly, T0).catch(() => "down"), { timeout: 3000 })
        .toMatchObject({ allowed: true });
      // ... so the empty Redis must not let the next one through within the window.
      expect(await store.allow("store_unavailable:gate-store", 60_000, T0 + 1)).toBe(false);
      expect(await store.allow("store_unavailable:gate-store", 60_000, T0 + 60_000)).toBe(true);
      expect(await store.allow("store_unavailable:gate-store", 60_000, T0 + 60_001)).toBe(false);
    } finally {
      await own.stop();
    }
  });

  it("a store without a source keeps no epoch keys: Redis is its only truth", async () => {
    const store = await openStore();
    expect(await acquire(store, "a:1")).toEqual({ held: true });
    const admin = await connect();
    expect(await admin.keys(`${PREFIX}*`)).toEqual([`${PREFIX}{n:n1}:holds`]);
    expect(await store.release("n1", "a:1")).toBe(true);
    expect(await admin.keys(`${PREFIX}*`)).toEqual([]);
  });
});

describe("createRedisClient across a restart", () => {
  it("never sends a command again after a restart when its caller already got the error", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const client = await createRedisClient(own.url, { commandTimeoutMs: 50 });
      client.on("error", () => {});
      clients.push(client);
      const store = new RedisGateStore(client, { prefix: PREFIX });
      const admin = await connect(own.url);
      // The record reaches the server and gets no answer; the server dies and is back at once, and
      // the client reconnects after its caller has timed out.
      await admin.client("PAUSE", 10_000, "ALL");
      const recording = store.record("hmac1", "late:1", hourly, T0).catch((e: unknown) => e);
      await delay(10);
      await own.restart();
      expect(await recording).toBeInstanceOf(Error);
      await expect.poll(() => client.status, { timeout: 3000 }).toBe("ready");
      await delay(100);
      const fresh = await connect(own.url);
      expect(await fresh.exists(`${PREFIX}{p:hmac1}:rl`)).toBe(0);
    } finally {
      await own.stop();
    }
  });
});

describe("rebuild on a Redis Cluster", () => {
  it("restores holds and records spread over the nodes without a cross-slot script", async () => {
    const cluster = await startRedisCluster();
    const client = new Cluster(cluster.nodes, {
      enableOfflineQueue: false,
      redisOptions: { commandTimeout: 2000, maxRetriesPerRequest: 1 },
    });
    try {
      await new Promise((resolve) => client.once("ready", resolve));
      const store = new RedisGateStore(client, { prefix: PREFIX, rebuildWaitMs: 2000 });
      const numbers = Array.from({ length: 8 }, (_, i) => `num${i}`);
      const read = scriptedSource({
        numberIds: numbers,
        holds: numbers.map((numberId) => ({ numberId, holder: `live-${numberId}:1`, leaseUntil: T0 + HOUR })),
        records: numbers.map((_, i) => ({ phoneKey: `hmac${i}`, member: `lead${i}:1`, at: T0 })),
        ends: numbers.map((_, i) => ({ phoneKey: `hmac${i}`, outcome: "ANSWERED", at: T0 })),
        coolMs: HOUR,
      });
      store.rebuildFrom(read.source);
      for (const numberId of numbers) {
        expect(await acquire(store, `new-${numberId}:1`, { numberId, maxChannels: 1 })).toEqual({
          held: false,
          waiters: 1,
        });
      }
      expect(read.reads).toBe(1);
      expect(await store.inUse(numbers, T0)).toEqual(new Map(numbers.map((id) => [id, 1])));
      const cool = { cooldowns: [{ seconds: 60, afterOutcomes: ["ANSWERED"] }] };
      for (let i = 0; i < numbers.length; i++) {
        expect(await store.peek(`hmac${i}`, hourly, T0)).toEqual({ allowed: true, counts: [1] });
        expect(await store.peek(`hmac${i}`, hourly, T0, cool)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + 60_000,
        });
      }
      expect(await store.release("num0", "live-num0:1")).toBe(true);
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  }, 60_000);
});

describe("createGateStateSource", () => {
  const config = parseOrThrow(configSchema, { maxCallMinutes: 10 }, "config");
  const PHONE = "+14155550123";

  async function leadStoreWithClaim(clock: VirtualClock) {
    const store = new MemoryLeadStore();
    await store.submit([{ id: "a", phone: PHONE, templateId: "t" }], clock.now());
    const [claim] = await store.claimDue("w1", clock.now(), 1, 60_000);
    return { store, token: claim.token as string };
  }

  it("waits for claims that may hold an unwritten line, then reads their dial", async () => {
    const clock = new VirtualClock(T0);
    const { store, token } = await leadStoreWithClaim(clock);
    const source = createGateStateSource({ store, clock, config, hmacSecret: "s" });
    let state: GateState | undefined;
    const reading = source
      .read(() => false)
      .then((s) => {
        state = s;
      });
    await runVirtual(clock, { until: T0 + 1000 });
    expect(state).toBeUndefined();
    // The actor took its line before Redis forgot it, and writes its dial row now.
    await store.beginDial(token, {
      dialRef: `${token}@${T0 + 1000}`,
      numberId: "n1",
      at: T0 + 1000,
      recorded: true,
    });
    await runVirtual(clock, { until: T0 + 2000, isDone: () => state !== undefined });
    await reading;
    expect(state).toMatchObject({
      holds: [{ numberId: "n1", holder: token, leaseUntil: T0 + 1000 + 20 * 60_000 }],
      records: [{ phoneKey: phoneKey("s", PHONE), member: token, at: T0 + 1000 }],
      // The largest rule plus the margin the gates add to every window.
      windowMs: HOUR + config.rateLimit.marginMs,
    });
  });

  it("reads the ends of the cooling outcomes, and none without `cooling`", async () => {
    const clock = new VirtualClock(T0);
    const store = new MemoryLeadStore();
    await store.submit([{ id: "a", phone: PHONE, templateId: "t" }], T0);
    const [claim] = await store.claimDue("w1", T0, 1, 60_000);
    const token = claim.token as string;
    await store.beginDial(token, { dialRef: `${token}@${T0}`, numberId: "n1", at: T0, recorded: true });
    await store.settle(token, { kind: "placed", callId: "c1" }, T0 + 1);
    await store.settle(token, { kind: "ended", outcome: "ANSWERED" }, T0 + 60_000);
    const deps = { store, clock, config, hmacSecret: "s" };
    expect(await createGateStateSource(deps).read(() => false)).toMatchObject({ ends: [], coolMs: 0 });
    const cooling = () => ({ ms: DAY, outcomes: ["ANSWERED"] });
    expect(await createGateStateSource({ ...deps, cooling }).read(() => false)).toMatchObject({
      ends: [{ phoneKey: phoneKey("s", PHONE), outcome: "ANSWERED", at: T0 + 60_000 }],
      coolMs: DAY,
    });
  });

  it("does not wait for a claim whose acquire is running, nor for one whose lease ran out", async () => {
    const clock = new VirtualClock(T0);
    const { store, token } = await leadStoreWithClaim(clock);
    const source = createGateStateSource({ store, clock, config, hmacSecret: "s" });
    expect(await source.read((t) => t === token)).toMatchObject({ holds: [], records: [] });

    let done = false;
    const reading = source
      .read(() => false)
      .then(() => {
        done = true;
      });
    await runVirtual(clock, { until: T0 + 59_000 });
    expect(done).toBe(false);
    await runVirtual(clock, { until: T0 + 61_000, isDone: () => done });
    await reading;
    expect(done).toBe(true);
  });
});

describe("a cooldown after Redis forgot everything (design §7.6, §7.13)", () => {
  const config = parseOrThrow(configSchema, { maxCallMinutes: 10 }, "config");
  const PHONE = "+14155550123";

  it("is back once the rebuild read the call's end from the lead store", async () => {
    const clock = new VirtualClock(T0 + 2 * HOUR);
    const leads = new MemoryLeadStore();
    await leads.upsertNumbers([
      { id: "n1", e164: "+14155550000", provider: "sim", maxChannels: 2, status: "AVAILABLE", pool: true },
    ]);
    await leads.submit([{ id: "a", phone: PHONE, templateId: "t" }], T0);
    const [claim] = await leads.claimDue("w1", T0, 1, 60_000);
    const token = claim.token as string;
    await leads.beginDial(token, { dialRef: `${token}@${T0}`, numberId: "n1", at: T0, recorded: true });
    await leads.settle(token, { kind: "placed", callId: "c1" }, T0 + 1);
    await leads.settle(token, { kind: "ended", outcome: "ANSWERED" }, T0 + 60_000);

    const store = await openStore();
    const key = phoneKey("s", PHONE);
    await store.markEnd(key, "ANSWERED", T0 + 60_000, DAY);
    const cool = { cooldowns: [{ seconds: 86_400, afterOutcomes: ["ANSWERED"] }] };
    const blocked = { allowed: false, counts: [0], retryAt: T0 + 60_000 + DAY };
    expect(await store.peek(key, hourly, clock.now(), cool)).toEqual(blocked);

    await (await connect()).flushall();
    expect(await store.peek(key, hourly, clock.now(), cool)).toEqual({ allowed: true, counts: [0] });
    const cooling = () => ({ ms: DAY, outcomes: ["ANSWERED"] });
    store.rebuildFrom(createGateStateSource({ store: leads, clock, config, hmacSecret: "s", cooling }));
    await store.ensureReady();
    expect(await store.peek(key, hourly, clock.now(), cool)).toEqual(blocked);
    expect(await store.record(key, "b:1", hourly, clock.now(), true, cool)).toEqual(blocked);
  });
});
