/**
 * Heap per in-flight lead: 100,000 leads claimed by one dispatcher (concurrency 100,000) whose actors
 * all wait on a gate reply that never comes, either at the first gate (`check`: the lead
 * store's template read) or at the dial (`makeCall`: every gate passed, the dial timer armed).
 * heapUsed after a full GC, minus the baseline and minus what the lead store itself grew by
 * (the claims it wrote, measured on a twin store), divided by the leads. Run by bench/run.ts with
 * --expose-gc, one process per parking point: BENCH_PARK=check|makeCall.
 */
import pino from "pino";
import { createActor } from "xstate";
import { createDispatcher } from "../src/dispatcher.js";
import { MemoryGateStore } from "../src/infra/memory/gate-store.js";
import { MemoryLeadStore } from "../src/infra/memory/lead-store.js";
import { leadMachine } from "../src/machines/lead-machine.js";
import type { AcquireResult, LeadRecord, RateDecision, Template } from "../src/machines/ports.js";
import { makeLeads, TEMPLATE } from "./lib/workload.js";

type Park = "check" | "makeCall" | "parts";
const PARK = (process.env.BENCH_PARK ?? "makeCall") as Park;
const ACTORS = Number(process.env.BENCH_ACTORS ?? 100_000);
const never = <T>() => new Promise<T>(() => {});

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");

/** heapUsed after collecting until it stops shrinking. */
async function settledHeap(): Promise<number> {
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 6; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc?.();
    const used = process.memoryUsage().heapUsed;
    if (Math.abs(last - used) < 64 * 1024) return used;
    last = used;
  }
  return last;
}

/** The leads in memory; `check` parks every actor on its template read. */
class ParkingLeadStore extends MemoryLeadStore {
  parked = 0;
  constructor(readonly park: Park) {
    super();
  }
  override async template(id: string): Promise<Template | null> {
    if (this.park !== "check") return super.template(id);
    this.parked += 1;
    return never();
  }
  /** The dial row is the store's growth, not the actor's: accepted without keeping it. */
  override async beginDial(): Promise<boolean> {
    return true;
  }
}

/** Gates that always let through and keep nothing: the Redis store holds nothing in this heap either. */
class OpenGates extends MemoryGateStore {
  override async peek(): Promise<RateDecision> {
    return { allowed: true, counts: [0] };
  }
  override async record(): Promise<RateDecision> {
    return { allowed: true, counts: [0] };
  }
  override async acquire(): Promise<AcquireResult> {
    return { held: true };
  }
  override async inUse(): Promise<Map<string, number>> {
    return new Map();
  }
}

const inputs = makeLeads("h", ACTORS, Date.now() - 1000, null).map((l) => ({
  id: l.id,
  phone: l.phone,
  templateId: TEMPLATE.id,
  dueAt: l.dueAt,
}));

if (PARK === "parts") {
  const result = await measureParts();
  if (process.send) process.send({ type: "heap", result });
  else console.info(JSON.stringify(result));
  process.exit(0);
}

// The store's own growth from claiming every lead, on a twin store (the claims' copies are dropped).
const twin = new MemoryLeadStore();
await twin.submit(inputs, Date.now());
const twinBefore = await settledHeap();
await twin.claimDue("twin", Date.now(), ACTORS, 3_600_000);
const claimGrowth = (await settledHeap()) - twinBefore;

const store = new ParkingLeadStore(PARK);
await store.submit(inputs, Date.now());
let dialsParked = 0;
const dispatcher = createDispatcher({
  config: { concurrency: ACTORS, dial: { timeoutMs: 3_600_000 }, claimLeaseMs: 3_600_000 },
  leadStore: store,
  gateStore: new OpenGates(),
  providers: [
    {
      name: "sim",
      makeCall: () => {
        dialsParked += 1;
        return never();
      },
    },
  ],
  logger: pino({ level: "info" }, pino.destination("/dev/null")),
  hmacSecret: "heap-bench",
  numbers: [{ id: "hn1", e164: "+15550200001", provider: "sim", maxChannels: ACTORS, pool: true }],
  templates: [TEMPLATE],
});
const before = await settledHeap();
const startedAt = Date.now();
await dispatcher.start();
const parked = () => (PARK === "check" ? store.parked : dialsParked);
while (parked() < ACTORS) {
  if (Date.now() - startedAt > 240_000) throw new Error(`only ${parked()} of ${ACTORS} actors parked`);
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const tookMs = Date.now() - startedAt;
const after = await settledHeap();
const inFlight = dispatcher.stats().inFlight;

const result = {
  park: PARK,
  actors: ACTORS,
  inFlight,
  bytesPerActor: Math.round((after - before - claimGrowth) / ACTORS),
  claimGrowthBytesPerLead: Math.round(claimGrowth / ACTORS),
  grossBytesPerActor: Math.round((after - before) / ACTORS),
  microsPerActorToPark: Math.round((tookMs * 1000) / ACTORS),
};
if (process.send) process.send({ type: "heap", result });
else console.info(JSON.stringify(result));
process.exit(0);

/**
 * What one in-flight lead is made of, piece by piece, each kept alive ACTORS times: the claimed lead
 * record and the bare XState actor of the lead machine parked on its first invoke.
 */
async function measureParts(): Promise<Record<string, unknown>> {
  const parts: Record<string, number> = {};
  const keep: unknown[] = [];
  const measure = async (name: string, make: (i: number) => unknown) => {
    const before = await settledHeap();
    for (let i = 0; i < ACTORS; i++) keep.push(make(i));
    parts[name] = Math.round(((await settledHeap()) - before) / ACTORS);
  };
  const claimed: LeadRecord[] = await (async () => {
    const s = new MemoryLeadStore();
    await s.submit(inputs, Date.now());
    return s.claimDue("parts", Date.now(), ACTORS, 3_600_000);
  })();
  const records = claimed.map((l) => structuredClone(l));
  await measure("leadRecord", (i) => structuredClone(records[i]));
  // A request nobody answers: the lead waits in checking.
  const parkedMachine = leadMachine.provide({ actions: { request: () => {} } });
  await measure("xstateActorParkedAtCheck", (i) =>
    createActor(parkedMachine, { input: { lead: records[i] } }).start(),
  );
  return { park: "parts", actors: ACTORS, bytesEach: parts };
}
