/**
 * One phone, one window: a number is kept and keyed as E.164 whatever the spelling a lead list uses,
 * so the per-phone cap and the block list see one phone. Input the stores would disagree on (a NUL, a
 * lone surrogate) is refused at validation with its field path. On memory and on Redis + Postgres.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/infra/config.js";
import { memoryBackend, realBackend, type TestBackend, useBackend } from "../support/backends.js";
import { createHarness, HOUR, MINUTE, TEMPLATE } from "../support/harness.js";
import { ScriptedProvider } from "../support/scripted-provider.js";

const E164 = "+919800000001";
/** Ten ways a lead list writes +919800000001. */
const SPELLINGS = [
  "+919800000001",
  "+91 98000 00001",
  "+91-98000-00001",
  "+91/98000/00001",
  "+91 (98000) 00001",
  "+91.98000.00001",
  " +91 98000 00001 ",
  "+(91) 98000 00001",
  "+91 98000-00001",
  "+91 980 000 0001",
];
const RULES = [{ maxCalls: 2, windowSeconds: 3600 }];

const BACKENDS = [memoryBackend, realBackend({ isolation: "schema" })];

function harness(backend: TestBackend, blockedPhones?: string[]) {
  return createHarness({
    backend,
    config: { rateLimit: { rules: RULES } },
    blockedPhones,
    provider: (clock) => new ScriptedProvider(clock),
  });
}

async function refusal(attempt: Promise<unknown>): Promise<ValidationError> {
  const error = await attempt.then(
    () => new Error("accepted"),
    (e: unknown) => e,
  );
  if (!(error instanceof ValidationError)) throw error;
  return error;
}

describe.each(BACKENDS)("phones and text at the edge, on $name", (backend) => {
  useBackend(backend);

  it("ten spellings of one number share one rate window: 2 calls in the hour under 2 per hour", async () => {
    const h = await harness(backend);
    await h.dispatcher.submit(SPELLINGS.map((phone, i) => ({ id: `L${i}`, phone, templateId: TEMPLATE.id })));
    await h.advance(30 * MINUTE);

    expect(h.provider.calls).toHaveLength(2);
    expect(h.provider.calls.map((c) => c.req.to)).toEqual([E164, E164]);
    expect(await h.members(E164)).toHaveLength(2);
    // Stored as E.164 only: the stores, the key and the block list never meet another spelling.
    const stored = await h.leads.list();
    expect(new Set(stored.map((l) => l.phone))).toEqual(new Set([E164]));
    const waiting = stored.filter((l) => l.status === "SCHEDULED");
    expect(waiting).toHaveLength(8);
    for (const lead of waiting)
      expect(lead.nextAttemptAt).toBeGreaterThanOrEqual(h.clock.now() + 29 * MINUTE);

    // The hour after the first two: two more, never more.
    await h.advance(HOUR);
    expect(h.provider.calls).toHaveLength(4);
  });

  it("a number blocked with spaces is not dialled in any spelling, nor one blocked as E.164", async () => {
    const h = await harness(backend, ["+91 98000 00001", "+919800000002"]);
    await h.dispatcher.submit([
      { id: "B1", phone: E164, templateId: TEMPLATE.id },
      { id: "B2", phone: "+91-98000-00001", templateId: TEMPLATE.id },
      { id: "B3", phone: "+91 98000 00002", templateId: TEMPLATE.id },
      { id: "OK", phone: "+919800000003", templateId: TEMPLATE.id },
    ]);
    await h.advance(MINUTE);

    for (const id of ["B1", "B2", "B3"])
      expect(await h.lead(id)).toMatchObject({ status: "FINISHED", outcome: "BLACKLISTED" });
    expect(h.provider.calls.map((c) => c.req.leadId)).toEqual(["OK"]);
  });

  it("a phone with an extension is refused with its path, and nothing of the batch is stored", async () => {
    const h = await harness(backend);
    const error = await refusal(
      h.dispatcher.submit([
        { id: "A", phone: E164, templateId: TEMPLATE.id },
        { id: "B", phone: "+91 98000 00001 x2", templateId: TEMPLATE.id },
      ]),
    );
    expect(error.path).toBe("leads[1].phone");
    expect(error.message).toContain("must not carry an extension");
    expect(error.message).not.toContain("98000");
    expect(await h.leads.list()).toEqual([]);
  });

  it.each([
    ["a NUL in an id", { id: "L\u00001" }, "leads[0].id"],
    ["a lone high surrogate in an id", { id: "L\uD8001" }, "leads[0].id"],
    ["a NUL in the template id", { templateId: "tpl\u0000" }, "leads[0].templateId"],
    [
      "a NUL deep in the payload",
      { payload: { order: { notes: ["ok", "a\u0000b"] } } },
      "leads[0].payload.order.notes[1]",
    ],
    ["a lone low surrogate in the payload", { payload: { name: "\uDC00x" } }, "leads[0].payload.name"],
    ["a NUL in a payload key", { payload: { nested: { "k\u0000": 1 } } }, "leads[0].payload.nested"],
  ])("%s is refused with its field path, and nothing is stored", async (_, over, path) => {
    const h = await harness(backend);
    const error = await refusal(
      h.dispatcher.submit([{ id: "L1", phone: E164, templateId: TEMPLATE.id, ...over }]),
    );
    expect(error.path).toBe(path);
    expect(error.problem).toMatch(/NUL character or a lone surrogate/);
    expect(await h.leads.list()).toEqual([]);
  });

  it("a surrogate pair (an emoji) is text like any other and is kept as given", async () => {
    const h = await harness(backend);
    await h.dispatcher.submit({ id: "L😀", phone: E164, templateId: TEMPLATE.id, payload: { note: "😀" } });
    expect(await h.lead("L😀")).toMatchObject({ payload: { note: "😀" } });
  });

  it("templates and numbers with a NUL are refused with their path", async () => {
    const h = await harness(backend);
    const template = await refusal(h.dispatcher.upsertTemplates([{ id: "t\u0000", resellerId: "r" }]));
    expect(template.path).toBe("templates[0].id");
    const number = await refusal(
      h.dispatcher.upsertNumbers([{ id: "n2", e164: "+15550000002", provider: "s\u0000", maxChannels: 1 }]),
    );
    expect(number.path).toBe("numbers[0].provider");
    expect(await h.leads.number("n2")).toBeNull();
  });

  it("a number without lines and a rule without calls are refused with their path (no endless deferrals)", async () => {
    const h = await harness(backend);
    const number = await refusal(
      h.dispatcher.upsertNumbers([{ id: "n0", e164: "+15550000002", provider: "sim", maxChannels: 0 }]),
    );
    expect(number.message).toBe("numbers[0].maxChannels must be ≥ 1, got 0");
    const template = await refusal(
      h.dispatcher.upsertTemplates([
        { id: "t0", resellerId: "r", rateLimitRules: [{ maxCalls: 0, windowSeconds: 60 }] },
      ]),
    );
    expect(template.message).toBe("templates[0].rateLimitRules[0].maxCalls must be ≥ 1, got 0");
    expect(await h.leads.number("n0")).toBeNull();
    expect(await h.leads.template("t0")).toBeNull();
  });
});
