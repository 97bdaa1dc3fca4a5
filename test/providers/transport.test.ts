/**
 * What each reply proves, for every REST adapter: placed only with a call id, notPlaced only when the
 * provider cannot have acted, unknown whenever it might have, and never a second request.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ADAPTERS, dialRequest } from "./adapters.js";
import {
  cutInBody,
  cutInHeaders,
  FakeProvider,
  json,
  neverAnswers,
  raw,
  refusingUrl,
} from "./fake-provider.js";

describe.each(ADAPTERS)("$name adapter over HTTP", (adapter) => {
  let fake: FakeProvider;
  beforeEach(async () => {
    fake = await FakeProvider.start();
  });
  afterEach(async () => {
    await fake.close();
  });

  const dial = () => adapter.make(fake.url).makeCall(dialRequest());

  it("a success reply with a call id is placed", async () => {
    fake.plays(adapter.placed("CALL-123"));
    expect(await dial()).toEqual({ kind: "placed", callId: "CALL-123" });
    expect(fake.requests).toHaveLength(1);
  });

  it.each([201, 200])("a %i reply without a call id is unknown", async (status) => {
    fake.plays(json(status, { status: "queued" }));
    expect(await dial()).toMatchObject({ kind: "unknown" });
  });

  it("a success reply with an empty body is unknown", async () => {
    fake.plays(raw(adapter.successStatus, ""));
    expect(await dial()).toMatchObject({ kind: "unknown" });
  });

  it("a success reply that is not JSON is unknown", async () => {
    fake.plays(raw(adapter.successStatus, '{"sid": "CA1", oops'));
    expect(await dial()).toMatchObject({ kind: "unknown", reason: expect.stringContaining("not JSON") });
  });

  it("a generic 400 is notPlaced", async () => {
    fake.plays(json(400, { message: "Bad request", error: "Bad request" }));
    expect(await dial()).toMatchObject({ kind: "notPlaced", reason: expect.stringContaining("HTTP 400") });
  });

  it("a 4xx whose body is not JSON is still notPlaced", async () => {
    fake.plays(raw(404, "<html>not found</html>"));
    expect(await dial()).toMatchObject({ kind: "notPlaced" });
  });

  it("429 with Retry-After is throttled for that many seconds", async () => {
    fake.plays(json(429, { code: 20429 }, { "retry-after": "7" }));
    expect(await dial()).toMatchObject({ kind: "throttled", retryAfterSeconds: 7 });
  });

  it("429 without Retry-After is throttled with no delay given", async () => {
    fake.plays(json(429, {}));
    const result = await dial();
    expect(result).toMatchObject({ kind: "throttled" });
    expect(result).toHaveProperty("retryAfterSeconds", undefined);
  });

  it.each([500, 502, 503])("%i is unknown (the call may have been created)", async (status) => {
    fake.plays(json(status, { message: "upstream" }));
    expect(await dial()).toMatchObject({
      kind: "unknown",
      reason: expect.stringContaining(`HTTP ${status}`),
    });
    expect(fake.requests).toHaveLength(1);
  });

  it("a 3xx is unknown, and the redirect is not followed", async () => {
    fake.plays((res) => {
      res.writeHead(303, { location: "/elsewhere" });
      res.end();
    });
    expect(await dial()).toMatchObject({ kind: "unknown" });
    expect(fake.requests).toHaveLength(1);
  });

  it("a socket closed in the reply's headers is unknown, and the request is not sent again", async () => {
    fake.plays(cutInHeaders);
    expect(await dial()).toMatchObject({ kind: "unknown" });
    expect(fake.requests).toHaveLength(1);
  });

  it("a socket closed in the reply's body is unknown", async () => {
    fake.plays(cutInBody);
    expect(await dial()).toMatchObject({ kind: "unknown", reason: expect.stringContaining("reply cut") });
    expect(fake.requests).toHaveLength(1);
  });

  it("no reply before the dial's signal aborts is unknown", async () => {
    fake.plays(neverAnswers);
    const result = await adapter.make(fake.url).makeCall(dialRequest(AbortSignal.timeout(150)));
    expect(result).toMatchObject({ kind: "unknown", reason: expect.stringContaining("timeout") });
    expect(fake.requests).toHaveLength(1);
  });

  it("a refused connection is notPlaced", async () => {
    const result = await adapter.make(await refusingUrl()).makeCall(dialRequest());
    expect(result).toMatchObject({ kind: "notPlaced", reason: expect.stringContaining("ECONNREFUSED") });
  });

  it("an unresolvable host is notPlaced", async () => {
    const result = await adapter.make("http://dialgate-test.invalid").makeCall(dialRequest());
    expect(result).toMatchObject({ kind: "notPlaced" });
  });

  it("a signal aborted before the dial sends nothing and is notPlaced", async () => {
    fake.plays(adapter.placed("CALL-1"));
    const controller = new AbortController();
    controller.abort();
    expect(await adapter.make(fake.url).makeCall(dialRequest(controller.signal))).toMatchObject({
      kind: "notPlaced",
    });
    expect(fake.requests).toHaveLength(0);
  });
});
