/**
 * The one HTTP exchange every REST provider adapter makes, and what its outcome proves (design §2 step 7,
 * §7.16, §7.19): a dial is `notPlaced` only when the provider cannot have acted on it, `unknown` whenever
 * it might have. One POST, no retries: a second POST could ring the callee twice.
 */
import { z } from "zod";
import type { CallStatus, Clock, DialResult } from "../../machines/ports.js";
import { parseOrThrow, ValidationError } from "../config.js";
import { maskPhone } from "../mask.js";

export interface ProviderPost {
  /** Provider name, the first word of every reason. */
  provider: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** The dispatcher's dial timeout: the only deadline, applied to the whole exchange. */
  signal: AbortSignal;
}

/** How one provider's replies read. */
export interface ReplyReader {
  /** The call id in a success body; undefined when it is missing. */
  callId(body: unknown): string | undefined;
  /**
   * A 4xx the provider will give again for this dial (bad destination, caller id, account): the
   * lead must not be retried. Undefined for a refusal that a later dial may not meet.
   */
  permanent(status: number, body: unknown): { why: string; account?: boolean } | undefined;
  /** The provider's own words for an error reply, if any. */
  errorText(body: unknown): string | undefined;
}

/**
 * Network errors that happen before a byte of the request leaves: no TCP connection, no name, no TLS
 * session. Anything else (a reset, a closed socket) may have cut the reply, not the request.
 */
const NEVER_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EAI_FAIL",
  "EAI_NONAME",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Posts once and says what the outcome proves. Never throws. */
export async function postDial(post: ProviderPost, reader: ReplyReader, clock?: Clock): Promise<DialResult> {
  const who = post.provider;
  if (post.signal.aborted) return { kind: "notPlaced", reason: `${who}: aborted before sending` };
  let response: Response;
  try {
    response = await fetch(post.url, {
      method: "POST",
      headers: post.headers,
      body: post.body,
      signal: post.signal,
      // A redirect would turn the POST into a GET somewhere else; its status is classified instead.
      redirect: "manual",
    });
  } catch (error) {
    return classifyNetworkError(who, error, post.signal);
  }
  const { status } = response;
  if (status === 429) {
    void response.body?.cancel().catch(() => {});
    const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"), clock?.now());
    return { kind: "throttled", retryAfterSeconds, reason: `${who}: HTTP 429` };
  }
  if (status >= 400 && status < 500) {
    // The status line alone proves the refusal; the body only says whether it is permanent.
    const body = parseJson(await response.text().catch(() => ""));
    const refusal = reader.permanent(status, body);
    const reason = describe(who, status, reader.errorText(body));
    if (refusal) return { kind: "rejected", reason: `${reason}: ${refusal.why}`, account: refusal.account };
    return { kind: "notPlaced", reason };
  }
  if (status < 200 || status >= 300) {
    void response.body?.cancel().catch(() => {});
    return { kind: "unknown", reason: `${who}: HTTP ${status}` };
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    return {
      kind: "unknown",
      reason: `${who}: HTTP ${status}, reply cut: ${codesOf(error).join(",") || "read failed"}`,
    };
  }
  const body = parseJson(text);
  if (body === undefined) return { kind: "unknown", reason: `${who}: HTTP ${status}, reply is not JSON` };
  const callId = reader.callId(body);
  if (!callId) return { kind: "unknown", reason: `${who}: HTTP ${status} without a call id` };
  return { kind: "placed", callId };
}

/**
 * One GET of a provider's call resource (callStatus, design §7.19): the parsed JSON body of a 2xx, or
 * null for 404 (the provider knows no such call). Throws on anything else: the caller closes the call
 * UNKNOWN as it would without asking.
 */
export async function getCall(get: Omit<ProviderPost, "body">): Promise<unknown | null> {
  const response = await fetch(get.url, {
    method: "GET",
    headers: get.headers,
    signal: get.signal,
    redirect: "manual",
  });
  if (response.status === 404) {
    void response.body?.cancel().catch(() => {});
    return null;
  }
  if (response.status < 200 || response.status >= 300) {
    void response.body?.cancel().catch(() => {});
    throw new Error(`${get.provider}: call status HTTP ${response.status}`);
  }
  const body = parseJson(await response.text());
  if (body === undefined) throw new Error(`${get.provider}: call status reply is not JSON`);
  return body;
}

function classifyNetworkError(who: string, error: unknown, signal: AbortSignal): DialResult {
  // Fetch cannot tell whether the abort came before or after the request went out: assume after.
  if (signal.aborted) return { kind: "unknown", reason: `${who}: no reply before the dial timeout` };
  const codes = codesOf(error);
  if (codes.length > 0 && codes.every((code) => NEVER_SENT.has(code))) {
    return { kind: "notPlaced", reason: `${who}: ${codes.join(",")}` };
  }
  return { kind: "unknown", reason: `${who}: ${codes.join(",") || errorName(error)}` };
}

/** Every `code` in an error, its causes, and the errors of an AggregateError (one per address tried). */
export function codesOf(error: unknown, seen = new Set<unknown>()): string[] {
  if (typeof error !== "object" || error === null || seen.has(error)) return [];
  seen.add(error);
  const own = (error as { code?: unknown }).code;
  const codes = typeof own === "string" ? [own] : [];
  const nested = (error as { errors?: unknown }).errors;
  if (Array.isArray(nested)) for (const inner of nested) codes.push(...codesOf(inner, seen));
  codes.push(...codesOf((error as { cause?: unknown }).cause, seen));
  return [...new Set(codes)];
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "network error";
}

/** Retry-After as whole seconds: delta-seconds, or an HTTP date when a clock is at hand; else undefined. */
export function parseRetryAfter(value: string | null, now?: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (now === undefined || Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `twilio: HTTP 400 "The 'To' number ***4567 is not…"`: provider text kept short, phones masked. */
function describe(who: string, status: number, text: string | undefined): string {
  if (!text) return `${who}: HTTP ${status}`;
  const short = text.length > 160 ? `${text.slice(0, 159)}…` : text;
  return `${who}: HTTP ${status} ${JSON.stringify(maskPhones(short))}`;
}

/** Runs of 7–15 digits that stand alone, as in the Slack sink: provider errors quote the number dialled. */
const PHONE_LIKE = /(?<![\w*@-])\+?\d(?:[\s().-]?\d){6,14}(?![\w])/g;

export function maskPhones(text: string): string {
  return text.replace(PHONE_LIKE, (match) => maskPhone(match));
}

/** The non-empty string at `keys` in a parsed JSON body, or undefined. */
export function stringAt(body: unknown, ...keys: string[]): string | undefined {
  let value = body;
  for (const key of keys) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** `url` with `dialRef=<ref>` in its query (URL-encoded), replacing any earlier one. */
export function withDialRef(url: string, dialRef: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("dialRef", dialRef);
  return parsed.href;
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

/** `base` (which may carry a path prefix) joined with an absolute API path. */
export function apiUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, "")}${path}`;
}

/** An http(s) URL without credentials in it (they go in the Authorization header, never in a URL). */
export const httpUrl = z
  .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
  .refine((url) => !/^[a-z]+:\/\/[^/]*@/i.test(url), "must not carry credentials (user:password@)");

const REDACTED = "***";

/**
 * parseOrThrow for option objects that hold credentials: the error names the field path, but shows
 * no value that is a secret or could contain one (a URL, a whole object, an unknown key's parent).
 */
export function parseProviderOptions<S extends z.ZodType>(
  schema: S,
  value: unknown,
  root: string,
  secrets: readonly string[],
): z.output<S> {
  try {
    return parseOrThrow(schema, value, root);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    // Each issue on its own: a bad secret may be the second of several.
    throw ValidationError.of(
      error.issues.map((issue) => {
        const leaf = issue.path.split(/[.[]/).at(-1) ?? "";
        const risky =
          secrets.includes(leaf) ||
          /url$/i.test(leaf) ||
          (typeof issue.value === "object" && issue.value !== null);
        return risky ? { ...issue, value: REDACTED } : issue;
      }),
    );
  }
}

/** A provider's call status word read as live, ended (with the callbacks' outcome) or unknown. */
export function statusOf(
  status: string | undefined,
  outcomes: Readonly<Record<string, string>>,
  live: ReadonlySet<string>,
): CallStatus {
  if (status === undefined) return { state: "unknown" };
  if (live.has(status)) return { state: "live" };
  return Object.hasOwn(outcomes, status)
    ? { state: "ended", outcome: outcomes[status] }
    : { state: "unknown" };
}
