/**
 * Model-based test of the supervisor statechart (design §3).
 *
 * 1. Traversal: `getSimplePaths` walks `supervisorMachine` purely (one slot), with every claim answer
 *    (CLAIMED) whose size fits the free slots, a failed claim (CLAIM_FAILED), every answer of the next-due read and its failure, the
 *    three timers (claim retry, next due, drain timeout), POKE, LEAD_DONE and STOP.
 * 2. Replay: every path that ends in `stopped` runs against the real `Supervisor` (the actor, its
 *    `leads` actor and p-queue) on a virtual clock, with a lead store whose claims and reads stay open
 *    until the path settles them and lead actors that end when the path says so.
 * 3. At every step: the actor's state and context equal the model's; as many lead actors run as the
 *    chart counts, never more than the slots; a claim asks for exactly the free slots; nothing is
 *    claimed after STOP; once stopping, every lead actor (also one claimed while the stop waited for
 *    its claim) was told to stop with `shutdown`, and none before. At the end: stop() says drained
 *    exactly when the chart does.
 */
import { describe, expect, it } from "vitest";
import type { SnapshotFrom } from "xstate";
import { getSimplePaths } from "xstate/graph";
import type { RunningLead } from "../../src/actors/lead-actor.js";
import { Supervisor } from "../../src/actors/supervisor.js";
import { settle, VirtualClock } from "../../src/infra/clock.js";
import type { LeadRecord, LeadStore } from "../../src/machines/ports.js";
import {
  CLAIM_RETRY_MS,
  type SupervisorEvent,
  supervisorMachine,
} from "../../src/machines/supervisor-machine.js";
import { T0 } from "../support/harness.js";

/**
 * One slot: two make the simple paths too many to replay and add no transition (a stop while claiming
 * with a lead actor running is pinned in test/controls/supervisor.test.ts).
 */
const CONCURRENCY = 1;
const DRAIN_TIMEOUT_MS = 3000;
const DUE_IN_MS = 5000;
/** Fewer complete paths than this means the model (or its serialization) lost branches. */
const MIN_PATHS = 150;

type ModelEvent =
  | SupervisorEvent
  | { type: "xstate.done.actor.nextDue"; output: number | null }
  | { type: "xstate.error.actor.nextDue"; error: unknown }
  | { type: `xstate.after.${string}` };

const AFTER = {
  claimRetry: "xstate.after.claimRetry.supervisor.idle.backingOff",
  untilDue: "xstate.after.untilDue.supervisor.idle.waitingForDue",
  drainTimeout: "xstate.after.drainTimeout.supervisor.draining",
} as const;
const AFTER_MS: Record<string, number> = {
  [AFTER.claimRetry]: CLAIM_RETRY_MS,
  [AFTER.untilDue]: DUE_IN_MS,
  [AFTER.drainTimeout]: DRAIN_TIMEOUT_MS,
};

/** Stand-ins for the claim's output in the model; the replay claims leads of its own. */
const modelLeads = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: `model-${i}`, token: `t-${i}` }) as LeadRecord);

const EVENTS: ModelEvent[] = [
  { type: "POKE" },
  { type: "LEAD_DONE", count: 1 },
  { type: "STOP" },
  ...[0, 1].map((n) => ({ type: "CLAIMED" as const, leads: modelLeads(n) })),
  { type: "CLAIM_FAILED", error: "claim failed" },
  { type: "xstate.done.actor.nextDue", output: 0 },
  { type: "xstate.done.actor.nextDue", output: DUE_IN_MS },
  { type: "xstate.done.actor.nextDue", output: null },
  { type: "xstate.error.actor.nextDue", error: "read failed" },
  ...Object.values(AFTER).map((type) => ({ type })),
];

type SupervisorSnapshot = SnapshotFrom<typeof supervisorMachine>;

function serialize(snapshot: SupervisorSnapshot): string {
  return JSON.stringify({ value: snapshot.value, status: snapshot.status, context: snapshot.context });
}

function label(event: ModelEvent): string {
  if (event.type.startsWith("xstate.after.")) return `after ${event.type.split(".")[2]}`;
  if (event.type.startsWith("xstate.error.actor.")) return `${event.type.split(".")[3]}!error`;
  if (event.type === "CLAIMED") return `claimed:${event.leads.length}`;
  if (event.type === "xstate.done.actor.nextDue") return `nextDue:${(event as { output: unknown }).output}`;
  return event.type;
}

const input = { concurrency: CONCURRENCY, drainTimeoutMs: DRAIN_TIMEOUT_MS };
const all = getSimplePaths(supervisorMachine, {
  input,
  events: EVENTS as SupervisorEvent[],
  filterEvents: (snapshot, event) => {
    const s = snapshot as SupervisorSnapshot;
    const e = event as ModelEvent;
    if (s.status !== "active" || !s.can(event)) return false;
    // A claim never returns more leads than it asked for; only a running lead actor can end.
    if (e.type === "CLAIMED") return e.leads.length <= s.context.concurrency - s.context.running;
    if (e.type === "LEAD_DONE") return s.context.running > 0;
    return true;
  },
  serializeState: (snapshot) => serialize(snapshot as SupervisorSnapshot),
});
// Every simple path to a non-final state is a prefix of one to `stopped`: replay the complete ones.
const paths = all.filter((p) => p.state.status === "done");

// ---- the world a path runs in ----------------------------------------------------------------

interface FakeLead {
  lead: LeadRecord;
  stops: string[];
  end: () => void;
}

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function world() {
  const clock = new VirtualClock(T0);
  const violations: string[] = [];
  const claims: Array<Pending<LeadRecord[]> & { free: number }> = [];
  const reads: Array<Pending<number | null>> = [];
  let claimsAsked = 0;
  let nextId = 0;
  const store = {
    claimDue: (_owner: string, _now: number, limit: number) =>
      new Promise<LeadRecord[]>((resolve, reject) => {
        claimsAsked += 1;
        claims.push({ resolve, reject, free: limit });
      }),
    nextDueAt: () => new Promise<number | null>((resolve, reject) => reads.push({ resolve, reject })),
    renewLeases: async () => {},
  } as unknown as LeadStore;
  const leads: FakeLead[] = [];
  const errors: string[] = [];
  const supervisor = new Supervisor({
    store,
    clock,
    owner: "model",
    concurrency: CONCURRENCY,
    claimLeaseMs: 60_000,
    drainTimeoutMs: DRAIN_TIMEOUT_MS,
    onError: (where) => errors.push(where),
    run: (lead): RunningLead => {
      let end!: () => void;
      const done = new Promise<null>((resolve) => {
        end = () => resolve(null);
      });
      const fake: FakeLead = { lead, stops: [], end };
      leads.push(fake);
      return {
        leadId: lead.id,
        token: lead.token as string,
        done,
        stop: (reason) => fake.stops.push(reason),
      };
    },
  });
  const claimed = (n: number) =>
    Array.from({ length: n }, () => {
      nextId += 1;
      return { id: `L${nextId}`, token: `token-${nextId}` } as LeadRecord;
    });
  return {
    clock,
    supervisor,
    leads,
    errors,
    violations,
    claims,
    reads,
    claimed,
    get claimsAsked() {
      return claimsAsked;
    },
  };
}

type World = ReturnType<typeof world>;

/** Performs one step of the path on the real supervisor. */
async function perform(w: World, event: ModelEvent, stop: () => void): Promise<void> {
  const take = <T>(list: T[], what: string): T => {
    const pending = list.shift();
    if (!pending) throw new Error(`${what}: nothing pending`);
    if (list.length > 0) w.violations.push(`${what}: more than one pending`);
    return pending;
  };
  switch (event.type) {
    case "POKE":
      w.supervisor.poke();
      return;
    case "STOP":
      stop();
      return;
    case "LEAD_DONE": {
      // The oldest lead actor still running ends.
      const lead = w.leads.find((l) => w.supervisor.isRunning(l.lead.id));
      if (!lead) throw new Error("LEAD_DONE: no lead actor running");
      lead.end();
      return;
    }
    case "CLAIMED": {
      const claim = take(w.claims, "claim");
      claim.resolve(w.claimed(event.leads.length));
      return;
    }
    case "CLAIM_FAILED":
      take(w.claims, "claim").reject(new Error("claim failed"));
      return;
    case "xstate.done.actor.nextDue":
      take(w.reads, "read").resolve(event.output === null ? null : w.clock.now() + event.output);
      return;
    case "xstate.error.actor.nextDue":
      take(w.reads, "read").reject(new Error("read failed"));
      return;
    default: {
      const ms = AFTER_MS[event.type];
      if (ms === undefined) throw new Error(`unknown event ${event.type}`);
      w.clock.advanceTo(w.clock.now() + ms);
    }
  }
}

async function replay(path: (typeof paths)[number]): Promise<void> {
  const w = world();
  let stopping: Promise<{ drained: boolean }> | null = null;
  let claimsAtStop = 0;
  const check = (where: string) => {
    const snapshot = w.supervisor.snapshot;
    const { context } = snapshot;
    if (w.supervisor.inFlight !== context.running)
      w.violations.push(
        `${where}: ${w.supervisor.inFlight} lead actors run, the chart counts ${context.running}`,
      );
    if (w.supervisor.inFlight > CONCURRENCY) w.violations.push(`${where}: more lead actors than slots`);
    for (const claim of w.claims) {
      if (claim.free !== CONCURRENCY - context.running && !context.again)
        w.violations.push(`${where}: a claim asked for ${claim.free}, ${CONCURRENCY - context.running} free`);
    }
    if (stopping && w.claimsAsked > claimsAtStop) w.violations.push(`${where}: a claim after STOP`);
    const stopped = context.stopping || snapshot.matches("draining") || snapshot.matches("stopped");
    for (const lead of w.leads) {
      const running = w.supervisor.isRunning(lead.lead.id);
      if (stopped && running && !lead.stops.includes("shutdown"))
        w.violations.push(`${where}: ${lead.lead.id} runs on after the stop, not told to stop`);
      if (!stopped && lead.stops.length > 0) w.violations.push(`${where}: ${lead.lead.id} stopped early`);
    }
  };

  w.supervisor.start();
  await settle();
  check("start");
  expect(serialize(w.supervisor.snapshot)).toBe(serialize(path.steps[0].state as SupervisorSnapshot));

  for (const [i, step] of path.steps.entries()) {
    if (i === 0) continue;
    const event = step.event as ModelEvent;
    await perform(w, event, () => {
      claimsAtStop = w.claimsAsked;
      stopping = w.supervisor.stop();
    });
    await settle();
    check(`after step ${i} (${label(event)})`);
    expect(serialize(w.supervisor.snapshot), `after step ${i} (${label(event)})`).toBe(
      serialize(step.state as SupervisorSnapshot),
    );
  }

  expect(w.supervisor.snapshot.status).toBe("done");
  expect(stopping, "the path stopped the supervisor").not.toBeNull();
  const result = await (stopping as unknown as Promise<{ drained: boolean }>);
  expect(result).toEqual({ drained: path.state.context.drained });
  const failures = path.steps.filter(
    (s) => s.event.type === "CLAIM_FAILED" || s.event.type.startsWith("xstate.error.actor."),
  ).length;
  expect(w.errors, "every failed claim or read is reported").toHaveLength(failures);
  expect(w.violations).toEqual([]);
}

// ---- the suite -----------------------------------------------------------------------------------

const ends = (p: (typeof paths)[number]) => p.steps.map((s) => label(s.event as ModelEvent));

describe("supervisor machine paths", () => {
  let walked = 0;
  for (const path of paths) {
    it(`${ends(path).slice(1).join(" → ")} ⇒ drained ${path.state.context.drained}`, async () => {
      await replay(path);
      walked += 1;
    });
  }

  it("walked every simple path to stopped, including the stops the spec names", () => {
    console.log(
      `model-based (supervisor): walked ${walked} paths (${paths.length} complete of ${all.length} simple)`,
    );
    expect(walked).toBe(paths.length);
    expect(walked).toBeGreaterThan(MIN_PATHS);
    const has = (pred: (p: (typeof paths)[number]) => boolean) => paths.some(pred);
    const stepsOf = (p: (typeof paths)[number]) =>
      p.steps.slice(1).map((s, i) => ({ event: label(s.event as ModelEvent), from: p.steps[i].state }));
    // Stop while claiming: the claim settles after STOP and its leads are handed back.
    expect(
      has((p) =>
        stepsOf(p).some((s) => s.event === "STOP" && (s.from as SupervisorSnapshot).matches("claiming")),
      ),
    ).toBe(true);
    expect(
      has((p) =>
        stepsOf(p).some((s) => s.event === "STOP" && (s.from as SupervisorSnapshot).matches("full")),
      ),
    ).toBe(true);
    expect(has((p) => ends(p).includes("CLAIM_FAILED"))).toBe(true);
    expect(has((p) => ends(p).at(-1) === "after drainTimeout" && !p.state.context.drained)).toBe(true);
    expect(has((p) => p.state.context.drained)).toBe(true);
  });
});
