/**
 * A Redis outage under load, end to end (design §2 matrix "store (Redis) down at peek or record / at
 * channel gate", §7.12–7.14, §7.20): a real dispatcher on a RedisGateStore over the test's own
 * redis-server, the in-memory lead store, the wall clock and a provider that keeps the calls going.
 * The server is SIGKILLed mid-run and restarted empty. Nothing is restarted on the dispatcher's side.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createDispatcher, type Dispatcher } from "../../src/dispatcher.js";
import type { DispatcherEventName, DispatcherEvents } from "../../src/events.js";
import { SystemClock } from "../../src/infra/clock.js";
import { MemoryLeadStore } from "../../src/infra/memory/lead-store.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import { createRedisClient, RedisGateStore } from "../../src/infra/redis/gate-store.js";
import type {
  AcquireRequest,
  AcquireResult,
  DialRequest,
  DialResult,
  LeadRecord,
  Provider,
  RateDecision,
  RateOptions,
  RateRule,
} from "../../src/machines/ports.js";
import type {
  GateStateSource,
  RebuildableGateStore,
  RebuildReport,
} from "../../src/machines/rebuild-ports.js";
import { type RedisServer, startRedis } from "../harness/redis.js";
import { seededRandom } from "../support/harness.js";

const COMMAND_TIMEOUT_MS = 200;
const REBUILD_WAIT_MS = 200;
/** Event-loop and scheduling delay allowed on top of a timeout (a loaded CI machine). */
const SLACK_MS = 250;
/** A peek or record answers (or fails) within the command timeout. */
const RATE_GATE_BOUND_MS = COMMAND_TIMEOUT_MS + SLACK_MS;
/** An acquire: one command, at most one wait for the rebuild, one more command. */
const CHANNEL_GATE_BOUND_MS = 2 * COMMAND_TIMEOUT_MS + REBUILD_WAIT_MS + SLACK_MS;
const OUTAGE_MS = 1500;

const PREFIX = "outage:";
const SECRET = "outage-secret";
const LINES = 3;
const NUMBERS = ["num-a", "num-b"].map((id, i) => ({
  id,
  e164: `+1555000000${i + 1}`,
  provider: "sim",
  maxChannels: LINES,
  status: "AVAILABLE",
  pool: true,
}));
const LEADS = Array.from({ length: 40 }, (_, i) => ({
  id: `lead-${String(i).padStart(2, "0")}`,
  // 20 phones, two leads each: well under the 7 per hour.
  phone: `+9198765${String(43200 + (i % 20)).padStart(5, "0")}`,
  templateId: "tpl",
}));
const LATE_LEADS = Array.from({ length: 4 }, (_, i) => ({
  id: `late-${i}`,
  phone: `+9198765${String(43300 + i).padStart(5, "0")}`,
  templateId: "tpl-late",
}));

let server: RedisServer;
let admin: Redis;
beforeAll(async () => {
  server = await startRedis({ disposable: true });
});
afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});

it("a Redis outage fails the gates fast, and after an empty restart the rebuilt gates resume dispatch without a second dial on any line", async () => {
  const client = await createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  client.on("error", () => {});
  const gates = new TimedGates(
    new RedisGateStore(client, { prefix: PREFIX, rebuildWaitMs: REBUILD_WAIT_MS }),
  );
  const leads = new MemoryLeadStore();
  let created: Dispatcher | undefined;
  const provider = new CallingProvider(seededRandom(7), () => created as Dispatcher);
  const dispatcher = createDispatcher({
    config: {
      concurrency: 30,
      store: { commandTimeoutMs: COMMAND_TIMEOUT_MS },
      // Wall-clock test: store-error and channel defers short enough to see the recovery in seconds.
      storeErrorDeferSeconds: { min: 0.2, max: 0.8 },
      channelWait: { maxParkSeconds: 1 },
      dial: { timeoutMs: 2000 },
    },
    leadStore: leads,
    gateStore: gates,
    providers: [provider],
    clock: new SystemClock(),
    logger: pino({ level: "silent" }),
    hmacSecret: SECRET,
    owner: "outage-test",
    random: seededRandom(3),
    numbers: NUMBERS,
    templates: [
      { id: "tpl", resellerId: "res-1" },
      { id: "tpl-late", resellerId: "res-1" },
    ],
  });
  created = dispatcher;
  const events = recordEvents(dispatcher);
  // Outbox retries that meet the dead server report here (an EventEmitter "error" needs a listener).
  const errors: DispatcherEvents["error"][] = [];
  dispatcher.on("error", (e) => errors.push(e));

  try {
    await dispatcher.start();
    await dispatcher.submit(LEADS);

    // Load: lines busy, and calls that will still run when Redis is back.
    await until(
      () => provider.dials.length >= 8 && provider.callsRunningPast(Date.now() + 3500) >= 2,
      20_000,
    );
    const killedAt = Date.now();
    await server.kill();
    // The leads of "tpl" wait parked for lines; these fall due during the outage and meet its gates.
    await dispatcher.submit(LATE_LEADS);
    await delay(OUTAGE_MS);
    const restartedAt = Date.now();
    await server.restart();

    // The rebuild ran (an acquire met a number without its epoch key): both numbers are marked again.
    await until(() => gates.reports.some((r) => r.at >= restartedAt), 10_000);
    const rebuiltAt = Date.now();
    admin = new Redis(server.url, { lazyConnect: true });
    admin.on("error", () => {});
    const epochs = NUMBERS.map((n) => `${PREFIX}{n:${n.id}}:epoch`);
    expect(await admin.exists(...epochs)).toBe(epochs.length);

    // Calls still in progress have their holds back (those that ended meanwhile released theirs).
    let liveChecked = 0;
    let spanningChecked = 0;
    for (const lead of await leads.list()) {
      if (!isLive(lead)) continue;
      const dial = lead.dial as NonNullable<LeadRecord["dial"]>;
      const lease = await admin.zscore(`${PREFIX}{n:${dial.numberId}}:holds`, lead.token as string);
      const now = await leads.get(lead.id);
      if (!now || !isLive(now) || now.token !== lead.token) continue;
      expect(lease, `hold of the live call ${lead.token}`).not.toBeNull();
      liveChecked += 1;
      if (dial.at < killedAt) spanningChecked += 1;
    }
    expect(spanningChecked).toBeGreaterThan(0);

    // Every lead ends, every queued release / undo / record is written, no line stays held. An end signal
    // settles the lead (FINISHED in the store) before it frees the line, and announces lead:finished
    // once the line is freed or queued in the outbox: wait for the announcements, or the last call's
    // release may still be on its way to Redis when the holds are read below.
    const ended = () =>
      new Set(events.flatMap((e) => (e.name === "lead:finished" ? [e.payload.leadId] : [])));
    await until(() => ended().size === LEADS.length + LATE_LEADS.length, 60_000);
    expect((await leads.list()).filter((l) => l.status !== "FINISHED")).toEqual([]);
    await until(() => dispatcher.stats().outbox === 0, 40_000);
    await dispatcher.stop();

    const all = await leads.list();
    expect(all.map((l) => l.outcome)).toEqual([...LEADS, ...LATE_LEADS].map(() => "ANSWERED"));
    for (const number of NUMBERS)
      expect(await admin.zrange(`${PREFIX}{n:${number.id}}:holds`, "0", "-1"), number.id).toEqual([]);

    // Per-number concurrency at the provider never exceeded the lines, and the lines were used.
    expect(Math.max(...provider.peak.values())).toBe(LINES);
    for (const [numberId, peak] of provider.peak) expect(peak, numberId).toBeLessThanOrEqual(LINES);
    // One dial per lead: no attempt rang twice.
    expect(provider.dials.map((d) => d.leadId).sort()).toEqual(
      [...LEADS, ...LATE_LEADS].map((l) => l.id).sort(),
    );

    // No dial without a hold: each makeCall comes after its own claim passed the channel gate.
    const held = new Map<string, { token: string; held: boolean }>();
    for (const e of events) {
      if (e.name === "lead:claimed") held.set(e.payload.leadId, { token: e.payload.token, held: false });
      const claim = "leadId" in e.payload ? held.get(e.payload.leadId) : undefined;
      if (e.name === "gate:result" && e.payload.gate === "channel" && e.payload.verdict === "held" && claim)
        claim.held = true;
      if (e.name === "lead:dialling") {
        expect(claim, e.payload.leadId).toMatchObject({ token: e.payload.token, held: true });
      }
    }

    // Every placed call is a rate-limit record again: rebuilt from the dial rows, or written late.
    for (const lead of all) {
      const members = await admin.zrange(`${PREFIX}{p:${phoneKey(SECRET, lead.phone)}}:rl`, "0", "-1");
      expect(members, lead.id).toContain(lead.token);
    }

    // The outage: peeks failed open, channel gates failed closed, one throttled alert for all of it.
    const during = gates.calls.filter((c) => c.startedAt >= killedAt && c.startedAt < restartedAt);
    expect(during.filter((c) => c.op === "peek" && c.failed).length).toBeGreaterThan(0);
    expect(during.filter((c) => c.op === "acquire" && c.failed).length).toBeGreaterThan(0);
    expect(during.filter((c) => c.op === "acquire" && !c.failed)).toEqual([]);
    expect(events.filter((e) => e.name === "gate:failOpen").length).toBeGreaterThan(0);
    expect(dispatcher.stats().deferred.store).toBeGreaterThan(0);
    const storeAlerts = events.filter((e) => e.name === "alert" && e.payload.kind === "store_unavailable");
    expect(storeAlerts).toHaveLength(1);

    // No gate call hung: each answered within a bound derived from the command timeout.
    for (const call of gates.calls) {
      const bound = call.op === "acquire" ? CHANNEL_GATE_BOUND_MS : RATE_GATE_BOUND_MS;
      expect(call.ms, `${call.op} ${call.failed ? "failed" : "answered"} at ${call.startedAt}`).toBeLessThan(
        bound,
      );
    }

    // The rebuild: once at the first start (fresh Redis), once after the restart, never failed.
    expect(gates.reports.filter((r) => r.kind === "failed")).toEqual([]);
    expect(gates.reports.filter((r) => r.at < killedAt)).toHaveLength(1);
    expect(gates.reports.filter((r) => r.at >= restartedAt)).toHaveLength(1);
    // Dispatch resumed on the same dispatcher.
    expect(provider.dials.filter((d) => d.at > rebuiltAt).length).toBeGreaterThan(0);

    console.info(
      JSON.stringify({
        outageMs: restartedAt - killedAt,
        rebuildAfterRestartMs: rebuiltAt - restartedAt,
        liveHoldsChecked: liveChecked,
        spanningCallsChecked: spanningChecked,
        storeDefers: dispatcher.stats().deferred.store,
        failOpen: dispatcher.stats().gates.failOpen,
        gateLatencyDuringOutage: latencySummary(during),
        gateLatencyAfterRestart: latencySummary(gates.calls.filter((c) => c.startedAt >= restartedAt)),
        rebuilds: gates.reports.map((r) => ({ ...r, at: r.at - killedAt })),
        errors: countBy(errors.map((e) => e.where.split(" ").slice(0, 2).join(" "))),
      }),
    );
  } finally {
    await dispatcher.stop();
    await gates.close();
  }
}, 120_000);

// ---------------------------------------------------------------------------------------------

interface GateCall {
  op: "peek" | "record" | "acquire";
  /** Wall clock (ms) at the call. */
  startedAt: number;
  ms: number;
  failed: boolean;
}

/** The Redis gate store with a stopwatch on each gate the lead machine waits for. */
class TimedGates implements RebuildableGateStore {
  readonly calls: GateCall[] = [];
  readonly reports: (RebuildReport & { at: number })[] = [];
  constructor(readonly inner: RedisGateStore) {}

  peek(phoneKey: string, rules: RateRule[], now: number, options?: RateOptions): Promise<RateDecision> {
    return this.#time("peek", () => this.inner.peek(phoneKey, rules, now, options));
  }
  record(
    phoneKey: string,
    member: string,
    rules: RateRule[],
    now: number,
    enforce?: boolean,
    options?: RateOptions,
  ) {
    return this.#time("record", () => this.inner.record(phoneKey, member, rules, now, enforce, options));
  }
  acquire(req: AcquireRequest): Promise<AcquireResult> {
    return this.#time("acquire", () => this.inner.acquire(req));
  }
  undo = (phoneKey: string, member: string) => this.inner.undo(phoneKey, member);
  markEnd = (phoneKey: string, outcome: string, at: number, keepMs: number) =>
    this.inner.markEnd(phoneKey, outcome, at, keepMs);
  release = (numberId: string, holder: string) => this.inner.release(numberId, holder);
  inUse = (numberIds: string[], now: number) => this.inner.inUse(numberIds, now);
  listHolders = (numberId: string, now: number) => this.inner.listHolders(numberId, now);
  reap = (numberId: string, now: number) => this.inner.reap(numberId, now);
  allow = (key: string, windowMs: number, now: number) => this.inner.allow(key, windowMs, now);
  close = () => this.inner.close();
  ensureReady = () => this.inner.ensureReady();
  rebuildFrom(source: GateStateSource, report?: (report: RebuildReport) => void): void {
    this.inner.rebuildFrom(source, (r) => {
      this.reports.push({ ...r, at: Date.now() });
      report?.(r);
    });
  }

  async #time<T>(op: GateCall["op"], call: () => Promise<T>): Promise<T> {
    const entry: GateCall = { op, startedAt: Date.now(), ms: 0, failed: false };
    const started = performance.now();
    try {
      return await call();
    } catch (error) {
      entry.failed = true;
      throw error;
    } finally {
      entry.ms = performance.now() - started;
      this.calls.push(entry);
    }
  }
}

/**
 * Places every call after a short latency; a call lasts 0.3–1.2 s, or 4–5 s for about a third of them,
 * then its end signal goes to the dispatcher. Counts the calls running on each number: the ground
 * truth for "never more than maxChannels".
 */
class CallingProvider implements Provider {
  readonly name = "sim";
  readonly dials: { leadId: string; numberId: string; at: number; endsAt: number }[] = [];
  readonly peak = new Map<string, number>();
  readonly #running = new Map<string, number>();
  #calls = 0;

  constructor(
    private readonly random: () => number,
    private readonly dispatcher: () => Dispatcher,
  ) {}

  callsRunningPast(at: number): number {
    return this.dials.filter((d) => d.endsAt > at).length;
  }

  async makeCall(req: DialRequest): Promise<DialResult> {
    const running = (this.#running.get(req.numberId) ?? 0) + 1;
    this.#running.set(req.numberId, running);
    this.peak.set(req.numberId, Math.max(this.peak.get(req.numberId) ?? 0, running));
    const long = this.random() < 0.35;
    const lengthMs = long ? 4000 + this.random() * 1000 : 300 + this.random() * 900;
    const at = Date.now();
    this.dials.push({ leadId: req.leadId, numberId: req.numberId, at, endsAt: at + 20 + lengthMs });
    await delay(20);
    const callId = `call-${++this.#calls}`;
    void delay(lengthMs).then(async () => {
      this.#running.set(req.numberId, (this.#running.get(req.numberId) ?? 1) - 1);
      await this.dispatcher().callEnded({ callId, outcome: "ANSWERED" });
    });
    return { kind: "placed", callId };
  }
}

type Recorded = {
  [K in DispatcherEventName]: { name: K; payload: DispatcherEvents[K] };
}[DispatcherEventName];

function recordEvents(dispatcher: Dispatcher): Recorded[] {
  const events: Recorded[] = [];
  const names: DispatcherEventName[] = [
    "lead:claimed",
    "gate:result",
    "gate:failOpen",
    "lead:dialling",
    "alert",
    "lead:finished",
  ];
  for (const name of names) dispatcher.on(name, (payload) => events.push({ name, payload } as Recorded));
  return events;
}

function isLive(lead: LeadRecord): boolean {
  return (lead.status === "DIALING" || lead.status === "PROCESSING") && lead.dial !== null;
}

function latencySummary(calls: GateCall[]) {
  const summary: Record<string, { calls: number; failed: number; maxMs: number }> = {};
  for (const c of calls) {
    const s = summary[c.op] ?? { calls: 0, failed: 0, maxMs: 0 };
    summary[c.op] = s;
    s.calls += 1;
    s.failed += c.failed ? 1 : 0;
    s.maxMs = Math.max(s.maxMs, Math.round(c.ms));
  }
  return summary;
}

function countBy(keys: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const key of keys) counts[key] = (counts[key] ?? 0) + 1;
  return counts;
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${check.toString()}`);
    await delay(20);
  }
}
