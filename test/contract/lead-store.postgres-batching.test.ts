/**
 * What the Postgres lead store adds under the port: calls made together go as one statement (with the
 * semantics of the same calls made one at a time), and templates and numbers are cached exactly.
 */
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { migrate } from "../../src/infra/postgres/migrate.js";
import type { LeadInput, OutboundNumber, Template } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";

const T0 = 1_780_000_000_000;
const LEASE = 60_000;
const NUMBER: OutboundNumber = {
  id: "n1",
  e164: "+15550000001",
  provider: "sim",
  maxChannels: 2,
  status: "AVAILABLE",
  pool: true,
};
const TEMPLATE: Template = {
  id: "tpl",
  resellerId: "r1",
  retry: { maxAttempts: 2, onOutcomes: ["BUSY"], delaySeconds: 60 },
};
const LISTENING =
  "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'LISTEN \"dialgate_config\"'";

let server: PostgresServer;
let pool: pg.Pool;
const opened: PostgresLeadStore[] = [];
const pools: pg.Pool[] = [];

beforeAll(async () => {
  server = await startPostgres();
  pool = newPool();
}, 60_000);

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await server?.stop();
});

function newPool(): pg.Pool {
  const created = new pg.Pool({ connectionString: server.url, max: 8 });
  created.on("error", () => {});
  pools.push(created);
  return created;
}

async function freshSchema(): Promise<string> {
  const schema = server.freshSchema();
  await migrate(pool, { schema });
  return schema;
}

function open(schema: string, on = pool): PostgresLeadStore {
  const store = new PostgresLeadStore(on, { schema });
  opened.push(store);
  return store;
}

function lead(id: string, extra: Partial<LeadInput> = {}): LeadInput {
  return { id, phone: "+14155550100", templateId: "tpl", dueAt: T0, ...extra };
}

/** Statements the store sends through `on` from now on. */
function countStatements(on = pool) {
  const spy = vi.spyOn(on, "query");
  return () => spy.mock.calls.length;
}

/** Claimed leads l0…l(n-1) and their tokens. */
async function claimed(store: PostgresLeadStore, n: number): Promise<string[]> {
  await store.submit(
    Array.from({ length: n }, (_, i) => lead(`l${String(i).padStart(3, "0")}`)),
    T0,
  );
  return (await store.claimDue("w1", T0, n, LEASE)).map((l) => l.token as string);
}

/** Polls `read` until `done`; a notification takes a few ms, so this ends long before the bound. */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const until = Date.now() + 5_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > until) throw new Error(`still ${JSON.stringify(value)}`);
    await delay(5);
  }
}

async function listening(): Promise<number> {
  return (await pool.query<{ n: number }>(LISTENING)).rows[0].n;
}

describe("PostgresLeadStore batching", () => {
  it("sends the calls of one turn as one statement per kind", async () => {
    const schema = await freshSchema();
    const store = open(schema);
    const tokens = await claimed(store, 50);
    const statements = countStatements();
    const began = await Promise.all(
      tokens.map((token, i) =>
        store.beginDial(token, { dialRef: `ref-${i}`, numberId: "n1", at: T0, recorded: true }),
      ),
    );
    expect(began.every(Boolean)).toBe(true);
    const settled = await Promise.all(
      tokens.map((token, i) => store.settle(token, { kind: "placed", callId: `call-${i}` }, T0 + i)),
    );
    expect(settled.every((s) => s?.status === "PROCESSING")).toBe(true);
    const found = await Promise.all(tokens.map((_, i) => store.findByDial({ callId: `call-${i}` })));
    expect(found.map((l) => l?.token)).toEqual(tokens);
    const ended = await Promise.all(
      tokens.map((token) => store.settle(token, { kind: "ended", outcome: "ANSWERED" }, T0 + 100)),
    );
    expect(ended.every((s) => s?.status === "FINISHED" && s.outcome === "ANSWERED")).toBe(true);
    expect(statements()).toBe(4);
    // Per-item values: each dial row got its own call id and time.
    const { rows } = await pool.query(
      `SELECT call_id, result_at::float8 AS at FROM ${pg.escapeIdentifier(schema)}.dial_attempts WHERE dial_ref = 'ref-7'`,
    );
    expect(rows).toEqual([{ call_id: "call-7", at: T0 + 7 }]);
  });

  it("two calls for one lead in one turn run one after the other: the first wins", async () => {
    const store = open(await freshSchema());
    const [a, b] = await claimed(store, 2);
    const row = (ref: string) => ({ dialRef: ref, numberId: "n1", at: T0, recorded: true });
    expect(
      await Promise.all([
        store.beginDial(a, row("a-1")),
        store.beginDial(a, row("a-2")),
        store.beginDial(b, row("b-1")),
      ]),
    ).toEqual([true, false, true]);
    const results = await Promise.all([
      store.settle(a, { kind: "finish", outcome: "PROVIDER_REJECTED" }, T0),
      store.settle(a, { kind: "finish", outcome: "OTHER" }, T0),
      store.settle(a, { kind: "defer", at: T0 + 5 }, T0),
      store.settle(b, { kind: "defer", at: T0 + 5, dialResult: "notPlaced", notPlacedStreak: 1 }, T0 + 1),
    ]);
    expect(results).toEqual([
      { status: "FINISHED", outcome: "PROVIDER_REJECTED" },
      null,
      null,
      { status: "SCHEDULED", outcome: null },
    ]);
    expect(await store.get("l000")).toMatchObject({ status: "FINISHED", dial: { dialRef: "a-1" } });
    expect(await store.get("l001")).toMatchObject({ status: "SCHEDULED", notPlacedStreak: 1 });
  });

  it("a failing batch fails every call of it, and changes nothing", async () => {
    const store = open(await freshSchema());
    const [a, b, c] = await claimed(store, 3);
    await store.beginDial(a, { dialRef: "taken", numberId: "n1", at: T0, recorded: true });
    const calls = [
      store.beginDial(b, { dialRef: "fresh", numberId: "n1", at: T0, recorded: true }),
      store.beginDial(c, { dialRef: "taken", numberId: "n1", at: T0, recorded: true }),
    ];
    for (const call of calls) await expect(call).rejects.toThrow(/duplicate key/);
    expect((await store.get("l001"))?.status).toBe("CLAIMED");
    expect(await store.beginDial(b, { dialRef: "fresh", numberId: "n1", at: T0, recorded: true })).toBe(true);
  });

  it("batched reads answer each call, as single reads would", async () => {
    const schema = await freshSchema();
    const store = open(schema);
    const [a, b] = await claimed(store, 2);
    await store.block(["+14155550199"]);
    await store.beginDial(a, { dialRef: "ref-a", numberId: "n1", at: T0, recorded: true });
    await store.beginDial(b, { dialRef: "ref-b", numberId: "n1", at: T0, recorded: true });
    await store.settle(a, { kind: "placed", callId: "shared" }, T0 + 1);
    // A call id the provider reused: the latest dial row (by result time) wins.
    await store.settle(b, { kind: "placed", callId: "shared" }, T0 + 2);

    const statements = countStatements();
    const [got, same, missing, blocked, clear, byCall, byRef, empty, unknown, both] = await Promise.all([
      store.get("l000"),
      store.get("l000"),
      store.get("nope"),
      store.isBlocked("+14155550199"),
      store.isBlocked("+14155550100"),
      store.findByDial({ callId: "shared" }),
      store.findByDial({ dialRef: "ref-a" }),
      store.findByDial({ callId: "", dialRef: "" }),
      store.findByDial({ callId: "other" }),
      store.findByDial({ callId: "other", dialRef: "ref-a" }),
    ]);
    expect(statements()).toBe(3);
    expect(got).toMatchObject({ id: "l000", status: "PROCESSING" });
    expect(same).toEqual(got);
    expect(same).not.toBe(got);
    expect(missing).toBeNull();
    expect([blocked, clear]).toEqual([true, false]);
    expect(byCall?.id).toBe("l001");
    expect(byRef?.id).toBe("l000");
    expect(empty).toBeNull();
    expect(unknown).toBeNull();
    expect(both?.id).toBe("l000");
  });

  it("batches of settlements and lease renewals over the same leads never deadlock", async () => {
    const store = open(await freshSchema());
    const tokens = await claimed(store, 200);
    const reversed = tokens.toReversed();
    const work: Promise<unknown>[] = [];
    for (let round = 0; round < 5; round++) {
      work.push(store.renewLeases(round % 2 ? tokens : reversed, T0 + LEASE * (round + 2)));
    }
    // Interleaved with the renewals, in an order that differs from the leads' id order.
    for (const [i, token] of reversed.entries()) {
      if (i % 3 === 0) work.push(store.settle(token, { kind: "defer", at: T0 + 5 }, T0));
      else if (i % 3 === 1) work.push(store.settle(token, { kind: "finish", outcome: "EXPIRED" }, T0));
      else work.push(store.beginDial(token, { dialRef: `r${i}`, numberId: "n1", at: T0, recorded: true }));
      if (i % 40 === 0) await delay(0);
    }
    await Promise.all(work);
    const leads = await store.list();
    expect(leads.filter((l) => l.status === "DIALING")).toHaveLength(66);
    expect(leads.filter((l) => l.status === "CLAIMED")).toHaveLength(0);
  });
});

describe("PostgresLeadStore config cache", () => {
  it("serves templates and numbers from memory once it listens", async () => {
    const store = open(await freshSchema());
    await store.upsertTemplates([TEMPLATE]);
    await store.upsertNumbers([NUMBER]);
    expect(await store.watchConfig()).toBe(true);
    const statements = countStatements();
    const first = await Promise.all([store.template("tpl"), store.number("n1"), store.poolNumbers("sim")]);
    expect(statements()).toBe(3);
    const again = await Promise.all([
      store.template("tpl"),
      store.number("n1"),
      store.poolNumbers("sim"),
      store.template("tpl"),
    ]);
    expect(statements()).toBe(3);
    expect(again).toEqual([...first, first[0]]);
    // Copies: what a caller changes is not what the next one reads.
    (again[0] as Template).resellerId = "changed";
    expect((await store.template("tpl"))?.resellerId).toBe("r1");
    // A missing row and another provider are entries of their own.
    expect(await store.template("nope")).toBeNull();
    expect(await store.poolNumbers()).toEqual([NUMBER]);
    expect(await store.poolNumbers("other")).toEqual([]);
    expect(statements()).toBe(6);
  });

  it("answers cachedTemplate without I/O once a read came back; never with an entry a change dropped", async () => {
    const store = open(await freshSchema());
    await store.upsertTemplates([TEMPLATE]);
    expect(store.cachedTemplate("tpl"), "not listening yet").toBeUndefined();
    expect(await store.watchConfig()).toBe(true);
    expect(store.cachedTemplate("tpl"), "not read yet").toBeUndefined();
    await store.template("tpl");
    await store.template("nope");
    const statements = countStatements();
    const cached = store.cachedTemplate("tpl") as Template;
    expect(cached).toEqual(TEMPLATE);
    expect(store.cachedTemplate("nope"), "a missing row is an answer too").toBeNull();
    expect(() => {
      cached.resellerId = "changed";
    }, "the shared entry cannot be changed by a caller").toThrow(TypeError);
    expect(statements()).toBe(0);
    await store.upsertTemplates([{ ...TEMPLATE, resellerId: "r2" }]);
    expect(store.cachedTemplate("tpl")).toBeUndefined();
    expect((await store.template("tpl"))?.resellerId).toBe("r2");
  });

  it("another process's change reaches the cache with its notification", async () => {
    const schema = await freshSchema();
    const here = open(schema);
    const there = open(schema, newPool());
    await there.upsertTemplates([TEMPLATE]);
    await there.upsertNumbers([NUMBER]);
    expect(await here.watchConfig()).toBe(true);
    expect((await here.number("n1"))?.status).toBe("AVAILABLE");
    expect(await here.poolNumbers("sim")).toHaveLength(1);
    expect((await here.template("tpl"))?.numberId).toBeUndefined();

    await there.upsertNumbers([{ ...NUMBER, status: "DISABLED" }]);
    await eventually(
      () => here.number("n1"),
      (n) => n?.status === "DISABLED",
    );
    expect(await here.poolNumbers("sim")).toEqual([]);

    await there.upsertTemplates([{ ...TEMPLATE, numberId: "n1" }]);
    await eventually(
      () => here.template("tpl"),
      (t) => t?.numberId === "n1",
    );
  });

  it("sees its own writes at once", async () => {
    const store = open(await freshSchema());
    await store.upsertNumbers([NUMBER]);
    expect(await store.watchConfig()).toBe(true);
    expect(await store.poolNumbers("sim")).toHaveLength(1);
    await store.upsertNumbers([{ ...NUMBER, status: "DISABLED" }]);
    expect(await store.poolNumbers("sim")).toEqual([]);
    expect(await store.template("tpl")).toBeNull();
    await store.upsertTemplates([TEMPLATE]);
    expect(await store.template("tpl")).toEqual(TEMPLATE);
  });

  it("drops its entries when the listener is lost, and caches again once it is back", async (ctx) => {
    // These count or kill every config listener of the server: only on a server of our own.
    if (!server.disposable) ctx.skip();
    const schema = await freshSchema();
    const here = open(schema);
    const there = open(schema, newPool());
    await there.upsertNumbers([NUMBER]);
    expect(await here.watchConfig()).toBe(true);
    expect((await here.number("n1"))?.status).toBe("AVAILABLE");
    await pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"dialgate_config\"'",
    );
    // Whatever is sent while nobody listens is lost: the cache must not outlive its listener.
    await there.upsertNumbers([{ ...NUMBER, status: "DISABLED" }]);
    await eventually(
      () => here.number("n1"),
      (n) => n?.status === "DISABLED",
    );
    expect(await here.watchConfig()).toBe(true);
    const statements = countStatements();
    await here.number("n1");
    await here.number("n1");
    // One read, or none when the last poll came after the reconnect and was cached.
    expect(statements()).toBeLessThanOrEqual(1);
  });

  it("reads Postgres until the listener is up", async () => {
    const store = open(await freshSchema());
    await store.upsertNumbers([NUMBER]);
    const statements = countStatements();
    // The first read starts the listener (one statement checks for 004); neither waits for it.
    await Promise.all([store.number("n1"), store.number("n1")]);
    expect(statements()).toBe(3);
  });

  it("one listening connection per pool, whatever the number of stores; the last close ends it", async (ctx) => {
    // These count or kill every config listener of the server: only on a server of our own.
    if (!server.disposable) ctx.skip();
    const schema = await freshSchema();
    const own = newPool();
    const stores = Array.from({ length: 20 }, () => new PostgresLeadStore(own, { schema }));
    expect(await Promise.all(stores.map((s) => s.watchConfig()))).toEqual(stores.map(() => true));
    // A listener of an earlier test may take a moment to leave pg_stat_activity.
    await eventually(listening, (n) => n === 1);
    await Promise.all(stores.slice(1).map((s) => s.close()));
    expect(await listening()).toBe(1);
    await stores[0].close();
    await eventually(listening, (n) => n === 0);
    expect(await stores[0].watchConfig()).toBe(false);
  });

  it("stores that are never closed leave no connection once their pool ends", async (ctx) => {
    // These count or kill every config listener of the server: only on a server of our own.
    if (!server.disposable) ctx.skip();
    const schema = await freshSchema();
    const own = new pg.Pool({ connectionString: server.url, max: 2 });
    const stores = Array.from({ length: 5 }, () => new PostgresLeadStore(own, { schema }));
    await Promise.all(stores.map((s) => s.watchConfig()));
    await eventually(listening, (n) => n === 1);
    await own.end();
    await eventually(listening, (n) => n === 0);
  });

  it("is off on a schema without 004_config_notify.sql", async () => {
    const schema = await freshSchema();
    await pool.query(`DROP FUNCTION ${pg.escapeIdentifier(schema)}.notify_config_changed() CASCADE`);
    const store = open(schema);
    expect(await store.watchConfig()).toBe(false);
    await store.upsertNumbers([NUMBER]);
    const statements = countStatements();
    await store.number("n1");
    await store.number("n1");
    expect(statements()).toBe(2);
  });
});
