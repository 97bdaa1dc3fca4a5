/**
 * Logs that tell the story: one child logger per lead (leadId, never the phone) with each gate's
 * result at debug and each dial, defer, park and finish at info; a level that is off makes no child
 * and writes nothing.
 */
import pino, { type Logger } from "pino";
import { describe, expect, it, vi } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import { runVirtual, VirtualClock } from "../../src/infra/clock.js";
import { REDACT_PATHS } from "../../src/infra/logger.js";
import { SimulatedProvider } from "../../src/infra/providers/simulated.js";
import { HOUR, PHONES, T0 } from "../support/harness.js";

type Line = { level: number; leadId?: string; msg: string; [field: string]: unknown };

function memoryLogger(level: string): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino(
    { level, redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
    { write: (line: string) => void lines.push(JSON.parse(line) as Line) },
  );
  return { logger, lines };
}

/** Three leads on one single-line number: L1 dials at once, L2 and L3 park for the line, then dial. */
async function campaign(logger: Logger) {
  const clock = new VirtualClock(T0);
  let finished = 0;
  const provider = new SimulatedProvider({
    clock,
    default: { result: "placed", latencyMs: 100, callSeconds: 30, outcome: "ANSWERED" },
    onCallEnd: (end) => void dispatcher.callEnded(end),
  });
  const dispatcher = createDispatcher({
    clock,
    logger,
    providers: [provider],
    numbers: [{ id: "n1", e164: "+15550000001", provider: "sim", maxChannels: 1, pool: true }],
    templates: [{ id: "t1", resellerId: "r1" }],
  });
  dispatcher.on("lead:finished", () => finished++);
  await dispatcher.start();
  await dispatcher.submit(
    PHONES.slice(0, 3).map((phone, i) => ({ id: `L${i + 1}`, phone, templateId: "t1" })),
  );
  await runVirtual(clock, { until: T0 + HOUR, isDone: () => finished === 3 });
  await dispatcher.stop();
  expect(finished).toBe(3);
}

describe("the lead log", () => {
  it("at debug reads as each lead's trace: its gates, its dial and its finish, on its own child", async () => {
    const { logger, lines } = memoryLogger("debug");
    await campaign(logger);

    const story = (leadId: string) => lines.filter((l) => l.leadId === leadId).map((l) => l.msg);
    expect(story("L1")).toEqual([
      "claimed",
      "gate check: ok",
      "gate window: open",
      "gate precheck: proceed",
      "gate peek: allowed",
      "gate selectNumber: selected n1",
      "gate acquire: held n1",
      "gate record: recorded",
      "gate beginDial: written",
      "dial from n1",
      "dial result: placed",
      "gate makeCall: placed",
      "dialled: call placed",
      "finished: ANSWERED",
    ]);
    // The others waited for the line: parked and deferred (channel) before their own dial.
    for (const leadId of ["L2", "L3"]) {
      const msgs = story(leadId);
      expect(msgs).toContain("parked: waiting for a line on n1");
      expect(msgs).toContain("deferred: channel");
      expect(msgs.slice(-3)).toEqual(["gate makeCall: placed", "dialled: call placed", "finished: ANSWERED"]);
    }
    const info = lines.filter((l) => l.level === 30).map((l) => l.msg.split(":")[0]);
    expect(new Set(info)).toEqual(new Set(["dial from n1", "dialled", "parked", "deferred", "finished"]));
    expect(lines.filter((l) => l.msg.startsWith("gate ")).every((l) => l.level === 20)).toBe(true);

    const text = JSON.stringify(lines);
    for (const phone of PHONES.slice(0, 3)) expect(text).not.toContain(phone.slice(1));
  });

  it("at info keeps the dials, defers, parks and finishes and leaves out the gates", async () => {
    const { logger, lines } = memoryLogger("info");
    await campaign(logger);
    expect(lines.some((l) => l.msg === "finished: ANSWERED")).toBe(true);
    expect(lines.some((l) => l.msg.startsWith("gate ") || l.msg === "claimed")).toBe(false);
  });

  it("with the levels off makes no child logger and writes nothing", async () => {
    const { logger, lines } = memoryLogger("warn");
    const child = vi.spyOn(logger, "child");
    await campaign(logger);
    expect(child).not.toHaveBeenCalled();
    expect(lines).toEqual([]);
  });
});
