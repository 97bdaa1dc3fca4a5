import type { LeadStore, RateRule } from "../machines/ports.js";

/** The largest window of `rules` in ms, 0 for none. */
export function largestWindowMs(rules: readonly RateRule[] | undefined): number {
  return Math.max(0, ...(rules ?? []).map((rule) => rule.windowSeconds * 1000));
}

/**
 * How long a phone's rate-limit records must be kept: the largest window of every rule in force —
 * the config's, every template's own (and whatever later source of rules widens it). One sorted set
 * per phone serves every template that calls it (design §7.6), so a template with a short rule must not
 * trim records another template's longer rule still counts. It never narrows while the process
 * runs: a record kept too long costs memory, one dropped too early costs an extra call.
 */
export class RuleWindows {
  #keepMs: number;

  constructor(configRules: readonly RateRule[]) {
    this.#keepMs = largestWindowMs(configRules);
  }

  get keepMs(): number {
    return this.#keepMs;
  }

  /** Rules seen in force (a template read by a lead, an upsert). */
  widen(rules: readonly RateRule[] | undefined): void {
    this.#keepMs = Math.max(this.#keepMs, largestWindowMs(rules));
  }

  /**
   * Reads every stored template's rules: templates another process added count here too, at the
   * latest by the next refresh (the dispatcher refreshes at start and every minute).
   */
  async refresh(store: Pick<LeadStore, "templateWindowMs">): Promise<void> {
    this.#keepMs = Math.max(this.#keepMs, await store.templateWindowMs());
  }
}
