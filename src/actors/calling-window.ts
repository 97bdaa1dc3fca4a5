import { DateTime } from "luxon";
import type { CallingWindow } from "../machines/ports.js";

/**
 * Whether `now` is inside the window, evaluated in `zone` (spec §7.8), and otherwise the exact next
 * window start. Start is inclusive, end exclusive; end < start wraps past midnight. On a DST spring
 * gap luxon moves a non-existent start forward to the first real instant.
 */
export function windowDecision(
  window: CallingWindow | undefined,
  now: number,
  zone = window?.timeZone,
): { open: true } | { open: false; opensAt: number } {
  if (!window || !zone) return { open: true };
  const local = DateTime.fromMillis(now, { zone });
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  const minute = local.hour * 60 + local.minute;
  const open = start <= end ? minute >= start && minute < end : minute >= start || minute < end;
  if (open || start === end) return { open: true };
  const [hour, min] = [Math.floor(start / 60), start % 60];
  let opens = local.set({ hour, minute: min, second: 0, millisecond: 0 });
  if (opens.toMillis() <= now)
    opens = local.plus({ days: 1 }).set({ hour, minute: min, second: 0, millisecond: 0 });
  return { open: false, opensAt: opens.toMillis() };
}

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}
