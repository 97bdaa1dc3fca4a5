/**
 * Chaos: Postgres restarted mid-run (the harness's fast shutdown and start on the same port: every
 * connection is dropped) under two dispatchers. Claims, dial rows and settles fail meanwhile; a dial
 * whose outcome could not be stored is settled from the outbox, or its lead held as an unknown dial
 * when its lease runs out, never dialled again blindly; the LISTEN connection comes back by itself.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { waitFor } from "../multiprocess/run-process.js";
import { chaosLeads, measure, startCampaign, untilAllFinished } from "./support/campaign.js";

const LEADS = 90;
const PHONES = 24;

let redis: RedisServer;
let postgres: PostgresServer;
beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
});
afterAll(async () => {
  await redis?.stop();
  await postgres?.stop();
});

it.skipIf(process.env.DATABASE_URL)(
  "Postgres restarted mid-run: no second ring, the cap and the lines hold, no lead lost",
  async () => {
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
      await waitFor(
        () => {
          const now = Date.now();
          const placed = c.provider.dials.filter((d) => d.result === "placed");
          return placed.length >= 15 && placed.filter((d) => (d.endsAt ?? 0) > now + 300).length >= 3;
        },
        { timeoutMs: 20_000, intervalMs: 20, what: "15 calls placed and 3 in progress" },
      );
      const restartingAt = Date.now();
      await postgres.restart();
      const restartedAt = Date.now();

      const leads = await untilAllFinished(c.list, c.provider, LEADS, 45_000);
      const finishedAt = Date.now();
      const report = measure(c.provider.dials, leads, LEADS, restartedAt);
      console.info(
        "chaos postgres restart:",
        JSON.stringify({
          ...report,
          absorbedErrors: c.absorbedErrors(),
          restartTookMs: restartedAt - restartingAt,
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
    } finally {
      await c.close();
    }
  },
  60_000,
);
