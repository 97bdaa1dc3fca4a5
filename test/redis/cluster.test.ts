/**
 * The gate store contract on a real 3-node Redis Cluster: every script touches the keys of one hash
 * tag, so none may fail with CROSSSLOT, and reads over several numbers must work across nodes.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { Cluster } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { gateStoreContract } from "../contract/gate-store.contract.js";
import { type RedisCluster, startRedisCluster } from "../harness/redis.js";

let cluster: RedisCluster;
beforeAll(async () => {
  cluster = await startRedisCluster();
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

/** Clients of the running test: a store leaves the clients it is given open, so the test closes them. */
const clients: Cluster[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.quit()));
});

async function connect(): Promise<Cluster> {
  const client = new Cluster(cluster.nodes, {
    enableOfflineQueue: false,
    redisOptions: { commandTimeout: 2000, maxRetriesPerRequest: 1 },
  });
  clients.push(client);
  await once(client, "ready");
  return client;
}

// One client per handle, as separate processes would have; a fresh prefix per test.
gateStoreContract("redis cluster", async (handles) => {
  const prefix = `dialgate-test:${randomUUID()}:`;
  return Promise.all(
    Array.from({ length: handles }, async () => new RedisGateStore(await connect(), { prefix })),
  );
});

describe("RedisGateStore on a cluster", () => {
  it("spreads phones and numbers over several nodes", async () => {
    const client = await connect();
    const store = new RedisGateStore(client, { prefix: `dialgate-test:${randomUUID()}:` });
    const numbers = Array.from({ length: 12 }, (_, i) => `num${i}`);
    for (const numberId of numbers) {
      await store.acquire({
        numberId,
        maxChannels: 1,
        holder: "h",
        now: 0,
        leaseUntil: 1000,
        waiter: "h",
        waiterTtlMs: 1000,
      });
    }
    expect(await store.inUse(numbers, 0)).toEqual(new Map(numbers.map((id) => [id, 1])));
    const masters = await Promise.all(
      client.nodes("master").map(async (node) => Number(await node.dbsize())),
    );
    // Sanity: the test would prove nothing if every key had landed on one node.
    expect(masters.filter((keys) => keys > 0).length).toBeGreaterThan(1);
  });
});
