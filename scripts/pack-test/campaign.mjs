// A plain-JavaScript host of the installed package: a small campaign on the embedded default
// (in-memory stores, the wall clock) against the simulated provider. Exits 1 unless every lead
// finished ANSWERED with one dial each.
import { createDispatcher, SimulatedProvider, SystemClock } from "dialgate";

const LEADS = 12;
const clock = new SystemClock();
let dispatcher;
const provider = new SimulatedProvider({
  clock,
  default: { result: "placed", latencyMs: 5, callSeconds: 0.05, outcome: "ANSWERED" },
  onCallEnd: (end) => void dispatcher.callEnded(end),
});
dispatcher = createDispatcher({
  clock,
  providers: [provider],
  numbers: [
    { id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 2, pool: true },
    { id: "n2", e164: "+15550000002", provider: "sim", maxChannels: 2, pool: true },
  ],
  templates: [{ id: "reminders", resellerId: "acme" }],
});

const outcomes = new Map();
const allFinished = new Promise((resolve) => {
  dispatcher.on("lead:finished", ({ leadId, outcome }) => {
    outcomes.set(leadId, outcome);
    if (outcomes.size === LEADS) resolve();
  });
});
const timeout = setTimeout(() => {
  console.error(`campaign: only ${outcomes.size} of ${LEADS} leads finished in 30 s`);
  process.exit(1);
}, 30_000);

await dispatcher.start();
await dispatcher.submit(
  Array.from({ length: LEADS }, (_, i) => ({
    id: `lead-${i + 1}`,
    phone: `+1415555${String(100 + i).padStart(4, "0")}`,
    templateId: "reminders",
  })),
);
await allFinished;
clearTimeout(timeout);
await dispatcher.stop();

const answered = [...outcomes.values()].filter((o) => o === "ANSWERED").length;
const dials = provider.dials.length;
console.log(`campaign: ${outcomes.size} leads finished, ${answered} ANSWERED, ${dials} dials`);
if (answered !== LEADS || dials !== LEADS) process.exit(1);
