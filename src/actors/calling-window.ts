import { DateTime, IANAZone } from "luxon";
import type { CallingWindow, WindowHours } from "../machines/ports.js";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** How far ahead one window's opening is looked for: a year of holidays and a week of weekdays fit. */
const HORIZON_DAYS = 400;
/** How far ahead an instant when every window is open in every zone is looked for. */
const JOINT_HORIZON_DAYS = 35;
/** Decisions of this UTC minute, by law: every edge falls on a whole minute, so they hold all minute. */
const memo = new Map<string, { minute: number; decision: WindowDecision }>();
const MEMO_MAX = 1000;
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

export type WindowDecision = { open: true } | { open: false; opensAt: number };

/**
 * Whether `now` is inside the window, evaluated in `zone` (design §7.8), and otherwise the exact next
 * instant it opens. Start is inclusive, end exclusive (whole minutes of the local wall clock); end <
 * start wraps past midnight; start = end is always open (on its days, from `start` for 24 hours, when
 * it has days or excluded dates). `now` is the decision's one clock reading.
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
): WindowDecision {
  if (!window || !zone) return { open: true };
  return lawWindowDecision([window], [zone], now);
}

/**
 * A lead's calling law (design §7.8): open when every window is open in every zone at once, and
 * otherwise the first instant they all are. Each window's next opening moves the instant on until
 * none is closed; no common instant within 35 days looks again a day later. The leads of one law
 * share one decision per minute (a number of many zones costs milliseconds to decide).
 */
export function lawWindowDecision(
  windows: readonly WindowHours[],
  zones: readonly string[],
  now: number,
): WindowDecision {
  const key = `${zones.join(" ")}|${JSON.stringify(windows)}`;
  const minute = Math.floor(now / MINUTE_MS);
  const known = memo.get(key);
  if (known?.minute === minute) return known.decision;
  const decision = decideLaw(windows, zones, now);
  if (memo.size >= MEMO_MAX) memo.clear();
  memo.set(key, { minute, decision });
  return decision;
}

function decideLaw(windows: readonly WindowHours[], zones: readonly string[], now: number): WindowDecision {
  const rules = windows.flatMap((w) => zones.map((zone) => ruleOf(w, zone))).filter((r) => !r.always);
  let at = now;
  while (at - now <= JOINT_HORIZON_DAYS * DAY_MS) {
    const closed = rules.find((rule) => !isOpenAt(rule, at));
    if (!closed) return at === now ? { open: true } : { open: false, opensAt: at };
    at = nextOpening(closed, at);
  }
  return { open: false, opensAt: now + DAY_MS };
}

interface Rule {
  /** Minutes after local midnight. */
  start: number;
  end: number;
  zone: string;
  /** Luxon weekdays (1 = Monday) the window opens on; all when null. */
  days: Set<number> | null;
  /** Local dates (YYYY-MM-DD) it does not open on. */
  excluded: Set<string>;
  /** Open at every instant: start = end with no days and no excluded dates. */
  always: boolean;
}

function ruleOf(window: WindowHours, zone: string): Rule {
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  const days = window.days ? new Set(window.days.map((d) => WEEKDAYS.indexOf(d) + 1)) : null;
  const excluded = new Set(window.excludeDates ?? []);
  return { start, end, zone, days, excluded, always: start === end && !days && excluded.size === 0 };
}

/** Whether the window may open on this local date (its weekday listed, the date not excluded). */
function opensOn(rule: Rule, date: DateTime): boolean {
  if (rule.days && !rule.days.has(date.weekday)) return false;
  return rule.excluded.size === 0 || !rule.excluded.has(date.toISODate() as string);
}

function isOpenAt(rule: Rule, at: number): boolean {
  const { start, end, zone } = rule;
  const local = DateTime.fromMillis(at, { zone });
  const minute = local.hour * 60 + local.minute;
  // The local day whose window `at` falls in: a wrapping window (or a 24-hour one) belongs to the
  // day it opened.
  let opened: DateTime | null;
  if (start < end) opened = minute >= start && minute < end ? local : null;
  else if (minute >= start) opened = local;
  else opened = minute < end ? local.startOf("day").minus({ days: 1 }) : null;
  return opened !== null && opensOn(rule, opened);
}

/**
 * The window opens either where the wall clock reaches `start` on a day it opens (once per local day,
 * twice in a fall-back overlap, never in a spring-forward gap) or where a DST transition makes the wall
 * clock jump into the window. Both kinds of instant are found and the earliest one after `now` wins.
 */
function nextOpening(rule: Rule, now: number): number {
  const zone = IANAZone.create(rule.zone);
  const offsetAt = (t: number) => zone.offset(t);
  const today = DateTime.fromMillis(now, { zone: rule.zone }).startOf("day");

  let best = Number.POSITIVE_INFINITY;
  for (let day = 0; day <= HORIZON_DAYS && best === Number.POSITIVE_INFINITY; day++) {
    const date = today.plus({ days: day });
    if (!opensOn(rule, date)) continue;
    const wall = Date.UTC(date.year, date.month - 1, date.day, 0, rule.start);
    // Every offset the zone uses around that day: the wall time is checked against each of them.
    const offsets = new Set<number>();
    for (let k = -3; k <= 3; k++) offsets.add(offsetAt(wall + k * 12 * HOUR_MS));
    for (const offset of offsets) {
      const at = wall - offset * MINUTE_MS;
      // The wall clock reads `start` at `at` only when the zone uses that offset then.
      if (at > now && at < best && offsetAt(at) === offset) best = at;
    }
  }
  // No day within the horizon opens (every one excluded): look again in a day.
  if (best === Number.POSITIVE_INFINITY) return now + DAY_MS;
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
