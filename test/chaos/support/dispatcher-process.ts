/**
 * A dispatcher in a process of its own, for the chaos test that SIGKILLs one mid-dial. Wired as
 * `dialgate run` wires it (connectBackend, LISTEN, the sweep); its provider is the test's
 * ChaosProvider over HTTP, so the calls it placed outlive it. Writes "started" on stdout when it
 * claims. Settings come from the environment: REDIS_URL, DATABASE_URL, CHAOS_SCHEMA, CHAOS_PREFIX,
 * CHAOS_PROVIDER_URL, CHAOS_SOURCE, CHAOS_CONFIG (JSON).
 */
import pino from "pino";
import { createDispatcher } from "../../../src/dispatcher.js";
import { connectBackend } from "../../../src/infra/backend.js";
import { SystemClock } from "../../../src/infra/clock.js";
import type { DialResult, Provider } from "../../../src/machines/ports.js";
import { NUMBERS, SECRET, TEMPLATE } from "./campaign.js";

const env = process.env as Record<string, string>;
const silent = pino({ level: "silent" });
const source = Number(env.CHAOS_SOURCE);

const provider: Provider = {
  name: "sim",
  async makeCall({ signal, ...call }) {
    try {
      const res = await fetch(`${env.CHAOS_PROVIDER_URL}/calls`, {
        method: "POST",
        body: JSON.stringify({ ...call, source }),
        signal,
      });
      return (await res.json()) as DialResult;
    } catch {
      // The request may have reached the provider: never assume it did not ring.
      return { kind: "unknown", reason: signal.aborted ? "timeout" : "no usable reply" };
    }
  },
};

const backend = await connectBackend({
  redisUrl: env.REDIS_URL,
  databaseUrl: env.DATABASE_URL,
  prefix: env.CHAOS_PREFIX,
  schema: env.CHAOS_SCHEMA,
  commandTimeoutMs: JSON.parse(env.CHAOS_CONFIG).store.commandTimeoutMs,
  poolSize: 4,
  logger: silent,
});
const dispatcher = createDispatcher({
  config: JSON.parse(env.CHAOS_CONFIG),
  leadStore: backend.leadStore,
  gateStore: backend.gateStore,
  providers: [provider],
  clock: new SystemClock(),
  logger: silent,
  hmacSecret: SECRET,
  owner: `chaos-victim-${process.pid}`,
  sweepEveryMs: 1000,
  numbers: NUMBERS,
  templates: [TEMPLATE],
});
dispatcher.on("error", () => {});
await backend.onLeadsAdded(() => dispatcher.poke());
await dispatcher.start();
process.stdout.write("started\n");
