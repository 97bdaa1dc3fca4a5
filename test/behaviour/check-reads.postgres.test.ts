/**
 * The check gate on Postgres (design §2 step 1): the claim's read of the lead and of the block list
 * stands while nothing has waited since; once the template had to be read, the lead and the block
 * list are read again.
 */
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createGateSteps, PoolLineCounts } from "../../src/actors/gates.js";
import { Outbox } from "../../src/actors/outbox.js";
import { VirtualClock } from "../../src/infra/clock.js";
import { configSchema } from "../../src/infra/config.js";
import { MemoryGateStore } from "../../src/infra/memory/gate-store.js";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { migrate } from "../../src/infra/postgres/migrate.js";
import type { GateInput } from "../../src/machines/lead-machine.js";
import type { LeadRecord } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { HMAC_SECRET, PHONES, T0, TEMPLATE } from "../support/harness.js";

const LEASE = 60_000;
let server: PostgresServer;
let pool: pg.Pool;
const opened: PostgresLeadStore[] = [];

beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  pool.on("error", () => {});
}, 60_000);

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

/** A fresh schema with the template, `phones.length` leads claimed, and the check gate over it. */
async function world(phones: string[]) {
  const schema = server.freshSchema();
  await migrate(pool, { schema });
  const store = new PostgresLeadStore(pool, { schema });
  opened.push(store);
  await store.upsertTemplates([TEMPLATE]);
  await store.submit(
    phones.map((phone, i) => ({ id: `L${i}`, phone, templateId: TEMPLATE.id, dueAt: T0 })),
    T0,
  );
  await store.block([PHONES[1]]);
  const clock = new VirtualClock(T0);
  const gates = new MemoryGateStore();
  const { steps } = createGateSteps({
    config: configSchema.parse({}),
    store,
    gates,
    providers: new Map(),
    clock,
    outbox: new Outbox(clock),
    hmacSecret: HMAC_SECRET,
    random: () => 0.5,
    emit: () => {},
    lineCounts: new PoolLineCounts(gates),
  });
  const check = (lead: LeadRecord) => {
    const input: GateInput = {
      lead,
      template: null,
      rules: [],
      number: null,
      candidates: [],
      dialRef: null,
      recorded: false,
    };
    return steps.check(input);
  };
  const statements = () => {
    const spy = vi.spyOn(pool, "query");
    return () => spy.mock.calls.length;
  };
  const claims = await store.claimDue("w1", T0, phones.length, LEASE);
  return { store, check, statements, claims };
}

describe("check gate reads on Postgres", () => {
  it("with the template in memory, decides on the claim's read: no statement", async () => {
    const { store, check, statements, claims } = await world([PHONES[0], PHONES[1]]);
    expect(await store.watchConfig()).toBe(true);
    await store.template(TEMPLATE.id);
    const sent = statements();

    expect((await check(claims[0])).kind).toBe("ok");
    expect(await check(claims[1])).toEqual({ kind: "finish", outcome: "BLACKLISTED" });
    expect(sent()).toBe(0);
  });

  it("after a template read, reads the lead and the block list again: a lead cancelled meanwhile is dropped", async () => {
    const { store, check, statements, claims } = await world([PHONES[0], PHONES[1]]);
    // Not listening: every template read goes to Postgres, so the claim's read is no longer fresh.
    await store.cancel("L0", T0);
    const sent = statements();

    expect(await check(claims[0])).toEqual({ kind: "drop" });
    expect(await check(claims[1])).toEqual({ kind: "finish", outcome: "BLACKLISTED" });
    expect(sent()).toBeGreaterThanOrEqual(3);
  });
});
