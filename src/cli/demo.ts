import cliProgress from "cli-progress";
import { createDispatcher, type Dispatcher } from "../dispatcher.js";
import { LogAlertSink } from "../infra/alerts/log-sink.js";
import { SlackAlertSink } from "../infra/alerts/slack.js";
import { ScaledClock } from "../infra/clock.js";
import { createLogger, envLogLevel } from "../infra/logger.js";
import { type SimPlan, SimulatedProvider } from "../infra/providers/simulated.js";
import type { Alert, LeadInput } from "../machines/ports.js";
import { randomStream } from "./simulate/random.js";

/** Virtual seconds per real second: an hour-long campaign plays in well under a minute. */
const SCALE = 90;
const LEADS = 300;
const PHONES = 160;

/**
 * `dialgate demo`: a small campaign on the embedded dispatcher, in (scaled) real time. Three
 * templates, three numbers with 2–3 lines, a provider that sometimes refuses, busies, or loses a
 * reply, a block list, and one template pinned to a disabled number (a misconfiguration).
 */
export async function demo(options: { seed?: number; slackWebhook?: string } = {}): Promise<number> {
  let slack: SlackAlertSink | undefined;
  try {
    slack = options.slackWebhook ? new SlackAlertSink({ webhookUrl: options.slackWebhook }) : undefined;
  } catch (error) {
    console.error(`dialgate: --slack-webhook: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  const random = randomStream(options.seed ?? 21, 0);
  const logger = createLogger(envLogLevel("silent"));
  const clock = new ScaledClock(Date.parse("2026-05-21T09:00:00Z"), SCALE);
  const alerts: Alert[] = [];
  let dispatcher: Dispatcher | undefined;
  const plans: Record<string, SimPlan[]> = {};
  const leads: LeadInput[] = [];
  for (let i = 1; i <= LEADS; i++) {
    const id = `L${i}`;
    plans[id] = [planFor(random)];
    leads.push({
      id,
      phone: `+9198${String(10_000_000 + ((i * 7919) % PHONES) * 1237).slice(0, 8)}`,
      templateId:
        i % 29 === 0
          ? "misconfigured"
          : (["reminders", "collections", "confirmations"][i % 3] ?? "reminders"),
      dueAt: clock.start + Math.floor(random() * 600_000),
    });
  }
  const provider = new SimulatedProvider({
    clock,
    perLead: plans,
    default: { result: "placed", latencyMs: 150, callSeconds: 40, outcome: "ANSWERED" },
    onCallEnd: (end) => void dispatcher?.callEnded(end),
  });
  dispatcher = createDispatcher({
    clock,
    random,
    providers: [provider],
    logger,
    // The summary lists what reached the sinks; the log and Slack (when set) get the same alerts.
    alertSinks: [
      { send: async (alert) => void alerts.push(alert) },
      new LogAlertSink(logger),
      ...(slack ? [slack] : []),
    ],
    config: {
      concurrency: 50,
      rateLimit: { rules: [{ maxCalls: 3, windowSeconds: 3600 }] },
      unknownDial: { holdMinutes: 5 },
    },
    numbers: [
      { id: "collections-line", e164: "+15550000001", provider: "sim", maxChannels: 3 },
      { id: "pool-a", e164: "+15550000002", provider: "sim", maxChannels: 2, pool: true },
      { id: "pool-b", e164: "+15550000003", provider: "sim", maxChannels: 3, pool: true },
      { id: "retired", e164: "+15550000009", provider: "legacy", maxChannels: 2, status: "DISABLED" },
    ],
    templates: [
      {
        id: "reminders",
        resellerId: "acme",
        retry: { maxAttempts: 2, onOutcomes: ["NO_ANSWER", "BUSY"], delaySeconds: 300 },
      },
      { id: "collections", resellerId: "acme", numberId: "collections-line" },
      { id: "confirmations", resellerId: "shopco" },
      { id: "misconfigured", resellerId: "shopco", numberId: "retired", provider: "legacy" },
    ],
    blockedPhones: [leads[4]?.phone ?? ""],
  });

  const ended = new Set<string>();
  const inCall = new Set<string>();
  dispatcher.on("lead:finished", ({ leadId }) => ended.add(leadId) && inCall.delete(leadId));
  dispatcher.on("lead:dialled", ({ leadId }) => inCall.add(leadId));
  dispatcher.on("lead:heldUnknown", ({ leadId }) => inCall.add(leadId));
  dispatcher.on("lead:deferred", ({ leadId }) => inCall.delete(leadId));
  await dispatcher.start();
  await dispatcher.submit(leads);
  console.log(
    `dialgate demo: ${LEADS} leads on ${PHONES} phones, 3 numbers / 8 lines, 3 calls per phone per hour; ` +
      `time runs ${SCALE}× (1 s = ${SCALE / 60} min)\n`,
  );
  await showProgress(
    dispatcher,
    () => ended.size,
    () => inCall.size,
    clock,
  );
  const { drained } = await dispatcher.stop();
  printSummary(dispatcher, alerts, await dispatcher.store.list(), drained);
  return 0;
}

function planFor(random: () => number): SimPlan {
  const r = random();
  const callSeconds = 20 + Math.floor(random() * 70);
  if (r < 0.05) return { result: "notPlaced" };
  if (r < 0.07) return { result: "unknown" };
  if (r < 0.15) return { result: "placed", callSeconds: 25, outcome: "NO_ANSWER" };
  if (r < 0.2) return { result: "placed", callSeconds: 5, outcome: "BUSY" };
  return { result: "placed", callSeconds, outcome: "ANSWERED" };
}

async function showProgress(
  dispatcher: Dispatcher,
  finished: () => number,
  inCall: () => number,
  clock: ScaledClock,
): Promise<void> {
  const tty = process.stdout.isTTY;
  const bar = new cliProgress.SingleBar(
    {
      format:
        "{bar} {value}/{total} finished | in call {inCall} | dials {dials} | waiting for a line {waits} | {clock}",
      hideCursor: true,
      noTTYOutput: !tty,
      notTTYSchedule: 5000,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(LEADS, 0, fields(dispatcher, inCall(), clock));
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      bar.update(finished(), fields(dispatcher, inCall(), clock));
      if (finished() >= LEADS) {
        clearInterval(tick);
        resolve();
      }
    }, 200);
  });
  bar.stop();
}

function fields(dispatcher: Dispatcher, inCall: number, clock: ScaledClock) {
  const s = dispatcher.stats();
  return {
    inCall,
    dials: s.dials,
    // How many are parked right now, not how often a lead found its lines busy.
    waits: s.waiting,
    clock: new Date(clock.now()).toISOString().slice(11, 19),
  };
}

function printSummary(
  dispatcher: Dispatcher,
  alerts: Alert[],
  leads: { status: string; outcome: string | null }[],
  drained: boolean,
): void {
  const s = dispatcher.stats();
  const rows: [string, string | number][] = [
    ["dials (makeCall)", s.dials],
    ["placed", s.placed],
    ["held unknown (no reply)", s.heldUnknown],
    ...Object.entries(s.deferred).map(([k, v]): [string, number] => [`deferred: ${k}`, v]),
    ...Object.entries(countBy(leads.map((l) => l.outcome ?? l.status))).map(([k, v]): [string, number] => [
      `finished: ${k}`,
      v,
    ]),
    ["gate: peeks", s.gates.peek],
    ["gate: records / rejected in race", `${s.gates.record} / ${s.gates.recordRejected}`],
    ["gate: channel exhausted", s.gates.channelExhausted],
    [
      "gate: channel rounds per dial",
      s.dials === 0
        ? "-"
        : ((s.gates.record + s.gates.recordRejected + s.gates.channelExhausted) / s.dials).toFixed(2),
    ],
    ["alerts sent (after throttle)", alerts.length],
    ["drained cleanly", drained ? "yes" : "no"],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log("\nsummary");
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
  if (alerts.length > 0) {
    console.log("\nalerts");
    for (const a of alerts) console.log(`  ${a.severity} ${a.kind.padEnd(20)} ${a.key}  ${a.message}`);
  }
}

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
