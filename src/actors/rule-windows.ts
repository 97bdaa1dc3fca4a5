import { largestWindowMs, templateCooldowns, templateRules } from "../infra/calling-law.js";
import type { CooldownRule, LeadStore, RateRule, Template } from "../machines/ports.js";

/**
 * How long a phone's rate-limit records must be kept: the largest window of every rule in force —
 * the config's, every template's own, its presets' and regions' (and whatever later source of rules
 * widens it). One sorted set per phone serves every template that calls it (design §7.6), so a
 * template with a short rule must not trim records another template's longer rule still counts. It
 * never narrows while the process runs: a record kept too long costs memory, one dropped too early
 * costs an extra call.
 *
 * Likewise the cooldowns in force: which call ends must be remembered for the phone (their outcome is
 * listed by some cooldown), and for how long (the longest cooldown listing it).
 */
export class RuleWindows {
  #keepMs: number;
  /** Outcome → the longest cooldown (ms) that lists it. */
  readonly #cooling = new Map<string, number>();
  /** Template objects already counted: each lead and each call end reads its template again. */
  readonly #seen = new WeakSet<Template>();

  constructor(configRules: readonly RateRule[]) {
    this.#keepMs = largestWindowMs(configRules);
  }

  get keepMs(): number {
    return this.#keepMs;
  }

  /** Every rule and cooldown the template may apply to some callee (an upsert, a lead, a call end). */
  widenTemplate(template: Template): void {
    if (this.#seen.has(template)) return;
    this.#seen.add(template);
    this.#keepMs = Math.max(this.#keepMs, largestWindowMs(templateRules(template)));
    this.#cool(templateCooldowns(template));
  }

  /** How long an end with `outcome` must be remembered; 0 when no cooldown in force lists it. */
  coolingMs(outcome: string): number {
    return this.#cooling.get(outcome) ?? 0;
  }

  /** The ends to remember, for the rebuild (design §7.13): the outcomes and the longest cooldown. */
  cooling(): { ms: number; outcomes: string[] } {
    return { ms: Math.max(0, ...this.#cooling.values()), outcomes: [...this.#cooling.keys()].sort() };
  }

  /**
   * Reads every stored template's rules and cooldowns: templates another process added count here
   * too, at the latest by the next refresh (the dispatcher refreshes at start and every minute).
   */
  async refresh(store: Pick<LeadStore, "templateWindowMs" | "templateCooldowns">): Promise<void> {
    const [windowMs, cooldowns] = await Promise.all([store.templateWindowMs(), store.templateCooldowns()]);
    this.#keepMs = Math.max(this.#keepMs, windowMs);
    this.#cool(cooldowns);
  }

  #cool(cooldowns: readonly CooldownRule[]): void {
    for (const { seconds, afterOutcomes } of cooldowns)
      for (const outcome of afterOutcomes)
        this.#cooling.set(outcome, Math.max(this.#cooling.get(outcome) ?? 0, seconds * 1000));
  }
}
