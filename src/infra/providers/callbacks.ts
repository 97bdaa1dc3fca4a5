/**
 * Provider status callbacks, for a host app to mount: signature checks and a node:http handler that
 * turns a provider's terminal call status into `dispatcher.callEnded`. The dialRef comes back in the
 * callback URL's query (the adapters put it there), so an end finds its dial even without a call id.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { Clock } from "../../machines/ports.js";
import { httpUrl, parseProviderOptions } from "./http.js";

/** Form parameters of a callback; a repeated name carries every value. */
export type CallbackParams = Record<string, string | readonly string[]>;

/**
 * Twilio's X-Twilio-Signature: base64 HMAC-SHA1, keyed with the auth token, of the full URL (query
 * included) followed by every POST parameter as name+value, sorted by name. Compared in constant time;
 * the URL is also tried with and without its default port, as twilio's own validator does.
 */
export function verifyTwilioSignature(
  url: string,
  params: CallbackParams,
  header: string | undefined,
  authToken: string,
): boolean {
  if (!header || !authToken) return false;
  return urlVariants(url).some((candidate) =>
    safeEqual(header, twilioSignature(candidate, params, authToken)),
  );
}

function twilioSignature(url: string, params: CallbackParams, authToken: string): string {
  let data = url;
  for (const name of Object.keys(params).sort()) {
    for (const value of sortedValues(params[name])) data += name + value;
  }
  return createHmac("sha1", authToken).update(data, "utf8").digest("base64");
}

function urlVariants(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [url];
  }
  const variants = new Set([url, parsed.href]);
  if (parsed.port === "") {
    const port = parsed.protocol === "https:" ? "443" : "80";
    const auth = parsed.username ? `${parsed.username}${parsed.password ? `:${parsed.password}` : ""}@` : "";
    variants.add(
      `${parsed.protocol}//${auth}${parsed.hostname}:${port}${parsed.pathname}${parsed.search}${parsed.hash}`,
    );
  }
  return [...variants];
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

export type CallbackProvider = "twilio" | "plivo";

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
};

export interface CallEndSignal {
  callId?: string;
  dialRef?: string;
  outcome: string;
}

const handlerSchema = z
  .object({
    provider: z.enum(["twilio", "plivo"]),
    authToken: z.string().min(1, "must not be empty"),
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
      (v) => typeof (v as { now?: unknown } | null)?.now === "function",
      "must be a Clock",
    ),
    /** How long a seen signature (Twilio) or nonce (Plivo) is refused again. */
    replayWindowMs: z
      .number()
      .int()
      .min(1)
      .default(10 * 60_000),
    /** Bound on the remembered signatures: past it the oldest are forgotten first. */
    maxRemembered: z.number().int().min(1).default(10_000),
    maxBodyBytes: z
      .number()
      .int()
      .min(1)
      .default(64 * 1024),
    /** Provider status → outcome, over DEFAULT_OUTCOMES; a status listed here is terminal. */
    outcomes: z.record(z.string(), z.string().min(1).max(50)).default({}),
  })
  .strict();

export type CallbackHandlerOptions = z.input<typeof handlerSchema>;

interface Reply {
  status: number;
  text: string;
}

/**
 * A node:http request listener for status callbacks: 401 unsigned, 403 bad signature, 409 replayed
 * (same signature or nonce within the window), 503 when the end could not be applied, 200 for
 * everything else it accepts. A terminal status
 * calls `callEnded({ callId, dialRef, outcome })`; a duplicate end just calls it again (it is
 * idempotent). A failing callEnded (its store is away) answers 503 and forgets the signature, so the
 * provider's retry gets through.
 */
export function createCallbackHandler(
  options: CallbackHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const o = parseProviderOptions(handlerSchema, options, "CallbackHandlerOptions", ["authToken"]);
  const outcomes = { ...DEFAULT_OUTCOMES[o.provider], ...o.outcomes };
  const seen = new ReplayGuard(o.replayWindowMs, o.maxRemembered);
  const base = o.publicBaseUrl.replace(/\/+$/, "");

  async function handle(req: IncomingMessage): Promise<Reply> {
    if (req.method !== "POST") return { status: 405, text: "POST only" };
    const signature = header(req, o.provider === "twilio" ? "x-twilio-signature" : "x-plivo-signature-v3");
    const nonce = o.provider === "plivo" ? header(req, "x-plivo-signature-v3-nonce") : undefined;
    if (!signature || (o.provider === "plivo" && !nonce)) return { status: 401, text: "unsigned" };
    const body = await readBody(req, o.maxBodyBytes);
    if (body === null) return { status: 413, text: "body too large" };
    if (body !== "" && !/^application\/x-www-form-urlencoded\b/i.test(req.headers["content-type"] ?? "")) {
      return { status: 415, text: "form-encoded bodies only" };
    }
    const url = `${base}${req.url ?? "/"}`;
    const params = formParams(body);
    const valid =
      o.provider === "twilio"
        ? verifyTwilioSignature(url, params, signature, o.authToken)
        : verifyPlivoSignatureV3({ url, method: "POST", params, nonce, signature, authToken: o.authToken });
    if (!valid) return { status: 403, text: "bad signature" };
    const key = `${o.provider}:${nonce ?? signature}`;
    if (!seen.claim(key, o.clock.now())) return { status: 409, text: "replayed" };
    try {
      return await end(url, params);
    } catch {
      // The store is away (a Postgres outage): 503 has the provider retry, which must then get in.
      seen.forget(key);
      return { status: 503, text: "call end not applied, retry later" };
    }
  }

  async function end(url: string, params: CallbackParams): Promise<Reply> {
    const status = first(params.CallStatus);
    const outcome = status !== undefined && Object.hasOwn(outcomes, status) ? outcomes[status] : undefined;
    if (outcome === undefined) return { status: 200, text: "acknowledged" };
    const dialRef = new URL(url).searchParams.get("dialRef") || undefined;
    const callId =
      o.provider === "twilio"
        ? first(params.CallSid)
        : (first(params.RequestUUID) ?? first(params.ALegRequestUUID));
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
    res.writeHead(reply.status, { "content-type": "text/plain; charset=utf-8", ...allow(reply.status) });
    res.end(reply.text);
  };
}

/** Signatures (or nonces) seen within the window; insertion order is time order, so expiry trims the head. */
class ReplayGuard {
  readonly #until = new Map<string, number>();
  constructor(
    readonly windowMs: number,
    readonly max: number,
  ) {}

  /** True the first time `key` is seen within the window. */
  claim(key: string, now: number): boolean {
    for (const [old, until] of this.#until) {
      if (until > now) break;
      this.#until.delete(old);
    }
    const until = this.#until.get(key);
    if (until !== undefined && until > now) return false;
    this.#until.delete(key);
    this.#until.set(key, now + this.windowMs);
    if (this.#until.size > this.max) {
      const oldest = this.#until.keys().next().value;
      if (oldest !== undefined) this.#until.delete(oldest);
    }
    return true;
  }

  forget(key: string): void {
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

/** The body as text, or null past `max` bytes (the rest is drained so the reply can still be sent). */
function readBody(req: IncomingMessage, max: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
    });
    req.on("end", () => resolve(size > max ? null : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function allow(status: number): Record<string, string> {
  return status === 405 ? { allow: "POST" } : {};
}
