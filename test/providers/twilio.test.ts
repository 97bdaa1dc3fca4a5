import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/infra/config.js";
import { type TwilioOptions, TwilioProvider } from "../../src/infra/providers/twilio.js";
import { dialRequest, TWILIO_SID, TWILIO_TOKEN } from "./adapters.js";
import { FakeProvider, json } from "./fake-provider.js";

const base = (baseUrl: string): TwilioOptions => ({
  accountSid: TWILIO_SID,
  authToken: TWILIO_TOKEN,
  baseUrl,
  answerUrl: "https://app.example.com/twiml/reminder?lang=en",
  statusCallbackUrl: "https://hooks.example.com/twilio/status?tenant=acme",
});

describe("Twilio adapter", () => {
  let fake: FakeProvider;
  beforeEach(async () => {
    fake = await FakeProvider.start();
  });
  afterEach(async () => {
    await fake.close();
  });

  it("posts one form to the account's Calls.json with basic auth and the dialRef on the status callback", async () => {
    fake.plays(json(201, { sid: "CA42", status: "queued" }));
    const req = dialRequest();
    await new TwilioProvider({ ...base(fake.url), ringTimeoutSeconds: 25 }).makeCall(req);

    const [sent] = fake.requests;
    expect(sent?.method).toBe("POST");
    expect(sent?.path).toBe(`/2010-04-01/Accounts/${TWILIO_SID}/Calls.json`);
    expect(sent?.authorization).toBe(
      `Basic ${Buffer.from(`${TWILIO_SID}:${TWILIO_TOKEN}`).toString("base64")}`,
    );
    expect(sent?.contentType).toBe("application/x-www-form-urlencoded");
    const form = sent?.form as URLSearchParams;
    expect(form.get("To")).toBe("+14155550123");
    expect(form.get("From")).toBe("+15005550006");
    expect(form.get("Url")).toBe("https://app.example.com/twiml/reminder?lang=en");
    expect(form.has("Twiml")).toBe(false);
    expect(form.get("StatusCallbackMethod")).toBe("POST");
    expect(form.getAll("StatusCallbackEvent")).toEqual(["answered", "completed"]);
    expect(form.get("Timeout")).toBe("25");
    const callback = new URL(form.get("StatusCallback") as string);
    expect(callback.origin + callback.pathname).toBe("https://hooks.example.com/twilio/status");
    expect(callback.searchParams.get("tenant")).toBe("acme");
    expect(callback.searchParams.get("dialRef")).toBe(req.dialRef);
    // Encoded, not pasted: the dialRef's & and = stay inside its own parameter.
    expect(callback.search).not.toContain("&x=1");
  });

  it("sends inline TwiML when configured instead of a URL", async () => {
    fake.plays(json(201, { sid: "CA42" }));
    const { answerUrl: _, ...rest } = base(fake.url);
    const twiml = "<Response><Say>Your order ships today.</Say></Response>";
    await new TwilioProvider({ ...rest, twiml, statusCallbackEvents: ["completed"] }).makeCall(dialRequest());
    const form = fake.requests[0]?.form as URLSearchParams;
    expect(form.get("Twiml")).toBe(twiml);
    expect(form.has("Url")).toBe(false);
    expect(form.getAll("StatusCallbackEvent")).toEqual(["completed"]);
  });

  it.each([
    [21211, "invalid 'To' number"],
    [21214, "cannot be reached"],
    [21217, "does not appear to be valid"],
    [21210, "not verified"],
    [21212, "invalid 'From' number"],
  ])("a 400 with code %i is a permanent rejection of the dial, not of the account", async (code, why) => {
    fake.plays(json(400, { code, message: "refused", status: 400 }));
    const result = await new TwilioProvider(base(fake.url)).makeCall(dialRequest());
    expect(result).toMatchObject({ kind: "rejected", reason: expect.stringContaining(why) });
    expect(result).not.toHaveProperty("account", true);
  });

  it.each([
    [401, 20003],
    [401, 20005],
    [403, 20403],
    [403, 10001],
  ])("HTTP %i with code %i rejects the whole account", async (status, code) => {
    fake.plays(json(status, { code, message: "Authenticate", status }));
    const result = await new TwilioProvider(base(fake.url)).makeCall(dialRequest());
    expect(result).toMatchObject({ kind: "rejected", account: true });
  });

  it("a 401 without a code still rejects the account", async () => {
    fake.plays(json(401, {}));
    expect(await new TwilioProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "rejected",
      account: true,
    });
  });

  it("a 400 with another code is notPlaced (a later dial may pass)", async () => {
    fake.plays(json(400, { code: 21205, message: "Url is not a valid URL", status: 400 }));
    expect(await new TwilioProvider(base(fake.url)).makeCall(dialRequest())).toMatchObject({
      kind: "notPlaced",
    });
  });

  it("the reason quotes Twilio's message with the phone number masked", async () => {
    fake.plays(
      json(400, { code: 21211, message: "The 'To' number +14155550123 is not a valid phone number." }),
    );
    const result = await new TwilioProvider(base(fake.url)).makeCall(dialRequest());
    expect(result.kind).toBe("rejected");
    const reason = (result as { reason: string }).reason;
    expect(reason).toContain("***0123");
    expect(reason).not.toContain("4155550123");
  });

  it("reads an HTTP-date Retry-After against the configured clock", async () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    fake.plays(json(429, { code: 20429 }, { "retry-after": "Thu, 01 Jan 2026 00:00:30 GMT" }));
    const clock = { now: () => now, setTimer: () => ({ cancel() {} }) };
    expect(await new TwilioProvider({ ...base(fake.url), clock }).makeCall(dialRequest())).toMatchObject({
      kind: "throttled",
      retryAfterSeconds: 30,
    });
  });
});

describe("Twilio options", () => {
  const valid = base("https://api.twilio.com");
  const errorOf = (options: unknown): ValidationError => {
    try {
      new TwilioProvider(options as TwilioOptions);
    } catch (error) {
      if (error instanceof ValidationError) return error;
      throw error;
    }
    throw new Error("expected a ValidationError");
  };

  it("a missing auth token names its field", () => {
    const { authToken: _, ...rest } = valid;
    expect(errorOf(rest).path).toBe("TwilioOptions.authToken");
  });

  it("a malformed account SID names its field and the expected form", () => {
    expect(errorOf({ ...valid, accountSid: "XX1" }).message).toMatch(/^TwilioOptions\.accountSid must be AC/);
  });

  it("an auth token of the wrong type is not echoed", () => {
    const error = errorOf({ ...valid, authToken: 123456789 });
    expect(error.path).toBe("TwilioOptions.authToken");
    expect(error.message).not.toContain("123456789");
    expect(error.value).not.toBe(123456789);
  });

  it("credentials in a URL behind another bad field are not echoed either", () => {
    const error = errorOf({
      ...valid,
      accountSid: "XX1",
      baseUrl: `https://${TWILIO_SID}:${TWILIO_TOKEN}@api.twilio.com`,
    });
    expect(error.issues.map((issue) => issue.path)).toEqual([
      "TwilioOptions.accountSid",
      "TwilioOptions.baseUrl",
    ]);
    expect(error.message).not.toContain(TWILIO_TOKEN);
    expect(JSON.stringify(error.issues)).not.toContain(TWILIO_TOKEN);
  });

  it("an unknown key does not echo the object around it, secrets included", () => {
    const error = errorOf({ ...valid, authTokn: "oops" });
    expect(error.message).toContain("authTokn");
    expect(error.message).not.toContain(TWILIO_TOKEN);
    expect(JSON.stringify(error.value)).not.toContain(TWILIO_TOKEN);
  });

  it("credentials in a URL are refused without being echoed", () => {
    const error = errorOf({ ...valid, baseUrl: `https://${TWILIO_SID}:${TWILIO_TOKEN}@api.twilio.com` });
    expect(error.path).toBe("TwilioOptions.baseUrl");
    expect(error.message).not.toContain(TWILIO_TOKEN);
  });

  it("needs exactly one of answerUrl and twiml", () => {
    expect(errorOf({ ...valid, twiml: "<Response/>" }).message).toContain(
      "exactly one of answerUrl and twiml",
    );
    const { answerUrl: _, ...neither } = valid;
    expect(errorOf(neither).path).toBe("TwilioOptions.answerUrl");
  });
});
