/**
 * The gate actor: one long-lived actor per process runs the gate steps of every lead actor
 * and answers each by event to its `replyTo`.
 */
import { describe, expect, it, vi } from "vitest";
import { createActor } from "xstate";
import { type GateSteps, gateActorLogic, requestGate } from "../../src/actors/gates.js";
import { settle } from "../../src/infra/clock.js";
import { type CheckOutput, leadMachine } from "../../src/machines/lead-machine.js";
import type { LeadRecord } from "../../src/machines/ports.js";
import { PHONES } from "../support/harness.js";

const lead = (id: string, phone: string): LeadRecord =>
  ({ id, phone, templateId: "tpl-1", token: `${id}:1`, precheckDefers: 0, notPlacedStreak: 0 }) as LeadRecord;

/** Steps whose check waits for the test; every other step must not be reached here. */
function stepsWithManualCheck() {
  const answers = new Map<string, (output: CheckOutput) => void>();
  const check = vi.fn(
    ({ lead: l }: { lead: LeadRecord }) => new Promise<CheckOutput>((resolve) => answers.set(l.id, resolve)),
  );
  const unreachable = () => Promise.reject(new Error("not reached in this test"));
  const steps = {
    check,
    window: unreachable,
    precheck: unreachable,
    peek: unreachable,
    selectNumber: unreachable,
    acquire: unreachable,
    record: unreachable,
    beginDial: unreachable,
    makeCall: unreachable,
    release: unreachable,
  } as unknown as GateSteps;
  return { steps, check, answer: (id: string, output: CheckOutput) => answers.get(id)?.(output) };
}

describe("the gate actor", () => {
  it("answers each lead actor on its own replyTo, whatever the order of the answers", async () => {
    const { steps, check, answer } = stepsWithManualCheck();
    const gates = createActor(gateActorLogic(steps)).start();
    const machine = leadMachine.provide({ actions: { request: requestGate(gates) } });
    const a = createActor(machine, {
      input: { lead: lead("A", PHONES[0] as string) },
      parent: gates,
    }).start();
    const b = createActor(machine, {
      input: { lead: lead("B", PHONES[1] as string) },
      parent: gates,
    }).start();
    expect(check).toHaveBeenCalledTimes(2);

    answer("B", { kind: "finish", outcome: "BLACKLISTED" });
    answer("A", { kind: "finish", outcome: "EXPIRED" });
    await vi.waitFor(() => expect(a.getSnapshot().status).toBe("done"));
    await vi.waitFor(() => expect(b.getSnapshot().status).toBe("done"));

    expect(a.getSnapshot().output).toEqual({ end: "finished", outcome: "EXPIRED" });
    expect(b.getSnapshot().output).toEqual({ end: "finished", outcome: "BLACKLISTED" });
    // Their done events reached the gate actor (their parent) and left it serving.
    expect(gates.getSnapshot().status).toBe("active");
  });

  it("drops the reply to a lead that was stopped before its hold; the lead's end stays the stop's", async () => {
    const { steps, answer } = stepsWithManualCheck();
    const gates = createActor(gateActorLogic(steps)).start();
    const machine = leadMachine.provide({ actions: { request: requestGate(gates) } });
    const a = createActor(machine, { input: { lead: lead("A", PHONES[0] as string) }, parent: gates });
    const errors: unknown[] = [];
    a.subscribe({ error: (error) => errors.push(error) });
    a.start();

    a.send({ type: "STOP", reason: "cancel" });
    expect(a.getSnapshot().output).toEqual({ end: "dropped" });
    const send = vi.spyOn(a, "send");
    answer("A", { kind: "ok", template: { id: "tpl-1", resellerId: "r" }, rules: [] });
    await settle();

    expect(errors).toEqual([]);
    expect(send).not.toHaveBeenCalled();
    expect(a.getSnapshot().output).toEqual({ end: "dropped" });
    expect(gates.getSnapshot().status).toBe("active");
  });
});
