import { createHmac } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  type CallbackHandlerOptions,
  type CallEndSignal,
  createCallbackHandler,
  signExotelCallbackUrl,
  twilioSignatureAlgorithm,
  verifyPlivoSignatureV3,
  verifyTwilioSignature,
} from "../../src/infra/providers/callbacks.js";
import { withDialRef } from "../../src/infra/providers/http.js";

// Signatures are computed here from each provider's documented scheme, apart from the code under test.
function twilioSign(
  url: string,
  params: Record<string, string>,
  token: string,
  algorithm: "sha1" | "sha256" = "sha1",
): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, name) => acc + name + params[name], url);
  return createHmac(algorithm, token).update(data).digest("base64");
}

function plivoSign(signedUrl: string, nonce: string, token: string): string {
  return createHmac("sha256", token).update(`${signedUrl}.${nonce}`).digest("base64");
}

describe("verifyTwilioSignature", () => {
  // twilio.com/docs/usage/webhooks/webhooks-security: the worked example.
  const url = "https://mycompany.com/myapp.php?foo=1&bar=2";
  const params = {
    CallSid: "CA1234567890ABCDE",
    Caller: "+12349013030",
    Digits: "1234",
    From: "+12349013030",
    To: "+18005551212",
  };
  const documented = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

  it("accepts Twilio's documented example", () => {
    expect(twilioSign(url, params, "12345")).toBe(documented);
    expect(verifyTwilioSignature(url, params, documented, "12345")).toBe(true);
  });

  it("refuses a tampered parameter, another URL, another token, a missing header", () => {
    expect(verifyTwilioSignature(url, { ...params, Digits: "9999" }, documented, "12345")).toBe(false);
    expect(
      verifyTwilioSignature("https://mycompany.com/myapp.php?foo=1&bar=3", params, documented, "12345"),
    ).toBe(false);
    expect(verifyTwilioSignature(url, params, documented, "54321")).toBe(false);
    expect(verifyTwilioSignature(url, params, undefined, "12345")).toBe(false);
    expect(verifyTwilioSignature(url, params, documented.slice(0, -1), "12345")).toBe(false);
  });

  it("accepts a signature made over the URL with its default port spelled out", () => {
    const signed = twilioSign("https://mycompany.com:443/myapp.php?foo=1&bar=2", params, "12345");
    expect(verifyTwilioSignature(url, params, signed, "12345")).toBe(true);
  });

  it("on a URL with a non-default port, accepts a signature made with or without that port", () => {
    // twilio-node validateRequest: addPort (the URL as given) or removePort (no port at all).
    const ported = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
    expect(verifyTwilioSignature(ported, params, twilioSign(ported, params, "12345"), "12345")).toBe(true);
    expect(verifyTwilioSignature(ported, params, documented, "12345")).toBe(true);
    const otherPort = twilioSign("https://mycompany.com:9443/myapp.php?foo=1&bar=2", params, "12345");
    expect(verifyTwilioSignature(ported, params, otherPort, "12345")).toBe(false);
  });

  it("checks HMAC-SHA256 signatures (Webhooks SharedKey) when asked, and only then", () => {
    const sha256 = twilioSign(url, params, "shared-key-secret", "sha256");
    expect(verifyTwilioSignature(url, params, sha256, "shared-key-secret", "sha256")).toBe(true);
    expect(verifyTwilioSignature(url, params, sha256, "shared-key-secret")).toBe(false);
    expect(verifyTwilioSignature(url, params, documented, "12345", "sha256")).toBe(false);
  });

  it("reads the algorithm of X-Twilio-Webhooks-Signature-Settings", () => {
    expect(twilioSignatureAlgorithm("key=KS123,algorithm=HMAC_SHA256")).toBe("sha256");
    expect(twilioSignatureAlgorithm("algorithm=HMAC_SHA1, key=KS123")).toBe("sha1");
    expect(twilioSignatureAlgorithm("key=KS123,algorithm=HMAC_MD5")).toBeUndefined();
    expect(twilioSignatureAlgorithm("key=KS123")).toBeUndefined();
  });
});

describe("verifyPlivoSignatureV3", () => {
  const token = "MjFmMmJiODVlOGRiZDIyNzdhMTdhYjMw";
  const url = "https://hooks.example.com/plivo/hangup?dialRef=lead-1%3A3&b=2";
  const params = { RequestUUID: "9834029e", CallStatus: "completed", Duration: "10" };
  // The signed string by hand: base, "?", sorted decoded query, ".", sorted name+value params.
  const signedUrl =
    "https://hooks.example.com/plivo/hangup?b=2&dialRef=lead-1:3.CallStatuscompletedDuration10RequestUUID9834029e";
  const nonce = "05429567804466091622";
  const signature = plivoSign(signedUrl, nonce, token);

  it("accepts a POST signed by the V3 scheme", () => {
    expect(verifyPlivoSignatureV3({ url, method: "POST", params, nonce, signature, authToken: token })).toBe(
      true,
    );
  });

  it("accepts any one of several comma-separated signatures (one per active token)", () => {
    const header = `${plivoSign(signedUrl, nonce, "old-token")},${signature}`;
    expect(
      verifyPlivoSignatureV3({ url, method: "POST", params, nonce, signature: header, authToken: token }),
    ).toBe(true);
  });

  it("refuses a tampered parameter, another nonce, a missing nonce", () => {
    const input = { url, method: "POST" as const, params, nonce, signature, authToken: token };
    expect(verifyPlivoSignatureV3({ ...input, params: { ...params, CallStatus: "busy" } })).toBe(false);
    expect(verifyPlivoSignatureV3({ ...input, nonce: "05429567804466091623" })).toBe(false);
    expect(verifyPlivoSignatureV3({ ...input, nonce: undefined })).toBe(false);
  });

  it("signs a request without parameters over the URL alone", () => {
    const bare = "https://hooks.example.com/plivo/ring";
    const sig = plivoSign(bare, nonce, token);
    expect(
      verifyPlivoSignatureV3({
        url: bare,
        method: "POST",
        params: {},
        nonce,
        signature: sig,
        authToken: token,
      }),
    ).toBe(true);
    const withQuery = "https://hooks.example.com/plivo/ring?z=1&a=2";
    const sig2 = plivoSign("https://hooks.example.com/plivo/ring?a=2&z=1", nonce, token);
    expect(
      verifyPlivoSignatureV3({
        url: withQuery,
        method: "GET",
        params: {},
        nonce,
        signature: sig2,
        authToken: token,
      }),
    ).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

const PUBLIC = "https://hooks.example.com";
const TOKEN = "callback-secret-token";
const DIAL_REF = "lead-7:2:1767225600000";

interface Harness {
  ends: CallEndSignal[];
  clock: { now(): number; setTimer(at: number, fn: () => void): { cancel(): void } };
  advance(ms: number): void;
  post(path: string, form: Record<string, string>, headers: Record<string, string>): Promise<Response>;
  get(path: string, headers: Record<string, string>): Promise<Response>;
  failNext(): void;
  port: number;
  /** Resolves with the next timer the handler sets, to fire it by hand. */
  nextTimer(): Promise<() => void>;
}

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function harness(options: Partial<CallbackHandlerOptions> & Pick<CallbackHandlerOptions, "provider">) {
  let now = 1_767_225_600_000;
  let fail = false;
  const ends: CallEndSignal[] = [];
  let onTimer: ((fire: () => void) => void) | undefined;
  const clock = {
    now: () => now,
    setTimer: (_at: number, fn: () => void) => {
      onTimer?.(fn);
      return { cancel() {} };
    },
  };
  const handler = createCallbackHandler({
    authToken: TOKEN,
    publicBaseUrl: PUBLIC,
    clock,
    dialgate: {
      async callEnded(signal) {
        if (fail) {
          fail = false;
          throw new Error("store down");
        }
        ends.push(signal);
        return { kind: "ended" };
      },
    },
    ...options,
  });
  server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const h: Harness = {
    ends,
    clock,
    advance: (ms) => {
      now += ms;
    },
    post: (path, form, headers) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams(form).toString(),
      }),
    get: (path, headers) => fetch(`http://127.0.0.1:${port}${path}`, { headers }),
    failNext: () => {
      fail = true;
    },
    port,
    nextTimer: () =>
      new Promise((resolve) => {
        onTimer = resolve;
      }),
  };
  return h;
}

/** The status callback URL exactly as the Twilio adapter hands it to Twilio. */
const twilioCallbackUrl = withDialRef(`${PUBLIC}/twilio/status`, DIAL_REF);
const twilioPath = twilioCallbackUrl.slice(PUBLIC.length);

function twilioForm(status: string, sequence = "3"): Record<string, string> {
  return {
    AccountSid: `AC${"0".repeat(32)}`,
    CallSid: "CA42",
    CallStatus: status,
    CallDuration: "12",
    Direction: "outbound-api",
    From: "+15005550006",
    To: "+14155550123",
    SequenceNumber: sequence,
    Timestamp: "Thu, 01 Jan 2026 00:00:12 +0000",
  };
}

const signedTwilio = (form: Record<string, string>) => ({
  "x-twilio-signature": twilioSign(twilioCallbackUrl, form, TOKEN),
});

describe("createCallbackHandler for Twilio", () => {
  it("a terminal status ends the call by call id and dialRef", async () => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm("busy");
    const res = await h.post(twilioPath, form, signedTwilio(form));
    expect(res.status).toBe(200);
    expect(h.ends).toEqual([{ callId: "CA42", dialRef: DIAL_REF, outcome: "BUSY" }]);
  });

  it.each([
    ["completed", "ANSWERED"],
    ["no-answer", "NO_ANSWER"],
    ["failed", "FAILED"],
    ["canceled", "FAILED"],
  ])("%s becomes %s", async (status, outcome) => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm(status);
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
    expect(h.ends.map((e) => e.outcome)).toEqual([outcome]);
  });

  it("an outcome can be given per status", async () => {
    const h = await harness({ provider: "twilio", outcomes: { completed: "CONFIRMED" } });
    const form = twilioForm("completed");
    await h.post(twilioPath, form, signedTwilio(form));
    expect(h.ends.map((e) => e.outcome)).toEqual(["CONFIRMED"]);
  });

  it.each(["initiated", "ringing", "in-progress", "queued"])(
    "%s is acknowledged without ending anything",
    async (s) => {
      const h = await harness({ provider: "twilio" });
      const form = twilioForm(s);
      expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
      expect(h.ends).toEqual([]);
    },
  );

  it("an unsigned callback is 401 and ends nothing", async () => {
    const h = await harness({ provider: "twilio" });
    expect((await h.post(twilioPath, twilioForm("completed"), {})).status).toBe(401);
    expect(h.ends).toEqual([]);
  });

  it("a tampered parameter is 403 and ends nothing", async () => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm("completed");
    const res = await h.post(twilioPath, { ...form, CallStatus: "busy" }, signedTwilio(form));
    expect(res.status).toBe(403);
    expect(h.ends).toEqual([]);
  });

  it("a tampered dialRef in the URL is 403", async () => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm("completed");
    const other = withDialRef(`${PUBLIC}/twilio/status`, "lead-8:1:1").slice(PUBLIC.length);
    expect((await h.post(other, form, signedTwilio(form))).status).toBe(403);
  });

  it("the same signed callback again within the window is 409; after the window it is taken", async () => {
    const h = await harness({ provider: "twilio", replayWindowMs: 60_000 });
    const form = twilioForm("completed");
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
    h.advance(59_999);
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(409);
    expect(h.ends).toHaveLength(1);
    h.advance(1);
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
    expect(h.ends).toHaveLength(2);
  });

  it("duplicate terminal callbacks (distinct deliveries) each call callEnded: dialgate is idempotent", async () => {
    const h = await harness({ provider: "twilio" });
    const first = twilioForm("completed", "3");
    const second = twilioForm("completed", "4");
    expect((await h.post(twilioPath, first, signedTwilio(first))).status).toBe(200);
    expect((await h.post(twilioPath, second, signedTwilio(second))).status).toBe(200);
    expect(h.ends).toHaveLength(2);
  });

  it("a failing callEnded (its store away) answers 503 and lets the provider's retry of the same callback through", async () => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm("completed");
    h.failNext();
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(503);
    expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
    expect(h.ends).toHaveLength(1);
  });

  it("remembers a bounded number of signatures, forgetting the oldest first", async () => {
    const h = await harness({ provider: "twilio", maxRemembered: 2 });
    const forms = ["1", "2", "3"].map((seq) => twilioForm("ringing", seq));
    for (const form of forms) expect((await h.post(twilioPath, form, signedTwilio(form))).status).toBe(200);
    const [oldest, , newest] = forms as [
      Record<string, string>,
      Record<string, string>,
      Record<string, string>,
    ];
    expect((await h.post(twilioPath, newest, signedTwilio(newest))).status).toBe(409);
    expect((await h.post(twilioPath, oldest, signedTwilio(oldest))).status).toBe(200);
  });

  it("refuses other methods, oversized bodies and non-form bodies", async () => {
    const h = await harness({ provider: "twilio", maxBodyBytes: 512 });
    const form = twilioForm("completed");
    const big = { ...form, Pad: "x".repeat(1000) };
    expect((await h.post(twilioPath, big, signedTwilio(big))).status).toBe(413);
    const json = await h.post(twilioPath, form, {
      ...signedTwilio(form),
      "content-type": "application/json",
    });
    expect(json.status).toBe(415);
    expect((await h.get(twilioPath, signedTwilio(form))).status).toBe(405);
    expect(h.ends).toEqual([]);
  });

  it("a body announced over the limit is refused 413 before any of it is sent", async () => {
    const h = await harness({ provider: "twilio", maxBodyBytes: 512 });
    const form = twilioForm("completed");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: h.port,
          path: twilioPath,
          method: "POST",
          headers: {
            ...signedTwilio(form),
            "content-type": "application/x-www-form-urlencoded",
            "content-length": String(10_000_000),
          },
        },
        (res) => resolve(res.statusCode ?? 0),
      );
      req.on("error", reject);
      req.flushHeaders(); // headers only: the 10 MB never leave
    });
    expect(status).toBe(413);
    expect(h.ends).toEqual([]);
  });

  it("a chunked body that grows past the limit is refused 413 while it is still being sent", async () => {
    const h = await harness({ provider: "twilio", maxBodyBytes: 512 });
    const form = twilioForm("completed");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: h.port,
          path: twilioPath,
          method: "POST",
          headers: { ...signedTwilio(form), "content-type": "application/x-www-form-urlencoded" },
        },
        (res) => resolve(res.statusCode ?? 0),
      );
      req.on("error", reject);
      req.write("Pad=".padEnd(1024, "x")); // no Content-Length: chunked, and never ended
    });
    expect(status).toBe(413);
    expect(h.ends).toEqual([]);
  });

  it("a body that does not arrive in time is answered 408 and ends nothing", async () => {
    const h = await harness({ provider: "twilio", bodyTimeoutMs: 5_000 });
    const form = twilioForm("completed");
    const body = new URLSearchParams(form).toString();
    const timer = h.nextTimer();
    const answered = new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: h.port,
          path: twilioPath,
          method: "POST",
          headers: {
            ...signedTwilio(form),
            "content-type": "application/x-www-form-urlencoded",
            "content-length": String(body.length),
          },
        },
        (res) => resolve(res.statusCode ?? 0),
      );
      req.on("error", reject);
      req.write(body.slice(0, 10)); // and the rest never comes
    });
    (await timer)();
    expect(await answered).toBe(408);
    expect(h.ends).toEqual([]);
  });

  it("an X-Twilio-Webhooks-Signature-Settings callback is checked with the SharedKey and its algorithm", async () => {
    const h = await harness({ provider: "twilio", sharedKeySecret: "shared-key-secret" });
    const form = twilioForm("completed");
    const settings = { "x-twilio-webhooks-signature-settings": "key=KS42,algorithm=HMAC_SHA256" };
    const sha256 = twilioSign(twilioCallbackUrl, form, "shared-key-secret", "sha256");
    expect((await h.post(twilioPath, form, { ...settings, "x-twilio-signature": sha256 })).status).toBe(200);
    // The auth token's SHA-1 signature does not pass under a SharedKey header.
    const other = twilioForm("completed", "9");
    expect((await h.post(twilioPath, other, { ...settings, ...signedTwilio(other) })).status).toBe(403);
    expect(h.ends).toEqual([{ callId: "CA42", dialRef: DIAL_REF, outcome: "ANSWERED" }]);
  });

  it("a SharedKey-signed callback is refused when no SharedKey secret is configured", async () => {
    const h = await harness({ provider: "twilio" });
    const form = twilioForm("completed");
    const headers = {
      "x-twilio-webhooks-signature-settings": "key=KS42,algorithm=HMAC_SHA256",
      "x-twilio-signature": twilioSign(twilioCallbackUrl, form, TOKEN, "sha256"),
    };
    expect((await h.post(twilioPath, form, headers)).status).toBe(403);
  });

  it("a terminal status with neither a dialRef nor a call id is 400", async () => {
    const h = await harness({ provider: "twilio" });
    const { CallSid: _, ...form } = twilioForm("completed");
    const bare = `${PUBLIC}/twilio/status`;
    const res = await h.post("/twilio/status", form, { "x-twilio-signature": twilioSign(bare, form, TOKEN) });
    expect(res.status).toBe(400);
  });

  it("options name a missing auth token without echoing anything", () => {
    expect(() =>
      createCallbackHandler({
        provider: "twilio",
        authToken: "",
        publicBaseUrl: PUBLIC,
        dialgate: { callEnded: async () => undefined },
        clock: { now: () => 0, setTimer: () => ({ cancel() {} }) },
      }),
    ).toThrow(/^CallbackHandlerOptions\.authToken /);
  });
});

describe("createCallbackHandler for Plivo", () => {
  const hangupUrl = withDialRef(`${PUBLIC}/plivo/hangup`, DIAL_REF);
  const path = hangupUrl.slice(PUBLIC.length);
  const form = {
    CallUUID: "c0ffee",
    RequestUUID: "9834029e",
    CallStatus: "no-answer",
    Direction: "outbound",
    HangupCause: "NO_ANSWER",
    To: "14155550123",
  };
  const signedUrl = `${PUBLIC}/plivo/hangup?dialRef=${DIAL_REF}.${Object.keys(form)
    .sort()
    .map((name) => name + form[name as keyof typeof form])
    .join("")}`;
  const signed = (nonce: string) => ({
    "x-plivo-signature-v3": plivoSign(signedUrl, nonce, TOKEN),
    "x-plivo-signature-v3-nonce": nonce,
  });

  it("a hangup ends the call by request uuid and dialRef", async () => {
    const h = await harness({ provider: "plivo" });
    expect((await h.post(path, form, signed("11111111111111111111"))).status).toBe(200);
    expect(h.ends).toEqual([{ callId: "9834029e", dialRef: DIAL_REF, outcome: "NO_ANSWER" }]);
  });

  it("a missing nonce or signature is 401; a bad signature 403; a seen nonce 409", async () => {
    const h = await harness({ provider: "plivo" });
    const ok = signed("22222222222222222222");
    expect((await h.post(path, form, { "x-plivo-signature-v3": ok["x-plivo-signature-v3"] })).status).toBe(
      401,
    );
    expect((await h.post(path, form, {})).status).toBe(401);
    expect((await h.post(path, { ...form, CallStatus: "completed" }, ok)).status).toBe(403);
    expect((await h.post(path, form, ok)).status).toBe(200);
    expect((await h.post(path, form, ok)).status).toBe(409);
    expect(h.ends).toHaveLength(1);
  });

  it("a second hangup delivery with a fresh nonce calls callEnded again", async () => {
    const h = await harness({ provider: "plivo" });
    await h.post(path, form, signed("33333333333333333333"));
    await h.post(path, form, signed("44444444444444444444"));
    expect(h.ends).toHaveLength(2);
  });
});

describe("createCallbackHandler for Exotel", () => {
  const signedUrl = signExotelCallbackUrl(withDialRef(`${PUBLIC}/exotel/status`, DIAL_REF), TOKEN);
  const path = signedUrl.slice(PUBLIC.length);
  const form = {
    CallSid: "80bfbec2d78bbbf10fb851f4fa165211",
    DateUpdated: "2026-01-01 00:00:12",
    Status: "no-answer",
    RecordingUrl: "",
  };

  it("a terminal Status ends the call by CallSid and dialRef", async () => {
    const h = await harness({ provider: "exotel" });
    expect((await h.post(path, form, {})).status).toBe(200);
    expect(h.ends).toEqual([{ callId: form.CallSid, dialRef: DIAL_REF, outcome: "NO_ANSWER" }]);
  });

  it.each([
    ["completed", "ANSWERED"],
    ["busy", "BUSY"],
    ["failed", "FAILED"],
  ])("%s becomes %s", async (status, outcome) => {
    const h = await harness({ provider: "exotel" });
    expect((await h.post(path, { ...form, Status: status }, {})).status).toBe(200);
    expect(h.ends.map((e) => e.outcome)).toEqual([outcome]);
  });

  it("a URL without sig is 401, a sig for another dialRef 403, the same delivery again 409", async () => {
    const h = await harness({ provider: "exotel" });
    const unsigned = withDialRef(`${PUBLIC}/exotel/status`, DIAL_REF).slice(PUBLIC.length);
    expect((await h.post(unsigned, form, {})).status).toBe(401);
    const forged = path.replace(encodeURIComponent(DIAL_REF), encodeURIComponent("lead-8:1:1"));
    expect((await h.post(forged, form, {})).status).toBe(403);
    expect((await h.post(path, form, {})).status).toBe(200);
    expect((await h.post(path, form, {})).status).toBe(409);
    expect(h.ends).toHaveLength(1);
  });
});
