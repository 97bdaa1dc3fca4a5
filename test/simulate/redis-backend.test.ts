/**
 * `dialgate simulate --backend redis` (simulate.md): the same scenario and seed give the same totals,
 * invariants and outcome counts on Redis + Postgres as in memory. On the harness's own servers; each
 * run works on a key prefix and a schema of its own and removes both at the end.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { redisBackend, simulate, simulateCommand } from "../../src/cli/simulate/index.js";
import type { Report } from "../../src/cli/simulate/report.js";
import { parseScenario, type ScenarioInput } from "../../src/cli/simulate/scenario.js";
import { createRedisClient } from "../../src/infra/redis/gate-store.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";

let redis: RedisServer;
let postgres: PostgresServer;
let dir: string;

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  dir = await mkdtemp(join(tmpdir(), "dialgate-simulate-redis-"));
}, 60_000);

afterAll(async () => {
  await Promise.all([redis?.stop(), postgres?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** What the two backends must agree on: not per-lead timings. */
function comparable(report: Report) {
  return {
    totals: report.totals,
    invariants: report.invariants,
    gates: report.gates,
    alerts: report.alerts.map((a) => a.kind),
  };
}

async function onBothBackends(input: ScenarioInput) {
  const scenario = parseScenario(input);
  const memory = await simulate(scenario);
  const real = await simulate(scenario, {
    backend: redisBackend({ redisUrl: redis.url, databaseUrl: postgres.url }),
  });
  console.log(`simulate ${input.seed}: memory ${JSON.stringify(comparable(memory))}`);
  console.log(`simulate ${input.seed}: redis  ${JSON.stringify(comparable(real))}`);
  return { memory, real };
}

/** Every run's keys and schema are gone. */
async function expectNothingLeftBehind(): Promise<void> {
  const client = await createRedisClient(redis.url, { commandTimeoutMs: 2000 });
  try {
    expect(await client.keys("dialgate-sim:*")).toEqual([]);
  } finally {
    await client.quit();
  }
  const db = new pg.Client({ connectionString: postgres.url });
  await db.connect();
  try {
    const { rows } = await db.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sim\\_%'");
    expect(rows).toEqual([]);
  } finally {
    await db.end();
  }
}

/** One pool number, a retry policy, and a lead for each awkward provider answer; the store goes down. */
const awkward: ScenarioInput = {
  seed: 11,
  untilSeconds: 6 * 3600,
  numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 3, pool: true }],
  templates: [
    {
      id: "t1",
      resellerId: "r1",
      retry: { maxAttempts: 3, onOutcomes: ["NO_ANSWER", "BUSY"], delaySeconds: 600 },
    },
  ],
  leads: [{ generate: { count: 30, phones: 8, templateId: "t1", spreadSeconds: 120 } }],
  provider: {
    default: { result: "placed", latencyMs: 80, callSeconds: 30, outcome: "ANSWERED" },
    perLead: {
      G1: [{ result: "notPlaced" }, { result: "placed", outcome: "NO_ANSWER" }],
      G2: [{ result: "unknown" }],
      G3: [{ result: "throw" }, { result: "notPlaced" }, { result: "placed", outcome: "BUSY" }],
      G4: [{ result: "unknown" }, { result: "placed", outcome: "NO_ANSWER" }],
    },
  },
  faults: [{ kind: "storeDown", fromSeconds: 20, toSeconds: 60 }],
};

describe("dialgate simulate --backend redis", () => {
  it("busy lines: the same totals, invariants and outcome counts as in memory", async () => {
    const input = JSON.parse(await readFile("examples/busy-lines.json", "utf8")) as ScenarioInput;
    const { memory, real } = await onBothBackends(input);

    expect(comparable(real)).toEqual(comparable(memory));
    expect(real.totals).toMatchObject({ leads: 500, placed: 500, pending: 0, finished: { ANSWERED: 500 } });
    expect(real.invariants).toMatchObject({ duplicateDials: 0, lostLeads: 0 });
    expect(real.invariants.maxDialsPerPhoneInWindow).toBeLessThanOrEqual(7);
    expect(Math.max(...Object.values(real.invariants.maxConcurrentByNumber))).toBeLessThanOrEqual(2);
    await expectNothingLeftBehind();
  }, 600_000);

  it("notPlaced, unknown, retries and a storeDown fault: the same totals, invariants and outcome counts", async () => {
    const { memory, real } = await onBothBackends(awkward);

    expect(comparable(real)).toEqual(comparable(memory));
    // The scenario really took every one of those paths.
    for (const reason of ["notPlaced", "unknownExpired", "retry", "store"])
      expect(real.totals.deferred[reason], reason).toBeGreaterThan(0);
    expect(real.gates.failOpen).toBeGreaterThan(0);
    expect(real.totals.pending).toBe(0);
    expect(real.invariants).toMatchObject({ duplicateDials: 0, lostLeads: 0 });
    await expectNothingLeftBehind();
  }, 300_000);

  it("two templates sharing phones, one with its own 3-per-24 h rule: the same per-rule invariants", async () => {
    const { memory, real } = await onBothBackends({
      ...awkward,
      faults: [],
      provider: { default: { result: "placed", latencyMs: 80, callSeconds: 30, outcome: "ANSWERED" } },
      templates: [
        { id: "t1", resellerId: "r1" },
        { id: "t2", resellerId: "r1", rateLimitRules: [{ maxCalls: 3, windowSeconds: 86_400 }] },
      ],
      leads: [
        { generate: { count: 6, phones: 2, templateId: "t1", spreadSeconds: 60 } },
        { generate: { count: 10, phones: 2, templateId: "t2", spreadSeconds: 60 } },
      ],
    });

    expect(comparable(real)).toEqual(comparable(memory));
    expect(real.invariants.rateRules.map((r) => [r.templateId, r.violations])).toEqual([
      [null, 0],
      ["t2", 0],
    ]);
    expect(real.invariants.rateRules[1]?.maxDialsPerPhone).toBe(3);
    expect(real.totals.pending).toBeGreaterThan(0); // t2 leads waiting a day for room
    await expectNothingLeftBehind();
  }, 300_000);

  it("the command runs on REDIS_URL and DATABASE_URL and prints the same totals as --backend memory", async () => {
    const path = join(dir, "small.json");
    const small = {
      ...awkward,
      leads: [{ generate: { count: 8, phones: 3, templateId: "t1", spreadSeconds: 30 } }],
    };
    await writeFile(path, JSON.stringify(small));
    const saved = { REDIS_URL: process.env.REDIS_URL, DATABASE_URL: process.env.DATABASE_URL };
    process.env.REDIS_URL = redis.url;
    process.env.DATABASE_URL = postgres.url;
    let stdout = "";
    const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      stdout += String(chunk);
      return true;
    });
    let code: number;
    try {
      code = await simulateCommand(path, { backend: "redis", json: true });
    } finally {
      out.mockRestore();
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Report;
    expect(comparable(report)).toEqual(comparable(await simulate(parseScenario(small))));
    await expectNothingLeftBehind();
  }, 120_000);
});
