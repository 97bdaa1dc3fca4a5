import { DateTime, IANAZone } from "luxon";
import type { CallingWindow } from "../machines/ports.js";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

/**
 * Whether `now` is inside the window, evaluated in `zone` (design §7.8), and otherwise the exact next
 * instant it opens. Start is inclusive, end exclusive (whole minutes of the local wall clock); end <
 * start wraps past midnight; start = end is always open. `now` is the decision's one clock reading.
 *
 * Across DST changes the next opening is the first instant at which the local wall clock is inside
 * the window: a start that falls in a spring-forward gap opens at the end of the gap when the window
 * is still open then (02:30–05:00 opens at 03:00 on that day), and not at all that day when the whole
 * window lies in the gap; a start in a fall-back overlap opens at its first occurrence, and again at
 * its second when the window closed in between.
 */
export function windowDecision(
  window: CallingWindow | undefined,
  now: number,
  zone = window?.timeZone,
): { open: true } | { open: false; opensAt: number } {
  if (!window || !zone) return { open: true };
  const rule = { start: minutesOf(window.start), end: minutesOf(window.end), zone };
  if (rule.start === rule.end || isOpenAt(rule, now)) return { open: true };
  return { open: false, opensAt: nextOpening(rule, now) };
}

interface Rule {
  /** Minutes after local midnight. */
  start: number;
  end: number;
  zone: string;
}

function isOpenAt({ start, end, zone }: Rule, at: number): boolean {
  const local = DateTime.fromMillis(at, { zone });
  const minute = local.hour * 60 + local.minute;
  return start <= end ? minute >= start && minute < end : minute >= start || minute < end;
}

/**
 * The window opens either where the wall clock reaches `start` (once per local day, twice in a
 * fall-back overlap, never in a spring-forward gap) or where a DST transition makes the wall clock
 * jump into the window. Both kinds of instant are found and the earliest one after `now` wins.
 */
function nextOpening(rule: Rule, now: number): number {
  const zone = IANAZone.create(rule.zone);
  const offsetAt = (t: number) => zone.offset(t);
  const today = DateTime.fromMillis(now, { zone: rule.zone }).startOf("day");
  // Every offset the zone uses around these days: a wall time is checked against each of them.
  const offsets = new Set<number>();
  for (let k = -2; k <= 8; k++) offsets.add(offsetAt(now + k * 12 * HOUR_MS));

  let best = Number.POSITIVE_INFINITY;
  for (let day = 0; day <= 3 && best === Number.POSITIVE_INFINITY; day++) {
    const date = today.plus({ days: day });
    const wall = Date.UTC(date.year, date.month - 1, date.day, 0, rule.start);
    for (const offset of offsets) {
      const at = wall - offset * MINUTE_MS;
      // The wall clock reads `start` at `at` only when the zone uses that offset then.
      if (at > now && at < best && offsetAt(at) === offset) best = at;
    }
  }
  // Never reached with real zones (a start exists at least every other day); look again in a day.
  if (best === Number.POSITIVE_INFINITY) return now + 24 * HOUR_MS;
  const transition = firstTransition(offsetAt, now, best);
  return transition !== null && isOpenAt(rule, transition) ? transition : best;
}

/** The first instant in (from, to] at which the zone's offset differs from its offset at `from`. */
function firstTransition(offsetAt: (t: number) => number, from: number, to: number): number | null {
  const before = offsetAt(from);
  if (offsetAt(to) === before) return null;
  let [lo, hi] = [from, to];
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(mid) === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}
