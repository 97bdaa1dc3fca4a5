/**
 * The one contract every GateStore adapter passes (design §4): memory, Redis, Redis Cluster.
 * Times are epoch ms far from the wall clock, and jump by hours within a test, so an adapter that
 * decided anything by its own clock (or by Redis TTLs) fails here.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { AcquireRequest, GateStore, RateRule } from "../../src/machines/ports.js";

/**
 * Returns `handles` stores over one fresh, empty state, as that many processes would see it
 * (the same instance for memory; one connection each for Redis).
 */
export type GateStoreFactory = (handles: number) => Promise<GateStore[]>;

const T0 = Date.UTC(2031, 0, 1);
const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;

const hourly: RateRule[] = [{ maxCalls: 7, windowSeconds: 3600 }];
/** The default rule plus Florida's 3 per 24 h. */
const florida: RateRule[] = [
  { maxCalls: 7, windowSeconds: 3600 },
  { maxCalls: 3, windowSeconds: 86400 },
];

export function gateStoreContract(name: string, factory: GateStoreFactory): void {
  describe(`GateStore contract: ${name}`, () => {
    const opened: GateStore[] = [];
    const open = async (handles = 1) => {
      const stores = await factory(handles);
      opened.push(...new Set(stores));
      return stores;
    };
    const openOne = async () => (await open(1))[0];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
    });

    /** Records `members` for a phone at `at`, each expected to pass. */
    const recordAll = async (
      store: GateStore,
      phone: string,
      members: string[],
      rules: RateRule[],
      at: number,
    ) => {
      for (const member of members) expect((await store.record(phone, member, rules, at)).allowed).toBe(true);
    };

    describe("rate limit", () => {
      it("peek counts without recording anything", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 2, windowSeconds: 60 }];
        for (let i = 0; i < 5; i++)
          expect(await store.peek("p1", rule, T0 + i)).toEqual({ allowed: true, counts: [0] });
        await recordAll(store, "p1", ["a", "b"], rule, T0 + 10);
        expect(await store.peek("p1", rule, T0 + 20)).toEqual({
          allowed: false,
          counts: [2],
          retryAt: T0 + 10 + 60 * SECOND,
        });
      });

      it("peek trims only records older than the largest window", async () => {
        const store = await openOne();
        await recordAll(store, "p1", ["a"], florida, T0);
        // Past the hour the first rule no longer counts it, but the 24 h rule still must.
        expect(await store.peek("p1", florida, T0 + HOUR)).toEqual({ allowed: true, counts: [0, 1] });
        expect(await store.peek("p1", florida, T0 + DAY - 1)).toEqual({ allowed: true, counts: [0, 1] });
        expect(await store.peek("p1", florida, T0 + DAY)).toEqual({ allowed: true, counts: [0, 0] });
        // Trimmed for good: going back in time does not bring it back.
        expect(await store.peek("p1", florida, T0 + 1)).toEqual({ allowed: true, counts: [0, 0] });
      });

      it("record is strict on every rule at once", async () => {
        const store = await openOne();
        await recordAll(store, "p1", ["a", "b", "c"], florida, T0);
        expect(await store.record("p1", "d", florida, T0 + SECOND)).toEqual({
          allowed: false,
          counts: [3, 3],
          retryAt: T0 + DAY,
        });
        // The hourly rule has room again after an hour; the daily one still blocks.
        expect(await store.record("p1", "d", florida, T0 + HOUR)).toEqual({
          allowed: false,
          counts: [0, 3],
          retryAt: T0 + DAY,
        });
        expect(await store.record("p1", "d", florida, T0 + DAY)).toEqual({ allowed: true, counts: [0, 0] });
      });

      it("keepMs: a template's short rule keeps the records another template's longer rule counts", async () => {
        const store = await openOne();
        // Every rule in force: the default 7 per hour, and another template's 3 per 24 h.
        const keep = { keepMs: DAY };
        const daily: RateRule[] = [{ maxCalls: 3, windowSeconds: 86400 }];
        for (const member of ["d1", "d2"])
          expect((await store.record("p1", member, daily, T0, true, keep)).allowed).toBe(true);
        // Hours later the hourly template calls the phone: its rule counts nothing, and trims nothing.
        expect(await store.peek("p1", hourly, T0 + 2 * HOUR, keep)).toEqual({ allowed: true, counts: [0] });
        expect(await store.record("p1", "h1", hourly, T0 + 2 * HOUR, true, keep)).toEqual({
          allowed: true,
          counts: [0],
        });
        expect(await store.record("p1", "d3", daily, T0 + 3 * HOUR, true, keep)).toEqual({
          allowed: false,
          counts: [3],
          retryAt: T0 + DAY,
        });
        // Past keepMs the records go.
        expect(await store.peek("p1", hourly, T0 + DAY + 2 * HOUR, keep)).toEqual({
          allowed: true,
          counts: [0],
        });
        expect(await store.peek("p1", daily, T0 + 2 * HOUR + 1)).toEqual({ allowed: true, counts: [0] });
      });

      it("marginMs widens every window: room returns at the oldest record + W + margin", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 4 }];
        const margin = { marginMs: 250 };
        expect((await store.record("p1", "a", rule, T0, true, margin)).allowed).toBe(true);
        expect(await store.record("p1", "b", rule, T0 + 4 * SECOND, true, margin)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + 4 * SECOND + 250,
        });
        expect(await store.peek("p1", rule, T0 + 4 * SECOND + 249, margin)).toMatchObject({ allowed: false });
        expect(await store.record("p1", "b", rule, T0 + 4 * SECOND + 250, true, margin)).toEqual({
          allowed: true,
          counts: [0],
        });
      });

      it("record stops at the hourly maximum", async () => {
        const store = await openOne();
        const members = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"];
        await recordAll(store, "p1", members, hourly, T0);
        const decision = await store.record("p1", "m8", hourly, T0 + 1);
        expect(decision).toEqual({ allowed: false, counts: [7], retryAt: T0 + HOUR });
        expect(await store.peek("p1", hourly, T0 + 2)).toMatchObject({ counts: [7] });
      });

      it("windows are half-open: a record at t counts while now < t + W", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 10 }];
        await recordAll(store, "p1", ["a"], rule, T0);
        expect(await store.peek("p1", rule, T0 + 10 * SECOND - 1)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + 10 * SECOND,
        });
        expect(await store.record("p1", "b", rule, T0 + 10 * SECOND - 1)).toMatchObject({ allowed: false });
        expect(await store.peek("p1", rule, T0 + 10 * SECOND)).toEqual({ allowed: true, counts: [0] });
        expect(await store.record("p1", "b", rule, T0 + 10 * SECOND)).toEqual({ allowed: true, counts: [0] });
      });

      it("retryAt is when the (count − max + 1)-th oldest record leaves the window", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 2, windowSeconds: 60 }];
        for (const [member, at] of [
          ["a", T0],
          ["b", T0 + 10 * SECOND],
          ["c", T0 + 20 * SECOND],
          ["d", T0 + 30 * SECOND],
        ] as const) {
          await store.record("p1", member, rule, at, false);
        }
        // Four in the window, room for two: room returns when the third oldest (c) leaves.
        expect(await store.peek("p1", rule, T0 + 40 * SECOND)).toEqual({
          allowed: false,
          counts: [4],
          retryAt: T0 + 80 * SECOND,
        });
      });

      it("retryAt is the latest over every blocking rule, in any rule order", async () => {
        const store = await openOne();
        const minute: RateRule = { maxCalls: 1, windowSeconds: 60 };
        const tenMinutes: RateRule = { maxCalls: 2, windowSeconds: 600 };
        await recordAll(store, "p1", ["a"], [minute, tenMinutes], T0);
        await recordAll(store, "p1", ["b"], [minute, tenMinutes], T0 + 100 * SECOND);
        // The minute rule has room at b + 60 s, the ten-minute rule only at a + 600 s.
        const now = T0 + 110 * SECOND;
        expect(await store.peek("p1", [minute, tenMinutes], now)).toEqual({
          allowed: false,
          counts: [1, 2],
          retryAt: T0 + 600 * SECOND,
        });
        expect(await store.peek("p1", [tenMinutes, minute], now)).toEqual({
          allowed: false,
          counts: [2, 1],
          retryAt: T0 + 600 * SECOND,
        });
      });

      it("record with enforce false adds over the limit and still reports it", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a"], rule, T0);
        expect(await store.record("p1", "b", rule, T0 + 1, false)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + 60 * SECOND,
        });
        expect(await store.peek("p1", rule, T0 + 2)).toMatchObject({ counts: [2] });
      });

      it("a rejected record adds nothing", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a"], rule, T0);
        expect(await store.record("p1", "b", rule, T0 + 1)).toMatchObject({ allowed: false });
        expect(await store.undo("p1", "b")).toBe(false);
        expect(await store.peek("p1", rule, T0 + 2)).toMatchObject({ counts: [1] });
      });

      it("recording the same member twice counts it once and keeps its first time", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 3, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a"], rule, T0);
        expect(await store.record("p1", "a", rule, T0 + 30 * SECOND)).toEqual({ allowed: true, counts: [1] });
        expect(await store.peek("p1", rule, T0 + 30 * SECOND)).toEqual({ allowed: true, counts: [1] });
        // Still the record of T0: gone from the window a minute after T0, not after T0 + 30 s.
        expect(await store.peek("p1", rule, T0 + 60 * SECOND)).toEqual({ allowed: true, counts: [0] });
      });

      it("a retried record of a member that filled the last slot answers allowed", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 2, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a", "b"], rule, T0);
        // The retry of "b" (its first reply was lost) must not look like a lost race: nobody would undo it.
        expect(await store.record("p1", "b", rule, T0 + SECOND)).toMatchObject({ allowed: true });
        expect(await store.record("p1", "c", rule, T0 + SECOND)).toMatchObject({ allowed: false });
      });

      it("undo removes exactly that member", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 3, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a", "b", "c"], rule, T0);
        await recordAll(store, "p2", ["b"], rule, T0);
        expect(await store.undo("p1", "b")).toBe(true);
        expect(await store.undo("p1", "b")).toBe(false);
        expect(await store.peek("p1", rule, T0 + 1)).toMatchObject({ counts: [2] });
        expect(await store.peek("p2", rule, T0 + 1)).toMatchObject({ counts: [1] });
        // The room it made is usable.
        expect(await store.record("p1", "d", rule, T0 + 2)).toEqual({ allowed: true, counts: [2] });
      });

      it("phones are counted apart", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 60 }];
        await recordAll(store, "p1", ["a"], rule, T0);
        expect(await store.record("p2", "a", rule, T0)).toEqual({ allowed: true, counts: [0] });
        expect(await store.record("p1", "b", rule, T0)).toMatchObject({ allowed: false });
      });

      it("concurrent records with room for K accept exactly K", async () => {
        const stores = await open(4);
        const rule: RateRule[] = [{ maxCalls: 7, windowSeconds: 3600 }];
        await recordAll(stores[0], "p1", ["old1", "old2", "old3", "old4"], rule, T0);
        const decisions = await Promise.all(
          Array.from({ length: 24 }, (_, i) =>
            stores[i % stores.length].record("p1", `lead${i}:1`, rule, T0 + 1),
          ),
        );
        expect(decisions.filter((d) => d.allowed)).toHaveLength(3);
        for (const d of decisions.filter((d) => !d.allowed))
          expect(d).toEqual({ allowed: false, counts: [7], retryAt: T0 + HOUR });
        expect(await stores[0].peek("p1", rule, T0 + 2)).toMatchObject({ counts: [7] });
      });
    });

    describe("cooldowns (design §7.6)", () => {
      const MINUTE = 60 * SECOND;
      const cooling = (seconds: number, ...afterOutcomes: string[]) => ({ seconds, afterOutcomes });
      /** A 10-minute cooldown after ANSWERED. */
      const answered = { cooldowns: [cooling(600, "ANSWERED")] };

      it("a mark blocks peek and record until exactly its end + seconds, only where a cooldown lists it", async () => {
        const store = await openOne();
        await store.markEnd("p1", "ANSWERED", T0, HOUR);
        const blocked = { allowed: false, counts: [0], retryAt: T0 + 10 * MINUTE };
        expect(await store.peek("p1", hourly, T0 + 1, answered)).toEqual(blocked);
        expect(await store.record("p1", "a", hourly, T0 + 10 * MINUTE - 1, true, answered)).toEqual(blocked);
        // Without cooldowns, or with cooldowns after other outcomes, the mark changes nothing.
        expect(await store.peek("p1", hourly, T0 + 1)).toEqual({ allowed: true, counts: [0] });
        const others = { cooldowns: [cooling(600, "NO_ANSWER", "BUSY")] };
        expect(await store.peek("p1", hourly, T0 + 1, others)).toEqual({ allowed: true, counts: [0] });
        // Nor does it touch another phone.
        expect(await store.peek("p2", hourly, T0 + 1, answered)).toEqual({ allowed: true, counts: [0] });
        // Half-open: allowed at the instant itself; the refused record above added nothing.
        expect(await store.peek("p1", hourly, T0 + 10 * MINUTE, answered)).toEqual({
          allowed: true,
          counts: [0],
        });
        expect(await store.record("p1", "a", hourly, T0 + 10 * MINUTE, true, answered)).toEqual({
          allowed: true,
          counts: [0],
        });
      });

      it("counts from the latest end of each outcome: an older end never replaces a newer one", async () => {
        const store = await openOne();
        await store.markEnd("p1", "ANSWERED", T0 + 2 * MINUTE, HOUR);
        // A late end signal of an earlier call.
        await store.markEnd("p1", "ANSWERED", T0, HOUR);
        await store.markEnd("p1", "VOICEMAIL", T0 + MINUTE, HOUR);
        const either = { cooldowns: [cooling(600, "ANSWERED", "VOICEMAIL")] };
        expect(await store.peek("p1", hourly, T0 + 11 * MINUTE, either)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 12 * MINUTE,
        });
        // Several cooldowns: the latest instant over all that block.
        const two = { cooldowns: [cooling(60, "ANSWERED"), cooling(3000, "VOICEMAIL")] };
        expect(await store.peek("p1", hourly, T0 + 5 * MINUTE, two)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 51 * MINUTE,
        });
        // A newer end moves the mark.
        await store.markEnd("p1", "ANSWERED", T0 + 20 * MINUTE, HOUR);
        expect(await store.peek("p1", hourly, T0 + 21 * MINUTE, answered)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 30 * MINUTE,
        });
      });

      it("blocks while the rules allow, and the other way round; blocked by both, retryAt is the later", async () => {
        const store = await openOne();
        const rule: RateRule[] = [{ maxCalls: 1, windowSeconds: 60 }];
        expect(await store.record("p1", "a", rule, T0, true, answered)).toEqual({
          allowed: true,
          counts: [0],
        });
        await store.markEnd("p1", "ANSWERED", T0 + 10 * SECOND, HOUR);
        // The rule has room at T0 + 60 s, the 30 s cooldown at T0 + 40 s: the rule's instant.
        expect(
          await store.peek("p1", rule, T0 + 20 * SECOND, { cooldowns: [cooling(30, "ANSWERED")] }),
        ).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + MINUTE,
        });
        // The 10-minute cooldown ends later: its instant.
        expect(await store.record("p1", "b", rule, T0 + 20 * SECOND, true, answered)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + 10 * SECOND + 10 * MINUTE,
        });
        // The rule has room again; the cooldown alone blocks.
        expect(await store.record("p1", "b", rule, T0 + MINUTE, true, answered)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 10 * SECOND + 10 * MINUTE,
        });
        // A phone without a mark: the rule alone decides.
        await recordAll(store, "p2", ["c"], rule, T0);
        expect(await store.record("p2", "d", rule, T0 + SECOND, true, answered)).toEqual({
          allowed: false,
          counts: [1],
          retryAt: T0 + MINUTE,
        });
      });

      it("alertOnly: a record in a cooldown still adds the member and says it was over", async () => {
        const store = await openOne();
        await store.markEnd("p1", "ANSWERED", T0, HOUR);
        expect(await store.record("p1", "a", hourly, T0 + 1, false, answered)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 10 * MINUTE,
        });
        expect(await store.peek("p1", hourly, T0 + 2)).toEqual({ allowed: true, counts: [1] });
      });

      it("a member already recorded answers allowed in a cooldown (a retried record)", async () => {
        const store = await openOne();
        expect(await store.record("p1", "a", hourly, T0, true, answered)).toEqual({
          allowed: true,
          counts: [0],
        });
        await store.markEnd("p1", "ANSWERED", T0 + 1, HOUR);
        expect(await store.record("p1", "a", hourly, T0 + 2, true, answered)).toEqual({
          allowed: true,
          counts: [1],
        });
        expect(await store.record("p1", "b", hourly, T0 + 2, true, answered)).toMatchObject({
          allowed: false,
        });
      });

      it("a mark is kept as long as keepMs, whatever other calls read meanwhile", async () => {
        const store = await openOne();
        const week = { cooldowns: [cooling(7 * 86_400, "ANSWERED")] };
        await store.markEnd("p1", "ANSWERED", T0, 7 * DAY);
        expect(await store.peek("p1", hourly, T0 + DAY, answered)).toEqual({ allowed: true, counts: [0] });
        expect(await store.record("p1", "a", hourly, T0 + 3 * DAY, true, answered)).toMatchObject({
          allowed: true,
        });
        expect(await store.peek("p1", hourly, T0 + 7 * DAY - 1, week)).toEqual({
          allowed: false,
          counts: [0],
          retryAt: T0 + 7 * DAY,
        });
        expect(await store.peek("p1", hourly, T0 + 7 * DAY, week)).toEqual({ allowed: true, counts: [0] });
      });
    });

    describe("channels", () => {
      const acquire = (store: GateStore, over: Partial<AcquireRequest> & { holder: string }) =>
        store.acquire({
          numberId: "n1",
          maxChannels: 2,
          now: T0,
          leaseUntil: T0 + HOUR,
          waiter: over.holder.split(":")[0],
          waiterTtlMs: 10 * SECOND,
          ...over,
        });

      it("acquire never holds more lines than maxChannels", async () => {
        const store = await openOne();
        expect(await acquire(store, { holder: "a:1" })).toEqual({ held: true });
        expect(await acquire(store, { holder: "b:1" })).toEqual({ held: true });
        expect(await acquire(store, { holder: "c:1" })).toEqual({ held: false, waiters: 1 });
        expect(await store.inUse(["n1"], T0)).toEqual(new Map([["n1", 2]]));
      });

      it("concurrent acquires never exceed maxChannels", async () => {
        const stores = await open(4);
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            acquire(stores[i % stores.length], { holder: `lead${i}:1`, maxChannels: 3 }),
          ),
        );
        expect(results.filter((r) => r.held)).toHaveLength(3);
        expect(await stores[0].inUse(["n1"], T0)).toEqual(new Map([["n1", 3]]));
      });

      it("re-acquire by the same holder succeeds without taking a second line", async () => {
        const store = await openOne();
        expect(await acquire(store, { holder: "a:1" })).toEqual({ held: true });
        expect(await acquire(store, { holder: "a:1" })).toEqual({ held: true });
        expect(await store.inUse(["n1"], T0)).toEqual(new Map([["n1", 1]]));
        expect(await acquire(store, { holder: "b:1" })).toEqual({ held: true });
      });

      it("re-acquire extends the lease but never shortens it", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 1, leaseUntil: T0 + 1000 });
        await acquire(store, { holder: "a:1", maxChannels: 1, now: T0 + 500, leaseUntil: T0 + 5000 });
        await acquire(store, { holder: "a:1", maxChannels: 1, now: T0 + 600, leaseUntil: T0 + 700 });
        expect(await acquire(store, { holder: "b:1", maxChannels: 1, now: T0 + 4999 })).toMatchObject({
          held: false,
        });
        expect(await acquire(store, { holder: "b:1", maxChannels: 1, now: T0 + 5000 })).toEqual({
          held: true,
        });
      });

      it("an expired lease frees the line without a release", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 1, leaseUntil: T0 + 1000 });
        expect(await acquire(store, { holder: "b:1", maxChannels: 1, now: T0 + 999 })).toMatchObject({
          held: false,
        });
        expect(await acquire(store, { holder: "b:1", maxChannels: 1, now: T0 + 1000 })).toEqual({
          held: true,
        });
      });

      it("release frees the holder's line once", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 1 });
        expect(await store.release("n1", "a:1")).toBe(true);
        expect(await store.release("n1", "a:1")).toBe(false);
        expect(await store.inUse(["n1"], T0)).toEqual(new Map([["n1", 0]]));
        expect(await acquire(store, { holder: "b:1", maxChannels: 1 })).toEqual({ held: true });
      });

      it("release by another holder never frees the line", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:2", maxChannels: 1 });
        // A late end signal of the lead's previous claim names the old token.
        expect(await store.release("n1", "a:1")).toBe(false);
        expect(await store.release("n2", "a:2")).toBe(false);
        expect(await store.inUse(["n1"], T0)).toEqual(new Map([["n1", 1]]));
        expect(await acquire(store, { holder: "b:1", maxChannels: 1 })).toMatchObject({ held: false });
      });

      it("waiters are counted once each and stop counting when their time is up", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 1 });
        expect(await acquire(store, { holder: "w1:1", maxChannels: 1 })).toEqual({ held: false, waiters: 1 });
        expect(await acquire(store, { holder: "w1:1", maxChannels: 1 })).toEqual({ held: false, waiters: 1 });
        expect(await acquire(store, { holder: "w2:1", maxChannels: 1, now: T0 + SECOND })).toEqual({
          held: false,
          waiters: 2,
        });
        // w1 was counted until T0 + 10 s (half-open), w2 until T0 + 11 s.
        expect(await acquire(store, { holder: "w3:1", maxChannels: 1, now: T0 + 10 * SECOND })).toEqual({
          held: false,
          waiters: 2,
        });
        expect(await acquire(store, { holder: "w4:1", maxChannels: 1, now: T0 + 21 * SECOND })).toEqual({
          held: false,
          waiters: 1,
        });
      });

      it("a waiter that gets a line stops being counted", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 1 });
        await acquire(store, { holder: "w1:1", maxChannels: 1 });
        await store.release("n1", "a:1");
        expect(await acquire(store, { holder: "w1:1", maxChannels: 1 })).toEqual({ held: true });
        expect(await acquire(store, { holder: "w2:1", maxChannels: 1 })).toEqual({ held: false, waiters: 1 });
      });

      it("numbers are counted apart", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", numberId: "n1", maxChannels: 1 });
        expect(await acquire(store, { holder: "b:1", numberId: "n2", maxChannels: 1 })).toEqual({
          held: true,
        });
        expect(await acquire(store, { holder: "c:1", numberId: "n3", maxChannels: 1 })).toEqual({
          held: true,
        });
        expect(await store.release("n2", "a:1")).toBe(false);
        expect(await store.inUse(["n1", "n2", "n3", "n4"], T0)).toEqual(
          new Map([
            ["n1", 1],
            ["n2", 1],
            ["n3", 1],
            ["n4", 0],
          ]),
        );
      });

      it("inUse counts only unexpired holds", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", leaseUntil: T0 + 1000 });
        await acquire(store, { holder: "b:1", leaseUntil: T0 + 2000 });
        expect(await store.inUse(["n1"], T0 + 999)).toEqual(new Map([["n1", 2]]));
        expect(await store.inUse(["n1"], T0 + 1000)).toEqual(new Map([["n1", 1]]));
        expect(await store.inUse(["n1"], T0 + 2000)).toEqual(new Map([["n1", 0]]));
      });

      it("listHolders names the holders of unexpired holds only", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", leaseUntil: T0 + 1000 });
        await acquire(store, { holder: "b:1", leaseUntil: T0 + 2000 });
        expect((await store.listHolders("n1", T0)).sort()).toEqual(["a:1", "b:1"]);
        expect(await store.listHolders("n1", T0 + 1000)).toEqual(["b:1"]);
        expect(await store.listHolders("n2", T0)).toEqual([]);
      });

      it("reap returns the expired holders once and frees their lines", async () => {
        const store = await openOne();
        await acquire(store, { holder: "a:1", maxChannels: 3, leaseUntil: T0 + 1000 });
        await acquire(store, { holder: "b:1", maxChannels: 3, leaseUntil: T0 + 2000 });
        await acquire(store, { holder: "c:1", maxChannels: 3, leaseUntil: T0 + 3000 });
        expect(await store.reap("n1", T0 + 999)).toEqual([]);
        expect((await store.reap("n1", T0 + 2000)).sort()).toEqual(["a:1", "b:1"]);
        expect(await store.reap("n1", T0 + 2000)).toEqual([]);
        expect(await store.release("n1", "a:1")).toBe(false);
        expect(await store.inUse(["n1"], T0 + 2000)).toEqual(new Map([["n1", 1]]));
      });
    });

    describe("alert throttle", () => {
      it("allows once per window per key, and again after it", async () => {
        const store = await openOne();
        const window = 30 * 60 * SECOND;
        expect(await store.allow("no_outbound_number:r1:t1", window, T0)).toBe(true);
        expect(await store.allow("no_outbound_number:r1:t1", window, T0 + window - 1)).toBe(false);
        expect(await store.allow("no_outbound_number:r1:t2", window, T0 + 1)).toBe(true);
        // The window restarts when an alert passes, not when one is dropped.
        expect(await store.allow("no_outbound_number:r1:t1", window, T0 + window)).toBe(true);
        expect(await store.allow("no_outbound_number:r1:t1", window, T0 + 2 * window - 1)).toBe(false);
      });

      it("concurrent callers get exactly one alert through", async () => {
        const stores = await open(4);
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            stores[i % stores.length].allow("store_unavailable", 5000, T0),
          ),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
      });
    });
  });
}
