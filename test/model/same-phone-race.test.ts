/**
 * The race-reject for real (design §2 step 6, §7.5): N lead actors on one phone pass the read-only peek
 * together; the atomic record lets exactly max − count through, and every loser gives back its line,
 * never dials, and waits until the window has room (plus a jitter under a second). Once in memory,
 * once on Redis + Postgres (the record is one Lua script there).
 */
import { describe, expect, it } from "vitest";
import { memoryBackend, realBackend, type TestBackend, useBackend } from "../support/backends.js";
import { createHarness, HOUR, MINUTE, PHONE, SECOND, T0 } from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const MAX = 7;
const RULES = [{ maxCalls: MAX, windowSeconds: 3600 }];
/** rateLimit.marginMs by default: room returns this long after the window (the provider's view). */
const MARGIN_MS = 250;

async function race(backend: TestBackend, n: number, alreadyRecorded: number) {
  const h = await createHarness({
    backend,
    numbers: [{ id: "num-1", e164: "+15550000001", provider: "sim", maxChannels: 50, pool: true }],
    provider: (clock) => new ScriptedProvider(clock),
  });
  // Earlier calls of this phone, 10 minutes ago, a second apart: the oldest frees room at T0 + 50 min.
  const earlier = Array.from({ length: alreadyRecorded }, (_, i) => T0 - 10 * MINUTE + i * SECOND);
  for (const [i, at] of earlier.entries()) await h.direct.record(h.key(PHONE), `earlier-${i}`, RULES, at);

  const ids = Array.from({ length: n }, (_, i) => `race-${i}`);
  await h.dispatcher.submit(ids.map((id) => ({ id, phone: PHONE, templateId: "tpl-1" })));
  await h.settle();

  const rateCalls = h.gates.calls.filter((c) => c.subject === h.key(PHONE));
  const firstRecord = rateCalls.findIndex((c) => c.op === "record");
  const winners = Math.max(0, Math.min(n, MAX - alreadyRecorded));
  // The room time: with the bucket full, the oldest record in the window plus the window and margin.
  const all = [...earlier, ...Array.from({ length: winners }, () => T0)].sort((a, b) => a - b);
  const roomAt = all[all.length - MAX] + HOUR + MARGIN_MS;
  return { h, ids, rateCalls, firstRecord, winners, roomAt };
}

const BACKENDS = [memoryBackend, realBackend({ isolation: "schema" })];

describe.each(BACKENDS)("N lead actors on one phone at once, on $name", (backend) => {
  useBackend(backend);
  for (const [n, count] of [
    [6, 3],
    [10, 0],
    [4, 3],
  ] as const) {
    it(`N=${n} with ${count} already recorded and max ${MAX}: exactly ${Math.max(0, Math.min(n, MAX - count))} dial`, async () => {
      const { h, ids, rateCalls, firstRecord, winners, roomAt } = await race(backend, n, count);

      // The race was real: every actor peeked (and was allowed) before the first record.
      expect(firstRecord).toBeGreaterThanOrEqual(n);
      expect(rateCalls.slice(0, n).map((c) => c.op)).toEqual(ids.map(() => "peek"));
      expect(h.of("gate:result").filter((r) => r.gate === "peek" && r.verdict === "allowed")).toHaveLength(n);
      expect(h.gates.count("record", h.key(PHONE))).toBe(n);

      // Exactly max − count dial; the count grows by exactly that.
      const dialled = new Set(h.provider.calls.map((c) => c.req.leadId));
      expect(h.provider.calls).toHaveLength(winners);
      expect(dialled.size).toBe(winners);
      expect(await h.members(PHONE)).toHaveLength(count + winners);

      const losers = ids.filter((id) => !dialled.has(id));
      expect(losers).toHaveLength(n - winners);
      expect(h.dispatcher.stats().gates.recordRejected).toBe(n - winners);
      for (const id of losers) {
        const lead = await h.lead(id);
        const token = `${id}:1`;
        // Released its line and its record never existed; never dialled.
        expect(h.gates.holdsTaken.get(token)).toBe(1);
        expect(h.gates.holdsFreed.get(token)).toBe(1);
        expect(await h.holders()).not.toContain(token);
        expect(await h.members(PHONE)).not.toContain(token);
        expect(h.provider.callsOf(id)).toHaveLength(0);
        // Deferred until the window has room, plus a jitter under a second; attempt unchanged.
        expect(lead).toMatchObject({ status: "SCHEDULED", attempt: 0, dial: null });
        expect(lead.nextAttemptAt).toBeGreaterThanOrEqual(roomAt);
        expect(lead.nextAttemptAt).toBeLessThan(roomAt + SECOND);
      }
      const deferred = h.of("lead:deferred");
      expect(deferred.map((d) => d.leadId).sort()).toEqual([...losers].sort());
      expect(deferred.every((d) => d.reason === "rateLimit")).toBe(true);
      // The winners are in their calls, one line each; nobody else holds one.
      expect((await h.holders()).sort()).toEqual([...dialled].map((id) => `${id}:1`).sort());
      for (const id of dialled) expect((await h.lead(id)).status).toBe("PROCESSING");
      if (losers.length > 0) expect(h.alerts("rate_limit_blocked")).toHaveLength(1);

      // Nothing more happens before the room time: the losers do not come back as a herd.
      if (losers.length > 0) {
        await h.advance(roomAt - h.clock.now() - 1);
        expect(h.provider.calls).toHaveLength(winners);
      }
    });
  }
});
