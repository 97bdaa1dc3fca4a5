/**
 * callStatus of the REST adapters (design §7.19), against a fake provider API: the documented GET of
 * each one's call resource, its status words read as live / ended with the callbacks' outcome, and
 * a call the provider does not know as unknown.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CallStatus, Provider } from "../../src/machines/ports.js";
import {
  ADAPTERS,
  EXOTEL_KEY,
  EXOTEL_SID,
  EXOTEL_TOKEN,
  PLIVO_ID,
  PLIVO_TOKEN,
  TWILIO_SID,
  TWILIO_TOKEN,
} from "./adapters.js";
import { FakeProvider, json, type Play } from "./fake-provider.js";

const adapter = (name: string, baseUrl: string): Provider => {
  const found = ADAPTERS.find((a) => a.name === name);
  if (!found) throw new Error(name);
  return found.make(baseUrl);
};
const ask = (provider: Provider, callId: string): Promise<CallStatus> => {
  if (!provider.callStatus) throw new Error(`${provider.name} has no callStatus`);
  return provider.callStatus(callId, AbortSignal.timeout(5000));
};
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

let fake: FakeProvider;
beforeEach(async () => {
  fake = await FakeProvider.start();
});
afterEach(async () => {
  await fake.close();
});

/** Answers by the path of the request just recorded; anything else is 404. */
const byPath =
  (routes: Record<string, Play>): Play =>
  (res) => {
    const path = fake.requests.at(-1)?.path ?? "";
    (routes[path] ?? json(404, { error: "not found" }))(res);
  };

describe("Twilio callStatus", () => {
  const path = `/2010-04-01/Accounts/${TWILIO_SID}/Calls/CA42.json`;

  it("GETs the call resource with basic auth", async () => {
    fake.plays(json(200, { sid: "CA42", status: "in-progress" }));
    expect(await ask(adapter("twilio", fake.url), "CA42")).toEqual({ state: "live" });
    expect(fake.requests.map((r) => [r.method, r.path, r.authorization])).toEqual([
      ["GET", path, basic(TWILIO_SID, TWILIO_TOKEN)],
    ]);
  });

  it("reads queued and ringing as live, the terminal statuses as the callbacks' outcomes", async () => {
    const cases: [string, CallStatus][] = [
      ["queued", { state: "live" }],
      ["ringing", { state: "live" }],
      ["completed", { state: "ended", outcome: "ANSWERED" }],
      ["busy", { state: "ended", outcome: "BUSY" }],
      ["no-answer", { state: "ended", outcome: "NO_ANSWER" }],
      ["failed", { state: "ended", outcome: "FAILED" }],
      ["canceled", { state: "ended", outcome: "FAILED" }],
      ["something-new", { state: "unknown" }],
    ];
    for (const [status, expected] of cases) {
      fake.plays(json(200, { sid: "CA42", status }));
      expect(await ask(adapter("twilio", fake.url), "CA42"), status).toEqual(expected);
    }
  });

  it("a call Twilio does not know is unknown; a 5xx is an error", async () => {
    fake.plays(json(404, { code: 20404, message: "not found" }));
    expect(await ask(adapter("twilio", fake.url), "CA42")).toEqual({ state: "unknown" });
    fake.plays(json(503, {}));
    await expect(ask(adapter("twilio", fake.url), "CA42")).rejects.toThrow(/HTTP 503/);
  });
});

describe("Exotel callStatus", () => {
  const path = `/v1/Accounts/${EXOTEL_SID}/Calls/exo-1.json`;

  it("GETs Calls/{CallSid}.json and reads Call.Status", async () => {
    fake.plays(json(200, { Call: { Sid: "exo-1", Status: "in-progress" } }));
    expect(await ask(adapter("exotel", fake.url), "exo-1")).toEqual({ state: "live" });
    expect(fake.requests.map((r) => [r.method, r.path, r.authorization])).toEqual([
      ["GET", path, basic(EXOTEL_KEY, EXOTEL_TOKEN)],
    ]);
    for (const [status, outcome] of [
      ["completed", "ANSWERED"],
      ["busy", "BUSY"],
      ["no-answer", "NO_ANSWER"],
      ["failed", "FAILED"],
    ]) {
      fake.plays(json(200, { Call: { Sid: "exo-1", Status: status } }));
      expect(await ask(adapter("exotel", fake.url), "exo-1")).toEqual({ state: "ended", outcome });
    }
  });
});

describe("Plivo callStatus", () => {
  const call = `/v1/Account/${PLIVO_ID}/Call/req-1/`;

  it("a queued call (by its request uuid) is live", async () => {
    fake.plays(byPath({ [`${call}?status=queued`]: json(200, { call_status: "queued" }) }));
    expect(await ask(adapter("plivo", fake.url), "req-1")).toEqual({ state: "live" });
    expect(fake.requests[0]?.authorization).toBe(basic(PLIVO_ID, PLIVO_TOKEN));
  });

  it("a live call is live", async () => {
    fake.plays(byPath({ [`${call}?status=live`]: json(200, { call_status: "in-progress" }) }));
    expect(await ask(adapter("plivo", fake.url), "req-1")).toEqual({ state: "live" });
    expect(fake.requests.map((r) => r.path)).toEqual([`${call}?status=queued`, `${call}?status=live`]);
  });

  it("a finished call is read from its record: answered, busy, no answer", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ answer_time: "2031-01-06 06:00:05", hangup_cause_name: "Normal Hangup" }, "ANSWERED"],
      [{ answer_time: "", hangup_cause_name: "Busy Line" }, "BUSY"],
      [{ hangup_cause_name: "No Answer" }, "NO_ANSWER"],
      [{ hangup_cause_name: "Unallocated Number" }, "FAILED"],
    ];
    for (const [record, outcome] of cases) {
      fake.plays(byPath({ [call]: json(200, { call_uuid: "req-1", ...record }) }));
      expect(await ask(adapter("plivo", fake.url), "req-1")).toEqual({ state: "ended", outcome });
    }
  });

  it("a call Plivo knows nowhere is unknown", async () => {
    fake.plays(byPath({}));
    expect(await ask(adapter("plivo", fake.url), "req-1")).toEqual({ state: "unknown" });
    expect(fake.requests).toHaveLength(3);
  });
});
