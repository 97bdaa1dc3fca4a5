/**
 * Model-based test of the lead statechart (design §2, §7.21).
 *
 * 1. Traversal: `getSimplePaths` walks `leadMachine` purely, with one `gate.done.<gate>` reply per
 *    output variant of every gate, one `gate.error.<gate>` per gate (release included) and
 *    STOP(shutdown|cancel); once with a fresh lead and once with a lead one notPlaced short of
 *    PROVIDER_REJECTED.
 * 2. Replay: every path that ends in a final state runs against a real lead actor that messages a gate
 *    actor; its outcomes come from the real `createGateSteps` over MemoryGateStore / MemoryLeadStore, and again over RedisGateStore /
 *    PostgresLeadStore on the harness's servers, behind a per-path outcome injector that
 *    forces the path's outcome. An acquire or record "error" is a store timeout: in the first traversal
 *    the command ran and only its reply was lost (design §7.12), in the second it never ran. A release
 *    "error" finds the store down, so the real release queues its work in the Outbox. The template
 *    has a calling law (design §7.8): a closed window, a peek blocked and a record rejected are the
 *    real gates' answers to the callee's zone and to a cooldown after an answered call, not forced.
 * 3. At every snapshot: nothing held before acquiringChannel, no record without the hold, makeCall only
 *    from placingCall. At every end: what was taken is given back exactly once (after the Outbox is
 *    flushed), or, for inCall / heldUnknown, exactly one hold and one record remain.
 */
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { createActor, type SnapshotFrom } from "xstate";
import { getSimplePaths } from "xstate/graph";
import {
  createGateSteps,
  type GateSteps,
  gateActorLogic,
  PoolLineCounts,
  requestGate,
} from "../../src/actors/gates.js";
import { Outbox } from "../../src/actors/outbox.js";
import { settle, VirtualClock } from "../../src/infra/clock.js";
import { configSchema } from "../../src/infra/config.js";
import { phoneKey } from "../../src/infra/phone-key.js";
import {
  type AcquireOutput,
  type BeginDialOutput,
  type CallOutput,
  type CheckOutput,
  type GateInput,
  type LeadEvent,
  leadMachine,
  MAX_NOT_PLACED_IN_A_ROW,
  type PeekOutput,
  type PrecheckOutput,
  type RecordOutput,
  type ReleaseInput,
  type SelectOutput,
  type WindowOutput,
} from "../../src/machines/lead-machine.js";
import type {
  DialResult,
  LeadRecord,
  LeadStore,
  OutboundNumber,
  Template,
} from "../../src/machines/ports.js";
import { memoryBackend, realBackend, type TestBackend, useBackend } from "../support/backends.js";
import { type FaultMode, FaultyGateStore } from "../support/faulty-gate-store.js";
import { HMAC_SECRET, PHONE, T0 } from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

// ---- the world every path runs in ------------------------------------------------------------

const NUMBER: OutboundNumber = {
  id: "num-1",
  e164: "+15550000001",
  provider: "sim",
  maxChannels: 5,
  status: "AVAILABLE",
  pool: true,
};
/**
 * A template with a calling law (design §7.8): the TCPA window and a cooldown of 7 days after an
 * answered call (Regulation F's, failing open like the dispatcher's rule so that a record error takes
 * the fail-open path). The lead is in Kolkata by its own zone (open at T0); the window and the cooldown
 * close the gates for real on the paths that need them closed.
 */
const TEMPLATE: Template = {
  id: "tpl-1",
  resellerId: "res-1",
  presets: ["tcpa"],
  cooldowns: [{ seconds: 7 * 86400, afterOutcomes: ["ANSWERED"] }],
};
const CONFIG = configSchema.parse({});
const DAY_MS = 24 * 3600_000;
const LAW_RULES = CONFIG.rateLimit.rules;
/** The window's next opening for the lead without its own zone: 08:00 in Los Angeles, its number's. */
const OPENS_AT = T0 + 10 * 3600_000;
/** An ANSWERED call to the phone ended an hour before T0: the cooldown runs 7 days from it. */
const ANSWERED_AT = T0 - 3600_000;
const COOLED_UNTIL = ANSWERED_AT + 7 * DAY_MS;
const LEAD_ID = "lead-1";

/** Fewer complete paths than this means the model (or its serialization) lost branches. */
const MIN_PATHS = 700;

type GateId =
  | "check"
  | "window"
  | "precheck"
  | "peek"
  | "selectNumber"
  | "acquire"
  | "record"
  | "beginDial"
  | "makeCall";
type InvokeId = GateId | "release";

interface World {
  clock: VirtualClock;
  gates: FaultyGateStore;
  store: LeadStore;
  outbox: Outbox;
  provider: ScriptedProvider;
  real: ReturnType<typeof createGateSteps>;
  lead: LeadRecord;
  key: string;
  violations: string[];
}

/** A claimed lead on fresh stores of `backend`; deterministic, so the model's input equals the replay's. */
async function createWorld(notPlacedStreak: number, backend: TestBackend = memoryBackend): Promise<World> {
  const clock = new VirtualClock(T0);
  const { gates: inner, inspect, leads: store } = await backend.stores();
  const gates = new FaultyGateStore({ clock, inner, inspect });
  await store.upsertTemplates([TEMPLATE]);
  await store.upsertNumbers([NUMBER]);
  await store.submit([{ id: LEAD_ID, phone: PHONE, templateId: TEMPLATE.id, timeZone: "Asia/Kolkata" }], T0);
  let [lead] = await store.claimDue("model", T0, 1, CONFIG.claimLeaseMs);
  if (notPlacedStreak > 0) {
    await store.settle(lead.token as string, { kind: "defer", at: T0, notPlacedStreak }, T0);
    [lead] = await store.claimDue("model", T0, 1, CONFIG.claimLeaseMs);
  }
  const outbox = new Outbox(clock);
  const provider = new ScriptedProvider(clock);
  const violations: string[] = [];
  const real = createGateSteps({
    config: CONFIG,
    store,
    gates,
    providers: new Map([[provider.name, provider]]),
    clock,
    outbox,
    hmacSecret: HMAC_SECRET,
    random: () => 0.5,
    emit: () => {},
    lineCounts: new PoolLineCounts(gates),
  });
  return { clock, gates, store, outbox, provider, real, lead, key: phoneKey(HMAC_SECRET, PHONE), violations };
}

// ---- the events of the traversal -------------------------------------------------------------

type ModelEvent =
  | LeadEvent
  | { type: `gate.done.${InvokeId}`; output: unknown }
  | { type: `gate.error.${InvokeId}`; error: unknown };

const done = (id: InvokeId, output: unknown): ModelEvent => ({ type: `gate.done.${id}`, output });
const error = (id: InvokeId): ModelEvent => ({ type: `gate.error.${id}`, error: `${id} failed` });
const call = (result: DialResult): CallOutput => ({ ...result, at: T0 });

function modelEvents(lead: LeadRecord): ModelEvent[] {
  const finishes = ["NO_CONFIG", "INVALID_PHONE", "BLACKLISTED", "EXPIRED"] as const;
  return [
    done("check", { kind: "ok", template: TEMPLATE, rules: LAW_RULES } satisfies CheckOutput),
    done("check", { kind: "drop" } satisfies CheckOutput),
    ...finishes.map((outcome) => done("check", { kind: "finish", outcome } satisfies CheckOutput)),
    error("check"),
    done("window", { kind: "open" } satisfies WindowOutput),
    done("window", { kind: "closed", opensAt: OPENS_AT } satisfies WindowOutput),
    error("window"),
    done("precheck", { kind: "proceed" } satisfies PrecheckOutput),
    done("precheck", { kind: "abort", reason: "on the do-not-call list" } satisfies PrecheckOutput),
    done("precheck", { kind: "defer", deferAt: T0 + 600_000 } satisfies PrecheckOutput),
    error("precheck"),
    done("peek", { kind: "allowed" } satisfies PeekOutput),
    done("peek", { kind: "blocked", deferAt: COOLED_UNTIL } satisfies PeekOutput),
    done("peek", { kind: "over" } satisfies PeekOutput),
    error("peek"),
    done("selectNumber", { kind: "selected", number: NUMBER, candidates: [NUMBER] } satisfies SelectOutput),
    done("selectNumber", { kind: "none" } satisfies SelectOutput),
    error("selectNumber"),
    done("acquire", { kind: "held", number: NUMBER } satisfies AcquireOutput),
    done("acquire", { kind: "full", parkOn: [NUMBER.id] } satisfies AcquireOutput),
    error("acquire"),
    done("record", { kind: "recorded" } satisfies RecordOutput),
    // The real record adds the seeded jitter: random() = 0.5 of a second.
    done("record", { kind: "rejected", deferAt: COOLED_UNTIL + 500 } satisfies RecordOutput),
    done("record", { kind: "over" } satisfies RecordOutput),
    error("record"),
    done("beginDial", { kind: "written", dialRef: `${lead.token}@${T0}` } satisfies BeginDialOutput),
    done("beginDial", { kind: "lost" } satisfies BeginDialOutput),
    error("beginDial"),
    done("makeCall", call({ kind: "placed", callId: "call-1" })),
    done("makeCall", call({ kind: "notPlaced", reason: "connect refused" })),
    done("makeCall", call({ kind: "throttled", retryAfterSeconds: 17, reason: "429" })),
    done("makeCall", call({ kind: "throttled", reason: "429" })),
    done("makeCall", call({ kind: "unknown", reason: "timeout after send" })),
    done("makeCall", call({ kind: "rejected", reason: "account suspended", account: true })),
    done("makeCall", call({ kind: "rejected", reason: "invalid destination" })),
    error("makeCall"),
    done("release", undefined),
    error("release"),
    { type: "STOP", reason: "shutdown" },
    { type: "STOP", reason: "cancel" },
  ];
}

type LeadSnapshot = SnapshotFrom<typeof leadMachine>;

/** Value, status and the whole context except the (constant) lead: held/recorded/stop/end tell paths apart. */
function serialize(snapshot: LeadSnapshot): string {
  const { lead: _lead, ...context } = snapshot.context;
  return JSON.stringify({ value: snapshot.value, status: snapshot.status, context });
}

function topState(snapshot: LeadSnapshot): string {
  return typeof snapshot.value === "string" ? snapshot.value : Object.keys(snapshot.value)[0];
}

function label(event: ModelEvent): string {
  if (event.type === "STOP") return `STOP(${(event as LeadEvent).reason})`;
  const [, kind, id] = event.type.split(".");
  if (kind === "error") return `${id}!error`;
  const output = (event as { output?: Record<string, unknown> }).output;
  if (!output) return `${id}:done`;
  const detail =
    output.kind === "finish"
      ? `(${output.outcome})`
      : output.kind === "full" && output.pile
        ? "(pile)"
        : output.kind === "throttled" && output.retryAfterSeconds
          ? "(retryAfter)"
          : output.kind === "rejected" && output.account
            ? "(account)"
            : "";
  return `${id}:${output.kind}${detail}`;
}

// ---- traversal ---------------------------------------------------------------------------------

interface Traversal {
  streak: number;
  /** How an injected acquire/record error behaves: the command ran and its reply was lost, or it never ran. */
  storeFault: FaultMode;
  lead: LeadRecord;
  paths: ReturnType<typeof getSimplePaths<typeof leadMachine>>;
  all: number;
}

const traversals: Traversal[] = [];
for (const [streak, storeFault] of [
  [0, "after"],
  [MAX_NOT_PLACED_IN_A_ROW - 1, "before"],
] as const) {
  const { lead } = await createWorld(streak);
  const all = getSimplePaths(leadMachine, {
    input: { lead },
    events: modelEvents(lead) as LeadEvent[],
    // Only events the current state handles: a reply the state does not wait for changes nothing.
    filterEvents: (snapshot, event) => snapshot.status === "active" && snapshot.can(event),
    serializeState: (snapshot) => serialize(snapshot as LeadSnapshot),
  });
  // Every simple path to a non-final state is a prefix of one to a final state: replay the complete ones.
  const paths = all.filter((p) => p.state.status === "done");
  traversals.push({ streak, storeFault, lead, paths, all: all.length });
}

const FINAL_STATES = Object.entries(leadMachine.root.states)
  .filter(([, node]) => node.type === "final")
  .map(([key]) => key)
  .sort();
const COMMITTED_ENDS = new Set(["inCall", "heldUnknown"]);
const BEFORE_HOLD = new Set(["checking", "window", "peekingRateLimit", "selectingNumber"]);

// ---- replay --------------------------------------------------------------------------------------

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

function runReal(step: GateSteps[InvokeId], input: unknown): Promise<unknown> {
  return (step as (input: unknown) => Promise<unknown>)(input);
}

/**
 * Performs the path's outcome of gate `id` on the real adapters and says how its reply settles.
 * Successes with side effects run the real gate (and must agree with the model's output); outcomes
 * the backend can't be made to produce here are forced without touching it.
 */
async function inject(
  w: World,
  id: InvokeId,
  event: ModelEvent,
  input: unknown,
  storeFault: FaultMode,
): Promise<Settled> {
  const real = w.real.steps[id];
  if (event.type.startsWith("gate.error.")) {
    switch (id) {
      case "peek":
        w.gates.fail(["peek"]);
        break;
      case "acquire":
      case "record":
        w.gates.fail([id], { mode: storeFault });
        break;
      case "release":
        w.gates.fail(["release", "undo"]);
        break;
      case "makeCall":
        w.provider.answer({ throws: "ECONNREFUSED before the request was sent" });
        break;
      default:
        // A read (or the dial-row write) that never reached its store.
        return { ok: false, error: new Error(`${id}: store command timed out before it ran`) };
    }
    try {
      const value = await runReal(real, input);
      if (id !== "release") w.violations.push(`${id}: the injected store error did not surface`);
      // The release actor hands failures to the Outbox and resolves; its error event is what a
      // failure of the release step itself looks like to the machine.
      return { ok: false, error: new Error(`release failed after queueing its work: ${String(value)}`) };
    } catch (failure) {
      return { ok: false, error: failure };
    } finally {
      w.gates.heal();
    }
  }

  const output = (event as { output?: { kind?: string } }).output;
  const expectReal = async (expected: unknown, realInput = input) => {
    const value = await runReal(real, realInput);
    if (!isDeepStrictEqual(value, expected))
      w.violations.push(
        `${id}: real gate said ${JSON.stringify(value)}, path needs ${JSON.stringify(expected)}`,
      );
  };
  switch (`${id}:${output?.kind}`) {
    case "check:ok":
    case "window:open":
    case "peek:allowed":
    case "selectNumber:selected":
    case "acquire:held":
    case "record:recorded":
    case "beginDial:written":
      await expectReal(output);
      break;
    case "release:undefined":
      await expectReal(undefined);
      break;
    case "record:over":
      // alertOnly: the member is added although the phone is over its limit.
      await expectReal({ kind: "recorded" });
      break;
    case "window:closed":
      // The same lead without its own zone: judged in its number's (Los Angeles), where T0 is night.
      await expectReal(output, { ...(input as GateInput), lead: { ...w.lead, timeZone: null } });
      break;
    case "peek:blocked":
    case "record:rejected":
      // The phone's answered call an hour ago: the cooldown blocks for real.
      await w.gates.markEnd(w.key, "ANSWERED", ANSWERED_AT, 7 * DAY_MS);
      await expectReal(output);
      break;
    case "beginDial:lost":
      // Cancelled meanwhile (by another process): the dial-row compare-and-set fails.
      await w.store.cancel(w.lead.id, w.clock.now());
      await expectReal(output);
      break;
    default:
      if (id === "makeCall") {
        const { at: _at, ...result } = output as CallOutput;
        w.provider.answer(result as DialResult);
        await expectReal(output);
      }
    // Any other outcome (drop, finish, none, full) touches no store.
  }
  return { ok: true, value: output };
}

interface PendingInvoke {
  input: unknown;
  settle: (result: Settled) => void;
}

async function replay(
  traversal: Traversal,
  path: Traversal["paths"][number],
  backend: TestBackend,
): Promise<void> {
  const w = await createWorld(traversal.streak, backend);
  expect(w.lead).toEqual(traversal.lead);
  const token = w.lead.token as string;
  const pending = new Map<InvokeId, PendingInvoke>();
  // The gate actor's steps wait here until the path says how each one settles.
  const gate =
    <O, I>(id: InvokeId) =>
    (input: I) =>
      new Promise<O>((resolve, reject) => {
        if (pending.has(id)) w.violations.push(`${id} requested while a previous ${id} was pending`);
        pending.set(id, {
          input,
          settle: (result) => (result.ok ? resolve(result.value as O) : reject(result.error)),
        });
      });
  const steps: GateSteps = {
    check: gate<CheckOutput, GateInput>("check"),
    window: gate<WindowOutput, GateInput>("window"),
    precheck: gate<PrecheckOutput, GateInput>("precheck"),
    peek: gate<PeekOutput, GateInput>("peek"),
    selectNumber: gate<SelectOutput, GateInput>("selectNumber"),
    acquire: gate<AcquireOutput, GateInput>("acquire"),
    record: gate<RecordOutput, GateInput>("record"),
    beginDial: gate<BeginDialOutput, GateInput>("beginDial"),
    makeCall: gate<CallOutput, GateInput>("makeCall"),
    release: gate<void, ReleaseInput>("release"),
  };
  const gateActor = createActor(gateActorLogic(steps)).start();
  const machine = leadMachine.provide({
    actions: {
      request: requestGate(gateActor),
      recordLater: ({ context }) => w.real.recordLater(context.lead, context.rules, w.clock.now()),
    },
  });

  // No rate-limit record is written by a gate unless this attempt holds its line.
  let replaying = true;
  w.gates.before("record", async (c) => {
    if (replaying && !(await w.gates.inspect.holders(NUMBER.id, w.clock.now())).includes(c.name ?? ""))
      w.violations.push(`record of ${c.name} while its channel was not held`);
  });

  let reachedPlacingCall = false;
  // The stores change only inside `inject`, before the invoke it settles: every snapshot taken
  // between two injected outcomes is checked against one read of them (a read of Redis is async).
  const seen: LeadSnapshot[] = [];
  const checkSeen = async () => {
    const holders = await w.gates.inspect.holders(NUMBER.id, w.clock.now());
    const members = await w.gates.inspect.members(w.key);
    for (const snapshot of seen.splice(0)) checkSnapshot(snapshot, holders, members);
  };
  const checkSnapshot = (snapshot: LeadSnapshot, holders: string[], members: string[]) => {
    const state = topState(snapshot);
    if (isDeepStrictEqual(snapshot.value, { dialing: "placingCall" })) reachedPlacingCall = true;
    if (BEFORE_HOLD.has(state) && (holders.length > 0 || members.length > 0))
      w.violations.push(`in ${state}: holds [${holders}] records [${members}] before acquiringChannel`);
    if (snapshot.status === "active" && members.length > 0 && !holders.includes(token))
      w.violations.push(`in ${state}: a rate-limit record exists without the channel hold`);
    if (holders.length > 1 || members.length > 1)
      w.violations.push(`in ${state}: more than one hold/record for one attempt`);
    if (w.provider.calls.length > (reachedPlacingCall ? 1 : 0))
      w.violations.push(
        `in ${state}: makeCall ran ${w.provider.calls.length}× (placingCall reached: ${reachedPlacingCall})`,
      );
  };

  const actor = createActor(machine, { input: { lead: w.lead }, parent: gateActor });
  actor.subscribe({
    next: (snapshot) => seen.push(snapshot),
    error: (e) => w.violations.push(`actor error: ${String(e)}`),
  });
  actor.start();
  await settle();
  seen.push(actor.getSnapshot());
  await checkSeen();
  expect(serialize(actor.getSnapshot())).toBe(serialize(path.steps[0].state));

  for (const [i, step] of path.steps.entries()) {
    if (i === 0) continue;
    const event = step.event as ModelEvent;
    if (event.type === "STOP") {
      actor.send(event as LeadEvent);
    } else {
      const id = event.type.split(".")[2] as InvokeId;
      const invoke = pending.get(id);
      expect(invoke, `step ${i} (${label(event)}): the actor did not request ${id}`).toBeDefined();
      pending.delete(id);
      (invoke as PendingInvoke).settle(
        await inject(w, id, event, (invoke as PendingInvoke).input, traversal.storeFault),
      );
    }
    await settle();
    await checkSeen();
    expect(serialize(actor.getSnapshot()), `after step ${i} (${label(event)})`).toBe(serialize(step.state));
  }

  const end = actor.getSnapshot();
  expect(end.status).toBe("done");
  expect(end.output).toEqual(path.state.context.end);

  // Settle what was handed to the Outbox (release/undo after a store error, records that failed open).
  replaying = false;
  await w.outbox.flush();
  await w.outbox.flush();
  w.outbox.stop();
  expect(w.outbox.size, "outbox drained").toBe(0);
  expect(w.violations).toEqual([]);

  const dialled = path.steps.some((s) => s.event.type.endsWith(".makeCall"));
  expect(w.provider.calls.length, "makeCall runs exactly when the path dials").toBe(dialled ? 1 : 0);

  const holders = await w.gates.inspect.holders(NUMBER.id, w.clock.now());
  const members = await w.gates.inspect.members(w.key);
  const taken = w.gates.holdsTaken.get(token) ?? 0;
  const added = w.gates.recordsAdded.get(token) ?? 0;
  expect(taken, "one hold at most per attempt").toBeLessThanOrEqual(1);
  expect(added, "one record at most per attempt").toBeLessThanOrEqual(1);
  if (COMMITTED_ENDS.has(topState(end))) {
    expect(holders, "a committed dial keeps its line").toEqual([token]);
    expect(members, "a committed dial keeps its record").toEqual([token]);
    expect(w.gates.holdsFreed.get(token) ?? 0).toBe(0);
    expect(w.gates.recordsUndone.get(token) ?? 0).toBe(0);
  } else {
    expect(holders, "every hold released").toEqual([]);
    expect(members, "every record undone").toEqual([]);
    expect(w.gates.holdsFreed.get(token) ?? 0, "hold released exactly once").toBe(taken);
    expect(w.gates.recordsUndone.get(token) ?? 0, "record undone exactly once").toBe(added);
  }
}

// ---- the suite -----------------------------------------------------------------------------------

/** Every path replays on the memory stores, then on Redis + Postgres (one server each, emptied per path). */
const BACKENDS = [memoryBackend, realBackend({ isolation: "reset" })];

for (const backend of BACKENDS) {
  let walked = 0;
  const endStates = new Set<string>();

  describe(`on ${backend.name}`, () => {
    useBackend(backend);

    for (const traversal of traversals) {
      describe(`lead machine paths, notPlacedStreak ${traversal.streak}, store errors ${traversal.storeFault} the command ran`, () => {
        for (const path of traversal.paths) {
          const name = `${path.steps
            .slice(1)
            .map((s) => label(s.event as ModelEvent))
            .join(" → ")} ⇒ ${topState(path.state)}`;
          it(name, async () => {
            await replay(traversal, path, backend);
            walked += 1;
            endStates.add(JSON.stringify({ value: path.state.value, end: path.state.context.end }));
          });
        }
      });
    }

    describe("lead machine model coverage", () => {
      it("walked every simple path to an end, and every final state is reached", () => {
        const total = traversals.reduce((n, t) => n + t.paths.length, 0);
        console.log(
          `model-based (${backend.name}): walked ${walked} paths (${endStates.size} distinct end states; ` +
            `${traversals.map((t) => `streak ${t.streak}: ${t.paths.length} complete of ${t.all} simple`).join(", ")})`,
        );
        expect(walked).toBe(total);
        expect(walked).toBeGreaterThan(MIN_PATHS);
        const reached = new Set(traversals.flatMap((t) => t.paths.map((p) => topState(p.state))));
        expect([...reached].sort()).toEqual(FINAL_STATES);
        // The streak-9 traversal is the one that reaches PROVIDER_REJECTED after notPlaced.
        const rejectedAfterNotPlaced = traversals.some((t) =>
          t.paths.some((p) => {
            const end = p.state.context.end;
            return (
              end?.end === "finished" && end.outcome === "PROVIDER_REJECTED" && end.dialResult === "notPlaced"
            );
          }),
        );
        expect(rejectedAfterNotPlaced).toBe(true);
      });
    });
  });
}
