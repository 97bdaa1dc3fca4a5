/**
 * Reading the DIALGATE_SIM_LOG files of several `dialgate run` processes and measuring, from what the
 * simulated providers saw, the invariants of design §1 (simulate.md "invariants").
 */
import { readFile } from "node:fs/promises";
import type { SimLogLine } from "../../src/cli/run.js";

export type Dial = SimLogLine;

/** Every dial once: a dial has a line when invoked and one when its result came; the last one wins. */
export async function readDials(files: string[]): Promise<Dial[]> {
  const byRef = new Map<string, Dial>();
  for (const file of files) {
    const text = await readFile(file, "utf8").catch(() => "");
    const lines = text.split("\n");
    // What follows the last newline is a line its process is still writing (the file is read while
    // the processes run): not a line yet.
    lines.pop();
    for (const line of lines) {
      if (line.trim() === "") continue;
      const dial = JSON.parse(line) as Dial;
      const seen = byRef.get(dial.dialRef);
      if (seen && seen.pid !== dial.pid) throw new Error(`dialRef ${dial.dialRef} dialled by two processes`);
      if (!seen || dial.resultAt !== null) byRef.set(dial.dialRef, dial);
    }
  }
  return [...byRef.values()].sort((a, b) => a.at - b.at);
}

export const isPlaced = (dial: Dial) => dial.result === "placed";

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    groups.set(k, [...(groups.get(k) ?? []), item]);
  }
  return groups;
}

/** Placed dials per (leadId, attempt) that has more than one. */
export function duplicatePlacedAttempts(dials: Dial[]): Dial[][] {
  return [...groupBy(dials.filter(isPlaced), (d) => `${d.leadId}#${d.attempt}`).values()].filter(
    (group) => group.length > 1,
  );
}

/**
 * Most placed calls to one phone inside any half-open window `[t, t + windowMs)`. The provider sees a
 * dial a few milliseconds after its rate-limit record (the dial row is written in between), so the
 * caller may shorten the window by that slack; a real excess still shows.
 */
export function maxPlacedPerPhoneInWindow(
  dials: Dial[],
  windowMs: number,
): { phoneKey: string; count: number; window: Dial[] } {
  let worst: { phoneKey: string; count: number; window: Dial[] } = { phoneKey: "", count: 0, window: [] };
  for (const [phoneKey, group] of groupBy(dials.filter(isPlaced), (d) => d.phoneKey)) {
    const placed = group.sort((a, b) => a.at - b.at);
    for (let first = 0, last = 0; last < placed.length; last++) {
      while (placed[last].at >= placed[first].at + windowMs) first++;
      if (last - first + 1 > worst.count)
        worst = { phoneKey, count: last - first + 1, window: placed.slice(first, last + 1) };
    }
  }
  return worst;
}

/**
 * Most calls at once per number, from the intervals the lines were busy as the provider saw them:
 * placed calls `[at, endsAt)`; a dial with no result (its process died mid-dial) holds its line as an
 * unknown dial for `unresolvedHoldMs`.
 */
export function maxConcurrentByNumber(dials: Dial[], unresolvedHoldMs: number): Map<string, number> {
  const result = new Map<string, number>();
  for (const [numberId, group] of groupBy(dials, (d) => d.numberId)) {
    const events: [number, number][] = [];
    for (const d of group) {
      const end = isPlaced(d) ? d.endsAt : d.result === null ? d.at + unresolvedHoldMs : null;
      if (end === null) continue;
      events.push([d.at, 1], [end, -1]);
    }
    // Ends before starts at the same instant: the intervals are half-open.
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let now = 0;
    let most = 0;
    for (const [, delta] of events) {
      now += delta;
      most = Math.max(most, now);
    }
    result.set(numberId, most);
  }
  return result;
}

/** Pairs of placed calls of one lead that were in progress at the same time. */
export function overlappingCallsOfALead(dials: Dial[]): [Dial, Dial][] {
  const overlaps: [Dial, Dial][] = [];
  for (const group of groupBy(dials.filter(isPlaced), (d) => d.leadId).values()) {
    for (let i = 1; i < group.length; i++) {
      const before = group[i - 1];
      if (before.endsAt !== null && group[i].at < before.endsAt) overlaps.push([before, group[i]]);
    }
  }
  return overlaps;
}

export function placedPerLead(dials: Dial[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of dials.filter(isPlaced)) counts.set(d.leadId, (counts.get(d.leadId) ?? 0) + 1);
  return counts;
}
