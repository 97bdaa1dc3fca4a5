import { randomUUID } from "node:crypto";
import { once } from "node:events";
import calculateSlot from "cluster-key-slot";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { gateStoreContract } from "./gate-store.contract.js";

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

// A fresh prefix per test instead of FLUSHALL: REDIS_URL may be a shared server. Each test then
// deletes its own keys, and only those.
const prefixes: string[] = [];
const freshPrefix = () => {
  const prefix = `dialgate-test:${randomUUID()}:`;
  prefixes.push(prefix);
  return prefix;
};
afterEach(async () => {
  const client = new Redis(server.url);
  for (const prefix of prefixes.splice(0)) {
    for await (const keys of client.scanStream({ match: `${prefix}*`, count: 1000 })) {
      if (keys.length > 0) await client.unlink(...keys);
    }
  }
  await client.quit();
});

// One connection per handle, as separate processes would have.
gateStoreContract("redis", async (handles) => {
  const prefix = freshPrefix();
  return Promise.all(
    Array.from({ length: handles }, () =>
      RedisGateStore.connect(server.url, { prefix, commandTimeoutMs: 2000 }),
    ),
  );
});

describe("RedisGateStore on a real server", () => {
  const T0 = Date.UTC(2031, 0, 1);
  const DAY = 86_400_000;
  const rules = [
    { maxCalls: 7, windowSeconds: 3600 },
    { maxCalls: 3, windowSeconds: 86400 },
  ];
  const acquire = (store: RedisGateStore, holder: string) =>
    store.acquire({
      numberId: "n1",
      maxChannels: 1,
      holder,
      now: T0,
      leaseUntil: T0 + 60_000,
      waiter: holder,
      waiterTtlMs: 10_000,
    });

  /** A client of our own, quiet about the connection errors these tests cause on purpose. */
  const connect = async (url: string, commandTimeoutMs = 2000) => {
    const client = await createRedisClient(url, { commandTimeoutMs });
    client.on("error", () => {});
    return client;
  };

  it("keeps every key under the prefix, in one hash tag per phone, number or alert key, with a GC TTL", async () => {
    const prefix = freshPrefix();
    const client = await connect(server.url);
    const store = new RedisGateStore(client, { prefix });
    await store.record("hmac1", "lead1:1", rules, T0);
    await acquire(store, "lead1:1");
    await acquire(store, "lead2:1");
    await store.allow("no_outbound_number:r1:t1", 1_800_000, T0);

    const keys = (await client.scan(0, "MATCH", `${prefix}*`, "COUNT", 1000))[1].map((k) =>
      k.slice(prefix.length),
    );
    expect(keys.sort()).toEqual([
      "{a:no_outbound_number:r1:t1}:throttle",
      "{n:n1}:holds",
      "{n:n1}:waiters",
      "{p:hmac1}:rl",
    ]);
    // GC only: far beyond the largest window, the lease and the waiter/throttle windows.
    expect(await client.pttl(`${prefix}{p:hmac1}:rl`)).toBeGreaterThan(2 * DAY + DAY - 60_000);
    for (const key of keys) expect(await client.pttl(prefix + key)).toBeGreaterThan(DAY - 60_000);
    await client.quit();
  });

  it("keeps a phone's cooldown marks in its slot: the latest end per outcome, with a GC TTL", async () => {
    const prefix = freshPrefix();
    const client = await connect(server.url);
    const store = new RedisGateStore(client, { prefix });
    await store.markEnd("hmac1", "ANSWERED", T0 + 5, 7 * DAY);
    await store.markEnd("hmac1", "ANSWERED", T0, DAY);
    await store.markEnd("hmac1", "BUSY", T0 + 1, DAY);
    const cool = `${prefix}{p:hmac1}:cool`;
    expect(await client.hgetall(cool)).toEqual({ ANSWERED: String(T0 + 5), BUSY: String(T0 + 1) });
    // GC only, and never shortened by a shorter keep: the longest cooldown doubled, plus a day.
    expect(await client.pttl(cool)).toBeGreaterThan(2 * 7 * DAY + DAY - 60_000);
    expect(calculateSlot(cool)).toBe(calculateSlot(`${prefix}{p:hmac1}:rl`));
    await client.quit();
  });

  it("a peek or record without cooldowns never reads the marks", async () => {
    const prefix = freshPrefix();
    const client = await connect(server.url);
    const store = new RedisGateStore(client, { prefix });
    // A key of the wrong type: any read of it fails (WRONGTYPE).
    await client.set(`${prefix}{p:hmac1}:cool`, "not a hash");
    expect(await store.peek("hmac1", rules, T0)).toEqual({ allowed: true, counts: [0, 0] });
    expect(await store.record("hmac1", "a", rules, T0, true, { cooldowns: [] })).toEqual({
      allowed: true,
      counts: [0, 0],
    });
    const cooldowns = [{ seconds: 60, afterOutcomes: ["ANSWERED"] }];
    await expect(store.peek("hmac1", rules, T0, { cooldowns })).rejects.toThrow(/WRONGTYPE/);
    await client.quit();
  });

  it("reloads its scripts after the server forgot them (NOSCRIPT)", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const client = await connect(own.url);
      const store = new RedisGateStore(client, { prefix: "t:" });
      expect(await store.record("hmac1", "a", rules, T0)).toEqual({ allowed: true, counts: [0, 0] });
      await client.script("FLUSH");
      expect(await store.record("hmac1", "b", rules, T0)).toEqual({ allowed: true, counts: [1, 1] });
      await client.quit();
    } finally {
      await own.stop();
    }
  });

  it("a dead Redis fails every call within the command timeout", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const client = await connect(own.url, 200);
      const store = new RedisGateStore(client, { prefix: "t:" });
      await own.kill();
      const calls = [
        () => store.peek("hmac1", rules, T0),
        () => store.record("hmac1", "a", rules, T0),
        () => acquire(store, "a:1"),
        () => store.release("n1", "a:1"),
        () => store.inUse(["n1", "n2"], T0),
        () => store.allow("k", 1000, T0),
      ];
      for (const call of calls) {
        const started = performance.now();
        await expect(call()).rejects.toThrow();
        expect(performance.now() - started).toBeLessThan(1000);
      }
      client.disconnect();
    } finally {
      await own.stop();
    }
  });

  it("a Redis that stops answering fails the call after the command timeout", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const client = await connect(own.url, 200);
      const store = new RedisGateStore(client, { prefix: "t:" });
      const admin = await connect(own.url);
      // Every client, this one included, gets no answer for 2 s; the pause then lapses on its own.
      await admin.client("PAUSE", 2000, "ALL");
      const started = performance.now();
      await expect(store.peek("hmac1", rules, T0)).rejects.toThrow(/timed out/i);
      expect(performance.now() - started).toBeLessThan(1000);
      client.disconnect();
      admin.disconnect();
    } finally {
      await own.stop();
    }
  });

  it("works again after a Redis restart, on the empty server", async () => {
    const own = await startRedis({ disposable: true });
    try {
      const client = await connect(own.url);
      const store = new RedisGateStore(client, { prefix: "t:" });
      await store.record("hmac1", "a", rules, T0);
      await own.restart();
      if (client.status !== "ready") await once(client, "ready");
      // A restart loses every record: rebuilding them is the dispatcher's job (design §7.13).
      expect(await store.peek("hmac1", rules, T0)).toEqual({ allowed: true, counts: [0, 0] });
      expect(await store.record("hmac1", "b", rules, T0)).toEqual({ allowed: true, counts: [0, 0] });
      await client.quit();
    } finally {
      await own.stop();
    }
  });

  it("createRedisClient rejects at once when Redis is down", async () => {
    const own = await startRedis({ disposable: true });
    await own.stop();
    const started = performance.now();
    await expect(createRedisClient(own.url, { commandTimeoutMs: 200 })).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
