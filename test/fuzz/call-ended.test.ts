/**
 * Fuzzing `dispatcher.callEnded` payloads: a valid end signal (a callId or a dialRef, an outcome of
 * 1–50 characters) always gets an answer; anything else is refused with a ValidationError naming the
 * field (`callEnded.outcome`, `callEnded.callId`), and nothing changes in the store.
 */
import fc from "fast-check";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { createDispatcher } from "../../src/dispatcher.js";
import { VirtualClock } from "../../src/infra/clock.js";
import { errorOf, expectFieldError, garbageArb, RUNS } from "./support.js";

const silent = pino({ level: "silent" });
const KINDS = ["ended", "duplicate", "orphan", "pending"];

const refArb = fc.string({ minLength: 1, maxLength: 80 });
const outcomeArb = fc.string({ minLength: 1, maxLength: 50 });
const signalArb = fc.oneof(
  fc.record({ callId: refArb, outcome: outcomeArb }),
  fc.record({ dialRef: refArb, outcome: outcomeArb }),
  fc.record({ callId: refArb, dialRef: refArb, outcome: outcomeArb }),
);

describe("fuzz: callEnded payloads", () => {
  it("answers every valid end signal; one that no lead dialled is an orphan, or pending with only a call id", async () => {
    // A virtual clock: the retries of a pending end never run on their own here.
    const dispatcher = createDispatcher({ logger: silent, clock: new VirtualClock(0) });
    await fc.assert(
      fc.asyncProperty(signalArb, async (signal) => {
        const result = await dispatcher.callEnded(signal);
        // Only a call id: its dial may not have returned it yet (design §7.15).
        expect(result).toEqual("dialRef" in signal ? { kind: "orphan" } : { kind: "pending", leadId: null });
      }),
      RUNS,
    );
  });

  it("refuses a signal with one bad field by naming that field", async () => {
    const dispatcher = createDispatcher({ logger: silent });
    const broken = fc.oneof(
      signalArb.chain((s) =>
        fc
          .oneof(
            fc.constant(""),
            fc.string({ minLength: 51, maxLength: 80 }),
            fc.integer(),
            fc.constant(null),
          )
          .map((outcome) => ({ signal: { ...s, outcome }, field: "callEnded.outcome" })),
      ),
      fc.record({ outcome: outcomeArb }).map((signal) => ({ signal, field: "callEnded.callId" })),
      fc
        .tuple(outcomeArb, fc.constantFrom("", 42, null, ["id"]))
        .map(([outcome, callId]) => ({ signal: { callId, outcome }, field: "callEnded.callId" })),
      fc.tuple(outcomeArb, refArb, fc.constantFrom("", 7, {})).map(([outcome, callId, dialRef]) => ({
        signal: { callId, dialRef, outcome },
        field: "callEnded.dialRef",
      })),
    );
    await fc.assert(
      fc.asyncProperty(broken, async ({ signal, field }) => {
        expectFieldError(await errorOf(() => dispatcher.callEnded(signal as never)), "callEnded", field);
      }),
      RUNS,
    );
  });

  it("refuses unknown keys and anything that is not a signal with a ValidationError, never a crash", async () => {
    const dispatcher = createDispatcher({ logger: silent });
    const extraKey = fc
      .tuple(
        signalArb,
        fc.string({ minLength: 1 }).filter((k) => !["callId", "dialRef", "outcome", "__proto__"].includes(k)),
      )
      .map(([s, key]) => ({ ...s, [key]: "x" }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(garbageArb, extraKey), async (input) => {
        const error = await errorOf(() => dispatcher.callEnded(input as never));
        if (error === undefined) {
          // fc.anything() can build a valid signal: then it must have been answered.
          expect(KINDS).toContain((await dispatcher.callEnded(input as never)).kind);
        } else expectFieldError(error, "callEnded");
      }),
      RUNS,
    );
    expect(await dispatcher.store.list()).toEqual([]);
  });
});
