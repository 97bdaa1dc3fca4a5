/**
 * Replay protection shared through the gate store: a signed callback taken by one process is refused
 * by another process on the same store, on memory (one store, two handlers) and on Redis (two
 * connections, as two processes would have).
 */
import { createHmac, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import {
  type CallEndSignal,
  createCallbackHandler,
  type ReplayStore,
} from "../../src/infra/providers/callbacks.js";
import { withDialRef } from "../../src/infra/providers/http.js";
import { RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { type RedisServer, startRedis } from "../harness/redis.js";

const PUBLIC = "https://hooks.example.com";
const TOKEN = "callback-secret-token";
const url = withDialRef(`${PUBLIC}/callbacks/twilio`, "lead-1:1:1767225600000");
const path = url.slice(PUBLIC.length);
const form = { CallSid: "CA42", CallStatus: "completed", SequenceNumber: "3" };

function sign(params: Record<string, string>): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, name) => acc + name + params[name], url);
  return createHmac("sha1", TOKEN).update(data).digest("base64");
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** One "process": a handler on its own server, with the given replay store. */
async function processOn(store: ReplayStore | undefined, ends: CallEndSignal[], fail = { next: false }) {
  const handler = createCallbackHandler({
    provider: "twilio",
    authToken: TOKEN,
    publicBaseUrl: PUBLIC,
    clock: { now: () => 1_767_225_600_000, setTimer: () => ({ cancel() {} }) },
    ...(store ? { replayStore: store } : {}),
    dialgate: {
      async callEnded(signal) {
        if (fail.next) {
          fail.next = false;
          throw new Error("store down");
        }
        ends.push(signal);
      },
    },
  });
  const server = createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return (params: Record<string, string>) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sign(params) },
      body: new URLSearchParams(params).toString(),
    }).then((res) => res.status);
}

function sharedReplayCases(name: string, stores: () => Promise<[ReplayStore, ReplayStore]>) {
  describe(`replay protection through the ${name} gate store`, () => {
    it("a callback taken by one process is refused 409 by another", async () => {
      const [a, b] = await stores();
      const ends: CallEndSignal[] = [];
      const first = await processOn(a, ends);
      const second = await processOn(b, ends);
      expect(await first(form)).toBe(200);
      expect(await second(form)).toBe(409);
      expect(ends).toHaveLength(1);
    });

    it("a callback that failed in one process is taken by the retry in another", async () => {
      const [a, b] = await stores();
      const ends: CallEndSignal[] = [];
      const first = await processOn(a, ends, { next: true });
      const second = await processOn(b, ends);
      expect(await first(form)).toBe(503);
      expect(await second(form)).toBe(200);
      expect(ends).toHaveLength(1);
    });
  });
}

it("without a shared store, each process remembers only its own callbacks", async () => {
  const ends: CallEndSignal[] = [];
  const first = await processOn(undefined, ends);
  const second = await processOn(undefined, ends);
  expect(await first(form)).toBe(200);
  expect(await second(form)).toBe(200);
  expect(await second(form)).toBe(409);
});

sharedReplayCases("memory", async () => {
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

sharedReplayCases("redis", async () => {
  const prefix = `dialgate-test:${randomUUID()}:`;
  const pair = await Promise.all([
    RedisGateStore.connect(redis.url, { prefix, commandTimeoutMs: 2000 }),
    RedisGateStore.connect(redis.url, { prefix, commandTimeoutMs: 2000 }),
  ]);
  opened.push(...pair);
  return pair;
});

it("a replay store that is away (Redis down) does not cost the call end: it is applied, as ends are idempotent", async () => {
  const own = await startRedis();
  const store = await RedisGateStore.connect(own.url, {
    prefix: `dialgate-test:${randomUUID()}:`,
    commandTimeoutMs: 2000,
  });
  opened.push(store);
  await own.stop();
  const ends: CallEndSignal[] = [];
  const post = await processOn(store, ends);
  expect(await post(form)).toBe(200);
  expect(ends).toEqual([{ callId: "CA42", dialRef: "lead-1:1:1767225600000", outcome: expect.any(String) }]);
});
