/**
 * "Never leak a phone number into logs, Redis keys or alerts" (design §1, §4, §5, §7.17), checked the
 * blunt way: run a whole campaign on a real Redis with a trace-level pino logger, then grep every log
 * line, every alert and the whole keyspace (keys and values) for every phone in every form.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Redis } from "ioredis";
import { parsePhoneNumber } from "libphonenumber-js";
import pg from "pg";
import pino, { type Logger } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDispatcher, type Dispatcher } from "../../src/dispatcher.js";
import type { DispatcherEventName } from "../../src/events.js";
import { LogAlertSink } from "../../src/infra/alerts/log-sink.js";
import { runVirtual, settle, VirtualClock } from "../../src/infra/clock.js";
import { loggerOptions } from "../../src/infra/logger.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { prometheusText } from "../../src/infra/metrics.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import { PostgresLeadStore } from "../../src/infra/postgres/lead-store.js";
import { migrate } from "../../src/infra/postgres/migrate.js";
import { type SimPlan, SimulatedProvider } from "../../src/infra/providers/simulated.js";
import { RedisGateStore } from "../../src/infra/redis/gate-store.js";
import type { Alert, AlertSink, DialRequest, GateStore, LeadInput } from "../../src/machines/ports.js";
import { type PostgresServer, startPostgres } from "../harness/postgres.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { HOUR, MINUTE, seededRandom, T0 } from "../support/harness.js";

/** Valid customer phones (libphonenumber), several countries, national parts of 8 to 11 digits. */
const PHONES = [
  "+14155550100",
  "+14155550187",
  "+12025550199",
  "+14155552671",
  "+12125551234",
  "+919876543210",
  "+919876543299",
  "+442079460123",
  "+61291234567",
  "+4930123456",
  "+33142685300",
  "+5511987654321",
  "+819012345678",
  "+15005550006",
  "+919000000001",
  "+12025550143",
] as const;
const BLOCKED = ["+14155550123", "+919876543211", "+442079460999"] as const;
/** One phone that six leads of a template allowing 2 calls an hour all want at once. */
const CONTESTED = "+14155550142";

/** Every way a phone may be written down: E.164, digits only, the national significant number. */
function forms(phone: string): string[] {
  return [phone, phone.slice(1), parsePhoneNumber(phone).nationalNumber];
}

const ALL_PHONES = [...PHONES, ...BLOCKED, CONTESTED];
const ALL_FORMS = ALL_PHONES.flatMap(forms);

/** The forms of phones found in `text`, for a readable failure. */
function leaks(text: string): string[] {
  return ALL_FORMS.filter((form) => text.includes(form));
}

const SECRET = "redaction-test-secret";

/** A gate store that counts its outstanding calls, so the virtual clock moves only when Redis is quiet. */
function tracked(store: GateStore): { store: GateStore; idle: () => Promise<void> } {
  let pending = 0;
  const proxy = new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        pending++;
        return Promise.resolve(value.apply(target, args)).finally(() => pending--);
      };
    },
  });
  const idle = async () => {
    for (let quiet = 0; quiet < 2; ) {
      await settle();
      if (pending === 0) quiet++;
      else {
        quiet = 0;
        await delay(1);
      }
    }
  };
  return { store: proxy, idle };
}

/** Everything under `prefix`: each key with its type and every member, field, score and value. */
async function dumpKeyspace(
  url: string,
  prefix: string,
  { remove = false } = {},
): Promise<{ keys: string[]; text: string }> {
  const client = new Redis(url);
  const keys: string[] = [];
  const out: string[] = [];
  try {
    for await (const batch of client.scanStream({ match: `${prefix}*`, count: 1000 })) {
      keys.push(...(batch as string[]));
    }
    for (const key of keys) {
      const type = await client.type(key);
      let value: unknown;
      switch (type) {
        case "string":
          value = await client.get(key);
          break;
        case "hash":
          value = await client.hgetall(key);
          break;
        case "zset":
          value = await client.zrange(key, 0, "-1", "WITHSCORES");
          break;
        case "set":
          value = await client.smembers(key);
          break;
        case "list":
          value = await client.lrange(key, 0, -1);
          break;
        case "stream":
          value = await client.xrange(key, "-", "+");
          break;
        default:
          value = `<${type}>`;
      }
      out.push(`${key} ${type} ${JSON.stringify(value)}`);
    }
    // Never leave keys behind on a shared REDIS_URL server.
    if (remove && keys.length > 0) await client.unlink(...keys);
  } finally {
    client.disconnect();
  }
  return { keys, text: out.join("\n") };
}

/** Every event a host might log, logged whole at trace level (payloads promise to carry no phone). */
const EVENT_NAMES = [
  "lead:claimed",
  "lead:dialling",
  "lead:dialResult",
  "lead:dialled",
  "lead:heldUnknown",
  "lead:deferred",
  "lead:finished",
  "lead:dropped",
  "gate:failOpen",
  "gate:failClosed",
  "gate:result",
  "channel:waiting",
  "channel:released",
  "lead:parked",
  "channel:woken",
  "alert",
] as const satisfies readonly DispatcherEventName[];

function logEverything(dispatcher: Dispatcher, logger: Logger): void {
  for (const name of EVENT_NAMES) {
    dispatcher.on(name, (payload: object) => logger.trace({ event: name, ...payload }, name));
  }
  dispatcher.on("error", ({ where, error }) => logger.error({ err: error, where }, "dispatcher error"));
}

/** The production logger's options (createLogger), writing to memory instead of stderr. */
function memoryLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino(loggerOptions("trace"), { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

/** A provider adapter that logs what it sends, as real adapters do (to/from are redacted paths). */
class LoggingProvider extends SimulatedProvider {
  constructor(
    options: ConstructorParameters<typeof SimulatedProvider>[0],
    private readonly log: Logger,
  ) {
    super(options);
  }

  override async makeCall(req: DialRequest) {
    const { signal: _signal, ...request } = req;
    this.log.debug({ request }, "provider request");
    this.log.debug({ to: req.to, from: req.from, leadId: req.leadId }, "dialing");
    const result = await super.makeCall(req);
    this.log.debug({ to: req.to, result }, "provider result");
    return result;
  }
}

describe("no phone number leaks", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it("a whole campaign leaves no phone in any log line, alert or Redis key or value", async () => {
    const prefix = `dialgate-redaction:${randomUUID()}:`;
    const redisStore = await RedisGateStore.connect(redis.url, { prefix, commandTimeoutMs: 2000 });
    const { store: gateStore, idle } = tracked(redisStore);
    const { logger, lines } = memoryLogger();
    const alerts: Alert[] = [];
    const collecting: AlertSink = { send: async (alert) => void alerts.push(alert) };
    const clock = new VirtualClock(T0);
    const leadStore = new MemoryLeadStore();

    const leads: LeadInput[] = [];
    const add = (templateId: string, phone: string, extra: Partial<LeadInput> = {}) =>
      leads.push({ id: `L${String(leads.length + 1).padStart(2, "0")}`, phone, templateId, ...extra });
    for (const phone of PHONES.slice(0, 12)) add("tpl-main", phone); // L01–L12, plans below
    for (let i = 0; i < 6; i++) add("tpl-tight", CONTESTED); // L13–L18: 2 per hour, 6 at once
    for (const phone of PHONES.slice(0, 4)) add("tpl-none", phone); // L19–L22: no number
    for (const phone of BLOCKED) add("tpl-main", phone); // L23–L25: block list
    for (const phone of PHONES) add("tpl-main", phone); // L26–L41: second calls, channel waits
    add("tpl-window", PHONES[3], { expiresAt: T0 + 30 * MINUTE }); // L42: window closed, expires
    add("tpl-window", PHONES[4], { timeZone: "America/Los_Angeles" }); // L43: waits for the window
    add("tpl-main", PHONES[5], { dueAt: T0 + HOUR }); // L44: cancelled while scheduled

    const plans: Record<string, SimPlan[]> = {
      L02: [{ result: "notPlaced" }],
      L03: [{ result: "notPlaced" }, { result: "notPlaced" }],
      L04: [{ result: "throttled", retryAfterSeconds: 20 }],
      L05: [{ result: "unknown" }],
      L06: [{ result: "placed", outcome: "NO_ANSWER" }],
      L07: [{ result: "rejected" }],
      L08: [{ result: "throw" }],
      L09: [{ result: "placed", latencyMs: 20_000 }], // beyond dial.timeoutMs: unknown
      L10: [{ result: "throttled" }],
    };

    let dispatcher: Dispatcher | undefined;
    const provider = new LoggingProvider(
      {
        clock,
        default: { result: "placed", callSeconds: 40, latencyMs: 120 },
        perLead: plans,
        onCallEnd: (end) => void dispatcher?.callEnded(end),
      },
      logger.child({ component: "provider" }),
    );
    const d = createDispatcher({
      config: { concurrency: 20, dial: { timeoutMs: 15_000 } },
      clock,
      leadStore,
      gateStore,
      providers: [provider],
      logger,
      hmacSecret: SECRET,
      random: seededRandom(7),
      owner: "redaction-test",
      alertSinks: [new LogAlertSink(logger), collecting],
      numbers: [
        { id: "num-1", e164: "+15550000001", provider: "sim", maxChannels: 5, pool: true },
        { id: "num-2", e164: "+15550000002", provider: "sim", maxChannels: 3, pool: true },
        { id: "num-off", e164: "+15550000009", provider: "sim", maxChannels: 9, status: "DISABLED" },
      ],
      templates: [
        {
          id: "tpl-main",
          resellerId: "res-1",
          retry: { maxAttempts: 2, onOutcomes: ["NO_ANSWER"], delaySeconds: 600 },
        },
        { id: "tpl-tight", resellerId: "res-1", rateLimitRules: [{ maxCalls: 2, windowSeconds: 3600 }] },
        { id: "tpl-none", resellerId: "res-2", numberId: "num-off", provider: "nobody" },
        {
          id: "tpl-window",
          resellerId: "res-2",
          window: { start: "09:00", end: "17:00", timeZone: "America/New_York" },
        },
      ],
      blockedPhones: [...BLOCKED],
    });
    dispatcher = d;
    logEverything(d, logger);
    const finished = new Map<string, string>();
    d.on("lead:finished", ({ leadId, outcome }) => finished.set(leadId, outcome));

    await d.start();
    const stored = await d.submit(leads);
    // A host logging what it submitted: lead.phone is a redacted path.
    logger.info({ lead: stored[0] }, "submitted");
    for (const lead of stored.slice(0, 3)) logger.child({ leadId: lead.id }).debug({ lead }, "lead row");
    await idle();
    await d.cancel("L44");

    const allFinished = () => finished.size === leads.length;
    // Mid-campaign, while calls hold lines and leads wait: holds, waiters and records all exist.
    await runVirtual(clock, { until: T0 + 2 * MINUTE, settleFn: idle });
    const midway = await dumpKeyspace(redis.url, prefix);
    await runVirtual(clock, { until: T0 + 16 * HOUR, settleFn: idle, isDone: allFinished });
    const done = allFinished();
    logger.info({ stats: d.stats() }, "campaign done");
    const metrics = prometheusText(d);
    await d.stop();
    await idle();
    await redisStore.close();

    // The campaign went through every path it was built for.
    expect(done, `unfinished: ${leads.map((l) => l.id).filter((id) => !finished.has(id))}`).toBe(true);
    const stats = d.stats();
    expect(stats.finished).toMatchObject({
      BLACKLISTED: 3,
      NUMBER_UNAVAILABLE: 4,
      PROVIDER_REJECTED: 1,
      EXPIRED: 1,
      CANCELLED: 1,
    });
    expect(Object.keys(stats.deferred)).toEqual(
      expect.arrayContaining([
        "notPlaced",
        "throttled",
        "rateLimit",
        "channel",
        "window",
        "retry",
        "unknownExpired",
      ]),
    );
    expect(stats.heldUnknown).toBeGreaterThanOrEqual(2);
    expect(stats.gates.recordRejected).toBeGreaterThan(0);
    expect(stats.gates.channelExhausted).toBeGreaterThan(0);
    expect(alerts.map((a) => a.kind)).toEqual(
      expect.arrayContaining(["rate_limit_blocked", "no_outbound_number", "unknown_dial"]),
    );
    expect(alerts.find((a) => a.kind === "rate_limit_blocked")?.fields.phoneMasked).toBe("***0142");

    // The grep can see phones where they belong (the lead store, the provider's ledger)…
    expect(leaks(JSON.stringify(await leadStore.list()))).toEqual(expect.arrayContaining(forms(CONTESTED)));
    expect(leaks(JSON.stringify(provider.dials)).length).toBeGreaterThan(0);

    // …and finds none where they must not be.
    const log = lines.join("");
    expect(lines.length).toBeGreaterThan(500);
    expect(log).toContain("[redacted]");
    expect(log).toContain('"event":"lead:dialled"');
    // The dispatcher's own story of each lead is among the lines grepped.
    expect(log).toContain('"msg":"gate peek: allowed"');
    expect(log).toContain('"msg":"dial from num-');
    expect(log).toContain('"msg":"parked: waiting for a line on num-');
    expect(log).toContain('"msg":"dial unknown: line held"');
    expect(leaks(log), "log lines").toEqual([]);
    expect(leaks(JSON.stringify(alerts)), "alerts").toEqual([]);
    expect(leaks(metrics), "metrics").toEqual([]);

    const atEnd = await dumpKeyspace(redis.url, prefix, { remove: true });
    // Phones reach Redis only as their HMAC: one rate-limit key per phone that was recorded.
    expect(atEnd.keys).toContain(`${prefix}{p:${phoneKey(SECRET, CONTESTED)}}:rl`);
    expect(atEnd.keys.some((k) => k.endsWith(":throttle"))).toBe(true);
    expect(midway.keys.some((k) => k.endsWith(":holds"))).toBe(true);
    expect(midway.keys.some((k) => k.endsWith(":waiters"))).toBe(true);
    expect(leaks(midway.text), "redis keyspace mid-campaign").toEqual([]);
    expect(leaks(atEnd.text), "redis keyspace at the end").toEqual([]);
  }, 60_000);
});

describe("validation errors mask phone values", () => {
  const PHONE = "+14155550187";
  const { logger, lines } = memoryLogger();
  const dispatcher = createDispatcher({
    logger,
    clock: new VirtualClock(T0),
    templates: [{ id: "tpl-1", resellerId: "res-1" }],
  });

  /** The error's message, its `value`, and the error as pino serialises it. */
  async function rejection(input: unknown): Promise<{ message: string; everything: string }> {
    const error = await dispatcher.submit(input as LeadInput).then(
      () => {
        throw new Error("submit accepted a bad lead");
      },
      (e: unknown) => e as Error & { value?: unknown },
    );
    lines.length = 0;
    logger.error({ err: error }, "submit refused");
    // The log line without what pino adds of its own (time, pid): only the error is under test.
    const { time: _time, pid: _pid, ...logged } = JSON.parse(lines[0] ?? "{}");
    return {
      message: error.message,
      everything: [
        error.message,
        String(error.stack),
        JSON.stringify(error.value),
        JSON.stringify(logged),
      ].join("\n"),
    };
  }

  /** No run of five or more digits anywhere: a mask keeps four. */
  function expectMasked(text: string, phone: string): void {
    const digits = phone.replace(/\D/g, "");
    expect(text).not.toContain(digits);
    expect(text).not.toContain(digits.slice(-10));
    expect(text).not.toMatch(/\d{5,}/);
  }

  it.each([
    ["an invalid phone", { id: "a", phone: "+1415555018", templateId: "tpl-1" }, "lead.phone"],
    ["a national-format phone", { id: "a", phone: "4155550187", templateId: "tpl-1" }, "lead.phone"],
    ["a phone given as a number", { id: "a", phone: 14155550187, templateId: "tpl-1" }, "lead.phone"],
    ["an unknown key beside a valid phone", { id: "a", phone: PHONE, templateId: "tpl-1", to: 1 }, "lead"],
    [
      "a bad field beside a valid phone",
      { id: "a", phone: PHONE, templateId: "tpl-1", dueAt: -1 },
      "lead.dueAt",
    ],
    ["a phone where a lead should be", PHONE, "lead"],
  ])("%s", async (_, input, path) => {
    const phone = typeof input === "string" ? input : String((input as { phone: unknown }).phone);
    const { message, everything } = await rejection(input);
    expect(message.startsWith(`${path} `)).toBe(true);
    expectMasked(everything, phone);
  });

  it.each([
    [
      "a too-large dueAt",
      { id: "a", phone: PHONE, templateId: "tpl-1", dueAt: 1e20 },
      "100000000000000000000",
    ],
    [
      "a fractional expiresAt",
      { id: "a", phone: PHONE, templateId: "tpl-1", expiresAt: 1767225600000.5 },
      "1767225600000.5",
    ],
  ])("%s is shown as it is: only phone fields are masked", async (_, input, shown) => {
    const { message, everything } = await rejection(input);
    expect(message).toContain(`got ${shown}`);
    expect(message).not.toContain("***");
    expect(everything).not.toContain(PHONE.slice(1));
  });

  it("a timestamp beside a bad key is shown, the phone beside it masked", async () => {
    const { message } = await rejection({
      id: "a",
      phone: PHONE,
      templateId: "tpl-1",
      dueAt: 1767225600000,
      x: 1,
    });
    expect(message).toContain('"dueAt":1767225600000');
    expect(message).toContain('"phone":"***0187"');
  });

  it("names the index of the bad lead of a batch and shows its phone as ***1234", async () => {
    const { message, everything } = await rejection([
      { id: "a", phone: PHONE, templateId: "tpl-1" },
      { id: "b", phone: "+1415555018", templateId: "tpl-1" },
    ]);
    expect(message).toBe('leads[1].phone must be a valid phone number in E.164 form, got "***5018"');
    expectMasked(everything, "+1415555018");
    expectMasked(everything, PHONE);
  });
});

describe("driver errors leave no phone in the log", () => {
  const PHONE = PHONES[5];
  let server: PostgresServer;
  let pool: pg.Pool;
  beforeAll(async () => {
    server = await startPostgres();
    pool = new pg.Pool({ connectionString: server.url, max: 2 });
  }, 60_000);
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });

  /** A pg DatabaseError whose `where` quotes the JSON it choked on, the phone included. */
  async function jsonError(): Promise<Error & { where?: string; code?: string }> {
    const json = JSON.stringify({ phone: PHONE, note: "a\u0000b" });
    const error = await pool.query("SELECT $1::jsonb", [json]).then(
      () => new Error("Postgres accepted a NUL"),
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(pg.DatabaseError);
    return error;
  }

  it("a raw pg error quoting a phone in `where` is logged with `where` redacted and the phone nowhere", async () => {
    const raw = await jsonError();
    // The premise: the driver's own error carries the phone.
    expect(leaks(JSON.stringify(raw))).toEqual(expect.arrayContaining([PHONE]));
    const { logger, lines } = memoryLogger();
    logger.error({ err: raw }, "store failed");
    logger.warn(
      { where: "outbox record", err: new Error("record failed", { cause: await jsonError() }) },
      "x",
    );
    logger.warn({ error: new AggregateError([await jsonError()], "batch failed") }, "y");
    const log = lines.join("");
    expect(leaks(log)).toEqual([]);
    const first = JSON.parse(lines[0] ?? "{}");
    expect(first.err).toMatchObject({ code: "22P05", where: "[redacted]" });
    // The dispatcher's own `where` (which step failed) is no driver field and stays.
    expect(JSON.parse(lines[1] ?? "{}").where).toBe("outbox record");
  });

  it("redaction touches errors only, never the other objects an error carries", async () => {
    const context = { values: [1, 2], where: "checkout page", stack: undefined };
    const error = Object.assign(new Error("failed"), { context, where: "JSON data: +919876543299" });
    const { logger, lines } = memoryLogger();
    logger.error({ err: error }, "failed");
    expect(context).toEqual({ values: [1, 2], where: "checkout page", stack: undefined });
    expect(JSON.parse(lines[0] ?? "{}").err.where).toBe("[redacted]");
    expect(leaks(lines.join(""))).toEqual([]);
  });

  it("the Postgres lead store redacts its driver errors before a host's logger sees them", async () => {
    const schema = server.freshSchema();
    await migrate(pool, { schema });
    const store = new PostgresLeadStore(pool, { schema });
    try {
      await store.upsertTemplates([{ id: "tpl-1", resellerId: "res-1" }]);
      // Past the validation of the dispatcher: the row's phone comes right before the NUL.
      const error = await store.submit([{ id: "L1", phone: PHONE, templateId: "tpl\u0000" }], T0).then(
        () => new Error("Postgres accepted a NUL"),
        (e: unknown) => e as Error & { where?: string; code?: string },
      );
      expect(error).toBeInstanceOf(pg.DatabaseError);
      expect(error).toMatchObject({ code: "22P05", where: "[redacted]" });
      const lines: string[] = [];
      // A host's logger without dialgate's serializers.
      pino({ level: "info" }, { write: (line: string) => void lines.push(line) }).error(
        { err: error },
        "submit",
      );
      expect(lines).toHaveLength(1);
      expect(leaks(lines.join("") + String(error.stack))).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
