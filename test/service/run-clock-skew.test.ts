/**
 * `dialgate run` on a host whose clock is 10 s fast (design §7.7): the provider account's pacing tokens,
 * which every process on the Redis compares in one sliding second, are taken at the time synchronised
 * to Redis TIME, not at the host's own.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { RunProcess, waitFor } from "../multiprocess/run-process.js";

const SKEW_MS = 10_000;
const API_TOKEN = "skew-test-api-token-0123456789abcdef";
const ACCOUNT_SID = `AC${"0123456789abcdef".repeat(2)}`;
const prefix = `dialgate-test:${randomUUID()}:`;

let redis: RedisServer;
let postgres: PostgresServer;
let client: Redis;
let tmp: string;
let run: RunProcess | undefined;

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  client = new Redis(redis.url);
  tmp = await mkdtemp(join(tmpdir(), "dialgate-skew-"));
});

afterAll(async () => {
  run?.kill("SIGKILL");
  await run?.exited;
  await client?.quit();
  await redis?.stop();
  await postgres?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

it("a host clock 10 s fast takes its pacing tokens at Redis time", async () => {
  const file = join(tmp, "run.json");
  await writeFile(
    file,
    JSON.stringify({
      numbers: [{ id: "num-1", e164: "+15550000001", provider: "twilio", maxChannels: 2, pool: true }],
      templates: [{ id: "tpl-1", resellerId: "res-1" }],
      providers: [
        {
          type: "twilio",
          accountSid: ACCOUNT_SID,
          // Nobody listens: the dial fails after its pacing token was taken, which is all this needs.
          baseUrl: "http://127.0.0.1:9",
          twiml: "<Response><Say>Hello.</Say></Response>",
          callsPerSecond: 5,
        },
      ],
      http: { port: 0, host: "127.0.0.1", publicBaseUrl: "https://dialgate.example.test" },
    }),
  );
  const preload = pathToFileURL(join(import.meta.dirname, "../support/skewed-date.mjs")).href;
  run = new RunProcess("skewed", ["--config", file, "--schema", postgres.freshSchema(), "--migrate"], {
    REDIS_URL: redis.url,
    DATABASE_URL: postgres.url,
    DIALGATE_HMAC_SECRET: "skew-test-hmac-secret-0123456789abcdef0123456789abcdef0123456789abcdef",
    DIALGATE_REDIS_PREFIX: prefix,
    DIALGATE_API_TOKEN: API_TOKEN,
    TWILIO_AUTH_TOKEN: "twilio-auth-token-under-test",
    DIALGATE_TEST_SKEW_MS: String(SKEW_MS),
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${preload}`.trim(),
    LOG_LEVEL: "info",
  });
  await run.started();
  await waitFor(() => (run as RunProcess).log.includes('"msg":"http served"'), {
    timeoutMs: 20_000,
    what: "the HTTP server",
  });
  const line = (run.log.split("\n").find((l) => l.includes('"msg":"http served"')) as string).trim();
  const base = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
  const submitted = await fetch(`${base}/leads`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ id: "lead-1", phone: "+14155550123", templateId: "tpl-1" }),
  });
  expect(submitted.status).toBe(200);

  const key = `${prefix}{c:twilio}:pacing`;
  await waitFor(async () => (await client.zcard(key)) > 0, { timeoutMs: 20_000, what: "a pacing token" });
  const [, score] = await client.zrange(key, "0", "0", "WITHSCORES");
  const [seconds, micros] = await client.time();
  const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  // Taken a moment ago on Redis' clock; on the host's it would be 10 s in Redis' future.
  expect(redisNow - Number(score)).toBeGreaterThanOrEqual(-1000);
  expect(redisNow - Number(score)).toBeLessThan(SKEW_MS / 2);
});
