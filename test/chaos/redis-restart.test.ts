/**
 * Chaos: Redis SIGKILLed mid-run and restarted empty, under two dispatchers sharing it and Postgres.
 * While it is down the channel gate fails closed, so nothing dials; after the restart the gates stay
 * closed until the live holds and the rate-limit records are rebuilt from the dial rows (design §7.13),
 * so neither the lines nor the per-phone cap can be exceeded by what Redis forgot.
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { waitFor } from "../multiprocess/run-process.js";
import { chaosLeads, measure, NUMBERS, startCampaign, untilAllFinished } from "./support/campaign.js";

const LEADS = 90;
const PHONES = 24;
const OUTAGE_MS = 1500;

let redis: RedisServer;
let postgres: PostgresServer;
beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
});
afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

it("Redis killed mid-run and restarted empty: no second ring, the cap and the lines hold, no lead lost", async () => {
  const c = await startCampaign({
    redisUrl: redis.url,
    databaseUrl: postgres.url,
    schema: postgres.freshSchema(),
    dispatchers: 2,
    provider: { latencyMs: 80, callMs: (seq) => 700 + (seq % 5) * 150 },
  });
  try {
    const startedAt = Date.now();
    await c.dispatchers[0].submit(chaosLeads(LEADS, PHONES));
    // Lines busy, and calls that will still ring when Redis is back.
    await waitFor(
      () => {
        const now = Date.now();
        const placed = c.provider.dials.filter((d) => d.result === "placed");
        return placed.length >= 15 && placed.filter((d) => (d.endsAt ?? 0) > now + 300).length >= 3;
      },
      { timeoutMs: 20_000, intervalMs: 20, what: "15 calls placed and 3 in progress" },
    );
    const killedAt = Date.now();
    await redis.kill();
    await delay(OUTAGE_MS);
    await redis.restart();
    const restartedAt = Date.now();

    const leads = await untilAllFinished(c.list, c.provider, LEADS, 45_000);
    const finishedAt = Date.now();
    const report = measure(c.provider.dials, leads, LEADS, restartedAt);
    const duringOutage = c.provider.dials.filter((d) => d.at >= killedAt && d.at < restartedAt).length;
    console.info(
      "chaos redis restart:",
      JSON.stringify({
        ...report,
        dialsDuringOutage: duringOutage,
        absorbedErrors: c.absorbedErrors(),
        outageMs: restartedAt - killedAt,
        finishedAfterRestartMs: finishedAt - restartedAt,
        totalMs: finishedAt - startedAt,
      }),
    );
    expect(report).toMatchObject({
      duplicateDials: 0,
      overCap: 0,
      overChannel: 0,
      lostLeads: 0,
      overlappingCalls: 0,
    });
    expect(report.recoverMs).not.toBeNull();
    // The channel gate fails closed: only a dial whose line was held before the kill may reach the
    // provider while Redis is down, so at most every line once.
    expect(duringOutage).toBeLessThanOrEqual(NUMBERS.reduce((n, number) => n + number.maxChannels, 0));
    expect(c.provider.undelivered).toBe(0);
  } finally {
    await c.close();
  }
}, 60_000);
