/**
 * Chaos: two dispatchers whose clocks are 5 s fast and 5 s slow, sharing Redis and Postgres (design
 * §7.7). Each offset-synchronises its clock to Redis TIME at start, so the rate windows, the claim
 * leases and the dial times they write agree: no phone over its cap as the provider counts the calls,
 * no claim taken over while its owner runs it, no second ring.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { chaosLeads, measure, startCampaign, untilAllFinished } from "./support/campaign.js";

const LEADS = 48;
const PHONES = 6;
const SKEW_MS = 5000;

let redis: RedisServer;
let postgres: PostgresServer;
beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
});
afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

it("two processes skewed by ±5 s: 0 over cap at the provider, leases honoured, no second ring", async () => {
  const c = await startCampaign({
    redisUrl: redis.url,
    databaseUrl: postgres.url,
    schema: postgres.freshSchema(),
    dispatchers: 2,
    clockSkewMs: [SKEW_MS, -SKEW_MS],
    provider: { latencyMs: 80, callMs: (seq) => 700 + (seq % 5) * 150 },
  });
  try {
    const offsets = c.dispatchers.map((d) => d.stats().clock.offsetMs);
    // Due for both processes at once, whatever their clocks say.
    const due = Date.now() - 2 * SKEW_MS;
    await c.dispatchers[0].submit(chaosLeads(LEADS, PHONES).map((lead) => ({ ...lead, dueAt: due })));
    const leads = await untilAllFinished(c.list, c.provider, LEADS, 45_000);
    const report = measure(c.provider.dials, leads, LEADS, 0, "provider");
    console.info(
      "chaos clock skew:",
      JSON.stringify({
        ...withoutRecovery(report),
        offsets,
        droppedClaims: c.droppedClaims(),
        absorbedErrors: c.absorbedErrors(),
      }),
    );
    // Each measured its own skew back out (Redis runs on this machine's clock).
    expect(Math.abs(offsets[0] + SKEW_MS)).toBeLessThan(250);
    expect(Math.abs(offsets[1] - SKEW_MS)).toBeLessThan(250);
    expect(report).toMatchObject({
      duplicateDials: 0,
      overCap: 0,
      overChannel: 0,
      lostLeads: 0,
      overlappingCalls: 0,
    });
    expect(c.droppedClaims(), "no claim taken over while its owner ran it").toBe(0);
    expect(report.placed).toBeGreaterThan(0);
  } finally {
    await c.close();
  }
}, 60_000);

/** No fault here: the time to recover from one means nothing. */
function withoutRecovery<T extends { recoverMs: unknown }>(report: T): Omit<T, "recoverMs"> {
  const { recoverMs: _, ...rest } = report;
  return rest;
}
