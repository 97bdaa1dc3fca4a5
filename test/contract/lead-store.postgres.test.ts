import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { MIGRATIONS_DIR, migrate } from "../../src/infra/postgres/migrate.js";
import type { LeadInput } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { leadStoreContract } from "./lead-store.contract.js";

const T0 = 1_780_000_000_000;
const LEASE = 60_000;

let server: PostgresServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ connectionString: server.url, max: 8 });
  // Idle connections die when a test kills a backend or restarts the server; the pool then drops them.
  pool.on("error", () => {});
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

/** A store over a schema of its own, so tests never see each other's rows. */
async function freshStore(): Promise<{ store: PostgresLeadStore; schema: string }> {
  const schema = server.freshSchema();
  await migrate(pool, { schema });
  return { store: new PostgresLeadStore(pool, { schema }), schema };
}

function lead(id: string, extra: Partial<LeadInput> = {}): LeadInput {
  return { id, phone: "+14155550100", templateId: "tpl", dueAt: T0, ...extra };
}

/** Counts listener calls; `reached(n)` resolves once there were n of them. */
function wakeCounter() {
  let count = 0;
  const waiting: { n: number; resolve: () => void }[] = [];
  return {
    get count() {
      return count;
    },
    listener: () => {
      count += 1;
      for (const w of waiting.filter((w) => w.n <= count)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    },
    reached: (n: number) =>
      count >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })),
  };
}

leadStoreContract("postgres", async () => (await freshStore()).store);

describe("PostgresLeadStore under concurrency", () => {
  it("parallel claimers never claim the same lead, and together claim every lead once", async () => {
    const { store } = await freshStore();
    const ids = Array.from({ length: 300 }, (_, i) => `lead-${String(i).padStart(3, "0")}`);
    await store.submit(
      ids.map((id) => lead(id)),
      T0,
    );

    const claimer = async (owner: string) => {
      const mine: string[] = [];
      for (;;) {
        const batch = await store.claimDue(owner, T0, 5, LEASE);
        if (batch.length === 0) return mine;
        mine.push(...batch.map((l) => l.id));
      }
    };
    const claimed = (await Promise.all(["w1", "w2", "w3", "w4"].map(claimer))).flat();

    expect(claimed.toSorted()).toEqual(ids);
    expect((await store.list()).every((l) => l.claimSeq === 1 && l.status === "CLAIMED")).toBe(true);
  });

  it("concurrent submits of one id create one lead and both return it", async () => {
    const { store } = await freshStore();
    for (let i = 0; i < 20; i++) {
      const [[first], [second]] = await Promise.all([
        store.submit([lead(`x${i}`, { phone: "+14155550101" })], T0),
        store.submit([lead(`x${i}`, { phone: "+14155550102" })], T0),
      ]);
      expect(first).toBeDefined();
      expect(second).toEqual(first);
    }
    expect(await store.list()).toHaveLength(20);
  });

  it("a dial row exists exactly when beginDial won against a concurrent cancel", async () => {
    const { store } = await freshStore();
    await store.submit(
      Array.from({ length: 40 }, (_, i) => lead(`l${i}`)),
      T0,
    );
    const claims = await store.claimDue("w1", T0, 40, LEASE);
    const outcomes = await Promise.all(
      claims.map(async (claim) => {
        const token = claim.token as string;
        const dialRef = `${token}@${T0}`;
        const [began] = await Promise.all([
          store.beginDial(token, { dialRef, numberId: "n1", at: T0, recorded: true }),
          store.cancel(claim.id, T0),
        ]);
        return { id: claim.id, dialRef, began };
      }),
    );
    for (const { id, dialRef, began } of outcomes) {
      const found = await store.findByDial({ dialRef });
      if (began) {
        expect(await store.get(id)).toMatchObject({ status: "DIALING", cancelRequested: true });
        expect(found?.id).toBe(id);
      } else {
        expect(await store.get(id)).toMatchObject({ status: "FINISHED", outcome: "CANCELLED", dial: null });
        expect(found).toBeNull();
      }
    }
  });
});

describe("PostgresLeadStore dial rows", () => {
  async function dialRows(schema: string) {
    const { rows } = await pool.query(
      `SELECT dial_ref, token, call_id, result, result_at::float8 AS result_at, unknown
       FROM ${pg.escapeIdentifier(schema)}.dial_attempts ORDER BY at`,
    );
    return rows;
  }

  it("records placed and unknown results on the dial row of the claim", async () => {
    const { store, schema } = await freshStore();
    await store.submit([lead("a"), lead("b", { dueAt: T0 + 1 })], T0);
    const [a, b] = await store.claimDue("w1", T0 + 1, 2, LEASE);
    await store.beginDial(a.token as string, {
      dialRef: "ref-a",
      numberId: "n1",
      at: T0 + 2,
      recorded: true,
    });
    await store.beginDial(b.token as string, {
      dialRef: "ref-b",
      numberId: "n1",
      at: T0 + 3,
      recorded: true,
    });
    await store.settle(a.token as string, { kind: "placed", callId: "CA-a" }, T0 + 4);
    await store.settle(b.token as string, { kind: "unknown" }, T0 + 5);
    expect(await dialRows(schema)).toEqual([
      {
        dial_ref: "ref-a",
        token: "a:1",
        call_id: "CA-a",
        result: "placed",
        result_at: T0 + 4,
        unknown: false,
      },
      { dial_ref: "ref-b", token: "b:1", call_id: null, result: "unknown", result_at: T0 + 5, unknown: true },
    ]);
  });

  it("a dialResult is written on that claim's dial row only, never on an older claim's", async () => {
    const { store, schema } = await freshStore();
    await store.submit([lead("a")], T0);
    const [first] = await store.claimDue("w1", T0, 1, LEASE);
    await store.beginDial(first.token as string, {
      dialRef: "ref-1",
      numberId: "n1",
      at: T0,
      recorded: true,
    });
    await store.settle(
      first.token as string,
      { kind: "defer", at: T0 + 10, dialResult: "notPlaced" },
      T0 + 1,
    );
    // The next claim is refused before its dial: its dialResult must not land on ref-1.
    const [second] = await store.claimDue("w1", T0 + 10, 1, LEASE);
    await store.settle(
      second.token as string,
      { kind: "finish", outcome: "BLACKLISTED", dialResult: "x" },
      T0 + 11,
    );
    expect(await dialRows(schema)).toEqual([
      {
        dial_ref: "ref-1",
        token: "a:1",
        call_id: null,
        result: "notPlaced",
        result_at: T0 + 1,
        unknown: false,
      },
    ]);
  });

  it("an ended call writes its outcome and end time on the dial row of that claim only (007)", async () => {
    const { store, schema } = await freshStore();
    await store.submit([lead("a")], T0);
    const dial = async (at: number) => {
      const [claim] = await store.claimDue("w1", at, 1, LEASE);
      const token = claim.token as string;
      await store.beginDial(token, { dialRef: `${token}@${at}`, numberId: "n1", at, recorded: true });
      await store.settle(token, { kind: "placed", callId: `call-${at}` }, at + 1);
      return token;
    };
    const first = await dial(T0);
    await store.settle(first, { kind: "ended", outcome: "NO_ANSWER", retryAt: T0 + 100 }, T0 + 50);
    const second = await dial(T0 + 100);
    const read = () =>
      pool.query(
        `SELECT token, outcome, ended_at FROM ${pg.escapeIdentifier(schema)}.dial_attempts ORDER BY at`,
      );
    expect((await read()).rows).toEqual([
      { token: first, outcome: "NO_ANSWER", ended_at: String(T0 + 50) },
      { token: second, outcome: null, ended_at: null },
    ]);
    await store.settle(second, { kind: "ended", outcome: "ANSWERED" }, T0 + 150);
    expect((await read()).rows).toEqual([
      { token: first, outcome: "NO_ANSWER", ended_at: String(T0 + 50) },
      { token: second, outcome: "ANSWERED", ended_at: String(T0 + 150) },
    ]);
  });
});

describe("PostgresLeadStore.onLeadsAdded", () => {
  it("wakes a listener when leads are submitted and when a settle reschedules one", async () => {
    const { store } = await freshStore();
    const wakes = wakeCounter();
    const unsubscribe = await store.onLeadsAdded(wakes.listener);
    try {
      await store.submit([lead("a")], T0);
      await wakes.reached(1);
      const [{ token }] = await store.claimDue("w1", T0, 1, LEASE);
      const before = wakes.count;
      await store.settle(token as string, { kind: "defer", at: T0 + 5 }, T0);
      await wakes.reached(before + 1);
    } finally {
      await unsubscribe();
    }
  });

  it("keeps listening after its connection was killed, and wakes once on reconnecting", async () => {
    const { store, schema } = await freshStore();
    const wakes = wakeCounter();
    await store.onLeadsAdded(wakes.listener);
    const { rows } = await pool.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = 'dialgate-listen' AND query = $1",
      [`LISTEN "${schema}.dialgate_leads"`],
    );
    expect(rows).toHaveLength(1);
    await pool.query("SELECT pg_terminate_backend($1)", [rows[0].pid]);
    await wakes.reached(1);
    await store.submit([lead("a")], T0);
    await wakes.reached(2);
    await store.close();
  });

  it("keeps listening across a server restart", async (ctx) => {
    if (!server.disposable) ctx.skip();
    const { store } = await freshStore();
    const wakes = wakeCounter();
    await store.onLeadsAdded(wakes.listener);
    await server.restart();
    await wakes.reached(1);
    await store.submit([lead("a")], T0);
    await wakes.reached(2);
    await store.close();
  }, 20_000);
});

describe("migrate", () => {
  it("is idempotent: a second run applies nothing", async () => {
    const schema = server.freshSchema();
    expect(await migrate(pool, { schema })).toEqual([
      "001_init.sql",
      "002_controls.sql",
      "003_dial_time_index.sql",
      "004_config_notify.sql",
      "005_park.sql",
      "006_calling_law.sql",
      "007_dial_end.sql",
    ]);
    expect(await migrate(pool, { schema })).toEqual([]);
    const { rows } = await pool.query(
      `SELECT name FROM ${pg.escapeIdentifier(schema)}.schema_migrations ORDER BY name`,
    );
    expect(rows).toEqual([
      { name: "001_init.sql" },
      { name: "002_controls.sql" },
      { name: "003_dial_time_index.sql" },
      { name: "004_config_notify.sql" },
      { name: "005_park.sql" },
      { name: "006_calling_law.sql" },
      { name: "007_dial_end.sql" },
    ]);
  });

  it("concurrent runs on one schema apply each migration once", async () => {
    const schema = server.freshSchema();
    const runs = await Promise.all([1, 2, 3].map(() => migrate(pool, { schema })));
    expect(runs.flat()).toEqual([
      "001_init.sql",
      "002_controls.sql",
      "003_dial_time_index.sql",
      "004_config_notify.sql",
      "005_park.sql",
      "006_calling_law.sql",
      "007_dial_end.sql",
    ]);
  });

  it("a failing migration leaves nothing behind, not even the schema", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dialgate-migrations-"));
    try {
      await copyFile(join(MIGRATIONS_DIR, "001_init.sql"), join(dir, "001_init.sql"));
      await writeFile(join(dir, "002_broken.sql"), "ALTER TABLE leads ADD COLUMN nope no_such_type;");
      const schema = server.freshSchema();
      await expect(migrate(pool, { schema, dir })).rejects.toThrow(/no_such_type/);
      const { rows } = await pool.query("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", [
        schema,
      ]);
      expect(rows).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses a migration that was edited after it was applied", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dialgate-migrations-"));
    try {
      await copyFile(join(MIGRATIONS_DIR, "001_init.sql"), join(dir, "001_init.sql"));
      const schema = server.freshSchema();
      await migrate(pool, { schema, dir });
      await writeFile(join(dir, "001_init.sql"), "-- edited\n", { flag: "a" });
      await expect(migrate(pool, { schema, dir })).rejects.toThrow(
        /001_init.sql changed after it was applied/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rejects schema names that need quoting or would overflow the channel name", async () => {
    await expect(migrate(pool, { schema: "Bad-Name" })).rejects.toThrow(TypeError);
    await expect(migrate(pool, { schema: "x".repeat(49) })).rejects.toThrow(TypeError);
    expect(() => new PostgresLeadStore(pool, { schema: 'a"b' })).toThrow(TypeError);
  });
});
