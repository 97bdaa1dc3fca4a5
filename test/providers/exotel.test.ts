import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { verifyExotelCallbackUrl } from "../../src/infra/providers/callbacks.js";
import { type ExotelOptions, ExotelProvider } from "../../src/infra/providers/exotel.js";
import { dialRequest, EXOTEL_KEY, EXOTEL_SID, EXOTEL_TOKEN } from "./adapters.js";
import { FakeProvider, json } from "./fake-provider.js";

const FLOW = "http://my.exotel.com/acme1/exoml/start_voice/123456";

const base = (baseUrl: string): ExotelOptions => ({
  accountSid: EXOTEL_SID,
  apiKey: EXOTEL_KEY,
  apiToken: EXOTEL_TOKEN,
  baseUrl,
  flowUrl: FLOW,
  statusCallbackUrl: "https://hooks.example.com/exotel/status",
});

describe("Exotel adapter", () => {
  let fake: FakeProvider;
  beforeEach(async () => {
    fake = await FakeProvider.start();
  });
  afterEach(async () => {
    await fake.close();
  });

  it("with a callbackSecret, signs each callback URL so the callback handler can check it", async () => {
    fake.plays(json(200, { Call: { Sid: "b6cfaf0a2f1b4c1e" } }));
    const secret = "exotel-callback-secret-1234";
    const req = dialRequest();
    await new ExotelProvider({ ...base(fake.url), callbackSecret: secret }).makeCall(req);
    const callback = fake.requests[0]?.form.get("StatusCallback") as string;
    expect(new URL(callback).searchParams.get("sig")).toBeTruthy();
    expect(verifyExotelCallbackUrl(callback, secret)).toBe(true);
    expect(verifyExotelCallbackUrl(callback, "another-secret-123456")).toBe(false);
  });

  it("posts a form to Calls/connect.json: the callee as From, the flow as Url, our number as CallerId", async () => {
    fake.plays(json(200, { Call: { Sid: "b6cfaf0a2f1b4c1e", Status: "in-progress" } }));
    const req = dialRequest();
    const result = await new ExotelProvider({
      ...base(fake.url),
      statusCallbackEvents: ["terminal", "answered"],
      timeLimitSeconds: 900,
      ringTimeoutSeconds: 30,
    }).makeCall(req);

    expect(result).toEqual({ kind: "placed", callId: "b6cfaf0a2f1b4c1e" });
    const [sent] = fake.requests;
    expect(sent?.method).toBe("POST");
    expect(sent?.path).toBe(`/v1/Accounts/${EXOTEL_SID}/Calls/connect.json`);
    expect(sent?.authorization).toBe(
      `Basic ${Buffer.from(`${EXOTEL_KEY}:${EXOTEL_TOKEN}`).toString("base64")}`,
    );
    const form = sent?.form as URLSearchParams;
    expect(form.get("From")).toBe("+14155550123");
    expect(form.has("To")).toBe(false);
    expect(form.get("CallerId")).toBe("+15005550006");
    expect(form.get("Url")).toBe(FLOW);
    expect(form.get("CallType")).toBe("trans");
    expect(form.get("StatusCallbackEvents[0]")).toBe("terminal");
    expect(form.get("StatusCallbackEvents[1]")).toBe("answered");
    expect(form.get("TimeLimit")).toBe("900");
    expect(form.get("TimeOut")).toBe("30");
    expect(form.get("CustomField")).toBe(req.dialRef);
    expect(new URL(form.get("StatusCallback") as string).searchParams.get("dialRef")).toBe(req.dialRef);
  });

  it("bridges an agent to the callee when configured with an agent number", async () => {
    fake.plays(json(200, { Call: { Sid: "s1" } }));
    const { flowUrl: _, ...rest } = base(fake.url);
    await new ExotelProvider({ ...rest, agentNumber: "+919900000001" }).makeCall(dialRequest());
    const form = fake.requests[0]?.form as URLSearchParams;
    expect(form.get("From")).toBe("+919900000001");
    expect(form.get("To")).toBe("+14155550123");
    expect(form.get("CallerId")).toBe("+15005550006");
    expect(form.has("Url")).toBe(false);
  });

  it.each([401, 402, 403])("HTTP %i rejects the whole account", async (status) => {
    fake.plays(json(status, { RestException: { Status: status, Message: "Authentication failed." } }));
    expect(await new ExotelProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "rejected",
      account: true,
    });
  });

  it("a 400 is notPlaced and quotes Exotel's message", async () => {
    fake.plays(json(400, { RestException: { Status: 400, Message: "CallerId is not valid" } }));
    expect(await new ExotelProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "notPlaced",
      reason: expect.stringContaining("CallerId is not valid"),
    });
  });

  it("a reply whose Call has no Sid is unknown", async () => {
    fake.plays(json(200, { Call: { Status: "queued" } }));
    expect(await new ExotelProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "unknown",
    });
  });

  it("options: both or neither of flowUrl and agentNumber are refused; the token is never echoed", () => {
    expect(
      () => new ExotelProvider({ ...base("https://api.exotel.com"), agentNumber: "+919900000001" }),
    ).toThrow(/^ExotelOptions\.flowUrl exactly one of flowUrl and agentNumber/);
    expect(() => new ExotelProvider({ ...base("https://api.exotel.com"), apiToken: "" })).toThrow(
      /^ExotelOptions\.apiToken /,
    );
    try {
      new ExotelProvider({ ...base("https://api.exotel.com"), extra: 1 } as never);
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).not.toContain(EXOTEL_TOKEN);
    }
  });
});
