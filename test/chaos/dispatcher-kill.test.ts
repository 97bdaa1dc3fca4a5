/**
 * Chaos: a dispatcher process SIGKILLed mid-dial. The victim is a process of its own
 * (support/dispatcher-process.ts) and a survivor runs in this one; the provider lives outside both,
 * so the calls the victim placed keep ringing and their end signals reach the survivor. The survivor
 * takes the victim's leads over when their leases run out: a lead killed between its dial row and the
 * dial's reply becomes a held unknown dial that the end signal then claims (design §7.16), never a
 * second ring; a line the victim took before dialling is given back by the sweep (§7.10).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { waitFor } from "../multiprocess/run-process.js";
import { CONFIG, chaosLeads, countBy, measure, startCampaign, untilAllFinished } from "./support/campaign.js";

const LEADS = 90;
const PHONES = 24;
const VICTIM = 99;
const REPO = fileURLToPath(new URL("../../", import.meta.url));
const CHILD = fileURLToPath(new URL("./support/dispatcher-process.ts", import.meta.url));

let redis: RedisServer;
let postgres: PostgresServer;
let victim: ChildProcess | undefined;
beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis({ disposable: true }), startPostgres()]);
});
afterAll(async () => {
  victim?.kill("SIGKILL");
  await redis?.stop();
  await postgres?.stop();
});

it("a dispatcher SIGKILLed mid-dial: its leads are taken over, no attempt rings twice, the cap and lines hold, none is lost", async () => {
  const schema = postgres.freshSchema();
  const c = await startCampaign({
    redisUrl: redis.url,
    databaseUrl: postgres.url,
    schema,
    dispatchers: 1,
    // A slow answer keeps requests in flight at the provider: the kill lands between dial row and reply.
    provider: { latencyMs: 300, callMs: (seq) => 800 + (seq % 5) * 150 },
  });
  const pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
  try {
    const providerUrl = await c.provider.listen();
    const child = spawn(process.execPath, ["--import", "tsx", CHILD], {
      cwd: REPO,
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        DATABASE_URL: postgres.url,
        CHAOS_SCHEMA: schema,
        CHAOS_PREFIX: c.prefix,
        CHAOS_PROVIDER_URL: providerUrl,
        CHAOS_SOURCE: String(VICTIM),
        CHAOS_CONFIG: JSON.stringify(CONFIG),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    victim = child;
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_code, signal) => resolve(signal)),
    );
    await waitFor(() => output.includes("started") || child.exitCode !== null, {
      timeoutMs: 20_000,
      what: "the victim to start",
    });
    expect(child.exitCode, output).toBeNull();

    const startedAt = Date.now();
    await c.dispatchers[0].submit(chaosLeads(LEADS, PHONES));
    // Kill it with a request of its own in flight at the provider and a call of its own ringing.
    await waitFor(
      () => {
        const mine = c.provider.dials.filter((d) => d.pid === VICTIM);
        const now = Date.now();
        return (
          mine.filter((d) => d.result === "placed").length >= 5 &&
          mine.some((d) => d.result === null) &&
          mine.some((d) => d.result === "placed" && (d.endsAt ?? 0) > now + 200)
        );
      },
      { timeoutMs: 30_000, intervalMs: 5, what: "the victim to have a dial in flight and a call ringing" },
    );
    // Read in the same turn as the check above: no provider timer has answered them meanwhile.
    const inFlightAtKill = c.provider.dials.filter((d) => d.pid === VICTIM && d.result === null).length;
    child.kill("SIGKILL");
    const killedAt = Date.now();
    expect(await exited).toBe("SIGKILL");

    const { rows: orphaned } = await pool.query<{ id: string; status: string }>(
      `SELECT id, status FROM ${pg.escapeIdentifier(schema)}.leads WHERE owner LIKE 'chaos-victim-%' AND status <> 'FINISHED'`,
    );
    const finishedAtById = new Map<string, number>();
    const leads = await untilAllFinished(c.list, c.provider, LEADS, 45_000, finishedAtById);
    const finishedAt = Date.now();
    const report = measure(c.provider.dials, leads, LEADS, killedAt);
    const orphanIds = new Set(orphaned.map((o) => o.id));
    const afterKill = c.provider.dials.filter((d) => orphanIds.has(d.leadId) && d.at > killedAt);
    console.info(
      "chaos dispatcher SIGKILL:",
      JSON.stringify({
        ...report,
        absorbedErrors: c.absorbedErrors(),
        victimDials: c.provider.dials.filter((d) => d.pid === VICTIM).length,
        victimRequestsInFlightAtKill: inFlightAtKill,
        orphaned: countBy(orphaned, (o) => o.status),
        // Time to recover: every lead the victim held is FINISHED (ended by its own end signal, or
        // dialled again by the survivor when it had not dialled yet).
        orphansFinishedAfterKillMs:
          Math.max(...orphaned.map((o) => finishedAtById.get(o.id) ?? finishedAt)) - killedAt,
        orphansRedialled: afterKill.length,
        finishedAfterKillMs: finishedAt - killedAt,
        totalMs: finishedAt - startedAt,
      }),
    );
    expect(orphaned.length).toBeGreaterThan(0);
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(report).toMatchObject({
      duplicateDials: 0,
      overCap: 0,
      overChannel: 0,
      lostLeads: 0,
      overlappingCalls: 0,
    });
    expect(report.recoverMs).not.toBeNull();
    expect(c.provider.undelivered).toBe(0);
    // Every call ended with its own signal: none had to be closed UNKNOWN by the sweep.
    expect(leads.every((l) => l.outcome === "ANSWERED")).toBe(true);
  } finally {
    await pool.end();
    await c.close();
  }
}, 60_000);
