import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AnyStateMachine, AnyStateNode } from "xstate";
import { leadMachine } from "../machines/lead-machine.js";
import { supervisorMachine } from "../machines/supervisor-machine.js";

/**
 * `dialgate viz`: the lead and supervisor statecharts as reviewers read them.
 *
 * Walks `machine.root` itself (states, `on`, gate replies, invoke onDone/onError, `always`, `after`) rather than
 * `toDirectedGraph`, which drops edges. Writes docs/<chart>.md (Mermaid) and docs/<chart>.html (inline
 * SVG laid out by Graphviz from a DOT text embedded in the page) for each chart of CHARTS. `--check` compares the diagram
 * text, never the rendered SVG (design §7.21), so a Graphviz upgrade does not make the docs stale.
 */

/**
 * The spec line each state implements, keyed by state path. A state missing here stops the generator:
 * a new state must say which part of the spec it is.
 */
export const STATE_SPEC: Readonly<Record<string, string>> = {
  checking:
    "§2 step 1: lead still dispatchable, template config present, phone valid E.164, not blocked. " +
    "Status changed → dropped (touch nothing); else finished NO_CONFIG / INVALID_PHONE / BLACKLISTED",
  window:
    "§2 step 2, §7.8: calling window of the template in its IANA zone (the lead's own zone when given); " +
    "closed → deferred until the exact next start (a changed window wakes the leads it parked)",
  prechecking:
    "the host's pre-dial checks, between §2 steps 2 and 3, before anything is held; proceed → on; " +
    "abort or more than preDialCheck.maxDefers defers → finished PRECHECK_FAILED; defer (a throw or a " +
    "timeout: a short one) → deferred, reason precheck",
  peekingRateLimit:
    "§2 step 3: read-only count of the phone's sliding windows; a rule at max → alert rate_limit_blocked + " +
    "deferred until the window has room; store error → fail open + gate:failOpen",
  selectingNumber:
    "§2 step 4: pinned AVAILABLE number, else the provider's shared pool (§7.9); none → finished " +
    "NUMBER_UNAVAILABLE + P1 alert, never a retry loop",
  acquiringChannel:
    "§2 step 5: named channel hold with a lease, on the selected number or another candidate with a " +
    "free line; every candidate full → parked (§7.11); store error → release by name, deferred (fail " +
    "closed) + alert; a stop waits for the call to settle (§7.12)",
  recordingAttempt:
    "§2 step 6: atomic trim + count + add-if-under (one Lua call), after the hold and before makeCall; " +
    "rejected → releasing → deferred + alert; store error → fail open, recorded later, unless this " +
    "process's own unrecorded dials fill a rule (→ rejected) or a rule has failMode closed (→ releasing " +
    "→ deferred) (§7.6)",
  dialing: "§2 step 7: committed — a stop never cancels a dial that has started (§3)",
  "dialing.writingDialRow":
    "§2 step 7: write the dial row first (DIALING, dialRef); row lost → releasing → dropped, " +
    "makeCall never runs; store error → no dial without its row",
  "dialing.placingCall":
    "§2 step 7: provider.makeCall with a timeout; placed → inCall; not placed / 429 → releasing → " +
    "deferred by min(60, 5·n) s or Retry-After; rejected or 10 not placed in a row → PROVIDER_REJECTED " +
    "(§7.2, §7.19); unknown → heldUnknown",
  releasing:
    "§2 rules: release-on-reject in one place — give back the channel, undo the record; a failed release " +
    "goes to the outbox, never blocks (§7.12)",
  deferred:
    "§2 rules: back to the schedule with nextAttemptAt = now + seconds, lease released; capacity and rate " +
    "deferrals do not grow the attempt counter",
  parked:
    "§7.11: every candidate line busy: waits on that set in the lead store, holding nothing, not claimed; " +
    "a released line wakes the longest-waiting (fair by phone), a set check every maxParkSeconds",
  finished:
    "§2: FINISHED with an outcome (NO_CONFIG, INVALID_PHONE, BLACKLISTED, EXPIRED, PRECHECK_FAILED, " +
    "NUMBER_UNAVAILABLE, PROVIDER_REJECTED)",
  dropped: "§2 step 1, §7.16: the lead is no longer ours (status changed, cancelled): touch nothing more",
  inCall:
    "§2 step 8, §7.15: placed; the channel stays held and the actor frees its slot; callEnded releases " +
    "and finishes",
  heldUnknown:
    "§2 step 7, §7.16: sent without a usable reply; keep the line and the record, never redial blindly " +
    "until reconciled by dialRef or holdMinutes",
};

/** The spec line of each state of the supervisor chart (design §3), keyed by state path. */
export const SUPERVISOR_SPEC: Readonly<Record<string, string>> = {
  claiming:
    "§3: claims due leads with a lease (owner + expiry), never more than the free slots; a poke or an " +
    "ending lead actor while the claim is out claims once more after it; a stop stops the running leads " +
    "before their dial at once, waits for the claim and hands its leads back (re-queued now), never " +
    "leaves them to their lease. Its answer: stop asked → draining; every slot busy → full; every free " +
    "slot filled or something changed meanwhile → claim again; else idle",
  full: "§3: every slot busy: no claim and no read of the next due time until a lead actor ends",
  idle:
    "§3: free slots and nothing claimable now: a poke (a submit, a resume, a wake, another process) or " +
    "an ending lead actor claims at once — event-driven, no polling delay",
  "idle.readingNextDue":
    "§3: reads when the next lead falls due; a poke meanwhile claims without waiting for the read, " +
    "whose answer is then dropped; a failed read backs off",
  "idle.dueKnown":
    "§3: a lead due now → claiming; none scheduled → nothingDue; else a timer for its due time",
  "idle.waitingForDue": "§3: wakes at the next due time, on the injectable clock",
  "idle.nothingDue": "§3: nothing scheduled: only a poke or an ending lead actor wakes it",
  "idle.backingOff": "§3: a failed claim or read is tried again after 1 s (CLAIM_RETRY_MS), sooner on a poke",
  draining:
    "§3 stop(): no more claims; lead actors before their dial stop (they release what they hold and the " +
    "lead is re-queued now); committed dials are waited for up to drainTimeoutMs, never cancelled",
  stopped:
    "§3: every lead actor ended (drained), or the drain timed out: committed dials go on and end on their own",
};

/** The one state every release-on-reject path goes through (design §2 rules); its in-edges are coloured. */
const RELEASE_STATE = "releasing";
const DOT_SCRIPT_OPEN = '<script type="text/vnd.graphviz" id="';
const DOT_SCRIPT_CLOSE = "</script>";

/** One generated chart: the machine, its spec lines, and the words around it. */
interface Chart {
  machine: AnyStateMachine;
  spec: Readonly<Record<string, string>>;
  /** docs/<name>.md and docs/<name>.html */
  name: string;
  source: string;
  title: string;
  /** What one run of the machine is, opening the page's note. */
  scope: string;
  /** Markdown: what the edge labels mean. */
  legend: string;
  /** HTML: what the edge labels mean. */
  htmlLegend: string;
}

const LEAD_CHART: Chart = {
  machine: leadMachine,
  spec: STATE_SPEC,
  name: "lead-machine",
  source: "src/machines/lead-machine.ts",
  title: "Lead statechart",
  scope: "One dispatch attempt of one lead (design §2)",
  legend:
    "Edge labels: `gate ✓` = the gate's step succeeded, " +
    "`gate ✗` = it failed, `[guard]` = the named guard, `/ action` = the named actions; " +
    `every edge into \`${RELEASE_STATE}\` is a release-on-reject path.`,
  htmlLegend:
    "Edge labels: <code>gate ✓</code> the gate's step succeeded, <code>gate ✗</code> it failed, " +
    "<code>[guard]</code> the named guard, <code>/ action</code> the named actions.",
};

const SUPERVISOR_CHART: Chart = {
  machine: supervisorMachine,
  spec: SUPERVISOR_SPEC,
  name: "supervisor-machine",
  source: "src/machines/supervisor-machine.ts",
  title: "Supervisor statechart",
  scope:
    "The supervisor of one process (design §3); its `leads` actor, invoked for its whole life, is the " +
    "parent of every lead actor and runs them under a p-queue",
  legend:
    "Edge labels: `CLAIMED` / `CLAIM_FAILED` = the answer to the `claim` action, `nextDue ✓` / `✗` = the " +
    "invoked read resolved / failed, `[guard]` = the named guard, `/ action` = the named actions, " +
    "`after …` = a timer on the injectable clock.",
  htmlLegend:
    "Edge labels: <code>CLAIMED</code> / <code>CLAIM_FAILED</code> the answer to the <code>claim</code> " +
    "action, <code>nextDue ✓</code> / <code>✗</code> the invoked read resolved / failed, <code>[guard]</code> " +
    "the named guard, <code>/ action</code> the named actions, <code>after …</code> a timer on the injectable clock.",
};

/** Every chart `dialgate viz` writes and `--check` compares. */
export const CHARTS: readonly Chart[] = [LEAD_CHART, SUPERVISOR_CHART];

/** The chart of a machine by its id; a machine that is none of them (a test's) reads as the lead chart. */
function chartOf(machine: AnyStateMachine): Chart {
  return CHARTS.find((c) => c.machine.id === machine.id) ?? LEAD_CHART;
}

// ---- walking the machine ----------------------------------------------------------------------

export type EdgeKind = "done" | "error" | "always" | "after" | "snapshot" | "stateDone" | "event";

export interface VizState {
  /** Path below the root, dot-joined: `dialing.placingCall`. Also the annotation key. */
  path: string;
  key: string;
  type: "atomic" | "compound" | "final";
  /** Path of the enclosing compound state, null at the top level. */
  parent: string | null;
  invokes: string[];
  /** Path of the initial child (compound states only). */
  initial: string | null;
}

export interface VizEdge {
  source: string;
  /** Equal to `source` for a targetless (internal) transition. */
  target: string;
  kind: EdgeKind;
  /** Short event name: `check ✓`, `peek ✗`, `STOP`, `always`, `after 500ms`. */
  event: string;
  guard: string | null;
  /** Named actions only; inline `assign`s are context bookkeeping and stay off the chart. */
  actions: string[];
}

export interface MachineGraph {
  id: string;
  initial: string;
  states: VizState[];
  edges: VizEdge[];
}

/** Edges of one state in reading order: gate outcomes first, then eventless, then external events. */
const KIND_ORDER: EdgeKind[] = ["done", "error", "always", "after", "snapshot", "stateDone", "event"];

export function walkMachine(machine: AnyStateMachine): MachineGraph {
  const root = machine.root;
  if (root.transitions.size > 0 || root.always?.length) {
    throw new Error(`viz: transitions on the machine root '${root.id}' are not drawn; move them to states`);
  }
  const states: VizState[] = [];
  const edges: VizEdge[] = [];
  const seenKeys = new Map<string, string>();

  const visit = (node: AnyStateNode) => {
    const statePath = pathOf(node);
    if (node.type !== "atomic" && node.type !== "compound" && node.type !== "final") {
      throw new Error(`viz: state '${statePath}' is ${node.type}; only atomic, compound and final are drawn`);
    }
    // Mermaid state ids are global: two states with one key would merge on the chart.
    const clash = seenKeys.get(node.key);
    if (clash !== undefined) throw new Error(`viz: states '${clash}' and '${statePath}' share a key`);
    seenKeys.set(node.key, statePath);

    states.push({
      path: statePath,
      key: node.key,
      type: node.type,
      parent: node.parent && node.parent !== root ? pathOf(node.parent) : null,
      invokes: [...node.invoke.map((inv) => inv.id), ...gateRequests(node)],
      initial: node.type === "compound" ? pathOf(onlyTarget(node.initial.target, statePath)) : null,
    });
    edges.push(...edgesOf(node));
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child);
  };
  for (const child of Object.values(root.states) as AnyStateNode[]) visit(child);

  return { id: machine.id, initial: pathOf(onlyTarget(root.initial.target, root.id)), states, edges };
}

function edgesOf(node: AnyStateNode): VizEdge[] {
  const source = pathOf(node);
  const groups: Array<[string, readonly TransitionLike[]]> = [...node.transitions.entries()];
  if (node.always?.length) groups.push(["", node.always]);
  const edges: VizEdge[] = [];
  for (const [eventType, transitions] of groups) {
    const { kind, event } = describeEvent(eventType);
    for (const t of transitions) {
      const guard = t.guard === undefined ? null : guardName(t.guard);
      const actions = t.actions.map(actionName).filter((a): a is string => a !== null);
      const targets = t.target?.length ? t.target.map(pathOf) : [source];
      for (const target of targets) edges.push({ source, target, kind, event, guard, actions });
    }
  }
  // Stable sort: the order inside one event is guard priority and must survive.
  return edges.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind));
}

interface TransitionLike {
  target?: readonly AnyStateNode[] | undefined;
  guard?: unknown;
  actions: readonly unknown[];
}

/** XState's internal event types, spelled for a reader: `xstate.done.actor.check` → `check ✓`. */
const EVENT_NAMES: Array<[prefix: string, kind: EdgeKind, name: (rest: string) => string]> = [
  ["xstate.done.actor.", "done", (id) => `${id} ✓`],
  ["xstate.error.actor.", "error", (id) => `${id} ✗`],
  // The lead machine's gate replies read like the invoke outcomes they replaced.
  ["gate.done.", "done", (id) => `${id} ✓`],
  ["gate.error.", "error", (id) => `${id} ✗`],
  ["xstate.snapshot.", "snapshot", (id) => `${id} snapshot`],
  ["xstate.done.state.", "stateDone", () => "done"],
  ["xstate.after.", "after", (rest) => `after ${rest.split(".")[0]?.replace(/^(\d+)$/, "$1ms")}`],
];

function describeEvent(eventType: string): { kind: EdgeKind; event: string } {
  if (eventType === "") return { kind: "always", event: "always" };
  for (const [prefix, kind, name] of EVENT_NAMES) {
    if (eventType.startsWith(prefix)) return { kind, event: name(eventType.slice(prefix.length)) };
  }
  return { kind: "event", event: eventType };
}

/** Guard names as written in `setup`; higher-order guards spelled out; inline functions flagged. */
function guardName(guard: unknown): string {
  if (typeof guard === "string") return guard;
  if (typeof guard === "function") {
    const hof = guard as { name: string; guards?: unknown[]; stateValue?: unknown };
    if (hof.guards && hof.name === "not") return `!${guardName(hof.guards[0])}`;
    if (hof.guards && (hof.name === "and" || hof.name === "or")) {
      return `(${hof.guards.map(guardName).join(hof.name === "and" ? " && " : " || ")})`;
    }
    if (hof.stateValue !== undefined) return `in ${JSON.stringify(hof.stateValue)}`;
    return "inline guard";
  }
  if (guard && typeof guard === "object" && "type" in guard) return String(guard.type);
  return "inline guard";
}

function actionName(action: unknown): string | null {
  if (typeof action === "string") return action;
  const type = (action as { type?: unknown } | null)?.type;
  if (type === "xstate.assign") return null;
  if (typeof type === "string") return type.replace(/^xstate\./, "");
  return "inline action";
}

/** The gates a state asks the gate actor for on entry (`{ type: "request", params: { gate } }`). */
function gateRequests(node: AnyStateNode): string[] {
  return node.entry
    .map((action) => action as { type?: unknown; params?: { gate?: unknown } })
    .filter((action) => action.type === "request" && typeof action.params?.gate === "string")
    .map((action) => action.params?.gate as string);
}

function pathOf(node: AnyStateNode): string {
  return node.path.join(".");
}

function onlyTarget(targets: readonly AnyStateNode[], where: string): AnyStateNode {
  const [first, ...rest] = targets;
  if (!first || rest.length > 0) throw new Error(`viz: '${where}' needs exactly one initial state`);
  return first;
}

function edgeLabel(edge: VizEdge, actionSeparator: string): string {
  const head = edge.guard ? `${edge.event} [${edge.guard}]` : edge.event;
  return edge.actions.length ? `${head}${actionSeparator}/ ${edge.actions.join(", ")}` : head;
}

// ---- annotations --------------------------------------------------------------------------------

/** The spec line of every state, in walk order; throws on a state without one and on a stale entry. */
export function annotate(
  graph: MachineGraph,
  annotations: Readonly<Record<string, string>>,
): Map<string, string> {
  const missing = graph.states.filter((s) => !annotations[s.path]).map((s) => s.path);
  if (missing.length) {
    throw new Error(
      `viz: no spec annotation for state(s) ${missing.join(", ")}: add the spec line each implements to ` +
        `${annotations === SUPERVISOR_SPEC ? "SUPERVISOR_SPEC" : "STATE_SPEC"} in src/cli/viz.ts`,
    );
  }
  const known = new Set(graph.states.map((s) => s.path));
  const stale = Object.keys(annotations).filter((k) => !known.has(k));
  if (stale.length) {
    throw new Error(`viz: STATE_SPEC annotates state(s) the machine does not have: ${stale.join(", ")}`);
  }
  return new Map(graph.states.map((s) => [s.path, annotations[s.path] as string]));
}

// ---- Mermaid ------------------------------------------------------------------------------------

/** Mermaid `stateDiagram-v2`: one line per transition, in the machine's own order. */
export function toMermaid(machine: AnyStateMachine): string {
  const graph = walkMachine(machine);
  const byPath = new Map(graph.states.map((s) => [s.path, s]));
  const key = (p: string) => (byPath.get(p) as VizState).key;
  const depth = (p: string) => p.split(".").length;
  const line = (e: VizEdge) => `${key(e.source)} --> ${key(e.target)} : ${mermaidText(edgeLabel(e, " "))}`;
  // An edge is drawn inside a composite block only when both ends live in it; Mermaid would
  // otherwise move the outer state into the block.
  const innermostBlock = (e: VizEdge): string | null => {
    const sourceParent = byPath.get(e.source)?.parent ?? null;
    return sourceParent !== null && byPath.get(e.target)?.parent === sourceParent ? sourceParent : null;
  };

  const out = ["stateDiagram-v2", `  [*] --> ${key(graph.initial)}`];
  const block = (parent: string | null, indent: string) => {
    for (const s of graph.states.filter((st) => st.parent === parent)) {
      if (s.type === "compound") {
        out.push(`${indent}state ${s.key} {`);
        out.push(`${indent}  [*] --> ${key(s.initial as string)}`);
        block(s.path, `${indent}  `);
        out.push(`${indent}}`);
      }
      for (const e of graph.edges.filter((ed) => ed.source === s.path && innermostBlock(ed) === parent)) {
        out.push(indent + line(e));
      }
    }
    // Top-level final states are marked last, after the edges that leave composite blocks.
    if (parent !== null) finalMarks(parent, indent);
  };
  const finalMarks = (parent: string | null, indent: string) => {
    for (const s of graph.states.filter((st) => st.parent === parent && st.type === "final")) {
      out.push(`${indent}${s.key} --> [*]`);
    }
  };
  block(null, "  ");
  // Edges leaving a composite block, drawn at the top level after it.
  const crossing = graph.edges.filter((e) => innermostBlock(e) === null && depth(e.source) > 1);
  for (const e of crossing) out.push(`  ${line(e)}`);
  finalMarks(null, "  ");
  const released = graph.states.find((s) => s.path === RELEASE_STATE);
  if (released) {
    out.push("  classDef release fill:#fff0e6,stroke:#d9480f,stroke-width:2px");
    out.push(`  class ${released.key} release`);
  }
  return `${out.join("\n")}\n`;
}

/** Mermaid ends a label at `;` and reads `#…;` as an entity: spell those characters as entities. */
function mermaidText(text: string): string {
  return text.replace(/[#:;]/g, (c) => `#${c.charCodeAt(0)};`);
}

// ---- DOT ----------------------------------------------------------------------------------------

const COLORS = {
  ink: "#212529",
  gate: "#4a6fa5",
  gateFill: "#e7f0fb",
  release: "#d9480f",
  releaseFill: "#fff0e6",
  final: "#2b8a3e",
  finalFill: "#ebfbee",
  stop: "#868e96",
  cluster: "#f1f3f5",
} as const;

/** Graphviz DOT: clusters for compound states, double circles for final ones, tooltips from the spec. */
export function toDot(
  machine: AnyStateMachine,
  annotations: Readonly<Record<string, string>> = chartOf(machine).spec,
): string {
  const graph = walkMachine(machine);
  const spec = annotate(graph, annotations);
  const byPath = new Map(graph.states.map((s) => [s.path, s]));
  const initialNode = (p: string | null) => (p === null ? "__initial" : `${p}.__initial`);
  const clusterName = (p: string) => `cluster_${p.replaceAll(".", "_")}`;

  const out = [
    `digraph ${dotId(graph.id)} {`,
    '  graph [rankdir=TB, compound=true, fontname="Helvetica", fontsize=12, nodesep=0.15, ranksep=0.3];',
    `  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, color="${COLORS.gate}", fillcolor="${COLORS.gateFill}"];`,
    `  edge [fontname="Helvetica", fontsize=9, color="${COLORS.ink}", fontcolor="${COLORS.ink}", arrowsize=0.7];`,
  ];
  const nodes = (parent: string | null, indent: string) => {
    out.push(
      `${indent}${dotId(initialNode(parent))} [shape=point, width=0.12, label="", tooltip="initial"];`,
    );
    for (const s of graph.states.filter((st) => st.parent === parent)) {
      const tooltip = `${s.path}: ${spec.get(s.path)}`;
      if (s.type === "compound") {
        out.push(`${indent}subgraph ${dotId(clusterName(s.path))} {`);
        out.push(
          `${indent}  graph [label=${dotId(s.key)}, tooltip=${dotId(tooltip)}, style="rounded,filled", ` +
            `color="${COLORS.gate}", fillcolor="${COLORS.cluster}", labeljust=l];`,
        );
        nodes(s.path, `${indent}  `);
        out.push(`${indent}  ${dotId(initialNode(s.path))} -> ${dotId(s.initial as string)};`);
        out.push(`${indent}}`);
        continue;
      }
      const attrs = [`label=${dotId(s.key)}`, `tooltip=${dotId(tooltip)}`];
      if (s.type === "final") {
        attrs.push(
          `shape=doublecircle, margin=0, fontsize=10, color="${COLORS.final}", fillcolor="${COLORS.finalFill}"`,
        );
      } else if (s.path === RELEASE_STATE) {
        attrs.push(`color="${COLORS.release}", fillcolor="${COLORS.releaseFill}", penwidth=2`);
      }
      out.push(`${indent}${dotId(s.path)} [${attrs.join(", ")}];`);
    }
  };
  nodes(null, "  ");
  out.push(`  ${dotId(initialNode(null))} -> ${dotId(graph.initial)};`);

  // A compound state is drawn as a cluster: its edges end at the cluster's initial point, clipped at the border.
  const endpoint = (p: string) => {
    const s = byPath.get(p) as VizState;
    return s.type === "compound"
      ? { node: initialNode(p), clip: clusterName(p) }
      : { node: p, clip: null as string | null };
  };
  // Parallel transitions share one arrow, one label line each: the chart stays narrow enough to read.
  for (const group of groupParallel(graph.edges)) {
    const [first] = group as [VizEdge];
    const tail = endpoint(first.source);
    const head = endpoint(first.target);
    const labels = group.map((e) => edgeLabel(e, " "));
    const tooltip = `${first.source} → ${first.target}: ${labels.join("; ")}`;
    const attrs = [
      `label=${dotLines(labels)}`,
      `tooltip=${dotId(tooltip)}`,
      `labeltooltip=${dotId(tooltip)}`,
    ];
    if (tail.clip) attrs.push(`ltail=${dotId(tail.clip)}`);
    if (head.clip) attrs.push(`lhead=${dotId(head.clip)}`);
    if (first.target === RELEASE_STATE && first.source !== RELEASE_STATE) {
      attrs.push(`color="${COLORS.release}", fontcolor="${COLORS.release}", penwidth=1.6`);
    } else if (group.every((e) => e.kind === "event")) {
      attrs.push(`color="${COLORS.stop}", fontcolor="${COLORS.stop}"`);
    }
    if (group.every((e) => e.kind === "error")) attrs.push("style=dashed");
    // The gate order is the design: keep the pass path a straight spine.
    const isPass = group.some((e) => e.kind === "done" && e.guard === null);
    if (isPass && byPath.get(first.target)?.type !== "final") attrs.push("weight=8");
    out.push(`  ${dotId(tail.node)} -> ${dotId(head.node)} [${attrs.join(", ")}];`);
  }
  const finals = graph.states.filter((s) => s.type === "final" && s.parent === null);
  if (finals.length) out.push(`  { rank=sink; ${finals.map((s) => `${dotId(s.path)};`).join(" ")} }`);
  out.push("}");
  return `${out.join("\n")}\n`;
}

/** Edges grouped by (source, target), groups in order of first appearance, edges in walk order. */
function groupParallel(edges: VizEdge[]): VizEdge[][] {
  const groups = new Map<string, VizEdge[]>();
  for (const e of edges) {
    const key = `${e.source}\u0000${e.target}`;
    const group = groups.get(key);
    if (group) group.push(e);
    else groups.set(key, [e]);
  }
  return [...groups.values()];
}

function dotId(text: string): string {
  return `"${dotEscape(text)}"`;
}

/** Left-justified lines (`\l` ends each one). */
function dotLines(lines: string[]): string {
  return `"${lines.map((l) => `${dotEscape(l)}\\l`).join("")}"`;
}

function dotEscape(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

// ---- documents ----------------------------------------------------------------------------------

export function renderMarkdown(
  machine: AnyStateMachine,
  annotations: Readonly<Record<string, string>> = chartOf(machine).spec,
): string {
  const graph = walkMachine(machine);
  const spec = annotate(graph, annotations);
  const rows = graph.states.map(
    (s) =>
      `| \`${s.path}\` | ${s.invokes.map((i) => `\`${i}\``).join(", ") || "—"} | ${mdCell(spec.get(s.path) as string)} |`,
  );
  const chart = chartOf(machine);
  const html = `${chart.name}.html`;
  return [
    `<!-- Generated by \`dialgate viz\` from ${chart.source}. Do not edit: run \`dialgate viz\`. -->`,
    "",
    `# ${chart.title}`,
    "",
    `Generated by \`dialgate viz\` from \`${chart.source}\`; do not edit. CI runs \`dialgate viz --check\`.`,
    `${chart.scope}. ${chart.legend} A rendered chart with the spec lines as tooltips is in [${html}](${html}).`,
    "",
    "```mermaid",
    toMermaid(machine).trimEnd(),
    "```",
    "",
    "## States and the spec lines they implement",
    "",
    "| State | Invokes | Spec |",
    "|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}

/** The page: inline SVG rendered from the DOT, the DOT itself (what `--check` compares), a legend. */
export async function renderHtml(
  machine: AnyStateMachine,
  annotations: Readonly<Record<string, string>> = chartOf(machine).spec,
): Promise<string> {
  const dot = toDot(machine, annotations);
  const graph = walkMachine(machine);
  const spec = annotate(graph, annotations);
  if (dot.includes("</"))
    throw new Error("viz: the DOT text must not contain '</' (it is embedded in a script)");
  const svg = inlineSvg(await renderSvg(dot));
  const chart = chartOf(machine);
  // Only a chart with the release state has release-on-reject edges to explain.
  const hasRelease = graph.states.some((s) => s.path === RELEASE_STATE);
  const releaseKeys = {
    box: hasRelease
      ? `  <li><span class="box release"></span><code>${RELEASE_STATE}</code>: the one place that gives back what was taken</li>\n`
      : "",
    line: hasRelease ? '  <li><span class="line release"></span>release-on-reject path</li>\n' : "",
  };
  const rows = graph.states.map(
    (s) =>
      `<tr><td><code>${esc(s.path)}</code></td><td>${s.invokes.map((i) => `<code>${esc(i)}</code>`).join(", ") || "—"}</td><td>${esc(spec.get(s.path) as string)}</td></tr>`,
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="dialgate viz">
<title>dialgate — ${chart.title.toLowerCase()}</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: ${COLORS.ink}; margin: 24px auto; max-width: 1900px; padding: 0 16px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 17px; margin: 28px 0 8px; }
  p.note { color: #495057; margin: 0 0 12px; max-width: 1100px; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f5; padding: 1px 4px; border-radius: 3px; }
  ul.keys { list-style: none; padding: 0; margin: 8px 0 16px; display: flex; flex-wrap: wrap; gap: 6px 22px; }
  ul.keys li { display: flex; align-items: center; gap: 8px; }
  .line { display: inline-block; width: 34px; border-top: 2px solid ${COLORS.ink}; }
  .line.release { border-top-color: ${COLORS.release}; border-top-width: 3px; }
  .line.error { border-top-style: dashed; }
  .line.stop { border-top-color: ${COLORS.stop}; }
  .box { display: inline-block; width: 26px; height: 16px; border: 1.5px solid ${COLORS.gate}; background: ${COLORS.gateFill}; border-radius: 5px; }
  .box.release { border-color: ${COLORS.release}; background: ${COLORS.releaseFill}; border-width: 2px; }
  .box.final { width: 16px; border-radius: 50%; border-color: ${COLORS.final}; background: ${COLORS.finalFill}; outline: 1.5px solid ${COLORS.final}; outline-offset: 1px; }
  figure.chart { margin: 0; border: 1px solid #dee2e6; border-radius: 6px; padding: 12px; overflow-x: auto; background: #fff; }
  figure.chart svg { display: block; margin: 0 auto; max-width: 100%; height: auto; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #dee2e6; padding: 6px 8px; }
  th { background: #f8f9fa; }
  td:first-child { white-space: nowrap; }
</style>
</head>
<body>
<!-- Generated by \`dialgate viz\` from ${chart.source}. Do not edit: run \`dialgate viz\`. \`dialgate viz --check\` compares the DOT text in the script element at the end, not the SVG. -->
<h1>${chart.title}</h1>
<p class="note">${esc(chart.scope).replace(/`([^`]+)`/g, "<code>$1</code>")}, generated by <code>dialgate viz</code> from <code>${chart.source}</code>; do not edit. Hover a state for the spec line it implements. ${chart.htmlLegend}</p>
<ul class="keys">
  <li><span class="box"></span>gate / step</li>
${releaseKeys.box}  <li><span class="box final"></span>final state (the attempt's end)</li>
${releaseKeys.line}  <li><span class="line error"></span>gate failed (<code>✗</code>)</li>
  <li><span class="line stop"></span>external event only (<code>STOP</code>)</li>
  <li>transitions between the same two states share one arrow, one label line each, in priority order</li>
</ul>
<figure class="chart">
${svg}
</figure>
<h2>States and the spec lines they implement</h2>
<table>
<thead><tr><th>State</th><th>Invokes</th><th>Spec</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
${DOT_SCRIPT_OPEN}${chart.name}-dot">
${dot}${DOT_SCRIPT_CLOSE}
</body>
</html>
`;
}

async function renderSvg(dot: string): Promise<string> {
  // Loaded only when a page is written: `--check` compares text and needs no WASM. An optional
  // dependency: an install without it (--omit=optional) still dispatches, only this page needs it.
  let wasm: typeof import("@hpcc-js/wasm-graphviz");
  try {
    wasm = await import("@hpcc-js/wasm-graphviz");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw error;
    throw new Error(
      "viz needs the optional dependency @hpcc-js/wasm-graphviz to lay out the SVG page: npm install @hpcc-js/wasm-graphviz",
    );
  }
  const graphviz = await wasm.Graphviz.load();
  return graphviz.dot(dot, "svg");
}

/** Inline SVG needs no XML prolog, DOCTYPE or namespace declarations (the HTML parser supplies them). */
function inlineSvg(svg: string): string {
  return svg
    .replace(/<\?xml[^>]*\?>\s*/, "")
    .replace(/<!DOCTYPE[^>]*>\s*/, "")
    .replace(/\s+xmlns(:xlink)?="[^"]*"/g, "")
    .trim();
}

function esc(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function mdCell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** The DOT text embedded in a page written by `renderHtml`, or null when there is none. */
export function embeddedDot(html: string): string | null {
  const start = html.indexOf(DOT_SCRIPT_OPEN);
  if (start < 0) return null;
  const open = html.indexOf('">', start);
  if (open < 0) return null;
  const from = open + 3;
  const end = html.indexOf(DOT_SCRIPT_CLOSE, from);
  return end < 0 ? null : html.slice(from, end);
}

// ---- the command --------------------------------------------------------------------------------

export interface VizOptions {
  /** Compare with the files in `outDir` instead of writing them. */
  check?: boolean;
  /** Default: `defaultVizDir()`. */
  outDir?: string;
}

export interface VizResult {
  /** `--check`: files whose diagram text differs from the machine's, or that are missing. */
  stale: string[];
  /** Files written (empty with `check`). */
  written: string[];
}

/**
 * Where the diagrams go unless told: the current directory, as other generators do, never the
 * installed package's own folder under node_modules. At the root of a dialgate source checkout it is
 * docs/, where the committed diagrams live (`viz --check` in CI compares those).
 */
export function defaultVizDir(cwd: string = process.cwd()): string {
  return isDialgateCheckout(cwd) ? path.join(cwd, "docs") : cwd;
}

function isDialgateCheckout(dir: string): boolean {
  if (!existsSync(path.join(dir, "src", "machines", "lead-machine.ts"))) return false;
  try {
    return JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")).name === "dialgate";
  } catch {
    return false;
  }
}

export async function viz(options: { check?: boolean; outDir?: string } = {}): Promise<VizResult> {
  const outDir = path.resolve(options.outDir ?? defaultVizDir());
  const shown = (file: string) => {
    const relative = path.relative(process.cwd(), file);
    return relative === "" || relative.startsWith("..") || path.isAbsolute(relative) ? file : relative;
  };

  const files = (chart: Chart) => ({
    md: path.join(outDir, `${chart.name}.md`),
    html: path.join(outDir, `${chart.name}.html`),
  });

  if (options.check) {
    const stale: string[] = [];
    for (const chart of CHARTS) {
      const { md: mdPath, html: htmlPath } = files(chart);
      const md = await readText(mdPath);
      if (md === null || normalize(md) !== renderMarkdown(chart.machine)) stale.push(shown(mdPath));
      const html = await readText(htmlPath);
      const dot = html === null ? null : embeddedDot(normalize(html));
      if (dot !== toDot(chart.machine)) stale.push(shown(htmlPath));
    }
    return { stale, written: [] };
  }

  await mkdir(outDir, { recursive: true });
  const written: string[] = [];
  for (const chart of CHARTS) {
    const { md: mdPath, html: htmlPath } = files(chart);
    await writeFile(mdPath, renderMarkdown(chart.machine));
    await writeFile(htmlPath, await renderHtml(chart.machine));
    written.push(shown(mdPath), shown(htmlPath));
  }
  return { stale: [], written };
}

/** What the CLI prints before exiting 1 on a stale `--check`. */
export function staleMessage(stale: string[]): string {
  return `statechart docs are stale: ${stale.join(", ")}. Run \`dialgate viz\` and commit the result.`;
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

function normalize(text: string): string {
  return text.replaceAll("\r\n", "\n");
}
