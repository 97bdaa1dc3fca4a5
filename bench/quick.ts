/**
 * `npm run bench:quick`: the dialgate side of the bench only, for a look while changing the code — a
 * warm-up, BENCH_QUICK_RUNS (default 2) backlog runs, one half-peak run and a CPU profile. Prints each
 * run; writes nothing. The figures to quote come from `npm run bench`.
 */
import { type RunResult, Side } from "./lib/protocol.js";
import { briefRun } from "./lib/report.js";
import { startServers } from "./lib/servers.js";

const LEADS = Number(process.env.BENCH_LEADS ?? 4000);
const RUNS = Number(process.env.BENCH_QUICK_RUNS ?? 2);

const show = (r: RunResult) => console.info(`${r.label.padEnd(16)} ${briefRun(r)}`);

const servers = await startServers();
const side = new Side("dialgate-side.ts", {
  REDIS_URL: servers.redisUrl,
  DATABASE_URL: servers.databaseUrl,
  BENCH_SCHEMA: servers.freshSchema(),
});
try {
  const ready = await side.next();
  if (ready.type !== "ready") throw new Error(JSON.stringify(ready));
  show(await side.run({ mode: "peak", leads: LEADS / 2, rate: null, label: "warm-up" }));
  const peaks: number[] = [];
  for (let i = 1; i <= RUNS; i++) {
    const r = await side.run({ mode: "peak", leads: LEADS, rate: null, label: `backlog ${i}` });
    peaks.push(r.dialsPerSecond);
    show(r);
  }
  const rate = Math.max(1, Math.round(Math.max(...peaks) / 2));
  show(await side.run({ mode: "paced", leads: rate * 4, rate, label: `paced ${rate}/s` }));
  if (process.env.BENCH_QUICK_PROFILE !== "0") {
    const r = await side.run({ mode: "peak", leads: LEADS, rate: null, label: "profile", profile: "cpu" });
    show(r);
    console.info(JSON.stringify(r.profile, null, 1));
  }
} finally {
  await side.close();
  await servers.stop();
}
