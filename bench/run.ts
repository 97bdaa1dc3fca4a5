/**
 * `npm run bench` ("bench": "tsx bench/run.ts"): dialgate and two BullMQ peers on the same workload, on
 * real Redis + Postgres (REDIS_URL / DATABASE_URL, else the test harness's throw-away servers), with
 * an instant simulated provider. Prints a table and writes bench/results/latest.json. The minimal
 * peer (bench/peer-side.ts) writes one row per dial; the same-durability peer
 * (bench/durable-peer-side.ts) writes what dialgate writes: a dial row before makeCall, the status
 * after, the call's end with its line released.
 *
 * Each side runs in a process of its own, one after the other: a warm-up, BENCH_RUNS (default 5) runs
 * with every lead due at once (the backlog: throughput), a warm-up and BENCH_RUNS runs with leads due
 * at half that side's peak rate (latency), and for dialgate two profile runs (store calls by call
 * site; a sampled CPU profile), kept out of the table's medians. Every figure is the median of its
 * runs. Heap per in-flight actor comes from bench/heap.ts.
 *
 * Sizes: a backlog run holds about BACKLOG_SECONDS of the side's warm-up rate (at least BENCH_LEADS,
 * default 4000, at most 40000), so that the faster side is not measured on a one-second burst;
 * BENCH_PACED_SECONDS (default 8); BENCH_ACTORS (default 100000).
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Ceiling, measureCeiling } from "./lib/ceiling.js";
import { machineInfo } from "./lib/machine.js";
import { type RunResult, Side, type SideEnv } from "./lib/protocol.js";
import {
  briefRun,
  evaluateLeanTargets,
  evaluateTargets,
  formatReport,
  type HeapResult,
  type SideRuns,
  summarise,
} from "./lib/report.js";
import { startServers } from "./lib/servers.js";
import { median } from "./lib/stats.js";
import { HOT, NUMBERS, RULE } from "./lib/workload.js";

/** BENCH_RUNS=1 (or 2, 3) for a quicker, rougher look; the figures to quote use the default 5. */
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** A backlog run lasts about this long at the side's warm-up rate. */
const BACKLOG_SECONDS = 12;
const MAX_BACKLOG = 40_000;
const SIZES = {
  minBacklogLeads: Number(process.env.BENCH_LEADS ?? 4000),
  backlogSecondsAtWarmUpRate: BACKLOG_SECONDS,
  warmUpLeads: Math.round(Number(process.env.BENCH_LEADS ?? 4000) / 2),
  pacedSeconds: Number(process.env.BENCH_PACED_SECONDS ?? 8),
  warmUpPacedSeconds: 3,
  runs: RUNS,
  actors: Number(process.env.BENCH_ACTORS ?? 100_000),
  hotPhones: `${HOT.phones}×${HOT.leadsPerPhone} leads`,
  rule: `${RULE.maxCalls}/${RULE.windowSeconds}s`,
  numbers: `${NUMBERS.length}×${NUMBERS[0].maxChannels} lines`,
  dialgateConcurrency: 100,
  peerConcurrency: 50,
};
const OUT = fileURLToPath(new URL("./results/latest.json", import.meta.url));

const progress = (text: string) =>
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
async function runSide(name: string, script: string, env: SideEnv, profile: boolean): Promise<SideRuns> {
  const side = new Side(script, env);
  try {
    const ready = await side.next();
    if (ready.type !== "ready") throw new Error(`${name}: ${JSON.stringify(ready)}`);
    const runs: SideRuns = { warmUp: [], peak: [], paced: [], profile: [] };
    const run = async (list: RunResult[], spec: Parameters<Side["run"]>[0]) => {
      const result = await side.run(spec);
      progress(`${name} ${spec.label}: ${briefRun(result)}`);
      list.push(result);
      return result;
    };
    const warm = await run(runs.warmUp, {
      mode: "peak",
      leads: SIZES.warmUpLeads,
      rate: null,
      label: "backlog warm-up",
    });
    const backlog = Math.min(
      MAX_BACKLOG,
      Math.max(SIZES.minBacklogLeads, Math.round((warm.dialsPerSecond * BACKLOG_SECONDS) / 1000) * 1000),
    );
    for (let i = 1; i <= RUNS; i++)
      await run(runs.peak, { mode: "peak", leads: backlog, rate: null, label: `backlog ${i}` });
    const rate = Math.max(1, Math.round(median(runs.peak.map((r) => r.dialsPerSecond)) / 2));
    await run(runs.warmUp, {
      mode: "paced",
      leads: rate * SIZES.warmUpPacedSeconds,
      rate,
      label: `half-peak warm-up (${rate}/s)`,
    });
    for (let i = 1; i <= RUNS; i++)
      await run(runs.paced, {
        mode: "paced",
        leads: rate * SIZES.pacedSeconds,
        rate,
        label: `half peak ${i}`,
      });
    if (profile) {
      for (const mode of ["calls", "cpu"] as const)
        await run(runs.profile, {
          mode: "peak",
          leads: backlog,
          rate: null,
          label: `profile (${mode})`,
          profile: mode,
        });
    }
    return runs;
  } finally {
    await side.close();
  }
}

async function heapRun(park: "check" | "makeCall" | "parts", env: SideEnv): Promise<Record<string, unknown>> {
  const side = new Side("heap.ts", env, ["--max-old-space-size=6144"]);
  const message = await side.next();
  await side.exited;
  if (message.type !== "heap") throw new Error(`heap ${park}: ${JSON.stringify(message)}`);
  progress(`heap ${park}: ${JSON.stringify(message.result)}`);
  return message.result as Record<string, unknown>;
}

const startedAt = Date.now();
progress(`sizes: ${JSON.stringify(SIZES)}`);
const servers = await startServers();
try {
  const machine = await machineInfo(servers.redisUrl, servers.databaseUrl);
  progress(`machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB`);
  const ceiling: Ceiling = await measureCeiling(servers.redisUrl, servers.databaseUrl, servers.freshSchema());
  progress(`ceiling: ${JSON.stringify(ceiling)}`);
  const env = (schema: string): SideEnv => ({
    REDIS_URL: servers.redisUrl,
    DATABASE_URL: servers.databaseUrl,
    BENCH_SCHEMA: schema,
  });
  const dialgateRuns = await runSide("dialgate", "dialgate-side.ts", env(servers.freshSchema()), true);
  const peerRuns = await runSide("peer", "peer-side.ts", env(servers.freshSchema()), false);
  const durableRuns = await runSide(
    "durable peer",
    "durable-peer-side.ts",
    env(servers.freshSchema()),
    false,
  );
  const heapEnv = { ...env(""), BENCH_ACTORS: String(SIZES.actors) };
  const heap = {
    check: await heapRun("check", { ...heapEnv, BENCH_PARK: "check" } as SideEnv),
    makeCall: await heapRun("makeCall", { ...heapEnv, BENCH_PARK: "makeCall" } as SideEnv),
    parts: await heapRun("parts", { ...heapEnv, BENCH_PARK: "parts" } as SideEnv),
  } as unknown as HeapResult;

  const dialgate = summarise(dialgateRuns);
  const peer = summarise(peerRuns);
  const durablePeer = summarise(durableRuns);
  const targets = evaluateTargets(dialgate, peer, heap);
  const leanTargets = evaluateLeanTargets(dialgate, peer, durablePeer);
  const report = formatReport({
    sizes: SIZES,
    machine,
    ceiling,
    dialgate,
    peer,
    durablePeer,
    heap,
    targets,
    leanTargets,
  });
  const profile =
    dialgateRuns.profile.length > 0
      ? Object.assign({}, ...dialgateRuns.profile.map((r) => r.profile))
      : undefined;
  console.info(`\n${report}`);
  if (profile)
    console.info(`\ndialgate profile (two extra backlog runs, instrumented):\n${formatProfile(profile)}`);
  console.info(
    "\nRedis commands: sent = counted at the ioredis clients (an EVALSHA is one); executed = INFO commandstats" +
      " delta (each command inside a Lua script counts); round trips = at the clients, a command on its own" +
      " counts one and a pipeline (explicit or auto) one for all its commands, divided by the dials, so a" +
      " batch serving n dials adds 1/n to each. Postgres statements: counted at the pg client" +
      " (pool.query wrapped); pg_stat_database xact_commit + xact_rollback as a cross-check." +
      " The minimal peer writes one row per dial (no dial row, no claim lease, no end write); the durable" +
      " peer writes a dial row before makeCall, the status after and the end (no claim lease: BullMQ's job" +
      " lock stands for it); dialgate ends each call through callEnded the moment its lead is PROCESSING." +
      " The machine is shared: read the ratios of one run before its absolute figures.",
  );
  const totalSeconds = Math.round((Date.now() - startedAt) / 1000);
  console.info(`bench took ${totalSeconds} s`);
  await writeFile(
    OUT,
    `${JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        tookSeconds: totalSeconds,
        sizes: SIZES,
        machine,
        servers: servers.origin,
        ceiling,
        summary: { dialgate, peer, durablePeer },
        ratios: {
          throughput: dialgate.dialsPerSecond / peer.dialsPerSecond,
          cpuPerDial: dialgate.cpuMsPerDial / peer.cpuMsPerDial,
          throughputVsDurable: dialgate.dialsPerSecond / durablePeer.dialsPerSecond,
          cpuPerDialVsDurable: dialgate.cpuMsPerDial / durablePeer.cpuMsPerDial,
        },
        targets,
        leanTargets,
        heap,
        profile: profile ?? null,
        runs: { dialgate: dialgateRuns, peer: peerRuns, durablePeer: durableRuns },
      },
      null,
      2,
    )}\n`,
  );
  console.info(`wrote ${OUT}`);
} finally {
  await servers.stop();
}

function formatProfile(profile: unknown): string {
  const p = profile as {
    dials: number;
    leadStoreCalls: Record<string, Record<string, number>>;
    pgStatementsByMethod: Record<string, number>;
    gateStoreCalls: Record<string, Record<string, number>>;
    redisCommands: Record<string, number>;
    cpuByModule: Record<string, number>;
    topFunctions: { fn: string; percent: number }[];
    sampledCpuMsPerDial: number;
  };
  const sites = (calls: Record<string, Record<string, number>>) =>
    Object.entries(calls)
      .map(
        ([method, at]) =>
          `    ${method}: ${Object.entries(at)
            .map(([site, n]) => `${n} from ${site}`)
            .join("; ")}`,
      )
      .join("\n");
  const pairs = (r: Record<string, number>, unit = "") =>
    Object.entries(r)
      .map(([k, n]) => `${k} ${n}${unit}`)
      .join(", ");
  return [
    `  per dial (${p.dials} dials):`,
    `  Postgres statements by lead-store method: ${pairs(p.pgStatementsByMethod)}`,
    `  lead-store calls by call site:\n${sites(p.leadStoreCalls)}`,
    `  Redis commands sent: ${pairs(p.redisCommands)}`,
    `  gate-store calls by call site:\n${sites(p.gateStoreCalls)}`,
    `  CPU (sampled ${p.sampledCpuMsPerDial} ms/dial) by module: ${pairs(Object.fromEntries(Object.entries(p.cpuByModule).slice(0, 14)), "%")}`,
    `  top functions by self time: ${p.topFunctions
      .slice(0, 12)
      .map((t) => `${t.fn} ${t.percent}%`)
      .join("; ")}`,
  ].join("\n");
}
