import { z } from "zod";
import { maskPhoneLike } from "../infra/mask.js";
import type { Clock, LeadRecord, PreDialCheck, Template } from "../machines/ports.js";

/** A pre-dial check that threw, answered something that is not a verdict, or ran out of time. */
export class PreDialCheckError extends Error {
  override readonly name = "PreDialCheckError";
  constructor(
    readonly leadId: string,
    /** Position of the check in DispatcherOptions.preDialChecks. */
    readonly check: number,
    readonly problem: "threw" | "invalid" | "timeout",
    options?: { cause?: unknown },
  ) {
    super(`preDialChecks[${check}] ${problemText[problem]} for lead ${leadId}`, options);
  }
}

const problemText = {
  threw: "threw",
  invalid: "answered no valid verdict",
  timeout: "did not answer in time",
} as const;

/** The longest abort reason kept; the rest is the host's to log. */
const MAX_REASON_CHARS = 200;

const verdictSchema = z.discriminatedUnion("action", [
  z.object({ action: z.literal("proceed") }),
  z.object({ action: z.literal("abort"), reason: z.string() }),
  z.object({
    action: z.literal("defer"),
    seconds: z
      .number()
      .positive()
      .max(31 * 86400),
  }),
]);

export type PreDialOutcome =
  | { action: "proceed" }
  | { action: "abort"; reason: string }
  /** `failed`: how many checks threw, answered nonsense or timed out (they defer by the failure defer). */
  | { action: "defer"; seconds: number; failed: number };

type Answer = PreDialOutcome | { action: "failed" };

export interface PreDialRun {
  checks: readonly PreDialCheck[];
  lead: LeadRecord;
  template: Template;
  clock: Clock;
  timeoutMs: number;
  failureDeferSeconds: number;
  /** The attempt's own signal: aborted when the actor stops prechecking. */
  signal: AbortSignal;
  onError: (error: PreDialCheckError) => void;
}

/**
 * Runs every check at once under one deadline and combines their verdicts: an abort wins (the first
 * in list order), then the longest defer, where a check that threw, answered nonsense or missed the
 * deadline asks for the failure defer; the lead proceeds only when every check said so.
 */
export async function runPreDialChecks(run: PreDialRun): Promise<PreDialOutcome> {
  const { checks, lead, clock } = run;
  const controller = new AbortController();
  let timedOut = false;
  const stopWith = () => controller.abort(run.signal.reason);
  run.signal.addEventListener("abort", stopWith, { once: true });
  const timer = clock.setTimer(clock.now() + run.timeoutMs, () => {
    timedOut = true;
    controller.abort(new Error(`pre-dial checks timed out after ${run.timeoutMs} ms`));
  });
  const answers: (Answer | undefined)[] = checks.map(() => undefined);
  try {
    await new Promise<void>((resolve) => {
      let left = checks.length;
      controller.signal.addEventListener("abort", () => resolve(), { once: true });
      checks.forEach((check, i) => {
        void answerOf(check, i).then((answer) => {
          if (controller.signal.aborted) return;
          answers[i] = answer;
          left -= 1;
          if (left === 0 || answer.action === "abort") resolve();
        });
      });
    });
  } finally {
    timer.cancel();
    run.signal.removeEventListener("abort", stopWith);
    // Checks still running are told to stop: nobody waits for their answer any more.
    if (!controller.signal.aborted) controller.abort(new Error("pre-dial checks settled"));
  }

  if (timedOut) {
    answers.forEach((answer, i) => {
      if (answer === undefined) run.onError(new PreDialCheckError(lead.id, i, "timeout"));
    });
  }
  const abort = answers.find((a) => a?.action === "abort");
  if (abort?.action === "abort") return abort;
  const failed = answers.filter((a) => a === undefined || a.action === "failed").length;
  let seconds = failed > 0 ? run.failureDeferSeconds : 0;
  for (const a of answers) if (a?.action === "defer") seconds = Math.max(seconds, a.seconds);
  return seconds > 0 ? { action: "defer", seconds, failed } : { action: "proceed" };

  async function answerOf(check: PreDialCheck, i: number): Promise<Answer> {
    let raw: unknown;
    try {
      // Copies: a check that edits what it was given changes nothing of the attempt.
      const context = { lead: structuredClone(lead), template: structuredClone(run.template) };
      raw = await check({ ...context, signal: controller.signal });
    } catch (error) {
      if (!controller.signal.aborted)
        run.onError(new PreDialCheckError(lead.id, i, "threw", { cause: error }));
      return { action: "failed" };
    }
    const parsed = verdictSchema.safeParse(raw);
    if (!parsed.success) {
      if (!controller.signal.aborted)
        run.onError(new PreDialCheckError(lead.id, i, "invalid", { cause: parsed.error }));
      return { action: "failed" };
    }
    const verdict = parsed.data;
    if (verdict.action === "abort")
      return {
        action: "abort",
        reason: maskPhoneLike(verdict.reason).slice(0, MAX_REASON_CHARS) || "aborted",
      };
    if (verdict.action === "defer") return { action: "defer", seconds: verdict.seconds, failed: 0 };
    return verdict;
  }
}
