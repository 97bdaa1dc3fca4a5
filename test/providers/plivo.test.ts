import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/infra/config.js";
import { type PlivoOptions, PlivoProvider } from "../../src/infra/providers/plivo.js";
import { dialRequest, PLIVO_ID, PLIVO_TOKEN } from "./adapters.js";
import { FakeProvider, json } from "./fake-provider.js";

const base = (baseUrl: string): PlivoOptions => ({
  authId: PLIVO_ID,
  authToken: PLIVO_TOKEN,
  baseUrl,
  answerUrl: "https://app.example.com/plivo/answer",
  hangupUrl: "https://hooks.example.com/plivo/hangup",
});

describe("Plivo adapter", () => {
  let fake: FakeProvider;
  beforeEach(async () => {
    fake = await FakeProvider.start();
  });
  afterEach(async () => {
    await fake.close();
  });

  it("posts JSON to /v1/Account/{auth_id}/Call/ with the dialRef on the hangup and ring URLs", async () => {
    fake.plays(json(201, { message: "call fired", request_uuid: "9834029e", api_id: "97ceeb52" }));
    const req = dialRequest();
    const result = await new PlivoProvider({
      ...base(fake.url),
      ringUrl: "https://hooks.example.com/plivo/ring",
      timeLimitSeconds: 600,
    }).makeCall(req);

    expect(result).toEqual({ kind: "placed", callId: "9834029e" });
    const [sent] = fake.requests;
    expect(sent?.method).toBe("POST");
    expect(sent?.path).toBe(`/v1/Account/${PLIVO_ID}/Call/`);
    expect(sent?.authorization).toBe(`Basic ${Buffer.from(`${PLIVO_ID}:${PLIVO_TOKEN}`).toString("base64")}`);
    expect(sent?.contentType).toBe("application/json");
    const body = sent?.json as Record<string, unknown>;
    expect(body).toMatchObject({
      from: "15005550006",
      to: "14155550123",
      answer_url: "https://app.example.com/plivo/answer",
      answer_method: "POST",
      hangup_method: "POST",
      ring_method: "POST",
      time_limit: 600,
    });
    expect(new URL(body.hangup_url as string).searchParams.get("dialRef")).toBe(req.dialRef);
    expect(new URL(body.ring_url as string).searchParams.get("dialRef")).toBe(req.dialRef);
  });

  it("a 401 rejects the whole account", async () => {
    fake.plays(json(401, { api_id: "a1", error: "authentication failed" }));
    expect(await new PlivoProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "rejected",
      account: true,
    });
  });

  it("a 400 is notPlaced and quotes Plivo's error", async () => {
    fake.plays(json(400, { api_id: "a1", error: "invalid answer_url" }));
    expect(await new PlivoProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "notPlaced",
      reason: expect.stringContaining("invalid answer_url"),
    });
  });

  it("a missing hangup URL names its field; a bad token type is not echoed", () => {
    const { hangupUrl: _, ...rest } = base("https://api.plivo.com");
    expect(() => new PlivoProvider(rest as PlivoOptions)).toThrow(/^PlivoOptions\.hangupUrl /);
    try {
      new PlivoProvider({ ...base("https://api.plivo.com"), authToken: ["s3cr3t-in-array"] as never });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toMatch(/^PlivoOptions\.authToken /);
      expect((error as Error).message).not.toContain("s3cr3t");
    }
  });
});
