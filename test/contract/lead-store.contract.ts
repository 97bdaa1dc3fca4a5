/**
 * The LeadStore port's semantics, shared by every adapter (design §4: one contract suite for both
 * backends). Each test gets an empty store from the factory and closes it afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type {
  CooldownRule,
  LeadInput,
  LeadStore,
  OutboundNumber,
  PauseScope,
  Settlement,
  Template,
} from "../../src/machines/ports.js";

export type LeadStoreFactory = () => Promise<LeadStore>;

/** Past 2^32 on purpose: times must survive a bigint column. */
const T0 = 1_780_000_000_000;
const LEASE = 60_000;
const PHONE = "+14155550100";

function lead(id: string, extra: Partial<LeadInput> = {}): LeadInput {
  return { id, phone: PHONE, templateId: "tpl", dueAt: T0, ...extra };
}

const SETTLEMENTS: Record<Settlement["kind"], Settlement> = {
  defer: { kind: "defer", at: T0 + 5_000 },
  finish: { kind: "finish", outcome: "NUMBER_UNAVAILABLE" },
  placed: { kind: "placed", callId: "call-9" },
  unknown: { kind: "unknown" },
  ended: { kind: "ended", outcome: "ANSWERED" },
  unknownExpired: { kind: "unknownExpired", at: T0 + 5_000 },
};
const KINDS = Object.keys(SETTLEMENTS) as Settlement["kind"][];

type State = "scheduled" | "claimed" | "dialing" | "inCall" | "heldUnknown" | "finished";

/** Written from the spec (ports.ts), not from an adapter's table. */
const ALLOWED_FROM: Record<Settlement["kind"], State[]> = {
  defer: ["claimed", "dialing"],
  finish: ["claimed", "dialing"],
  placed: ["dialing"],
  unknown: ["dialing"],
  ended: ["inCall", "heldUnknown"],
  unknownExpired: ["heldUnknown"],
};

export function leadStoreContract(name: string, factory: LeadStoreFactory): void {
  describe(`LeadStore contract: ${name}`, () => {
    let store: LeadStore;

    beforeEach(async () => {
      store = await factory();
    });

    afterEach(async () => {
      await store.close();
    });

    // Each helper submits one lead due at T0 and walks it to a state; it returns the claim token.
    // Earlier leads of a test must no longer be claimable, so the claim takes this lead.

    /** Claims the next due lead (oldest first) and returns its token. */
    async function claimNext(now: number, owner = "w1"): Promise<string> {
      const [claim] = await store.claimDue(owner, now, 1, LEASE);
      expect(claim?.token).toEqual(expect.any(String));
      return claim.token as string;
    }

    async function claimed(id: string): Promise<string> {
      await store.submit([lead(id)], T0);
      const [claim] = await store.claimDue("w1", T0, 1, LEASE);
      expect(claim.id).toBe(id);
      return claim.token as string;
    }

    async function dialing(id: string, at = T0 + 1): Promise<string> {
      const token = await claimed(id);
      expect(
        await store.beginDial(token, { dialRef: `${token}@${at}`, numberId: "n1", at, recorded: true }),
      ).toBe(true);
      return token;
    }

    async function inCall(id: string, callId = `call-${id}`): Promise<string> {
      const token = await dialing(id);
      expect(await store.settle(token, { kind: "placed", callId }, T0 + 2)).not.toBeNull();
      return token;
    }

    async function heldUnknown(id: string, at = T0 + 1): Promise<string> {
      const token = await dialing(id, at);
      expect(await store.settle(token, { kind: "unknown" }, T0 + 2)).not.toBeNull();
      return token;
    }

    const setUp: Record<State, (id: string) => Promise<string>> = {
      async scheduled(id) {
        const token = await claimed(id);
        await store.settle(token, { kind: "defer", at: T0 + 1_000 }, T0);
        return token;
      },
      claimed,
      dialing: (id) => dialing(id),
      inCall: (id) => inCall(id),
      heldUnknown: (id) => heldUnknown(id),
      async finished(id) {
        const token = await claimed(id);
        await store.settle(token, { kind: "finish", outcome: "BLACKLISTED" }, T0);
        return token;
      },
    };

    describe("submit", () => {
      it("creates a SCHEDULED lead with every field of the input", async () => {
        const [created] = await store.submit(
          [
            lead("a", {
              dueAt: T0 + 10,
              expiresAt: T0 + 99_000,
              timeZone: "America/New_York",
              payload: { order: 42, tags: ["x"], nested: { ok: true } },
            }),
          ],
          T0,
        );
        expect(created).toEqual({
          id: "a",
          phone: PHONE,
          templateId: "tpl",
          status: "SCHEDULED",
          outcome: null,
          attempt: 0,
          notPlacedStreak: 0,
          claimSeq: 0,
          token: null,
          owner: null,
          leaseUntil: null,
          nextAttemptAt: T0 + 10,
          dueAt: T0 + 10,
          expiresAt: T0 + 99_000,
          timeZone: "America/New_York",
          cancelRequested: false,
          dial: null,
          payload: { order: 42, tags: ["x"], nested: { ok: true } },
          deferReason: null,
          precheckDefers: 0,
          parkedOn: null,
          parkedAt: null,
        });
        expect(await store.get("a")).toEqual(created);
      });

      it("defaults the due time to now, and expiry, zone and payload to empty", async () => {
        const [created] = await store.submit([{ id: "a", phone: PHONE, templateId: "tpl" }], T0 + 7);
        expect(created).toMatchObject({
          nextAttemptAt: T0 + 7,
          dueAt: T0 + 7,
          expiresAt: null,
          timeZone: null,
          payload: {},
        });
      });

      it("is idempotent by id: a second submit returns the existing lead unchanged", async () => {
        const token = await claimed("a");
        const [again] = await store.submit([lead("a", { phone: "+14155550199", dueAt: T0 + 1 })], T0 + 5);
        expect(again).toMatchObject({ id: "a", phone: PHONE, status: "CLAIMED", token, nextAttemptAt: T0 });
        expect(await store.list()).toHaveLength(1);
      });

      it("creates a lead once from a batch that repeats its id, from its first occurrence", async () => {
        const result = await store.submit(
          [lead("a", { dueAt: T0 + 1 }), lead("b"), lead("a", { dueAt: T0 + 2 })],
          T0,
        );
        expect(result.map((l) => [l.id, l.nextAttemptAt])).toEqual([
          ["a", T0 + 1],
          ["b", T0],
          ["a", T0 + 1],
        ]);
        expect(await store.list()).toHaveLength(2);
      });

      it("an empty submit is a no-op", async () => {
        expect(await store.submit([], T0)).toEqual([]);
      });

      it("get returns null for an unknown id", async () => {
        expect(await store.get("nope")).toBeNull();
      });

      it("list returns every lead in submission order", async () => {
        await store.submit([lead("c"), lead("a")], T0);
        await store.submit([lead("b")], T0);
        expect((await store.list()).map((l) => l.id)).toEqual(["c", "a", "b"]);
      });
    });

    describe("claimDue", () => {
      it("claims due leads oldest first, ties by id in code-point order, up to the limit", async () => {
        await store.submit(
          [
            lead("c", { dueAt: T0 - 10 }),
            lead("a", { dueAt: T0 - 10 }),
            lead("B", { dueAt: T0 - 10 }),
            lead("old", { dueAt: T0 - 20 }),
            lead("now", { dueAt: T0 }),
            lead("later", { dueAt: T0 + 1 }),
          ],
          T0 - 100,
        );
        expect((await store.claimDue("w1", T0, 3, LEASE)).map((l) => l.id)).toEqual(["old", "B", "a"]);
        expect((await store.claimDue("w1", T0, 10, LEASE)).map((l) => l.id)).toEqual(["c", "now"]);
        expect(await store.claimDue("w1", T0, 10, LEASE)).toEqual([]);
      });

      it("a deferred lead keeps its place in line: claims go by dueAt, not nextAttemptAt", async () => {
        await store.submit([lead("a", { dueAt: T0 }), lead("b", { dueAt: T0 + 1 })], T0);
        const token = await claimNext(T0);
        await store.settle(token, { kind: "defer", at: T0 + 5 }, T0);
        expect(await store.get("a")).toMatchObject({ nextAttemptAt: T0 + 5, dueAt: T0 });
        expect((await store.claimDue("w1", T0 + 10, 1, LEASE)).map((l) => l.id)).toEqual(["a"]);
      });

      it("a claim sets CLAIMED, the next claimSeq, the token id:claimSeq, the owner and the lease", async () => {
        await store.submit([lead("a")], T0);
        const [claim] = await store.claimDue("w1", T0 + 3, 1, LEASE);
        expect(claim).toMatchObject({
          id: "a",
          status: "CLAIMED",
          claimSeq: 1,
          token: "a:1",
          owner: "w1",
          leaseUntil: T0 + 3 + LEASE,
          blocked: false,
        });
        // The block list's verdict comes with the claim only.
        expect(await store.get("a")).toEqual({ ...claim, blocked: undefined });
      });

      it("a claim carries whether each phone is on the block list (the check gate's read)", async () => {
        await store.submit([lead("a", { phone: PHONE }), lead("b", { phone: "+14155550111" })], T0);
        await store.block([PHONE]);
        const claims = await store.claimDue("w1", T0, 2, LEASE);
        expect(claims.map((l) => [l.id, l.blocked])).toEqual([
          ["a", true],
          ["b", false],
        ]);
      });

      it("tokens work for ids that contain colons", async () => {
        const token = await claimed("order:17");
        expect(token).toBe("order:17:1");
        expect(await store.settle(token, { kind: "finish", outcome: "NO_CONFIG" }, T0)).not.toBeNull();
      });

      it("a limit of 0 claims nothing", async () => {
        await store.submit([lead("a")], T0);
        expect(await store.claimDue("w1", T0, 0, LEASE)).toEqual([]);
        expect((await store.get("a"))?.status).toBe("SCHEDULED");
      });

      it("takes over a CLAIMED lead once its lease has expired, with a new token", async () => {
        await claimed("a");
        expect(await store.claimDue("w2", T0 + LEASE - 1, 10, LEASE)).toEqual([]);
        const [takeover] = await store.claimDue("w2", T0 + LEASE, 10, LEASE);
        expect(takeover).toMatchObject({
          id: "a",
          claimSeq: 2,
          token: "a:2",
          owner: "w2",
          leaseUntil: T0 + 2 * LEASE,
        });
      });

      it("turns a DIALING lead whose lease expired into a held unknown dial and never claims it", async () => {
        const token = await dialing("a");
        expect(await store.claimDue("w2", T0 + LEASE - 1, 10, LEASE)).toEqual([]);
        expect((await store.get("a"))?.status).toBe("DIALING");

        expect(await store.claimDue("w2", T0 + LEASE, 10, LEASE)).toEqual([]);
        const held = await store.get("a");
        expect(held).toMatchObject({
          status: "PROCESSING",
          token,
          owner: null,
          leaseUntil: null,
          claimSeq: 1,
        });
        expect(held?.dial).toMatchObject({ unknown: true, callId: null });
        expect(await store.claimDue("w2", T0 + 100 * LEASE, 10, LEASE)).toEqual([]);
        // The original actor's late reply cannot turn it back into a placed call.
        expect(await store.settle(token, { kind: "placed", callId: "late" }, T0 + LEASE + 1)).toBeNull();
      });

      it("converts expired DIALING leads even when the limit is 0", async () => {
        await dialing("a");
        await store.claimDue("w2", T0 + LEASE, 0, LEASE);
        expect((await store.get("a"))?.status).toBe("PROCESSING");
      });

      it("never claims PROCESSING or FINISHED leads", async () => {
        await inCall("a");
        await setUp.finished("b");
        expect(await store.claimDue("w2", T0 + 100 * LEASE, 10, LEASE)).toEqual([]);
      });
    });

    describe("nextDueAt", () => {
      it("is null without scheduled leads", async () => {
        expect(await store.nextDueAt()).toBeNull();
        await claimed("a");
        expect(await store.nextDueAt()).toBeNull();
      });

      it("is the earliest due time of a SCHEDULED lead", async () => {
        await store.submit(
          [lead("a", { dueAt: T0 + 30 }), lead("b", { dueAt: T0 + 10 }), lead("c", { dueAt: T0 + 20 })],
          T0,
        );
        expect(await store.nextDueAt()).toBe(T0 + 10);
        await store.claimDue("w1", T0 + 15, 10, LEASE);
        expect(await store.nextDueAt()).toBe(T0 + 20);
      });
    });

    describe("renewLeases", () => {
      it("extends the lease of CLAIMED and DIALING leads held by the token", async () => {
        const a = await claimed("a");
        const b = await dialing("b");
        await store.renewLeases([a, b], T0 + 2 * LEASE);
        expect(await store.claimDue("w2", T0 + LEASE, 10, LEASE)).toEqual([]);
        expect((await store.get("a"))?.leaseUntil).toBe(T0 + 2 * LEASE);
        expect(await store.get("b")).toMatchObject({ status: "DIALING", leaseUntil: T0 + 2 * LEASE });
      });

      it("ignores a stale token and leads past the dial", async () => {
        const stale = await claimed("a");
        await store.claimDue("w2", T0 + LEASE, 10, LEASE);
        const placed = await inCall("b");
        const before = await store.get("b");
        await store.renewLeases([stale, placed], T0 + 10 * LEASE);
        expect((await store.get("a"))?.leaseUntil).toBe(T0 + 2 * LEASE);
        expect(await store.get("b")).toEqual(before);
      });
    });

    describe("beginDial", () => {
      it("moves a CLAIMED lead to DIALING with its dial row", async () => {
        const token = await claimed("a");
        const row = { dialRef: `${token}@${T0 + 1}`, numberId: "n1", at: T0 + 1, recorded: false };
        expect(await store.beginDial(token, row)).toBe(true);
        expect(await store.get("a")).toMatchObject({
          status: "DIALING",
          token,
          owner: "w1",
          dial: { ...row, callId: null, unknown: false },
        });
      });

      it("fails after the lead was cancelled, and leaves no dial behind", async () => {
        const token = await claimed("a");
        await store.cancel("a", T0);
        expect(
          await store.beginDial(token, { dialRef: "ref-1", numberId: "n1", at: T0, recorded: true }),
        ).toBe(false);
        expect(await store.get("a")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED", dial: null });
        expect(await store.findByDial({ dialRef: "ref-1" })).toBeNull();
      });

      it("fails with a stale token", async () => {
        const stale = await claimed("a");
        await store.claimDue("w2", T0 + LEASE, 10, LEASE);
        expect(
          await store.beginDial(stale, { dialRef: "ref-1", numberId: "n1", at: T0, recorded: true }),
        ).toBe(false);
        expect(await store.get("a")).toMatchObject({ status: "CLAIMED", token: "a:2", dial: null });
      });

      it("fails when the claim already dialled", async () => {
        const token = await dialing("a");
        expect(
          await store.beginDial(token, { dialRef: "ref-2", numberId: "n2", at: T0 + 5, recorded: true }),
        ).toBe(false);
        expect((await store.get("a"))?.dial?.dialRef).toBe(`${token}@${T0 + 1}`);
      });
    });

    describe("settle: allowed from-statuses", () => {
      for (const kind of KINDS) {
        for (const state of Object.keys(setUp) as State[]) {
          const allowed = ALLOWED_FROM[kind].includes(state);
          it(`${kind} from ${state} ${allowed ? "settles" : "is refused and changes nothing"}`, async () => {
            const token = await setUp[state]("a");
            const before = await store.get("a");
            expect(Boolean(await store.settle(token, SETTLEMENTS[kind], T0 + 3))).toBe(allowed);
            if (!allowed) expect(await store.get("a")).toEqual(before);
          });
        }
      }
    });

    describe("settle: effects", () => {
      it("defer of a dial whose cancel was requested finishes the lead CANCELLED, never re-queued", async () => {
        const token = await dialing("a");
        await store.cancel("a", T0 + 1);
        expect(
          await store.settle(token, { kind: "defer", at: T0 + 9_000, dialResult: "notPlaced" }, T0 + 2),
        ).toEqual({
          status: "FINISHED",
          outcome: "CANCELLED",
        });
        expect(await store.claimDue("w2", T0 + 10_000, 10, LEASE)).toEqual([]);
      });

      it("defer reschedules, releases the lease, keeps the attempt and the token", async () => {
        const token = await dialing("a");
        expect(
          await store.settle(token, { kind: "defer", at: T0 + 9_000, dialResult: "notPlaced" }, T0 + 2),
        ).toEqual({ status: "SCHEDULED", outcome: null });
        expect(await store.get("a")).toMatchObject({
          status: "SCHEDULED",
          nextAttemptAt: T0 + 9_000,
          owner: null,
          leaseUntil: null,
          attempt: 0,
          notPlacedStreak: 0,
          token,
        });
        expect(await store.nextDueAt()).toBe(T0 + 9_000);
      });

      it("defer sets notPlacedStreak when given and keeps it otherwise; a placed call resets it", async () => {
        let token = await dialing("a");
        await store.settle(token, { kind: "defer", at: T0, notPlacedStreak: 3 }, T0);
        token = await claimNext(T0);
        await store.settle(token, { kind: "defer", at: T0 }, T0);
        expect((await store.get("a"))?.notPlacedStreak).toBe(3);

        token = await claimNext(T0);
        await store.beginDial(token, { dialRef: `${token}@x`, numberId: "n1", at: T0, recorded: true });
        await store.settle(token, { kind: "placed", callId: "c-1" }, T0);
        expect((await store.get("a"))?.notPlacedStreak).toBe(0);
      });

      it("finish ends the lead with its outcome and it is never claimed again", async () => {
        const token = await claimed("a");
        expect(await store.settle(token, { kind: "finish", outcome: "INVALID_PHONE" }, T0)).not.toBeNull();
        expect(await store.get("a")).toMatchObject({
          status: "FINISHED",
          outcome: "INVALID_PHONE",
          owner: null,
          leaseUntil: null,
        });
        expect(await store.claimDue("w1", T0 + 100 * LEASE, 10, LEASE)).toEqual([]);
      });

      it("placed records the provider's call id on the dial", async () => {
        const token = await dialing("a");
        expect(await store.settle(token, { kind: "placed", callId: "CA123" }, T0 + 2)).not.toBeNull();
        const placed = await store.get("a");
        expect(placed).toMatchObject({ status: "PROCESSING", token });
        expect(placed?.dial).toMatchObject({ callId: "CA123", unknown: false });
      });

      it("unknown holds the dial as unknown and releases the claim's lease", async () => {
        const token = await dialing("a");
        expect(await store.settle(token, { kind: "unknown" }, T0 + 2)).not.toBeNull();
        const held = await store.get("a");
        expect(held).toMatchObject({ status: "PROCESSING", owner: null, leaseUntil: null });
        expect(held?.dial).toMatchObject({ unknown: true, callId: null });
      });

      it("ended without retryAt finishes the lead with the call's outcome", async () => {
        const token = await inCall("a");
        expect(await store.settle(token, { kind: "ended", outcome: "ANSWERED" }, T0 + 60_000)).not.toBeNull();
        expect(await store.get("a")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED", attempt: 0 });
      });

      it("ended with retryAt reschedules with attempt + 1 and the next claim gets a new token", async () => {
        const token = await inCall("a");
        expect(
          await store.settle(token, { kind: "ended", outcome: "NO_ANSWER", retryAt: T0 + 600_000 }, T0),
        ).toEqual({ status: "SCHEDULED", outcome: null });
        expect(await store.get("a")).toMatchObject({
          status: "SCHEDULED",
          outcome: null,
          attempt: 1,
          nextAttemptAt: T0 + 600_000,
          dueAt: T0 + 600_000,
          owner: null,
          leaseUntil: null,
        });
        const [again] = await store.claimDue("w1", T0 + 600_000, 1, LEASE);
        expect(again).toMatchObject({ id: "a", token: "a:2", attempt: 1 });
      });

      it("ended after a cancel request finishes CANCELLED, even when the policy would retry", async () => {
        const token = await inCall("a");
        await store.cancel("a", T0 + 3);
        expect(
          await store.settle(token, { kind: "ended", outcome: "NO_ANSWER", retryAt: T0 + 600_000 }, T0),
        ).toEqual({ status: "FINISHED", outcome: "CANCELLED" });
        expect(await store.get("a")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED", attempt: 0 });
      });

      it("ends a held unknown dial too (an end signal carrying its dialRef claims it)", async () => {
        const token = await heldUnknown("a");
        expect(await store.settle(token, { kind: "ended", outcome: "ANSWERED" }, T0 + 9)).not.toBeNull();
        expect(await store.get("a")).toMatchObject({ status: "FINISHED", outcome: "ANSWERED" });
      });

      it("unknownExpired re-queues a held unknown dial", async () => {
        const token = await heldUnknown("a");
        expect(await store.settle(token, { kind: "unknownExpired", at: T0 + 300_000 }, T0 + 300_000)).toEqual(
          { status: "SCHEDULED", outcome: null },
        );
        expect(await store.get("a")).toMatchObject({
          status: "SCHEDULED",
          nextAttemptAt: T0 + 300_000,
          dueAt: T0,
          attempt: 0,
          owner: null,
          leaseUntil: null,
        });
      });

      it("unknownExpired after a cancel request finishes CANCELLED instead of re-queueing", async () => {
        const token = await heldUnknown("a");
        await store.cancel("a", T0 + 3);
        expect(await store.settle(token, { kind: "unknownExpired", at: T0 + 300_000 }, T0 + 300_000)).toEqual(
          { status: "FINISHED", outcome: "CANCELLED" },
        );
        expect(await store.get("a")).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
      });

      it("a stale token never settles a newer claim, whatever the kind", async () => {
        const stale = await claimed("a");
        const current = await claimNext(T0 + LEASE, "w2");
        const assertStaleRefused = async () => {
          const before = await store.get("a");
          for (const kind of KINDS)
            expect(await store.settle(stale, SETTLEMENTS[kind], T0 + LEASE)).toBeNull();
          expect(await store.settle("a:7", SETTLEMENTS.finish, T0 + LEASE)).toBeNull();
          expect(await store.get("a")).toEqual(before);
        };
        await assertStaleRefused(); // newer claim CLAIMED
        await store.beginDial(current, { dialRef: "ref-2", numberId: "n1", at: T0 + LEASE, recorded: true });
        await assertStaleRefused(); // newer claim DIALING
        await store.settle(current, { kind: "placed", callId: "c-2" }, T0 + LEASE);
        await assertStaleRefused(); // newer claim in a call
      });
    });

    describe("deferReason and precheckDefers", () => {
      it("a defer records its reason; a claim clears it; a defer without one leaves none", async () => {
        const token = await claimed("a");
        await store.settle(token, { kind: "defer", at: T0 + 10, deferReason: "window" }, T0);
        expect(await store.get("a")).toMatchObject({ status: "SCHEDULED", deferReason: "window" });
        const next = await claimNext(T0 + 10);
        expect(await store.get("a")).toMatchObject({ status: "CLAIMED", deferReason: null });
        await store.settle(next, { kind: "defer", at: T0 + 20 }, T0 + 10);
        expect((await store.get("a"))?.deferReason).toBeNull();
      });

      it("a defer sets precheckDefers when given and keeps it otherwise; the dial row resets it", async () => {
        let token = await claimed("a");
        await store.settle(token, { kind: "defer", at: T0, deferReason: "precheck", precheckDefers: 4 }, T0);
        expect(await store.get("a")).toMatchObject({ precheckDefers: 4, deferReason: "precheck" });
        token = await claimNext(T0);
        await store.settle(token, { kind: "defer", at: T0, deferReason: "channel" }, T0);
        expect((await store.get("a"))?.precheckDefers).toBe(4);
        token = await claimNext(T0);
        await store.beginDial(token, { dialRef: `${token}@x`, numberId: "n1", at: T0, recorded: true });
        expect(await store.get("a")).toMatchObject({ status: "DIALING", precheckDefers: 0 });
      });
    });

    describe("wakeParked", () => {
      async function parked(id: string, reason: "window" | "rateLimit", at: number, templateId = "tpl") {
        await store.submit([lead(id, { templateId })], T0);
        const [claim] = await store.claimDue("w1", T0, 1, LEASE);
        expect(claim.id).toBe(id);
        await store.settle(claim.token as string, { kind: "defer", at, deferReason: reason }, T0);
      }

      it("moves the template's leads parked for the reason to `at`, and only those", async () => {
        await parked("w1", "window", T0 + 5 * 3_600_000);
        await parked("w2", "window", T0 + 6 * 3_600_000);
        await parked("rl", "rateLimit", T0 + 3_600_000);
        await parked("other", "window", T0 + 5 * 3_600_000, "tpl-2");
        await store.submit([lead("fresh", { dueAt: T0 + 9_000_000 })], T0);
        const token = await setUp.claimed("claimed");

        expect(await store.wakeParked("tpl", "window", T0 + 100)).toBe(2);
        const byId = new Map((await store.list()).map((l) => [l.id, l]));
        expect(byId.get("w1")).toMatchObject({ status: "SCHEDULED", nextAttemptAt: T0 + 100, dueAt: T0 });
        expect(byId.get("w2")?.nextAttemptAt).toBe(T0 + 100);
        expect(byId.get("rl")?.nextAttemptAt).toBe(T0 + 3_600_000);
        expect(byId.get("other")?.nextAttemptAt).toBe(T0 + 5 * 3_600_000);
        expect(byId.get("fresh")?.nextAttemptAt).toBe(T0 + 9_000_000);
        expect(byId.get("claimed")).toMatchObject({ status: "CLAIMED", token });
        expect(await store.nextDueAt()).toBe(T0 + 100);
      });

      it("never postpones a lead, and counts only the leads it moved", async () => {
        await parked("a", "window", T0 + 50);
        expect(await store.wakeParked("tpl", "window", T0 + 50)).toBe(0);
        expect(await store.wakeParked("tpl", "window", T0 + 60)).toBe(0);
        expect((await store.get("a"))?.nextAttemptAt).toBe(T0 + 50);
        expect(await store.wakeParked("nope", "window", T0)).toBe(0);
      });
    });

    describe("park and wake (waiting for a line)", () => {
      /**
       * Submits `id` (on a template of its own unless given: a lead of a template with waiters would
       * join their line instead), claims it and parks it on `set` at `now`.
       */
      async function parked(id: string, set: string[], now: number, extra: Partial<LeadInput> = {}) {
        await store.submit([lead(id, { templateId: `t-${id}`, ...extra })], T0);
        const claims = await store.claimDue("w1", now, 10, LEASE);
        const mine = claims.find((c) => c.id === id);
        expect(mine?.token).toEqual(expect.any(String));
        const settled = await store.settle(
          mine?.token as string,
          { kind: "defer", at: now, deferReason: "channel", parkOn: set },
          now,
        );
        expect(settled).toEqual({ status: "SCHEDULED", outcome: null });
      }

      it("a parked lead holds its set and place, is not claimed and is not due", async () => {
        await parked("a", ["n2", "n1"], T0 + 5);
        expect(await store.get("a")).toMatchObject({
          status: "SCHEDULED",
          parkedOn: ["n1", "n2"],
          parkedAt: T0 + 5,
          deferReason: "channel",
          owner: null,
        });
        expect(await store.claimDue("w1", T0 + 3_600_000, 10, LEASE)).toEqual([]);
        expect(await store.nextDueAt()).toBeNull();
        expect(await store.waitingCount()).toBe(1);
        expect(await store.waitingSets()).toEqual([{ numberIds: ["n1", "n2"], waiters: 1 }]);
      });

      it("a wake makes the longest-waiting waiters of a number due now, as many as asked", async () => {
        await parked("a", ["n1"], T0 + 3, { phone: "+14155550101" });
        await parked("b", ["n1"], T0 + 1, { phone: "+14155550102" });
        await parked("c", ["n1"], T0 + 2, { phone: "+14155550103" });
        expect(await store.wakeWaiters("n1", 2, T0 + 10)).toEqual(["b", "c"]);
        const b = await store.get("b");
        expect(b?.parkedOn).toBeNull();
        expect(b?.nextAttemptAt).toBeLessThanOrEqual(T0 + 10);
        expect(await store.waitingCount()).toBe(1);
        // Woken = claimable; the claim takes them by due time, then id.
        expect((await store.claimDue("w1", T0 + 10, 10, LEASE)).map((c) => c.id)).toEqual(["b", "c"]);
        expect(await store.wakeWaiters("n1", 0, T0 + 10)).toEqual([]);
        expect(await store.wakeWaiters("n9", 5, T0 + 10)).toEqual([]);
      });

      it("ties of the park time go by due time, then id", async () => {
        await store.submit(
          [lead("z", { dueAt: T0 }), lead("y", { dueAt: T0 }), lead("x", { dueAt: T0 + 1 })],
          T0,
        );
        const claims = await store.claimDue("w1", T0 + 1, 10, LEASE);
        for (const c of claims)
          await store.settle(
            c.token as string,
            { kind: "defer", at: T0, deferReason: "channel", parkOn: ["n1"] },
            T0 + 1,
          );
        expect(await store.wakeWaiters("n1", 3, T0 + 2)).toEqual(["y", "z", "x"]);
      });

      it("is fair by phone: a phone's second waiter goes after every other phone's first", async () => {
        await parked("p1a", ["n1"], T0 + 1, { phone: "+14155550101" });
        await parked("p1b", ["n1"], T0 + 2, { phone: "+14155550101" });
        await parked("p1c", ["n1"], T0 + 3, { phone: "+14155550101" });
        await parked("p2a", ["n1"], T0 + 4, { phone: "+14155550102" });
        await parked("p3a", ["n1"], T0 + 5, { phone: "+14155550103" });
        expect(await store.wakeWaiters("n1", 1, T0 + 9)).toEqual(["p1a"]);
        expect(await store.wakeWaiters("n1", 3, T0 + 9)).toEqual(["p2a", "p3a", "p1b"]);
        expect(await store.wakeWaiters("n1", 5, T0 + 9)).toEqual(["p1c"]);
      });

      it("two sets that share a number: its line wakes either set's waiters; another number only its own", async () => {
        await parked("a", ["n1", "n2"], T0 + 1, { phone: "+14155550101" });
        await parked("b", ["n2", "n3"], T0 + 2, { phone: "+14155550102" });
        await parked("c", ["n1"], T0 + 3, { phone: "+14155550103" });
        expect(await store.waitingSets()).toEqual(
          expect.arrayContaining([
            { numberIds: ["n1"], waiters: 1 },
            { numberIds: ["n1", "n2"], waiters: 1 },
            { numberIds: ["n2", "n3"], waiters: 1 },
          ]),
        );
        expect(await store.wakeWaiters("n3", 5, T0 + 9)).toEqual(["b"]);
        expect(await store.wakeWaiters("n2", 5, T0 + 9)).toEqual(["a"]);
        expect(await store.wakeWaiters("n1", 5, T0 + 9)).toEqual(["c"]);
      });

      it("a second wake of the same waiters finds them no longer parked (compare-and-set)", async () => {
        await parked("a", ["n1"], T0 + 1);
        const [first, second] = await Promise.all([
          store.wakeWaiters("n1", 1, T0 + 9),
          store.wakeWaiters("n1", 1, T0 + 9),
        ]);
        expect([...first, ...second]).toEqual(["a"]);
      });

      it("a waiter cancelled while parked finishes CANCELLED and is no longer woken", async () => {
        await parked("a", ["n1"], T0 + 1);
        expect(await store.cancel("a", T0 + 2)).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
        expect(await store.wakeWaiters("n1", 1, T0 + 9)).toEqual([]);
        expect(await store.waitingCount()).toBe(0);
      });

      it("a parked lead is claimed when its expiresAt passes (to finish EXPIRED), not before", async () => {
        await parked("a", ["n1"], T0 + 1, { expiresAt: T0 + 50_000 });
        expect(await store.nextDueAt()).toBe(T0 + 50_000);
        expect(await store.claimDue("w1", T0 + 49_999, 10, LEASE)).toEqual([]);
        const [claim] = await store.claimDue("w1", T0 + 50_000, 10, LEASE);
        expect(claim).toMatchObject({ id: "a", status: "CLAIMED", parkedOn: null });
      });

      it("a pause keeps parked leads parked: no wake, no claim; after the resume they wake", async () => {
        await store.upsertTemplates([{ id: "tpl", resellerId: "r1" }]);
        await parked("a", ["n1"], T0 + 1, { templateId: "tpl" });
        await store.pause({ templateId: "tpl" }, T0 + 2);
        expect(await store.wakeWaiters("n1", 1, T0 + 9)).toEqual([]);
        expect(await store.get("a")).toMatchObject({ parkedOn: ["n1"] });
        await store.resume({ templateId: "tpl" });
        expect(await store.wakeWaiters("n1", 1, T0 + 9)).toEqual(["a"]);
      });

      it("a woken lead that parks again keeps its place; another defer or its dial clears it", async () => {
        await parked("a", ["n1"], T0 + 1, { phone: "+14155550101" });
        await parked("b", ["n1"], T0 + 2, { phone: "+14155550102" });
        await store.wakeWaiters("n1", 1, T0 + 3);
        const [again] = await store.claimDue("w1", T0 + 3, 1, LEASE);
        expect(again.id).toBe("a");
        await store.settle(
          again.token as string,
          { kind: "defer", at: T0, deferReason: "channel", parkOn: ["n1"] },
          T0 + 4,
        );
        expect(await store.get("a")).toMatchObject({ parkedAt: T0 + 1 });
        expect(await store.wakeWaiters("n1", 1, T0 + 5)).toEqual(["a"]);
        const [third] = await store.claimDue("w1", T0 + 5, 1, LEASE);
        await store.settle(
          third.token as string,
          { kind: "defer", at: T0 + 60_000, deferReason: "rateLimit" },
          T0 + 6,
        );
        expect(await store.get("a")).toMatchObject({
          parkedOn: null,
          parkedAt: null,
          deferReason: "rateLimit",
        });
      });

      it("a due lead of a template with waiters joins their line instead of being claimed", async () => {
        await parked("a", ["n1", "n2"], T0 + 1, { phone: "+14155550101", templateId: "tpl" });
        await store.submit([lead("fresh", { phone: "+14155550102", dueAt: T0 + 2 })], T0);
        await store.submit([lead("other", { templateId: "tpl-2", dueAt: T0 + 2 })], T0);
        const claims = await store.claimDue("w1", T0 + 5, 10, LEASE);
        expect(claims.map((c) => c.id)).toEqual(["other"]);
        expect(await store.get("fresh")).toMatchObject({
          status: "SCHEDULED",
          parkedOn: ["n1", "n2"],
          parkedAt: T0 + 5,
          deferReason: "channel",
        });
        expect(await store.wakeWaiters("n2", 2, T0 + 9)).toEqual(["a", "fresh"]);
      });
    });

    describe("pause and resume", () => {
      const GLOBAL: PauseScope = { global: true };

      async function seed() {
        await store.upsertTemplates([
          { id: "t1", resellerId: "r1" },
          { id: "t2", resellerId: "r1" },
          { id: "t3", resellerId: "r2" },
        ]);
        await store.submit(
          [
            lead("a1", { templateId: "t1" }),
            lead("a2", { templateId: "t2", dueAt: T0 + 1 }),
            lead("b3", { templateId: "t3", dueAt: T0 + 2 }),
            lead("x", { templateId: "no-such-template", dueAt: T0 + 3 }),
          ],
          T0,
        );
      }
      const claimAll = async (now = T0 + 10) =>
        (await store.claimDue("w1", now, 10, LEASE)).map((l) => l.id).sort();

      it("a template pause skips its leads in claims and in nextDueAt; resume makes them claimable", async () => {
        await seed();
        expect(await store.pause({ templateId: "t1" }, T0)).toBe(true);
        expect(await store.nextDueAt()).toBe(T0 + 1);
        expect(await claimAll()).toEqual(["a2", "b3", "x"]);
        expect(await store.get("a1")).toMatchObject({ status: "SCHEDULED", claimSeq: 0 });
        expect(await store.nextDueAt()).toBeNull();

        expect(await store.resume({ templateId: "t1" })).toBe(true);
        expect(await store.nextDueAt()).toBe(T0);
        expect(await claimAll()).toEqual(["a1"]);
      });

      it("a reseller pause covers every template of the reseller", async () => {
        await seed();
        await store.pause({ resellerId: "r1" }, T0);
        expect(await claimAll()).toEqual(["b3", "x"]);
        expect(await store.nextDueAt()).toBeNull();
        await store.resume({ resellerId: "r1" });
        expect(await claimAll()).toEqual(["a1", "a2"]);
      });

      it("a global pause stops every claim, takeovers included", async () => {
        await seed();
        await store.claimDue("w1", T0, 1, LEASE);
        await store.pause(GLOBAL, T0);
        expect(await store.claimDue("w2", T0 + 10 * LEASE, 10, LEASE)).toEqual([]);
        expect(await store.nextDueAt()).toBeNull();
        expect(await store.get("a1")).toMatchObject({ status: "CLAIMED", owner: "w1" });
        await store.resume(GLOBAL);
        const claims = await store.claimDue("w2", T0 + 10 * LEASE, 10, LEASE);
        expect(claims.map((l) => [l.id, l.claimSeq])).toEqual([
          ["a1", 2],
          ["a2", 1],
          ["b3", 1],
          ["x", 1],
        ]);
      });

      it("a pause still lets a DIALING lead whose lease expired become a held unknown dial", async () => {
        await dialing("a");
        await store.pause(GLOBAL, T0);
        await store.claimDue("w2", T0 + LEASE, 10, LEASE);
        expect((await store.get("a"))?.status).toBe("PROCESSING");
      });

      it("pausing twice and resuming what is not paused say so; pauses lists them in order", async () => {
        expect(await store.pauses()).toEqual([]);
        expect(await store.pause({ templateId: "t9" }, T0 + 3)).toBe(true);
        expect(await store.pause({ templateId: "t9" }, T0 + 4)).toBe(false);
        expect(await store.pause({ resellerId: "r1" }, T0 + 2)).toBe(true);
        expect(await store.pause({ templateId: "T1" }, T0 + 5)).toBe(true);
        expect(await store.pause(GLOBAL, T0 + 1)).toBe(true);
        expect(await store.pauses()).toEqual([
          { scope: GLOBAL, pausedAt: T0 + 1 },
          { scope: { resellerId: "r1" }, pausedAt: T0 + 2 },
          { scope: { templateId: "T1" }, pausedAt: T0 + 5 },
          { scope: { templateId: "t9" }, pausedAt: T0 + 3 },
        ]);
        expect(await store.resume({ templateId: "t9" })).toBe(true);
        expect(await store.resume({ templateId: "t9" })).toBe(false);
        expect(await store.resume({ resellerId: "t1" })).toBe(false);
        expect((await store.pauses()).map((p) => p.scope)).toEqual([
          GLOBAL,
          { resellerId: "r1" },
          { templateId: "T1" },
        ]);
      });

      it("a reseller pause and a template pause of the same id are different scopes", async () => {
        await seed();
        await store.pause({ resellerId: "t1" }, T0);
        expect(await claimAll()).toEqual(["a1", "a2", "b3", "x"]);
      });
    });

    describe("expedite", () => {
      it("moves a SCHEDULED lead's nextAttemptAt earlier and keeps its dueAt", async () => {
        await store.submit([lead("a", { dueAt: T0 + 1_000 })], T0);
        expect(await store.expedite("a", T0 + 10)).toBe(true);
        expect(await store.get("a")).toMatchObject({ nextAttemptAt: T0 + 10, dueAt: T0 + 1_000 });
        expect(await store.nextDueAt()).toBe(T0 + 10);
        expect((await store.claimDue("w1", T0 + 10, 1, LEASE)).map((l) => l.id)).toEqual(["a"]);
      });

      it("never postpones a lead", async () => {
        await store.submit([lead("a", { dueAt: T0 + 10 })], T0);
        expect(await store.expedite("a", T0 + 10)).toBe(false);
        expect(await store.expedite("a", T0 + 20)).toBe(false);
        expect((await store.get("a"))?.nextAttemptAt).toBe(T0 + 10);
      });

      it("does nothing to a lead that is not SCHEDULED, or an unknown one", async () => {
        await claimed("a");
        const before = await store.get("a");
        expect(await store.expedite("a", T0 - 1)).toBe(false);
        expect(await store.get("a")).toEqual(before);
        expect(await store.expedite("nope", T0)).toBe(false);
      });
    });

    describe("cancel", () => {
      it("finishes a SCHEDULED lead CANCELLED", async () => {
        await store.submit([lead("a")], T0);
        expect(await store.cancel("a", T0)).toMatchObject({ status: "FINISHED", outcome: "CANCELLED" });
        expect(await store.claimDue("w1", T0, 10, LEASE)).toEqual([]);
      });

      it("finishes a CLAIMED lead CANCELLED and releases its lease", async () => {
        await claimed("a");
        expect(await store.cancel("a", T0)).toMatchObject({
          status: "FINISHED",
          outcome: "CANCELLED",
          owner: null,
          leaseUntil: null,
          cancelRequested: false,
        });
      });

      it("only flags a DIALING or PROCESSING lead: the dial is let finish", async () => {
        await dialing("a");
        await inCall("b");
        expect(await store.cancel("a", T0)).toMatchObject({
          status: "DIALING",
          cancelRequested: true,
          owner: "w1",
        });
        expect(await store.cancel("b", T0)).toMatchObject({ status: "PROCESSING", cancelRequested: true });
      });

      it("leaves a FINISHED lead as it is", async () => {
        await setUp.finished("a");
        const before = await store.get("a");
        expect(await store.cancel("a", T0)).toEqual(before);
      });

      it("returns null for an unknown lead", async () => {
        expect(await store.cancel("nope", T0)).toBeNull();
      });
    });

    describe("findByDial", () => {
      it("finds a lead by dialRef once its dial row is written", async () => {
        const token = await dialing("a");
        expect((await store.findByDial({ dialRef: `${token}@${T0 + 1}` }))?.id).toBe("a");
      });

      it("finds a lead by the provider's call id once placed", async () => {
        await inCall("a", "CA-1");
        expect((await store.findByDial({ callId: "CA-1" }))?.id).toBe("a");
      });

      it("prefers the dialRef and falls back to the call id", async () => {
        const a = await inCall("a", "CA-1");
        await inCall("b", "CA-2");
        expect((await store.findByDial({ callId: "CA-2", dialRef: `${a}@${T0 + 1}` }))?.id).toBe("a");
        expect((await store.findByDial({ callId: "CA-2", dialRef: "ref-404" }))?.id).toBe("b");
      });

      it("finds each lead of a call id the provider handed out twice by its dialRef", async () => {
        const a = await inCall("a", "CA-1");
        const b = await inCall("b", "CA-1");
        expect((await store.findByDial({ callId: "CA-1", dialRef: `${a}@${T0 + 1}` }))?.id).toBe("a");
        expect((await store.findByDial({ callId: "CA-1", dialRef: `${b}@${T0 + 1}` }))?.id).toBe("b");
      });

      it("still finds the lead by an earlier dial's call id after a retry", async () => {
        const token = await inCall("a", "CA-1");
        await store.settle(token, { kind: "ended", outcome: "NO_ANSWER", retryAt: T0 + 10 }, T0 + 5);
        const next = await claimNext(T0 + 10);
        await store.beginDial(next, { dialRef: "ref-2", numberId: "n1", at: T0 + 11, recorded: true });
        const found = await store.findByDial({ callId: "CA-1" });
        expect(found).toMatchObject({ id: "a", status: "DIALING" });
        expect(found?.dial?.dialRef).toBe("ref-2");
      });

      it("returns null for unknown references", async () => {
        await inCall("a", "CA-1");
        expect(await store.findByDial({ callId: "CA-404" })).toBeNull();
        expect(await store.findByDial({ dialRef: "nope" })).toBeNull();
        expect(await store.findByDial({})).toBeNull();
      });
    });

    describe("expiredUnknownDials", () => {
      it("lists held unknown dials whose dial time is at or before the bound", async () => {
        await heldUnknown("a", T0 + 1);
        await heldUnknown("b", T0 + 5);
        await inCall("c");
        expect(await store.expiredUnknownDials(T0)).toEqual([]);
        expect((await store.expiredUnknownDials(T0 + 1)).map((l) => l.id)).toEqual(["a"]);
        expect((await store.expiredUnknownDials(T0 + 100)).map((l) => l.id)).toEqual(["a", "b"]);
      });

      it("includes dials held because their owner's lease expired", async () => {
        await dialing("a");
        await store.claimDue("w2", T0 + LEASE, 10, LEASE);
        expect((await store.expiredUnknownDials(T0 + LEASE)).map((l) => l.id)).toEqual(["a"]);
      });

      it("no longer lists a dial once it was re-queued or ended", async () => {
        const a = await heldUnknown("a");
        const b = await heldUnknown("b");
        await store.settle(a, { kind: "unknownExpired", at: T0 + 10 }, T0 + 10);
        await store.settle(b, { kind: "ended", outcome: "ANSWERED" }, T0 + 10);
        expect(await store.expiredUnknownDials(T0 + 100)).toEqual([]);
      });
    });

    describe("overdueCalls", () => {
      it("lists placed calls dialled at or before the bound, never held unknown dials", async () => {
        await inCall("a");
        await heldUnknown("b");
        expect((await store.overdueCalls(T0 + 100)).map((l) => l.id)).toEqual(["a"]);
      });

      it("no longer lists a call once it ended", async () => {
        const a = await inCall("a");
        await store.settle(a, { kind: "ended", outcome: "ANSWERED" }, T0 + 10);
        expect(await store.overdueCalls(T0 + 100)).toEqual([]);
      });
    });

    describe("gateRebuildRows (design §7.13)", () => {
      const HOUR = 3_600_000;
      const byToken = <T extends { token: string }>(rows: T[]) =>
        rows.toSorted((a, b) => (a.token < b.token ? -1 : 1));
      const number = (id: string, status: OutboundNumber["status"] = "AVAILABLE"): OutboundNumber => ({
        id,
        e164: "+14155550000",
        provider: "twilio",
        maxChannels: 2,
        status,
        pool: false,
      });

      it("lists every number, the CLAIMED leads with their lease, and the dials that hold a line", async () => {
        await store.upsertNumbers([number("n2", "DISABLED"), number("n1")]);
        const c = await claimed("c");
        const d = await dialing("d");
        const i = await inCall("i");
        const u = await heldUnknown("u");
        const e = await inCall("e");
        await store.settle(e, { kind: "ended", outcome: "ANSWERED" }, T0 + 5);
        const rows = await store.gateRebuildRows(T0 + 10, null);
        expect(rows.numberIds).toEqual(["n1", "n2"]);
        expect(rows.claims).toEqual([{ token: c, leaseUntil: T0 + LEASE }]);
        expect(byToken(rows.liveDials)).toEqual(
          [d, i, u].map((token) => ({ token, numberId: "n1", at: T0 + 1 })),
        );
        expect(rows.countedDials).toEqual([]);
      });

      it("counts placed, unknown and unfinished dials inside the window, never refused ones", async () => {
        const placed = await inCall("p");
        await store.settle(placed, { kind: "ended", outcome: "ANSWERED" }, T0 + 5);
        const unknown = await heldUnknown("u");
        await store.settle(unknown, { kind: "unknownExpired", at: T0 + 9 }, T0 + 9);
        const inProgress = await dialing("d");
        const refused = await dialing("n");
        await store.settle(refused, { kind: "defer", at: T0 + 9, dialResult: "notPlaced" }, T0 + 5);
        const counted = [placed, unknown, inProgress].map((token) => ({ token, phone: PHONE, at: T0 + 1 }));

        // Half-open: the dials at T0 + 1 count while now < T0 + 1 + W.
        const inside = await store.gateRebuildRows(T0 + HOUR, HOUR);
        expect(byToken(inside.countedDials)).toEqual(byToken(counted));
        expect(inside.windowMs).toBe(HOUR);
        expect((await store.gateRebuildRows(T0 + 1 + HOUR, HOUR)).countedDials).toEqual([]);
      });

      it("counts every dial of a lead, not only its last one", async () => {
        const first = await inCall("r");
        await store.settle(first, { kind: "ended", outcome: "NO_ANSWER", retryAt: T0 + 10 }, T0 + 5);
        const second = await claimNext(T0 + 10);
        await store.beginDial(second, {
          dialRef: `${second}@${T0 + 11}`,
          numberId: "n1",
          at: T0 + 11,
          recorded: false,
        });
        const rows = await store.gateRebuildRows(T0 + 20, HOUR);
        expect(byToken(rows.countedDials)).toEqual([
          { token: first, phone: PHONE, at: T0 + 1 },
          { token: second, phone: PHONE, at: T0 + 11 },
        ]);
        expect(rows.liveDials).toEqual([{ token: second, numberId: "n1", at: T0 + 11 }]);
      });

      it("widens the window to the longest window of a template's own rules", async () => {
        await store.upsertTemplates([
          { id: "tpl", resellerId: "r1", rateLimitRules: [{ maxCalls: 3, windowSeconds: 86_400 }] },
          { id: "other", resellerId: "r1" },
        ]);
        const token = await inCall("a");
        const rows = await store.gateRebuildRows(T0 + 2 * HOUR, HOUR);
        expect(rows.windowMs).toBe(24 * HOUR);
        expect(rows.countedDials).toEqual([{ token, phone: PHONE, at: T0 + 1 }]);
      });

      it("widens the window to the rules of a template's presets and regions", async () => {
        const region = {
          match: { region: "FL" },
          rateLimitRules: [{ maxCalls: 2, windowSeconds: 2 * 86_400 }],
        };
        await store.upsertTemplates([{ id: "tpl", resellerId: "r1", regions: [region] }]);
        const token = await inCall("a");
        expect((await store.gateRebuildRows(T0 + 30 * HOUR, HOUR)).windowMs).toBe(48 * HOUR);
        await store.upsertTemplates([{ id: "debt", resellerId: "r1", presets: ["regF"] }]);
        const rows = await store.gateRebuildRows(T0 + 100 * HOUR, HOUR);
        expect(rows.windowMs).toBe(7 * 24 * HOUR);
        expect(rows.countedDials).toEqual([{ token, phone: PHONE, at: T0 + 1 }]);
      });

      it("keeps how and when each call ended: the ends of the cooling outcomes inside its window (design §7.6)", async () => {
        const OTHER = "+14155550177";
        await store.submit([lead("o", { phone: OTHER })], T0);
        const answered = await inCall("o");
        await store.settle(answered, { kind: "ended", outcome: "ANSWERED" }, T0 + 100);
        // A late second end signal of that call is refused and changes nothing.
        expect(await store.settle(answered, { kind: "ended", outcome: "VOICEMAIL" }, T0 + 900)).toBeNull();
        // A retried lead: each dial row keeps its own call's end.
        const first = await inCall("r");
        await store.settle(first, { kind: "ended", outcome: "VOICEMAIL", retryAt: T0 + 200 }, T0 + 150);
        const second = await claimNext(T0 + 200);
        await store.beginDial(second, {
          dialRef: `${second}@${T0 + 201}`,
          numberId: "n1",
          at: T0 + 201,
          recorded: true,
        });
        await store.settle(second, { kind: "placed", callId: "call-r2" }, T0 + 202);
        await store.settle(second, { kind: "ended", outcome: "ANSWERED" }, T0 + 300);
        // A cancel requested during the call finishes the lead CANCELLED; the call still ended ANSWERED.
        const cancelled = await inCall("c");
        await store.cancel("c", T0 + 50);
        expect(await store.settle(cancelled, { kind: "ended", outcome: "ANSWERED" }, T0 + 400)).toEqual({
          status: "FINISHED",
          outcome: "CANCELLED",
        });
        const busy = await inCall("b");
        await store.settle(busy, { kind: "ended", outcome: "BUSY" }, T0 + 120);
        await inCall("live");

        const cooling = { ms: HOUR, outcomes: ["ANSWERED", "VOICEMAIL"] };
        const byEnd = (rows: { at: number }[]) => rows.toSorted((a, b) => a.at - b.at);
        const rows = await store.gateRebuildRows(T0 + 100 + HOUR - 1, HOUR, cooling);
        expect(byEnd(rows.endedCalls)).toEqual([
          { phone: OTHER, outcome: "ANSWERED", at: T0 + 100 },
          { phone: PHONE, outcome: "VOICEMAIL", at: T0 + 150 },
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 300 },
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 400 },
        ]);
        // Half-open: an end at t is read while now < t + ms; also with the cheap read (no window).
        expect(byEnd((await store.gateRebuildRows(T0 + 300 + HOUR, null, cooling)).endedCalls)).toEqual([
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 400 },
        ]);
        expect(
          (await store.gateRebuildRows(T0 + 500, HOUR, { ms: HOUR, outcomes: ["BUSY"] })).endedCalls,
        ).toEqual([{ phone: PHONE, outcome: "BUSY", at: T0 + 120 }]);
        // Without cooling, or without outcomes: none.
        expect((await store.gateRebuildRows(T0 + 500, HOUR)).endedCalls).toEqual([]);
        expect((await store.gateRebuildRows(T0 + 500, HOUR, { ms: HOUR, outcomes: [] })).endedCalls).toEqual(
          [],
        );
      });

      it("endDial writes the late end of an older dial on its row, once; the current dial still ends by settle", async () => {
        const cooling = { ms: HOUR, outcomes: ["ANSWERED", "VOICEMAIL"] };
        const byEnd = (rows: { at: number }[]) => rows.toSorted((a, b) => a.at - b.at);
        // The lead's first dial is held unknown until its hold expires; the lead is dialled again.
        const older = await heldUnknown("r");
        const olderRef = `${older}@${T0 + 1}`;
        await store.settle(older, { kind: "unknownExpired", at: T0 + 10 }, T0 + 10);
        const current = await claimNext(T0 + 10);
        const currentRef = `${current}@${T0 + 11}`;
        await store.beginDial(current, { dialRef: currentRef, numberId: "n1", at: T0 + 11, recorded: true });
        await store.settle(current, { kind: "placed", callId: "call-r2" }, T0 + 12);
        const before = await store.get("r");

        // A dialRef no dial has (that claim's token, another time; an unknown lead) is refused.
        expect(await store.endDial(`${older}@${T0 + 2}`, "ANSWERED", T0 + 50)).toBe(false);
        expect(await store.endDial("nobody:1@1", "ANSWERED", T0 + 50)).toBe(false);
        expect((await store.gateRebuildRows(T0 + 200, null, cooling)).endedCalls).toEqual([]);
        // The older dial's call did ring, and its end comes late.
        expect(await store.endDial(olderRef, "ANSWERED", T0 + 100)).toBe(true);
        expect((await store.gateRebuildRows(T0 + 200, null, cooling)).endedCalls).toEqual([
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 100 },
        ]);
        // The lead and its current call are as they were.
        expect(await store.get("r")).toEqual(before);
        // A second end of that dial is refused and changes nothing.
        expect(await store.endDial(olderRef, "VOICEMAIL", T0 + 150)).toBe(false);
        expect((await store.gateRebuildRows(T0 + 200, HOUR, cooling)).endedCalls).toEqual([
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 100 },
        ]);

        // The current dial still ends by settle, on its own row; afterwards endDial finds it ended.
        expect(await store.settle(current, { kind: "ended", outcome: "VOICEMAIL" }, T0 + 300)).toEqual({
          status: "FINISHED",
          outcome: "VOICEMAIL",
        });
        expect(await store.endDial(currentRef, "ANSWERED", T0 + 400)).toBe(false);
        expect(byEnd((await store.gateRebuildRows(T0 + 500, HOUR, cooling)).endedCalls)).toEqual([
          { phone: PHONE, outcome: "ANSWERED", at: T0 + 100 },
          { phone: PHONE, outcome: "VOICEMAIL", at: T0 + 300 },
        ]);
        // Half-open, as the ends settle writes: read while now < at + ms.
        expect((await store.gateRebuildRows(T0 + 100 + HOUR, null, cooling)).endedCalls).toEqual([
          { phone: PHONE, outcome: "VOICEMAIL", at: T0 + 300 },
        ]);
      });
    });

    describe("numbers", () => {
      const number = (id: string, extra: Partial<OutboundNumber> = {}): OutboundNumber => ({
        id,
        e164: "+14155550000",
        provider: "twilio",
        maxChannels: 2,
        status: "AVAILABLE",
        pool: true,
        ...extra,
      });

      it("poolNumbers lists the AVAILABLE pool numbers of a provider, by id in code-point order", async () => {
        await store.upsertNumbers([
          number("n2"),
          number("n10"),
          number("N3"),
          number("off", { status: "DISABLED" }),
          number("pinned", { pool: false }),
          number("p1", { provider: "plivo" }),
        ]);
        expect((await store.poolNumbers("twilio")).map((n) => n.id)).toEqual(["N3", "n10", "n2"]);
        expect((await store.poolNumbers("plivo")).map((n) => n.id)).toEqual(["p1"]);
        expect((await store.poolNumbers()).map((n) => n.id)).toEqual(["N3", "n10", "n2", "p1"]);
        expect(await store.poolNumbers("exotel")).toEqual([]);
      });

      it("number returns it by id, and an upsert replaces it", async () => {
        await store.upsertNumbers([number("n1")]);
        expect(await store.number("n1")).toEqual(number("n1"));
        await store.upsertNumbers([number("n1", { status: "DISABLED", maxChannels: 5 })]);
        expect(await store.number("n1")).toEqual(number("n1", { status: "DISABLED", maxChannels: 5 }));
        expect(await store.poolNumbers("twilio")).toEqual([]);
        expect(await store.number("nope")).toBeNull();
      });

      it("the last of a repeated id in one upsert wins", async () => {
        await store.upsertNumbers([number("n1", { maxChannels: 1 }), number("n1", { maxChannels: 9 })]);
        expect((await store.number("n1"))?.maxChannels).toBe(9);
      });
    });

    describe("templates", () => {
      const full: Template = {
        id: "t1",
        resellerId: "r1",
        numberId: "n1",
        provider: "twilio",
        window: { start: "09:00", end: "21:00", timeZone: "Europe/Berlin" },
        retry: { maxAttempts: 3, onOutcomes: ["NO_ANSWER", "BUSY"], delaySeconds: 600 },
        rateLimitRules: [
          { maxCalls: 7, windowSeconds: 3600 },
          { maxCalls: 3, windowSeconds: 86400 },
        ],
      };

      it("returns a template as upserted, optional fields absent when not given", async () => {
        await store.upsertTemplates([full, { id: "t2", resellerId: "r1" }]);
        expect(await store.template("t1")).toStrictEqual(full);
        expect(await store.template("t2")).toStrictEqual({ id: "t2", resellerId: "r1" });
        expect(await store.template("nope")).toBeNull();
      });

      it("an upsert replaces the whole template, and the last of a repeated id wins", async () => {
        await store.upsertTemplates([full]);
        await store.upsertTemplates([
          { id: "t1", resellerId: "r2" },
          { id: "t1", resellerId: "r3", provider: "plivo" },
        ]);
        expect(await store.template("t1")).toStrictEqual({ id: "t1", resellerId: "r3", provider: "plivo" });
      });

      it("an upsert returns the templates that existed and whose calling window changed", async () => {
        const window = { start: "09:00", end: "21:00", timeZone: "Europe/Berlin" };
        expect(
          await store.upsertTemplates([
            { id: "a", resellerId: "r1", window },
            { id: "b", resellerId: "r1" },
          ]),
        ).toEqual([]);
        expect(
          await store.upsertTemplates([
            { id: "new", resellerId: "r1", window },
            { id: "b", resellerId: "r1", window },
            {
              id: "a",
              resellerId: "r2",
              window: { timeZone: "Europe/Berlin", end: "21:00", start: "09:00" },
            },
          ]),
        ).toEqual(["b"]);
        expect(
          await store.upsertTemplates([
            { id: "a", resellerId: "r2", window: { ...window, end: "20:00" } },
            { id: "b", resellerId: "r1" },
          ]),
        ).toEqual(["a", "b"]);
        expect(await store.upsertTemplates([])).toEqual([]);
      });

      it("keeps the calling law as given, and a change of regions or presets counts as a window change", async () => {
        const law: Template = {
          id: "law",
          resellerId: "r1",
          window: { start: "08:00", end: "21:00", timeZone: "America/New_York", days: ["mon", "fri"] },
          cooldowns: [{ seconds: 604_800, afterOutcomes: ["ANSWERED"] }],
          regions: [{ match: { region: "FL" }, window: { start: "08:00", end: "20:00" } }],
          presets: ["tcpa"],
          callerId: "local",
        };
        await store.upsertTemplates([law]);
        expect(await store.template("law")).toStrictEqual(law);
        expect(await store.upsertTemplates([{ ...law, callerId: "pool" }])).toEqual([]);
        expect(await store.upsertTemplates([{ ...law, presets: ["tcpa", "florida"] }])).toEqual(["law"]);
        expect(await store.upsertTemplates([{ ...law, regions: undefined }])).toEqual(["law"]);
      });
    });

    describe("templates' rules and cooldowns, presets and regions included (design §7.6)", () => {
      const DAY_MS = 86_400_000;
      /** Each distinct cooldown once, in a fixed order: stores may repeat one and list in any order. */
      const distinct = (cooldowns: CooldownRule[]) =>
        [...new Set(cooldowns.map((c) => JSON.stringify([c.seconds, c.afterOutcomes, c.failMode ?? null])))]
          .sort()
          .map((key) => JSON.parse(key) as [number, string[], string | null]);

      it("templateWindowMs and templateCooldowns read every template's own, its presets' and its regions'", async () => {
        expect(await store.templateWindowMs()).toBe(0);
        expect(await store.templateCooldowns()).toEqual([]);
        await store.upsertTemplates([
          {
            id: "own",
            resellerId: "r1",
            rateLimitRules: [{ maxCalls: 3, windowSeconds: 3600 }],
            cooldowns: [{ seconds: 600, afterOutcomes: ["BUSY"] }],
          },
          {
            id: "fl",
            resellerId: "r1",
            regions: [
              {
                match: { country: "US", region: "FL" },
                rateLimitRules: [{ maxCalls: 2, windowSeconds: 2 * 86_400 }],
                cooldowns: [{ seconds: 3600, afterOutcomes: ["VOICEMAIL", "NO_ANSWER"], failMode: "closed" }],
              },
            ],
          },
          { id: "plain", resellerId: "r1" },
        ]);
        expect(await store.templateWindowMs()).toBe(2 * DAY_MS);
        expect(distinct(await store.templateCooldowns())).toEqual([
          [3600, ["VOICEMAIL", "NO_ANSWER"], "closed"],
          [600, ["BUSY"], null],
        ]);
        await store.upsertTemplates([
          { id: "debt", resellerId: "r1", presets: ["regF"] },
          { id: "debt2", resellerId: "r1", presets: ["tcpa", "regF"] },
        ]);
        expect(await store.templateWindowMs()).toBe(7 * DAY_MS);
        expect(distinct(await store.templateCooldowns())).toEqual([
          [3600, ["VOICEMAIL", "NO_ANSWER"], "closed"],
          [600, ["BUSY"], null],
          [604_800, ["ANSWERED"], "closed"],
        ]);
      });
    });

    describe("block list", () => {
      it("isBlocked is true only for blocked phones, and blocking twice is harmless", async () => {
        expect(await store.isBlocked(PHONE)).toBe(false);
        await store.block([PHONE, PHONE]);
        await store.block([PHONE]);
        expect(await store.isBlocked(PHONE)).toBe(true);
        expect(await store.isBlocked("+14155550199")).toBe(false);
      });
    });
  });
}
