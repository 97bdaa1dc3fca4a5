/**
 * `dialgate viz`: the diagrams say what the machine does, every state says which spec line it is,
 * and `--check` catches a stale diagram by its text, not by rendered bytes (design §7.21).
 */
import { mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AnyStateNode, setup } from "xstate";
import {
  embeddedDot,
  renderHtml,
  renderMarkdown,
  STATE_SPEC,
  SUPERVISOR_SPEC,
  staleMessage,
  toDot,
  toMermaid,
  viz,
} from "../../src/cli/viz.js";
import { leadMachine } from "../../src/machines/lead-machine.js";
import { supervisorMachine } from "../../src/machines/supervisor-machine.js";

// ---- what the machine holds, read from its raw config (independently of the walker under test) ----

type Config = Record<string, unknown>;

function* stateConfigs(config: Config, prefix = ""): Generator<[string, Config]> {
  for (const [key, child] of Object.entries((config.states ?? {}) as Record<string, Config>)) {
    const statePath = prefix ? `${prefix}.${key}` : key;
    yield [statePath, child];
    yield* stateConfigs(child, statePath);
  }
}

const asList = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Every transition object of a state: `on` (gate replies included), invoke onDone/onError, `always`. */
function transitionsOf(state: Config): Config[] {
  const on = Object.values((state.on ?? {}) as Record<string, Config | Config[]>).flatMap((t) => asList(t));
  const invokes = asList(state.invoke as Config | Config[] | undefined);
  const outcomes = invokes.flatMap((inv) => [
    ...asList(inv.onDone as Config | Config[] | undefined),
    ...asList(inv.onError as Config | Config[] | undefined),
  ]);
  return [...on, ...outcomes, ...asList(state.always as Config | Config[] | undefined)];
}

const states = [...stateConfigs(leadMachine.config as Config)];
const stateKeys = states.map(([statePath]) => statePath.split(".").at(-1) as string);
/** The gates the states ask the gate actor for on entry: `{ type: "request", params: { gate } }`. */
const gateIds = states.flatMap(([, s]) =>
  asList(s.entry as Config | Config[] | undefined)
    .filter((action) => action.type === "request")
    .map((action) => (action.params as Config).gate as string),
);
const transitions = states.flatMap(([, s]) => transitionsOf(s));
const guardNames = [
  ...new Set(transitions.map((t) => t.guard).filter((g): g is string => typeof g === "string")),
];
const actionNames = [
  ...new Set(
    transitions
      .flatMap((t) => asList(t.actions as unknown))
      .filter((a): a is string => typeof a === "string"),
  ),
];
const finalKeys = states.filter(([, s]) => s.type === "final").map(([p]) => p.split(".").at(-1) as string);

describe("toMermaid", () => {
  const mermaid = toMermaid(leadMachine);

  it("is a stateDiagram-v2 that names every state of the machine", () => {
    expect(mermaid.startsWith("stateDiagram-v2\n")).toBe(true);
    expect(stateKeys.length).toBeGreaterThanOrEqual(15);
    for (const key of stateKeys) expect(mermaid).toMatch(new RegExp(`\\b${key}\\b`));
    expect(mermaid).toContain("state dialing {");
  });

  it("labels the replies of every gate by its name", () => {
    expect(gateIds).toEqual(
      expect.arrayContaining(["check", "peek", "acquire", "record", "makeCall", "release"]),
    );
    for (const id of gateIds) {
      expect(mermaid).toContain(`: ${id} ✓`);
      expect(mermaid).toContain(`: ${id} ✗`);
    }
  });

  it("shows every guard and every named action the machine uses", () => {
    expect(guardNames.length).toBeGreaterThanOrEqual(18);
    for (const guard of guardNames) expect(mermaid).toContain(`[${guard}]`);
    expect(actionNames).toEqual(expect.arrayContaining(["alertRateLimited", "noteFailOpen", "noteStop"]));
    for (const action of actionNames) expect(mermaid).toMatch(new RegExp(`/ (\\w+, )*${action}\\b`));
  });

  it("draws one edge per transition and marks every final state", () => {
    const edges = mermaid.split("\n").filter((l) => l.includes(" --> ") && !l.includes("[*]"));
    expect(edges).toHaveLength(transitions.length);
    for (const key of finalKeys) expect(mermaid).toContain(`  ${key} --> [*]\n`);
    expect(mermaid).toContain("  [*] --> checking\n");
    expect(mermaid).toContain("    [*] --> writingDialRow\n");
  });

  it("reads like the spec: fail open at peek, release-on-reject after record", () => {
    expect(mermaid).toContain("peekingRateLimit --> selectingNumber : peek ✗ / noteFailOpen");
    expect(mermaid).toContain(
      "recordingAttempt --> releasing : record ✓ [isRecordRejected] / alertRateLimited",
    );
    expect(mermaid).toContain("checking --> dropped : STOP [isStopCancel]");
    expect(mermaid).toContain("acquiringChannel --> acquiringChannel : STOP / noteStop");
  });

  it("is deterministic", () => {
    expect(toMermaid(leadMachine)).toBe(mermaid);
    expect(toDot(leadMachine)).toBe(toDot(leadMachine));
    expect(renderMarkdown(leadMachine)).toBe(renderMarkdown(leadMachine));
  });
});

describe("walking other shapes", () => {
  it("draws eventless, delayed and state-done transitions, and marks nested final states inside their block", () => {
    const machine = setup({ guards: { isReady: () => true }, delays: { slow: 10 } }).createMachine({
      id: "shapes",
      initial: "a",
      states: {
        a: { after: { 500: "b", slow: "b" }, always: [{ guard: "isReady", target: "b" }] },
        b: { initial: "c", states: { c: { type: "final" } }, onDone: "d" },
        d: { type: "final" },
      },
    });
    expect(toMermaid(machine)).toBe(
      [
        "stateDiagram-v2",
        "  [*] --> a",
        "  a --> b : always [isReady]",
        "  a --> b : after 500ms",
        "  a --> b : after slow",
        "  state b {",
        "    [*] --> c",
        "    c --> [*]",
        "  }",
        "  b --> d : done",
        "  d --> [*]",
        "",
      ].join("\n"),
    );
  });
});

describe("toDot", () => {
  const dot = toDot(leadMachine);

  it("clusters the dialing state, double-circles final states and colours release-on-reject edges", () => {
    expect(dot).toMatch(/subgraph "cluster_dialing" \{/);
    for (const key of finalKeys) expect(dot).toMatch(new RegExp(`"${key}" \\[[^\\]]*shape=doublecircle`));
    const intoRelease = dot.split("\n").filter((l) => / -> "releasing" /.test(l));
    expect(intoRelease.length).toBeGreaterThanOrEqual(4);
    for (const line of intoRelease) expect(line).toContain('color="#d9480f"');
  });

  it("carries each state's spec line as its tooltip and every guard in a label", () => {
    for (const [statePath, spec] of Object.entries(STATE_SPEC)) {
      expect(dot).toContain(`tooltip="${statePath}: ${spec.replaceAll('"', '\\"')}"`);
    }
    for (const guard of guardNames) expect(dot).toContain(`[${guard}]`);
  });
});

describe("annotations", () => {
  const tiny = setup({}).createMachine({
    id: "tiny",
    initial: "idle",
    states: { idle: { on: { GO: "done" } }, done: { type: "final" } },
  });

  it("annotates every state of the lead machine", () => {
    expect(Object.keys(STATE_SPEC).sort()).toEqual(states.map(([p]) => p).sort());
    expect(STATE_SPEC.peekingRateLimit).toMatch(/§2 step 3: read-only count.*fail open/);
  });

  it("a state without an annotation stops the generator, naming the state", () => {
    expect(() => toDot(tiny, { idle: "§x: waiting" })).toThrow(/no spec annotation for state\(s\) done/);
    expect(() => renderMarkdown(tiny, { idle: "§x: waiting" })).toThrow(/done/);
    expect(toDot(tiny, { idle: "§x: waiting", done: "§y: the end" })).toContain('"done"');
  });

  it("an annotation for a state the machine lacks stops the generator too", () => {
    expect(() => toDot(tiny, { idle: "a", done: "b", gone: "c" })).toThrow(/does not have: gone/);
  });

  it("a state removed from the lead machine's annotations throws", () => {
    const { releasing: _dropped, ...rest } = STATE_SPEC;
    expect(() => renderMarkdown(leadMachine, rest)).toThrow(/releasing/);
  });
});

describe("documents", () => {
  it("the markdown has the do-not-edit header, the Mermaid block and one table row per state", () => {
    const md = renderMarkdown(leadMachine);
    expect(md).toMatch(/^<!-- Generated by `dialgate viz`.*Do not edit/);
    expect(md).toContain(`\`\`\`mermaid\n${toMermaid(leadMachine)}\`\`\``);
    for (const [statePath, spec] of Object.entries(STATE_SPEC)) {
      expect(md).toContain(`| \`${statePath}\` |`);
      expect(md).toContain(spec);
    }
  });

  it("the page is self-contained: inline SVG, its DOT, a legend, no external URL or script", async () => {
    const html = await renderHtml(leadMachine);
    expect(html).toContain("<svg");
    expect(html).not.toMatch(/https?:|\bsrc=|\bhref=|<script(?![^>]*text\/vnd\.graphviz)/);
    expect(embeddedDot(html)).toBe(toDot(leadMachine));
    for (const node of Object.values(leadMachine.root.states) as AnyStateNode[]) {
      expect(html).toContain(`<code>${node.key}</code>`);
    }
  });
});

describe("the supervisor chart", () => {
  const supervisorStates = [...stateConfigs(supervisorMachine.config as Config)].map(([p]) => p);

  it("annotates every state of the supervisor machine with its spec line", () => {
    expect(Object.keys(SUPERVISOR_SPEC).sort()).toEqual([...supervisorStates].sort());
    for (const spec of Object.values(SUPERVISOR_SPEC)) expect(spec).toMatch(/^§3/);
  });

  it("draws the claim, the stop while claiming, the drain timeout and the final stopped state", () => {
    const mermaid = toMermaid(supervisorMachine);
    expect(mermaid).toContain("  [*] --> claiming\n");
    expect(mermaid).toContain("claiming --> full : CLAIMED [isFullAfterClaim] / spawnLeads, countClaimed");
    expect(mermaid).toContain("claiming --> backingOff : CLAIM_FAILED / noteClaimError");
    expect(mermaid).toContain("claiming --> claiming : STOP / stopLeads");
    expect(mermaid).toContain("claiming --> draining : CLAIMED [isStopping] / spawnLeads, countClaimed");
    expect(mermaid).toContain("full --> draining : STOP");
    expect(mermaid).toContain("draining --> stopped : after drainTimeout");
    expect(mermaid).toContain("  stopped --> [*]\n");
    expect(toDot(supervisorMachine)).toMatch(/"stopped" \[[^\]]*shape=doublecircle/);
  });

  it("has its own title and source, and no release-on-reject legend", async () => {
    const md = renderMarkdown(supervisorMachine);
    expect(md).toMatch(/^<!-- Generated by `dialgate viz` from src\/machines\/supervisor-machine\.ts/);
    expect(md).toContain("# Supervisor statechart");
    const html = await renderHtml(supervisorMachine);
    expect(html).toContain("<h1>Supervisor statechart</h1>");
    expect(html).not.toContain("release-on-reject");
    expect(embeddedDot(html)).toBe(toDot(supervisorMachine));
  });
});

describe("viz --check", () => {
  let dir: string;
  const md = () => path.join(dir, "lead-machine.md");
  const html = () => path.join(dir, "lead-machine.html");
  const supMd = () => path.join(dir, "supervisor-machine.md");
  const supHtml = () => path.join(dir, "supervisor-machine.html");
  const check = () => viz({ check: true, outDir: dir });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "dialgate-viz-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reports the files of both charts stale when nothing was generated", async () => {
    const { stale } = await check();
    expect(stale).toEqual([md(), html(), supMd(), supHtml()]);
    expect(staleMessage(stale)).toMatch(/lead-machine\.md, .*supervisor-machine\.html\. Run `dialgate viz`/);
  });

  it("is clean right after generation", async () => {
    const { written } = await viz({ outDir: dir });
    expect(written).toEqual([md(), html(), supMd(), supHtml()]);
    expect((await check()).stale).toEqual([]);
  });

  it("reports the markdown stale when its diagram differs, and clean after regeneration", async () => {
    const text = await readFile(md(), "utf8");
    await writeFile(md(), text.replace("checking --> window : check ✓", "checking --> window : check"));
    expect((await check()).stale).toEqual([md()]);
    await viz({ outDir: dir });
    expect((await check()).stale).toEqual([]);
  });

  it("reports the page stale when its DOT differs", async () => {
    const text = await readFile(html(), "utf8");
    await writeFile(html(), text.replace('"checking" -> "window"', '"window" -> "checking"'));
    expect((await check()).stale).toEqual([html()]);
    await viz({ outDir: dir });
    expect((await check()).stale).toEqual([]);
  });

  it("ignores rendered SVG bytes and line endings: only the diagram text counts", async () => {
    const text = await readFile(html(), "utf8");
    await writeFile(
      html(),
      text.replace(/<svg[^>]*>/, '<svg width="1pt" height="1pt">').replaceAll("\n", "\r\n"),
    );
    const mdText = await readFile(md(), "utf8");
    await writeFile(md(), mdText.replaceAll("\n", "\r\n"));
    expect((await check()).stale).toEqual([]);
  });

  it("reports the supervisor chart stale when its diagram differs", async () => {
    const text = await readFile(supMd(), "utf8");
    await writeFile(supMd(), text.replace("full --> draining : STOP", "full --> stopped : STOP"));
    const page = await readFile(supHtml(), "utf8");
    await writeFile(supHtml(), page.replace('"full" -> "draining"', '"full" -> "stopped"'));
    expect((await check()).stale).toEqual([supMd(), supHtml()]);
    await viz({ outDir: dir });
    expect((await check()).stale).toEqual([]);
  });

  it("reports a deleted file stale", async () => {
    await unlink(html());
    expect((await check()).stale).toEqual([html()]);
  });
});
