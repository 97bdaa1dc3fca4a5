/**
 * Chaos: the provider times out on every call for a stretch. Half of the requests of the stretch go
 * into a black hole (never answered, never placed); the other half are placed but answered too late.
 * Every dial of the stretch ends held unknown (design §7.16): it keeps its line and its rate-limit record,
 * a late call's end signal claims it, and a black-holed one is re-queued when its hold ends.
 *
 * Scaling: the stretch is 30 s against the default dial.timeoutMs (15 s) and unknownDial hold
 * (5 min). Here everything is ÷ 10 or more so the test stays under a minute: a 3 s stretch, a 500 ms
 * dial timeout (so the stretch still spans six timeouts), late answers 1 s after the request, and a
 * 6 s hold (0.1 min), which still outlasts a late call's end signal as 5 min does at full scale.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { waitFor } from "../multiprocess/run-process.js";
import { chaosLeads, countBy, measure, startCampaign, untilAllFinished } from "./support/campaign.js";

const LEADS = 70;
const PHONES = 24;
const STRETCH_MS = 3000;

let redis: RedisServer;
let postgres: PostgresServer;
beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
});
afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

it("the provider times out on every call for a stretch: no second ring, the cap and the lines hold, no lead lost", async () => {
  let stretch = { from: Number.POSITIVE_INFINITY, to: Number.POSITIVE_INFINITY };
  const c = await startCampaign({
    redisUrl: redis.url,
    databaseUrl: postgres.url,
    schema: postgres.freshSchema(),
    dispatchers: 2,
    config: { dial: { timeoutMs: 500 }, unknownDial: { holdMinutes: 0.1 } },
    provider: {
      latencyMs: 60,
      lateByMs: 1000,
      callMs: (seq) => 600 + (seq % 5) * 100,
      behaviour: (now, seq) =>
        now >= stretch.from && now < stretch.to ? (seq % 2 ? "blackHole" : "late") : "normal",
    },
  });
  try {
    const startedAt = Date.now();
    await c.dispatchers[0].submit(chaosLeads(LEADS, PHONES));
    await waitFor(() => c.provider.dials.filter((d) => d.result === "placed").length >= 10, {
      timeoutMs: 20_000,
      intervalMs: 20,
      what: "10 calls placed",
    });
    stretch = { from: Date.now(), to: Date.now() + STRETCH_MS };
    await waitFor(() => Date.now() >= stretch.to, {
      timeoutMs: STRETCH_MS + 1000,
      intervalMs: 20,
      what: "the stretch",
    });

    const leads = await untilAllFinished(c.list, c.provider, LEADS, 45_000);
    const finishedAt = Date.now();
    const report = measure(c.provider.dials, leads, LEADS, stretch.to);
    const inStretch = c.provider.dials.filter((d) => d.at >= stretch.from && d.at < stretch.to);
    const stats = c.dispatchers.map((d) => d.stats());
    console.info(
      "chaos provider timeouts:",
      JSON.stringify({
        ...report,
        dialsInStretch: countBy(inStretch, (d) => (d.result === "placed" ? "placedLate" : "blackHoled")),
        heldUnknown: stats.reduce((n, s) => n + s.heldUnknown, 0),
        absorbedErrors: c.absorbedErrors(),
        stretchMs: STRETCH_MS,
        finishedAfterStretchMs: finishedAt - stretch.to,
        totalMs: finishedAt - startedAt,
      }),
    );
    expect(inStretch.length).toBeGreaterThan(0);
    // Every dial of the stretch was held unknown, none settled as placed or not placed.
    expect(stats.reduce((n, s) => n + s.heldUnknown, 0)).toBeGreaterThanOrEqual(inStretch.length);
    expect(report).toMatchObject({
      duplicateDials: 0,
      overCap: 0,
      overChannel: 0,
      lostLeads: 0,
      overlappingCalls: 0,
    });
    expect(report.recoverMs).not.toBeNull();
    expect(c.provider.undelivered).toBe(0);
  } finally {
    await c.close();
  }
}, 60_000);
