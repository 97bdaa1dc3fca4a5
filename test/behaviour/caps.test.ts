/**
 * Per-phone caps that hold across templates and through a failing store (design §7.6): one phone's
 * records serve every template that calls it, so a template with a short rule must not trim what a
 * longer rule of another template counts; and a record that fails open still counts the dials this
 * process made without recording them. Once in memory, once on Redis + Postgres.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import {
  memoryBackend,
  realBackend,
  redisInspector,
  type TestBackend,
  useBackend,
} from "../support/backends.js";
import { createHarness, HOUR, MINUTE, PHONE, SECOND, T0, TEMPLATE } from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const DAY = 24 * HOUR;
/** rateLimit.marginMs by default. */
const MARGIN_MS = 250;
/** Florida's 3 per 24 h, next to the default template's 7 per hour (the config's rule). */
const DAILY = {
  id: "tpl-daily",
  resellerId: "res-1",
  rateLimitRules: [{ maxCalls: 3, windowSeconds: 86400 }],
};
const COMMAND_TIMEOUT_MS = 500;

const lead = (id: string, templateId: string = TEMPLATE.id) => ({ id, phone: PHONE, templateId });

describe.each([memoryBackend, realBackend({ isolation: "schema" })])("per-phone caps on $name", (backend) => {
  useBackend(backend);
  const harness = (options: { templates?: unknown[]; config?: object } = {}) =>
    createHarness({
      backend,
      templates: options.templates ?? [TEMPLATE, DAILY],
      config: options.config,
      provider: (clock) => new ScriptedProvider(clock),
    });

  it("two templates sharing phones: the hourly template's peeks and records keep the records the daily rule counts", async () => {
    const h = await harness();
    await h.dispatcher.submit(lead("D1", DAILY.id));
    await h.settle();
    // Two hours later the hourly template calls the same phone: its own rule no longer counts D1.
    await h.advance(2 * HOUR);
    await h.dispatcher.submit(lead("H1"));
    await h.settle();
    await h.advance(HOUR);
    await h.dispatcher.submit(["D2", "D3", "D4"].map((id) => lead(id, DAILY.id)));
    await h.settle();

    // D1 + H1 + one more make the daily 3: D3 and D4 wait until D1 leaves the 24 h window.
    const dialled = h.provider.calls.map((c) => c.req.leadId);
    expect(dialled.filter((id) => id.startsWith("D"))).toHaveLength(2);
    expect(dialled).toEqual(["D1", "H1", expect.stringMatching(/^D[234]$/)]);
    const waiting = (await Promise.all(["D2", "D3", "D4"].map((id) => h.lead(id)))).filter(
      (l) => l.status === "SCHEDULED",
    );
    expect(waiting).toHaveLength(2);
    for (const l of waiting) {
      expect(l.nextAttemptAt).toBeGreaterThanOrEqual(T0 + DAY + MARGIN_MS);
      expect(l.nextAttemptAt).toBeLessThan(T0 + DAY + MARGIN_MS + SECOND);
    }
  });

  it("a record that fails open counts this process's unrecorded dials: at most max per phone while the store is down", async () => {
    const h = await harness({
      templates: [{ ...TEMPLATE, rateLimitRules: [{ maxCalls: 2, windowSeconds: 3600 }] }],
      config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } },
    });
    h.gates.fail(["peek", "record", "undo", "allow"], { delayMs: COMMAND_TIMEOUT_MS });
    for (let i = 1; i <= 10; i++) {
      await h.dispatcher.submit(lead(`L${i}`));
      await h.advance(MINUTE);
    }

    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1", "L2"]);
    expect(h.of("gate:failOpen").filter((f) => f.gate === "record")).toHaveLength(2);
    const l3 = await h.lead("L3");
    expect(l3.status).toBe("SCHEDULED");
    // Room returns when L1's unrecorded dial leaves the window.
    const firstDialAt = h.timed("lead:dialling")[0].at;
    expect(l3.nextAttemptAt).toBeGreaterThanOrEqual(firstDialAt + HOUR);

    // The store is back: both dials are recorded, and the cap goes on from there.
    h.gates.heal();
    await h.advance(MINUTE);
    expect((await h.members(PHONE)).sort()).toEqual(["L1:1", "L2:1"]);
    expect(h.provider.calls).toHaveLength(2);
  });

  it("a dial whose record failed open still counts once the store is back, before the outbox wrote its record", async () => {
    const h = await harness({
      templates: [{ ...TEMPLATE, rateLimitRules: [{ maxCalls: 2, windowSeconds: 3600 }] }],
      config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } },
    });
    h.gates.fail(["record"], { delayMs: COMMAND_TIMEOUT_MS });
    await h.dispatcher.submit(lead("L1"));
    // The outbox's retries of L1's record fail too, and back off to 30 s apart.
    await h.advance(100 * SECOND);
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1"]);
    expect(await h.members(PHONE)).toEqual([]);

    // The store is back, the outbox has not tried again yet: L1's dial still counts.
    h.gates.heal();
    await h.dispatcher.submit([lead("L2"), lead("L3")]);
    await h.settle();
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1", expect.stringMatching(/^L[23]$/)]);
    await h.advance(MINUTE);
    expect(h.provider.calls).toHaveLength(2);
    expect(await h.members(PHONE)).toHaveLength(2);
  });

  it("a fail-open dial that was not placed takes back its record, also once it was written", async () => {
    const h = await harness({
      templates: [{ ...TEMPLATE, rateLimitRules: [{ maxCalls: 2, windowSeconds: 3600 }] }],
      config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } },
    });
    h.provider.answer({ latencyMs: 5 * SECOND, result: { kind: "notPlaced", reason: "busy" } });
    h.gates.fail(["record"], { delayMs: COMMAND_TIMEOUT_MS });
    await h.dispatcher.submit(lead("L1"));
    await h.advance(SECOND);
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1"]);

    // While L1's provider has not answered, the store is back and L2's record writes L1's too.
    h.gates.heal();
    await h.advance(SECOND);
    expect(await h.members(PHONE)).toEqual(["L1:1"]);
    await h.dispatcher.submit(lead("L2"));
    await h.settle();
    expect((await h.members(PHONE)).sort()).toEqual(["L1:1", "L2:1"]);

    // L1 was not placed: its record no longer counts.
    await h.advance(10 * SECOND);
    expect(h.provider.callsOf("L1")[0].result).toMatchObject({ kind: "notPlaced" });
    const members = await h.members(PHONE);
    expect(members).toContain("L2:1");
    expect(members).not.toContain("L1:1");
  });

  it("failMode closed: a record store error defers the lead without a dial, releases its line and alerts", async () => {
    const h = await harness({
      templates: [
        { ...TEMPLATE, rateLimitRules: [{ maxCalls: 3, windowSeconds: 86400, failMode: "closed" }] },
      ],
      config: { store: { commandTimeoutMs: COMMAND_TIMEOUT_MS } },
    });
    h.gates.fail(["record"], { delayMs: COMMAND_TIMEOUT_MS, mode: "after" });
    await h.dispatcher.submit(lead("L1"));
    await h.advance(2 * SECOND);

    expect(h.provider.calls).toEqual([]);
    expect(h.of("gate:failClosed")).toEqual([{ leadId: "L1", gate: "record", error: expect.any(String) }]);
    expect(h.of("gate:failOpen")).toEqual([]);
    expect(await h.lead("L1")).toMatchObject({ status: "SCHEDULED", attempt: 0, dial: null });
    expect(await h.holders()).toEqual([]);
    // The timed-out record had run: it was taken back by name, so it cannot count a call never made.
    expect(await h.members(PHONE)).toEqual([]);
    expect(h.alerts("store_unavailable")).toHaveLength(1);

    h.gates.heal();
    await h.advance(MINUTE);
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["L1"]);
  });
});

describe("per-phone caps after Redis restarted empty", () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startRedis();
    client = await createRedisClient(server.url, { commandTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await client?.quit();
    await server?.stop();
  });

  it("the rebuild brings back the daily template's records, and the hourly template's calls keep them", async () => {
    const prefix = `caps-test:${randomUUID()}:`;
    // Redis gates over a lead store in memory: the dial rows the rebuild reads stay.
    const backend: TestBackend = {
      name: "redis+postgres",
      real: true,
      stores: async () => ({
        gates: new RedisGateStore(client, { prefix, rebuildWaitMs: 5000 }),
        inspect: redisInspector(client, prefix),
        leads: new MemoryLeadStore(),
      }),
    };
    const h = await createHarness({
      backend,
      templates: [TEMPLATE, DAILY],
      provider: (clock) => new ScriptedProvider(clock),
    });
    await h.dispatcher.submit(lead("D1", DAILY.id));
    await h.settle();
    await h.advance(2 * HOUR);
    // Redis forgets everything; the next acquire rebuilds from the lead store.
    const keys = await client.keys(`${prefix}*`);
    expect(keys.length).toBeGreaterThan(0);
    await client.del(...keys);

    await h.dispatcher.submit(lead("H1"));
    await h.settle();
    expect(await h.members(PHONE), "D1 restored next to H1").toEqual(["D1:1", "H1:1"]);
    await h.advance(HOUR);
    await h.dispatcher.submit(["D2", "D3", "D4"].map((id) => lead(id, DAILY.id)));
    await h.settle();

    const dialled = h.provider.calls.map((c) => c.req.leadId);
    expect(dialled.filter((id) => id.startsWith("D"))).toHaveLength(2);
    expect(await h.members(PHONE)).toHaveLength(3);
    await h.dispatcher.stop();
  });
});
