import { z } from "zod";
import type { Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";
import {
  apiUrl,
  basicAuth,
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

/** Places calls with Plivo's Call API: POST /v1/Account/{auth_id}/Call/ with a JSON body. */
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
}
