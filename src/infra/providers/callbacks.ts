/**
 * Provider status callbacks, for a host app to mount: signature checks and a node:http handler that
 * turns a provider's terminal call status into `dispatcher.callEnded`. The dialRef comes back in the
 * callback URL's query (the adapters put it there), so an end finds its dial even without a call id.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { Clock } from "../../machines/ports.js";
import { CLOSE_CONNECTION, readBodyWithin } from "../http-body.js";
import { httpUrl, parseProviderOptions } from "./http.js";

/** Form parameters of a callback; a repeated name carries every value. */
export type CallbackParams = Record<string, string | readonly string[]>;

/** The digest of a Twilio signature: SHA-1 with the auth token, SHA-256 with a Webhooks SharedKey. */
export type TwilioSignatureAlgorithm = "sha1" | "sha256";

/**
 * Twilio's X-Twilio-Signature: base64 HMAC, keyed with the auth token (SHA-1) or a Webhooks SharedKey
 * secret (SHA-256, announced by X-Twilio-Webhooks-Signature-Settings), of the full URL (query
 * included) followed by every POST parameter as name+value, sorted by name. Compared in constant
 * time. Like twilio's own validateRequest, the URL is tried with its port (the default one added when
 * none is given) and without any port, since Twilio signs either form.
 */
export function verifyTwilioSignature(
  url: string,
  params: CallbackParams,
  header: string | undefined,
  authToken: string,
  algorithm: TwilioSignatureAlgorithm = "sha1",
): boolean {
  if (!header || !authToken) return false;
  return urlVariants(url).some((candidate) =>
    safeEqual(header, twilioSignature(candidate, params, authToken, algorithm)),
  );
}

/**
 * The algorithm named by X-Twilio-Webhooks-Signature-Settings (`key=<name>,algorithm=HMAC_SHA256`);
 * undefined for an algorithm this verifier does not know.
 */
export function twilioSignatureAlgorithm(settings: string): TwilioSignatureAlgorithm | undefined {
  const fields = new Map(
    settings.split(",").map((part) => {
      const [name = "", ...value] = part.split("=");
      return [name.trim().toLowerCase(), value.join("=").trim()] as const;
    }),
  );
  const named = fields.get("algorithm")?.toUpperCase();
  if (named === "HMAC_SHA256") return "sha256";
  if (named === "HMAC_SHA1") return "sha1";
  return undefined;
}

function twilioSignature(
  url: string,
  params: CallbackParams,
  key: string,
  algorithm: TwilioSignatureAlgorithm,
): string {
  let data = url;
  for (const name of Object.keys(params).sort()) {
    for (const value of sortedValues(params[name])) data += name + value;
  }
  return createHmac(algorithm, key).update(data, "utf8").digest("base64");
}

function urlVariants(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [url];
  }
  const auth = parsed.username ? `${parsed.username}${parsed.password ? `:${parsed.password}` : ""}@` : "";
  const rest = `${parsed.pathname}${parsed.search}${parsed.hash}`;
  const defaultPort = parsed.protocol === "https:" ? "443" : "80";
  // WHATWG URL drops a default port it is given, so both forms are spelled out by hand.
  const withPort = `${parsed.protocol}//${auth}${parsed.hostname}:${parsed.port || defaultPort}${rest}`;
  const withoutPort = `${parsed.protocol}//${auth}${parsed.hostname}${rest}`;
  return [...new Set([url, withPort, withoutPort])];
}

export interface PlivoSignatureInput {
  /** The callback URL as Plivo called it, query included. */
  url: string;
  method: "POST" | "GET";
  /** POST form parameters (none for GET). */
  params: CallbackParams;
  /** X-Plivo-Signature-V3-Nonce. */
  nonce: string | undefined;
  /** X-Plivo-Signature-V3: one signature per active auth token, comma-separated. */
  signature: string | undefined;
  authToken: string;
}

/**
 * Plivo's X-Plivo-Signature-V3, as its SDKs compute it (plivo-node utils/v3Security, plivo-python
 * utils/signature_v3): base64 HMAC-SHA256 of `<signed url>.<nonce>`, where the signed url is
 * scheme://host/path, then `?` and the query as sorted `k=v` pairs joined by `&`, and for a POST with
 * parameters a `.` (after a non-empty query) and the parameters as sorted name+value.
 */
export function verifyPlivoSignatureV3(input: PlivoSignatureInput): boolean {
  const { nonce, signature, authToken } = input;
  if (!nonce || !signature || !authToken) return false;
  let signed: string;
  try {
    signed = plivoSignedUrl(input.url, input.method, input.params);
  } catch {
    return false;
  }
  const expected = createHmac("sha256", authToken).update(`${signed}.${nonce}`, "utf8").digest("base64");
  return signature.split(",").some((one) => safeEqual(one.trim(), expected));
}

function plivoSignedUrl(url: string, method: "POST" | "GET", params: CallbackParams): string {
  const parsed = new URL(url);
  const base = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  const query = new Map<string, string[]>();
  const add = (name: string, values: readonly string[]) =>
    query.set(name, [...(query.get(name) ?? []), ...values]);
  for (const [name, value] of parsed.searchParams) add(name, [value]);
  const hasParams = Object.keys(params).length > 0;
  if (method === "GET") for (const name of Object.keys(params)) add(name, sortedValues(params[name]));
  const sortedQuery = [...query.keys()]
    .sort()
    .flatMap((name) => [...(query.get(name) ?? [])].sort().map((value) => `${name}=${value}`))
    .join("&");
  if (method === "GET" || !hasParams) return sortedQuery ? `${base}?${sortedQuery}` : base;
  let signed = `${base}?${sortedQuery}${sortedQuery ? "." : ""}`;
  for (const name of Object.keys(params).sort()) {
    for (const value of sortedValues(params[name])) signed += name + value;
  }
  return signed;
}

/**
 * Exotel signs none of its callbacks, so the adapter signs the URL it hands out: `sig` in the query is
 * base64url HMAC-SHA256, keyed with a secret of ours, of the dialRef next to it. A callback that
 * carries a valid `sig` came from a URL only we (and Exotel) know.
 */
export function signExotelCallbackUrl(url: string, secret: string): string {
  const parsed = new URL(url);
  const dialRef = parsed.searchParams.get("dialRef") ?? "";
  parsed.searchParams.set("sig", exotelSignature(dialRef, secret));
  return parsed.href;
}

export function verifyExotelCallbackUrl(url: string, secret: string): boolean {
  if (!secret) return false;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const sig = parsed.searchParams.get("sig");
  const dialRef = parsed.searchParams.get("dialRef");
  return !!sig && !!dialRef && safeEqual(sig, exotelSignature(dialRef, secret));
}

function exotelSignature(dialRef: string, secret: string): string {
  return createHmac("sha256", secret).update(dialRef, "utf8").digest("base64url");
}

function sortedValues(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  return typeof value === "string" ? [value] : [...new Set(value)].sort();
}

function safeEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  // Lengths of a signature are public; only equal lengths reach the constant-time compare.
  return a.length === b.length && timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------------
// The handler

export type CallbackProvider = "twilio" | "plivo" | "exotel";

/** What a provider's terminal status becomes, by provider (override through `outcomes`). */
export const DEFAULT_OUTCOMES: Record<CallbackProvider, Record<string, string>> = {
  // twilio.com/docs/voice/api/call-resource#call-status-values
  twilio: {
    completed: "ANSWERED",
    busy: "BUSY",
    "no-answer": "NO_ANSWER",
    failed: "FAILED",
    canceled: "FAILED",
  },
  // plivo.com/docs/voice/xml/request/call-status (+ `failed`, listed for outbound calls)
  plivo: {
    completed: "ANSWERED",
    busy: "BUSY",
    "no-answer": "NO_ANSWER",
    failed: "FAILED",
    timeout: "FAILED",
    cancel: "FAILED",
  },
  // developer.exotel.com/api/statuscallback: the terminal `Status` of the call
  exotel: {
    completed: "ANSWERED",
    busy: "BUSY",
    "no-answer": "NO_ANSWER",
    failed: "FAILED",
  },
};

/** Where each provider puts the call status and the call id in its callback form. */
const FIELDS: Record<CallbackProvider, { status: string; callIds: string[] }> = {
  twilio: { status: "CallStatus", callIds: ["CallSid"] },
  plivo: { status: "CallStatus", callIds: ["RequestUUID", "ALegRequestUUID"] },
  exotel: { status: "Status", callIds: ["CallSid"] },
};

export interface CallEndSignal {
  callId?: string;
  dialRef?: string;
  outcome: string;
}

/**
 * Where seen callbacks are remembered. The gate stores implement it (MemoryGateStore,
 * RedisGateStore): on Redis a replay sent to another process is refused the same way.
 */
export interface ReplayStore {
  /** True the first time `key` is claimed within `windowMs` of the caller's `now`. */
  claimOnce(key: string, windowMs: number, now: number): Promise<boolean>;
  /** Drops a claim, so the provider's retry of a callback that failed gets through. */
  forget(key: string): Promise<void>;
}

const handlerSchema = z
  .object({
    provider: z.enum(["twilio", "plivo", "exotel"]),
    /** Twilio's or Plivo's auth token; for Exotel the secret its adapter signs callback URLs with. */
    authToken: z.string().min(1, "must not be empty"),
    /**
     * Twilio only: the secret of a Webhooks SharedKey. A callback carrying
     * X-Twilio-Webhooks-Signature-Settings is checked with it and the algorithm named there
     * (HMAC_SHA256); without the header the auth token and HMAC-SHA1 apply.
     */
    sharedKeySecret: z.string().min(1, "must not be empty").optional(),
    /**
     * Scheme, host and any path prefix a proxy strips, as the provider calls it: the signature covers
     * the full public URL, which the request behind a proxy no longer shows.
     */
    publicBaseUrl: httpUrl,
    dialgate: z.custom<{ callEnded(signal: CallEndSignal): Promise<unknown> }>(
      (v) => typeof (v as { callEnded?: unknown } | null)?.callEnded === "function",
      "must have a callEnded function",
    ),
    clock: z.custom<Clock>(
      (v) =>
        typeof (v as { now?: unknown } | null)?.now === "function" &&
        typeof (v as { setTimer?: unknown }).setTimer === "function",
      "must be a Clock",
    ),
    /** Seen callbacks, shared by every process on it; in this process only when omitted. */
    replayStore: z
      .custom<ReplayStore>(
        (v) =>
          typeof (v as { claimOnce?: unknown } | null)?.claimOnce === "function" &&
          typeof (v as { forget?: unknown }).forget === "function",
        "must have claimOnce and forget functions",
      )
      .optional(),
    /** How long a seen signature (Twilio), nonce (Plivo) or callback (Exotel) is refused again. */
    replayWindowMs: z
      .number()
      .int()
      .min(1)
      .default(10 * 60_000),
    /** Bound on the signatures remembered in process (no replayStore): past it the oldest go first. */
    maxRemembered: z.number().int().min(1).default(10_000),
    maxBodyBytes: z
      .number()
      .int()
      .min(1)
      .default(64 * 1024),
    /** Longest wait for the whole body (a slow sender is answered 408 and cut off). */
    bodyTimeoutMs: z.number().int().min(1).default(10_000),
    /** Provider status → outcome, over DEFAULT_OUTCOMES; a status listed here is terminal. */
    outcomes: z.record(z.string(), z.string().min(1).max(50)).default({}),
  })
  .strict();

export type CallbackHandlerOptions = z.input<typeof handlerSchema>;

interface Reply {
  status: number;
  text: string;
  /** The body was not read whole: the connection closes after the answer. */
  close?: boolean;
}

/**
 * A node:http request listener for status callbacks: 401 unsigned, 403 bad signature, 409 replayed
 * (same signature, nonce or callback within the window), 413 body too large, 408 body too slow, 200
 * for everything else it accepts. A terminal status calls `callEnded({ callId, dialRef, outcome })`; a
 * duplicate end just calls it again (it is idempotent). A failing callEnded (its store is away)
 * answers 503 and forgets the signature, so the provider's retry gets through.
 */
export function createCallbackHandler(
  options: CallbackHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const o = parseProviderOptions(handlerSchema, options, "CallbackHandlerOptions", [
    "authToken",
    "sharedKeySecret",
  ]);
  const outcomes = { ...DEFAULT_OUTCOMES[o.provider], ...o.outcomes };
  const fields = FIELDS[o.provider];
  const seen: ReplayStore = o.replayStore ?? new ReplayGuard(o.maxRemembered);
  // A shared store that is away (Redis down) must not cost the call end: ends are idempotent, so
  // this process's own memory stands in and the end is applied.
  const fallback = new ReplayGuard(o.maxRemembered);
  const claimOnce = (key: string, now: number) =>
    seen.claimOnce(key, o.replayWindowMs, now).catch(() => fallback.claimOnce(key, o.replayWindowMs, now));
  const base = o.publicBaseUrl.replace(/\/+$/, "");

  async function handle(req: IncomingMessage): Promise<Reply> {
    if (req.method !== "POST") return { status: 405, text: "POST only" };
    const url = `${base}${req.url ?? "/"}`;
    const signature =
      o.provider === "twilio"
        ? header(req, "x-twilio-signature")
        : o.provider === "plivo"
          ? header(req, "x-plivo-signature-v3")
          : (new URL(url).searchParams.get("sig") ?? undefined);
    const nonce = o.provider === "plivo" ? header(req, "x-plivo-signature-v3-nonce") : undefined;
    if (!signature || (o.provider === "plivo" && !nonce)) return { status: 401, text: "unsigned" };
    const read = await readBodyWithin(req, {
      maxBytes: o.maxBodyBytes,
      timeoutMs: o.bodyTimeoutMs,
      clock: o.clock,
    });
    if (read.kind === "tooLarge") return { status: 413, text: "body too large", close: true };
    if (read.kind === "timeout") return { status: 408, text: "body too slow", close: true };
    const body = read.text;
    if (body !== "" && !/^application\/x-www-form-urlencoded\b/i.test(req.headers["content-type"] ?? "")) {
      return { status: 415, text: "form-encoded bodies only" };
    }
    const params = formParams(body);
    if (!verify(req, url, params, signature, nonce)) return { status: 403, text: "bad signature" };
    // Exotel's `sig` repeats on every callback of a dial: the delivery is the URL and its body.
    const seenAs =
      o.provider === "exotel" ? createHash("sha256").update(`${url}\n${body}`).digest("hex") : signature;
    const key = `${o.provider}:${nonce ?? seenAs}`;
    if (!(await claimOnce(key, o.clock.now()))) return { status: 409, text: "replayed" };
    try {
      return await end(url, params);
    } catch {
      // The store is away (a Postgres outage): 503 has the provider retry, which must then get in.
      await seen.forget(key).catch(() => {});
      await fallback.forget(key);
      return { status: 503, text: "call end not applied, retry later" };
    }
  }

  function verify(
    req: IncomingMessage,
    url: string,
    params: CallbackParams,
    signature: string,
    nonce: string | undefined,
  ): boolean {
    if (o.provider === "plivo") {
      return verifyPlivoSignatureV3({
        url,
        method: "POST",
        params,
        nonce,
        signature,
        authToken: o.authToken,
      });
    }
    if (o.provider === "exotel") return verifyExotelCallbackUrl(url, o.authToken);
    const settings = header(req, "x-twilio-webhooks-signature-settings");
    if (settings === undefined) return verifyTwilioSignature(url, params, signature, o.authToken, "sha1");
    const algorithm = twilioSignatureAlgorithm(settings);
    if (!algorithm || !o.sharedKeySecret) return false;
    return verifyTwilioSignature(url, params, signature, o.sharedKeySecret, algorithm);
  }

  async function end(url: string, params: CallbackParams): Promise<Reply> {
    const status = first(params[fields.status]);
    const outcome = status !== undefined && Object.hasOwn(outcomes, status) ? outcomes[status] : undefined;
    if (outcome === undefined) return { status: 200, text: "acknowledged" };
    const dialRef = new URL(url).searchParams.get("dialRef") || undefined;
    let callId: string | undefined;
    for (const name of fields.callIds) callId ??= first(params[name]);
    if (!dialRef && !callId) return { status: 400, text: "no dialRef or call id" };
    const signal: CallEndSignal = { outcome };
    if (callId) signal.callId = callId;
    if (dialRef) signal.dialRef = dialRef;
    await o.dialgate.callEnded(signal);
    return { status: 200, text: "ended" };
  }

  return async (req, res) => {
    let reply: Reply;
    try {
      reply = await handle(req);
    } catch {
      reply = { status: 500, text: "callback failed" };
    }
    if (res.headersSent) return;
    res.writeHead(reply.status, {
      "content-type": "text/plain; charset=utf-8",
      ...allow(reply.status),
      ...(reply.close ? CLOSE_CONNECTION : {}),
    });
    res.end(reply.text);
  };
}

/**
 * Claims remembered in this process only; insertion order is time order for one window, so expiry
 * trims the head.
 */
class ReplayGuard implements ReplayStore {
  readonly #until = new Map<string, number>();
  constructor(readonly max: number) {}

  async claimOnce(key: string, windowMs: number, now: number): Promise<boolean> {
    for (const [old, until] of this.#until) {
      if (until > now) break;
      this.#until.delete(old);
    }
    const until = this.#until.get(key);
    if (until !== undefined && until > now) return false;
    this.#until.delete(key);
    this.#until.set(key, now + windowMs);
    if (this.#until.size > this.max) {
      const oldest = this.#until.keys().next().value;
      if (oldest !== undefined) this.#until.delete(oldest);
    }
    return true;
  }

  async forget(key: string): Promise<void> {
    this.#until.delete(key);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const one = Array.isArray(value) ? value[0] : value;
  return one === undefined || one === "" ? undefined : one;
}

function first(value: string | readonly string[] | undefined): string | undefined {
  const one = typeof value === "string" ? value : value?.[0];
  return one === "" ? undefined : one;
}

function formParams(body: string): CallbackParams {
  // No prototype: a field named "constructor" or "__proto__" is just a field.
  const params: Record<string, string | string[]> = Object.create(null);
  for (const [name, value] of new URLSearchParams(body)) {
    const earlier = params[name];
    if (earlier === undefined) params[name] = value;
    else params[name] = typeof earlier === "string" ? [earlier, value] : [...earlier, value];
  }
  return params;
}

function allow(status: number): Record<string, string> {
  return status === 405 ? { allow: "POST" } : {};
}
