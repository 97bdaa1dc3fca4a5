import { z } from "zod";
import type { CallStatus, Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";
import {
  apiUrl,
  basicAuth,
  getCall,
  httpUrl,
  parseProviderOptions,
  postDial,
  type ReplyReader,
  stringAt,
  withDialRef,
} from "./http.js";

export const plivoOptionsSchema = z
  .object({
    authId: z.string().regex(/^[A-Za-z0-9]+$/, "must be the account's Auth ID (letters and digits)"),
    authToken: z.string().min(1, "must not be empty"),
    /** Default https://api.plivo.com; tests point it at a local server. */
    baseUrl: httpUrl.default("https://api.plivo.com"),
    /** Returns the Plivo XML the call runs when answered. */
    answerUrl: httpUrl,
    /** Notified when the call hangs up, whatever the reason; every dial adds its `dialRef` to the query. */
    hangupUrl: httpUrl,
    /** Notified when the call rings; gets the `dialRef` too. */
    ringUrl: httpUrl.optional(),
    /** Longest call once answered, in seconds (Plivo's `time_limit`, default 14400). */
    timeLimitSeconds: z.number().int().min(1).max(86_400).optional(),
    /** Resolves an HTTP-date Retry-After; without it only delta-seconds are read. */
    clock: z.custom<Clock>().optional(),
  })
  .strict();

export type PlivoOptions = z.input<typeof plivoOptionsSchema>;

const reader: ReplyReader = {
  // The create-call reply names the request, not yet the call: `request_uuid` is what the hangup
  // callback repeats as RequestUUID.
  callId: (body) => stringAt(body, "request_uuid"),
  permanent: (status) => (status === 401 ? { why: "authentication refused", account: true } : undefined),
  errorText: (body) => stringAt(body, "error"),
};

/**
 * Places calls with Plivo's Call API: POST /v1/Account/{auth_id}/Call/ with a JSON body; reads one
 * back with GET /v1/Account/{auth_id}/Call/{uuid}/ (`?status=queued`, `?status=live`, or its record).
 */
export class PlivoProvider implements Provider {
  readonly name: string;
  readonly #o: z.output<typeof plivoOptionsSchema>;
  readonly #auth: string;

  constructor(options: PlivoOptions, name = "plivo") {
    this.#o = parseProviderOptions(plivoOptionsSchema, options, "PlivoOptions", ["authToken"]);
    this.#auth = basicAuth(this.#o.authId, this.#o.authToken);
    this.name = name;
  }

  makeCall(req: DialRequest): Promise<DialResult> {
    const o = this.#o;
    const body: Record<string, string | number> = {
      // Plivo documents numbers as country code + number, without the "+".
      from: req.from.replace(/^\+/, ""),
      to: req.to.replace(/^\+/, ""),
      answer_url: o.answerUrl,
      answer_method: "POST",
      hangup_url: withDialRef(o.hangupUrl, req.dialRef),
      hangup_method: "POST",
    };
    if (o.ringUrl) {
      body.ring_url = withDialRef(o.ringUrl, req.dialRef);
      body.ring_method = "POST";
    }
    if (o.timeLimitSeconds !== undefined) body.time_limit = o.timeLimitSeconds;
    return postDial(
      {
        provider: this.name,
        url: apiUrl(o.baseUrl, `/v1/Account/${o.authId}/Call/`),
        headers: {
          authorization: this.#auth,
          "content-type": "application/json",
          accept: "application/json",
        },
        body: JSON.stringify(body),
        signal: req.signal,
      },
      reader,
      o.clock,
    );
  }

  /**
   * The dial's id is its request_uuid. Plivo finds a queued call by it (?status=queued); a live call
   * (?status=live) and a finished call's record are read by call uuid, which the request uuid is
   * tried as. None found: unknown, and the call is closed UNKNOWN as without asking.
   */
  async callStatus(callId: string, signal: AbortSignal): Promise<CallStatus> {
    const o = this.#o;
    const url = apiUrl(o.baseUrl, `/v1/Account/${o.authId}/Call/${encodeURIComponent(callId)}/`);
    const get = (query: string) =>
      getCall({
        provider: this.name,
        url: url + query,
        headers: { authorization: this.#auth, accept: "application/json" },
        signal,
      });
    if ((await get("?status=queued")) || (await get("?status=live"))) return { state: "live" };
    const record = await get("");
    if (!record) return { state: "unknown" };
    return { state: "ended", outcome: outcomeOf(record) };
  }
}

/**
 * A finished call's record as a callback outcome: answered when it has an answer time, else by its
 * hangup cause (plivo.com/docs/voice/troubleshooting/hangup-causes).
 */
function outcomeOf(record: unknown): string {
  if (stringAt(record, "answer_time")) return "ANSWERED";
  const cause = stringAt(record, "hangup_cause_name") ?? "";
  if (/busy/i.test(cause)) return "BUSY";
  if (/no answer|timeout/i.test(cause)) return "NO_ANSWER";
  return "FAILED";
}
