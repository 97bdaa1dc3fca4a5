/**
 * Batched gate I/O on Redis: the peeks, records, acquires, releases and undos of one
 * event-loop turn go out as one script call (one per hash slot on a cluster), and each caller still
 * gets its own answer or its own error.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import calculateSlot from "cluster-key-slot";
import { Cluster, Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from "../harness/redis.js";

const T0 = Date.UTC(2031, 0, 1);
const RULES = [{ maxCalls: 1, windowSeconds: 3600 }];
const PHONES = Array.from({ length: 20 }, (_, i) => `phone-${i}`);

let server: RedisServer;
let cluster: RedisCluster;
beforeAll(async () => {
  [server, cluster] = await Promise.all([startRedis(), startRedisCluster()]);
}, 60_000);
afterAll(async () => {
  await Promise.all([server?.stop(), cluster?.stop()]);
});

const clients: Array<Redis | Cluster> = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.quit()));
});

async function single(): Promise<Redis> {
  const client = new Redis(server.url, { commandTimeout: 2000 });
  clients.push(client);
  await once(client, "ready");
  return client;
}

async function clustered(): Promise<Cluster> {
  const client = new Cluster(cluster.nodes, { redisOptions: { commandTimeout: 2000 } });
  clients.push(client);
  await once(client, "ready");
  return client;
}

/** The script calls a client is asked to send (a cluster's MOVED redirections not counted again). */
function scriptCalls(client: Redis | Cluster): () => number {
  const spy = vi.spyOn(client, "sendCommand");
  return () =>
    spy.mock.calls.filter(([command]) => ["evalsha", "eval"].includes((command as { name: string }).name))
      .length;
}

const acquire = (store: RedisGateStore, holder: string, numberId = "n1") =>
  store.acquire({
    numberId,
    maxChannels: 2,
    holder,
    now: T0,
    leaseUntil: T0 + 60_000,
    waiter: holder,
    waiterTtlMs: 10_000,
  });

describe("RedisGateStore batches one turn's operations on one Redis", () => {
  it("sends the peeks of one turn as one script call, each phone with its own decision", async () => {
    const client = await single();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    await store.record(PHONES[3] as string, "earlier", RULES, T0 - 1000);
    const calls = scriptCalls(client);

    const decisions = await Promise.all(PHONES.map((phone) => store.peek(phone, RULES, T0)));

    expect(calls()).toBe(1);
    expect(decisions.map((d) => d.allowed)).toEqual(PHONES.map((_, i) => i !== 3));
  });

  it("acquires of one turn decide one after another: the cap holds inside one batch", async () => {
    const client = await single();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    const calls = scriptCalls(client);

    const results = await Promise.all(["a", "b", "c"].map((holder) => acquire(store, holder)));

    expect(calls()).toBe(1);
    expect(results.map((r) => r.held)).toEqual([true, true, false]);
    const released = await Promise.all([store.release("n1", "a"), store.release("n1", "c")]);
    expect(released).toEqual([true, false]);
    expect(calls()).toBe(2);
    expect(await store.listHolders("n1", T0)).toEqual(["b"]);
  });

  it("records and undos of one turn: one call each, one rejection for the phone at its cap", async () => {
    const client = await single();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    const calls = scriptCalls(client);

    const recorded = await Promise.all([
      store.record("p1", "t1", RULES, T0),
      store.record("p1", "t2", RULES, T0),
      store.record("p2", "t3", RULES, T0),
    ]);
    expect(recorded.map((d) => d.allowed)).toEqual([true, false, true]);
    const undone = await Promise.all([
      store.undo("p1", "t1"),
      store.undo("p2", "t3"),
      store.undo("p2", "t9"),
    ]);
    expect(undone).toEqual([true, true, false]);
    expect(calls()).toBe(2);
  });

  it("records and peeks with cooldowns: one call per kind, each phone decided on its own marks", async () => {
    const client = await single();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    await store.markEnd("p1", "ANSWERED", T0 - 1000, 3_600_000);
    const calls = scriptCalls(client);
    const cool = { cooldowns: [{ seconds: 60, afterOutcomes: ["ANSWERED"] }] };

    const decisions = await Promise.all([
      store.record("p1", "t1", RULES, T0, true, cool),
      store.record("p2", "t2", RULES, T0, true, cool),
      store.record("p3", "t3", RULES, T0),
      store.peek("p1", RULES, T0, cool),
      store.peek("p1", RULES, T0),
    ]);

    expect(calls()).toBe(2);
    const blocked = { allowed: false, counts: [0], retryAt: T0 + 59_000 };
    const allowed = { allowed: true, counts: [0] };
    expect(decisions).toEqual([blocked, allowed, allowed, blocked, allowed]);
  });

  it("one operation's error fails that caller only", async () => {
    const client = await single();
    const prefix = `dialgate-test:${randomUUID()}:`;
    const store = new RedisGateStore(client, { prefix });
    // A key of the wrong type: the script fails for that phone (WRONGTYPE), not for the others.
    await client.set(`${prefix}{p:broken}:rl`, "not a sorted set");

    const settled = await Promise.allSettled(
      ["p1", "broken", "p2"].map((phone) => store.record(phone, `t-${phone}`, RULES, T0)),
    );

    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    expect(await client.zrange(`${prefix}{p:p2}:rl`, "0", "-1")).toEqual(["t-p2"]);
  });
});

describe("RedisGateStore batches per hash slot on a cluster", () => {
  it("peeks and acquires over phones and numbers of every node: no CROSSSLOT, one call per slot", async () => {
    const client = await clustered();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    const calls = scriptCalls(client);

    const decisions = await Promise.all(PHONES.map((phone) => store.peek(phone, RULES, T0)));
    const held = await Promise.all(PHONES.map((_, i) => acquire(store, `h${i}`, `num${i % 4}`)));

    expect(decisions.every((d) => d.allowed)).toBe(true);
    // Two numbers' worth of holders per number fit (maxChannels 2); the rest of each number's are refused.
    expect(held.filter((r) => r.held).length).toBe(8);
    // One call per slot the turn touched (phones and numbers are hash tags: `{p:…}`, `{n:…}`).
    const slots = (tags: string[]) => new Set(tags.map((tag) => calculateSlot(`{${tag}}`))).size;
    const numberSlots = slots(["n:num0", "n:num1", "n:num2", "n:num3"]);
    expect(calls()).toBe(slots(PHONES.map((phone) => `p:${phone}`)) + numberSlots);
    expect(numberSlots).toBeLessThan(PHONES.length);
  });

  it("peeks and records with cooldowns read each phone's marks in its own slot: no CROSSSLOT", async () => {
    const client = await clustered();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    const marked = PHONES.filter((_, i) => i % 2 === 0);
    await Promise.all(marked.map((phone) => store.markEnd(phone, "ANSWERED", T0 - 1000, 3_600_000)));
    const cool = { cooldowns: [{ seconds: 60, afterOutcomes: ["ANSWERED"] }] };

    const peeks = await Promise.all(PHONES.map((phone) => store.peek(phone, RULES, T0, cool)));
    const records = await Promise.all(
      PHONES.map((phone) => store.record(phone, `t-${phone}`, RULES, T0, true, cool)),
    );

    for (const decisions of [peeks, records])
      expect(decisions.map((d) => d.allowed)).toEqual(PHONES.map((_, i) => i % 2 !== 0));
  });
});
