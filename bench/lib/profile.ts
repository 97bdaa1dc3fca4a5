/**
 * Where one dial's cost goes, for the dialgate side: store calls by method and call site (each
 * Postgres statement attributed to the lead-store method that sent it), Redis commands by name and
 * script, and a sampled CPU profile grouped by package / source file. Only on a profile run: the
 * stack captures and the sampler cost time of their own.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Session } from "node:inspector/promises";
import type { Redis } from "ioredis";
import type pg from "pg";

export interface ProfileReport {
  dials: number;
  /** Lead-store calls per dial: method → call site → calls/dial. */
  leadStoreCalls: Record<string, Record<string, number>>;
  /** Postgres statements per dial, by the lead-store method that sent them. */
  pgStatementsByMethod: Record<string, number>;
  /** Gate-store calls per dial: method → call site → calls/dial. */
  gateStoreCalls: Record<string, Record<string, number>>;
  /** Redis commands per dial as the client sent them (EVALSHA named by its script). */
  redisCommands: Record<string, number>;
  /** Share of the sampled CPU time (idle excluded) by package or source file, in %. */
  cpuByModule: Record<string, number>;
  /** Top functions by self time, in % of the busy samples. */
  topFunctions: { fn: string; percent: number }[];
  /** Busy CPU ms sampled per dial. */
  sampledCpuMsPerDial: number;
}

type Tally = Map<string, Map<string, number>>;

function bump(tally: Tally, method: string, site: string): void {
  const sites = tally.get(method) ?? new Map<string, number>();
  tally.set(method, sites.set(site, (sites.get(site) ?? 0) + 1));
}

/** The first frame of the stack outside the store adapters and this file: who called the store. */
function callSite(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 20;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    if (/bench\/lib\/profile|infra\/(postgres|redis)\/|node:internal|node_modules/.test(line)) continue;
    const match = /at (?:async )?(\S+)? ?\(?.*\/src\/(.+?):(\d+):\d+\)?$/.exec(line.trim());
    if (match) return `${match[2]}:${match[3]} ${match[1] ?? ""}`.trim();
  }
  return "(elsewhere)";
}

function perDial(tally: Tally, dials: number): Record<string, Record<string, number>> {
  return Object.fromEntries(
    [...tally].map(([method, sites]) => [
      method,
      Object.fromEntries([...sites].map(([site, n]) => [site, Math.round((n / dials) * 1000) / 1000])),
    ]),
  );
}

/** Replaces each prototype method of `target` on the instance with a counting wrapper; returns the undo. */
function instrument(
  target: object,
  onCall: (method: string) => void,
  wrap?: <T>(m: string, f: () => T) => T,
) {
  const proto = Object.getPrototypeOf(target) as Record<string, unknown>;
  const names = Object.getOwnPropertyNames(proto).filter(
    (name) => name !== "constructor" && typeof proto[name] === "function",
  );
  const self = target as Record<string, unknown>;
  for (const name of names) {
    const original = proto[name] as (...args: unknown[]) => unknown;
    self[name] = (...args: unknown[]) => {
      onCall(name);
      return wrap ? wrap(name, () => original.apply(target, args)) : original.apply(target, args);
    };
  }
  return () => {
    for (const name of names) delete self[name];
  };
}

/** `calls`: store calls with their call sites (stack captures); `cpu`: the sampled CPU profile only. */
export type ProfileMode = "calls" | "cpu";

export class Profiler {
  readonly #mode: ProfileMode;
  readonly #store: object;
  readonly #gates: object;
  readonly #client: Redis;
  readonly #pool: pg.Pool;
  readonly #session = new Session();
  readonly #storeCalls: Tally = new Map();
  readonly #gateCalls: Tally = new Map();
  readonly #statements = new Map<string, number>();
  readonly #commands = new Map<string, number>();
  readonly #undo: (() => void)[] = [];

  constructor(mode: ProfileMode, targets: { store: object; gates: object; client: Redis; pool: pg.Pool }) {
    this.#mode = mode;
    this.#store = targets.store;
    this.#gates = targets.gates;
    this.#client = targets.client;
    this.#pool = targets.pool;
  }

  async start(): Promise<void> {
    if (this.#mode === "cpu") {
      this.#session.connect();
      await this.#session.post("Profiler.enable");
      await this.#session.post("Profiler.setSamplingInterval", { interval: 250 });
      await this.#session.post("Profiler.start");
      return;
    }
    const method = new AsyncLocalStorage<string>();
    this.#undo.push(
      instrument(
        this.#store,
        (name) => bump(this.#storeCalls, name, callSite()),
        (name, f) => method.run(name, f),
      ),
      instrument(this.#gates, (name) => bump(this.#gateCalls, name, callSite())),
    );
    const pool = this.#pool as unknown as { query: (...args: unknown[]) => unknown };
    const query = pool.query;
    pool.query = (...args: unknown[]) => {
      const by = method.getStore() ?? "(not a lead-store call)";
      this.#statements.set(by, (this.#statements.get(by) ?? 0) + 1);
      return query.apply(this.#pool, args);
    };
    this.#undo.push(() => {
      pool.query = query;
    });

    const client = this.#client as unknown as {
      sendCommand: (command: { name: string; args: unknown[] }, ...rest: unknown[]) => unknown;
      scriptsSet: Record<string, { sha: string }>;
    };
    const scriptBySha = new Map(Object.entries(client.scriptsSet ?? {}).map(([name, s]) => [s.sha, name]));
    const send = client.sendCommand;
    client.sendCommand = (command, ...rest) => {
      const name =
        command.name === "evalsha" || command.name === "eval"
          ? `${command.name} ${scriptBySha.get(String(command.args[0])) ?? "?"}`
          : command.name;
      this.#commands.set(name, (this.#commands.get(name) ?? 0) + 1);
      return send.call(this.#client, command, ...rest);
    };
    this.#undo.push(() => {
      client.sendCommand = send;
    });
  }

  async stop(dials: number): Promise<Partial<ProfileReport>> {
    const d = Math.max(1, dials);
    if (this.#mode === "cpu") {
      const { profile } = await this.#session.post("Profiler.stop");
      this.#session.disconnect();
      return { dials, ...summariseCpu(profile, d) };
    }
    for (const undo of this.#undo.splice(0)) undo();
    const per = (m: Map<string, number>) =>
      Object.fromEntries(
        [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round((v / d) * 1000) / 1000]),
      );
    return {
      dials,
      leadStoreCalls: perDial(this.#storeCalls, d),
      pgStatementsByMethod: per(this.#statements),
      gateStoreCalls: perDial(this.#gateCalls, d),
      redisCommands: per(this.#commands),
    };
  }
}

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time by module and by function, from the sampled stacks (their leaves). */
function summariseCpu(
  profile: CpuProfile,
  dials: number,
): Pick<ProfileReport, "cpuByModule" | "topFunctions" | "sampledCpuMsPerDial"> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  /**
   * A native leaf (writev, a string encoder…) or a frame of Node's own library counts for the package
   * or source file whose code called it: socket writes show up as pg's or ioredis's.
   */
  const moduleOfNode = (id: number): string => {
    const frame = byId.get(id);
    if (!frame) return "?";
    if (frame.functionName.startsWith("(") && frame.url === "") return frame.functionName;
    if (frame.url !== "" && !frame.url.startsWith("node:")) return moduleOf(frame.url, frame.functionName);
    const up = parent.get(id);
    return up === undefined ? moduleOf(frame.url, frame.functionName) : moduleOfNode(up);
  };
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const modules = new Map<string, number>();
  const functions = new Map<string, number>();
  let busyUs = 0;
  samples.forEach((id, i) => {
    const frame = byId.get(id);
    const us = deltas[i + 1] ?? deltas[i] ?? 0;
    if (!frame || frame.functionName === "(idle)") return;
    busyUs += us;
    const module = moduleOfNode(id);
    modules.set(module, (modules.get(module) ?? 0) + us);
    const fn = frame.url
      ? `${frame.functionName || "(anonymous)"} ${shortUrl(frame.url)}:${frame.lineNumber + 1}`
      : `${frame.functionName} [native, in ${module}]`;
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  });
  const pct = (us: number) => Math.round((1000 * us) / Math.max(1, busyUs)) / 10;
  return {
    cpuByModule: Object.fromEntries([...modules].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, pct(v)])),
    topFunctions: [...functions]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([fn, us]) => ({ fn, percent: pct(us) })),
    sampledCpuMsPerDial: Math.round(busyUs / dials) / 1000,
  };
}

function moduleOf(url: string, fn: string): string {
  if (url === "") return fn.startsWith("(") ? fn : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const src = /\/(src|bench)\/(.+)$/.exec(url);
  if (src) return `${src[1]}/${src[2]}`;
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[1] ?? url.slice(5)}`;
  return url;
}

function shortUrl(url: string): string {
  return url.replace(/^.*node_modules\//, "").replace(/^.*\/(src|bench)\//, "$1/");
}
