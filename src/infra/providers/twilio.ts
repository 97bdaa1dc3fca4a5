import { z } from "zod";
import type { CallStatus, Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";
import { DEFAULT_OUTCOMES } from "./callbacks.js";
import {
  apiUrl,
  basicAuth,
  getCall,
  httpUrl,
  parseProviderOptions,
  postDial,
  type ReplyReader,
  statusOf,
  stringAt,
  withDialRef,
} from "./http.js";

export const twilioOptionsSchema = z
  .object({
    accountSid: z.string().regex(/^AC[0-9a-fA-F]{32}$/, "must be AC followed by 32 hex digits"),
    authToken: z.string().min(1, "must not be empty"),
    /** Default https://api.twilio.com; tests point it at a local server. */
    baseUrl: httpUrl.default("https://api.twilio.com"),
    /** TwiML the call runs when answered: fetched from `answerUrl`, or given inline as `twiml`. */
    answerUrl: httpUrl.optional(),
    twiml: z.string().min(1).optional(),
    /** Where the call's progress is posted; every dial adds its `dialRef` to the query. */
    statusCallbackUrl: httpUrl,
    statusCallbackEvents: z
      .array(z.enum(["initiated", "ringing", "answered", "completed"]))
      .min(1)
      .default(["answered", "completed"]),
    /** Seconds to let it ring (Twilio's `Timeout`); Twilio's default when unset. */
    ringTimeoutSeconds: z.number().int().min(1).max(600).optional(),
    /** Resolves an HTTP-date Retry-After; without it only delta-seconds are read. */
    clock: z.custom<Clock>().optional(),
  })
  .strict()
  .refine((o) => (o.answerUrl === undefined) !== (o.twiml === undefined), {
    message: "exactly one of answerUrl and twiml must be set",
    path: ["answerUrl"],
  });

export type TwilioOptions = z.input<typeof twilioOptionsSchema>;

/** Error codes that the same dial would meet again (twilio.com/docs/api/errors/<code>). */
const BAD_DESTINATION = new Map([
  [21211, "invalid 'To' number"],
  [21214, "'To' number cannot be reached"],
  [21217, "phone number does not appear to be valid"],
]);
const BAD_CALLER_ID = new Map([
  [21210, "'From' number not verified"],
  [21212, "invalid 'From' number"],
]);
const ACCOUNT_REFUSED = new Map([
  [20003, "authentication refused"],
  [20005, "account not active"],
  [10001, "account not active"],
  [20403, "account suspended or closed"],
]);

const reader: ReplyReader = {
  callId: (body) => stringAt(body, "sid"),
  permanent(status, body) {
    const code = (body as { code?: unknown } | undefined)?.code;
    const n = typeof code === "number" ? code : Number(code);
    const account = ACCOUNT_REFUSED.get(n);
    if (account) return { why: `${n} ${account}`, account: true };
    if (status === 401) return { why: "authentication refused", account: true };
    const refusal = BAD_DESTINATION.get(n) ?? BAD_CALLER_ID.get(n);
    return refusal ? { why: `${n} ${refusal}` } : undefined;
  },
  errorText: (body) => stringAt(body, "message"),
};

/** twilio.com/docs/voice/api/call-resource#call-status-values that are not over yet. */
const LIVE = new Set(["queued", "ringing", "in-progress"]);

/**
 * Places calls with Twilio's Call resource: POST /2010-04-01/Accounts/{Sid}/Calls.json; reads one back
 * with GET /2010-04-01/Accounts/{Sid}/Calls/{CallSid}.json.
 */
export class TwilioProvider implements Provider {
  readonly name: string;
  readonly #o: z.output<typeof twilioOptionsSchema>;
  readonly #auth: string;

  constructor(options: TwilioOptions, name = "twilio") {
    this.#o = parseProviderOptions(twilioOptionsSchema, options, "TwilioOptions", ["authToken"]);
    this.#auth = basicAuth(this.#o.accountSid, this.#o.authToken);
    this.name = name;
  }

  makeCall(req: DialRequest): Promise<DialResult> {
    const o = this.#o;
    const form = new URLSearchParams({ To: req.to, From: req.from });
    if (o.answerUrl) form.set("Url", o.answerUrl);
    if (o.twiml) form.set("Twiml", o.twiml);
    form.set("StatusCallback", withDialRef(o.statusCallbackUrl, req.dialRef));
    form.set("StatusCallbackMethod", "POST");
    for (const event of o.statusCallbackEvents) form.append("StatusCallbackEvent", event);
    if (o.ringTimeoutSeconds !== undefined) form.set("Timeout", String(o.ringTimeoutSeconds));
    return postDial(
      {
        provider: this.name,
        url: apiUrl(o.baseUrl, `/2010-04-01/Accounts/${o.accountSid}/Calls.json`),
        headers: {
          authorization: this.#auth,
          "content-type": "application/x-www-form-urlencoded",
          accept: "application/json",
        },
        body: form.toString(),
        signal: req.signal,
      },
      reader,
      o.clock,
    );
  }

  async callStatus(callId: string, signal: AbortSignal): Promise<CallStatus> {
    const o = this.#o;
    const body = await getCall({
      provider: this.name,
      url: apiUrl(o.baseUrl, `/2010-04-01/Accounts/${o.accountSid}/Calls/${encodeURIComponent(callId)}.json`),
      headers: { authorization: this.#auth, accept: "application/json" },
      signal,
    });
    return statusOf(stringAt(body, "status"), DEFAULT_OUTCOMES.twilio, LIVE);
  }
}
