import { z } from "zod";
import type { CallStatus, Clock, DialRequest, DialResult, Provider } from "../../machines/ports.js";
import { signExotelCallbackUrl } from "./callbacks.js";
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

export const exotelOptionsSchema = z
  .object({
    accountSid: z.string().regex(/^[\w-]+$/, "must be the account SID from the API settings page"),
    apiKey: z.string().min(1, "must not be empty"),
    apiToken: z.string().min(1, "must not be empty"),
    /** https://api.exotel.com (Singapore, the default) or https://api.in.exotel.com (Mumbai). */
    baseUrl: httpUrl.default("https://api.exotel.com"),
    /**
     * What the callee is connected to: a call flow (applet) URL, or an agent's number that Exotel
     * rings first and then bridges to the callee.
     */
    flowUrl: httpUrl.optional(),
    agentNumber: z
      .string()
      .regex(/^\+?\d{6,15}$/, "must be a phone number")
      .optional(),
    /** Posted when the call ends; every dial adds its `dialRef` to the query. */
    statusCallbackUrl: httpUrl,
    /**
     * Exotel signs no callback: with this secret every dial also adds `sig` (an HMAC of its dialRef)
     * to the callback URL, which createCallbackHandler({ provider: "exotel", authToken: secret }) checks.
     */
    callbackSecret: z.string().min(16, "must be at least 16 characters").optional(),
    statusCallbackEvents: z
      .array(z.enum(["terminal", "answered"]))
      .min(1)
      .default(["terminal"]),
    /** Exotel's CallType: `trans` for transactional calls. */
    callType: z.literal("trans").default("trans"),
    /** Longest call in seconds (Exotel's TimeLimit, at most 14400). */
    timeLimitSeconds: z.number().int().min(1).max(14_400).optional(),
    /** Seconds to let it ring (Exotel's TimeOut). */
    ringTimeoutSeconds: z.number().int().min(1).max(600).optional(),
    /** Resolves an HTTP-date Retry-After; without it only delta-seconds are read. */
    clock: z.custom<Clock>().optional(),
  })
  .strict()
  .refine((o) => (o.flowUrl === undefined) !== (o.agentNumber === undefined), {
    message: "exactly one of flowUrl and agentNumber must be set",
    path: ["flowUrl"],
  });

export type ExotelOptions = z.input<typeof exotelOptionsSchema>;

/** Exotel's CustomField is passed back in the terminal StatusCallback; it holds 128 characters. */
const CUSTOM_FIELD_MAX = 128;

/** developer.exotel.com/docs/references/error-codes: 401 bad key, 402 balance or plan, 403 suspended. */
const ACCOUNT_REFUSED = new Map([
  [401, "authentication refused"],
  [402, "insufficient balance or plan limit"],
  [403, "account suspended or not permitted"],
]);

const reader: ReplyReader = {
  callId: (body) => stringAt(body, "Call", "Sid"),
  permanent(status) {
    const why = ACCOUNT_REFUSED.get(status);
    return why ? { why, account: true } : undefined;
  },
  errorText: (body) => stringAt(body, "RestException", "Message"),
};

/**
 * developer.exotel.com/api/call-details: a call's Status. Not over yet: queued, ringing, in-progress;
 * over: the terminal words of its StatusCallback (completed, failed, busy, no-answer), plus canceled.
 */
const LIVE = new Set(["queued", "ringing", "in-progress"]);
const OUTCOMES: Readonly<Record<string, string>> = {
  completed: "ANSWERED",
  busy: "BUSY",
  "no-answer": "NO_ANSWER",
  failed: "FAILED",
  canceled: "FAILED",
};

/**
 * Places calls with Exotel's connect API: POST /v1/Accounts/{sid}/Calls/connect.json (form fields);
 * reads one back with GET /v1/Accounts/{sid}/Calls/{CallSid}.json.
 */
export class ExotelProvider implements Provider {
  readonly name: string;
  readonly #o: z.output<typeof exotelOptionsSchema>;
  readonly #auth: string;

  constructor(options: ExotelOptions, name = "exotel") {
    this.#o = parseProviderOptions(exotelOptionsSchema, options, "ExotelOptions", [
      "apiKey",
      "apiToken",
      "callbackSecret",
    ]);
    this.#auth = basicAuth(this.#o.apiKey, this.#o.apiToken);
    this.name = name;
  }

  makeCall(req: DialRequest): Promise<DialResult> {
    const o = this.#o;
    const form = new URLSearchParams();
    if (o.flowUrl) {
      // The callee is the one number dialled; the flow runs when they answer.
      form.set("From", req.to);
      form.set("Url", o.flowUrl);
    } else {
      form.set("From", o.agentNumber as string);
      form.set("To", req.to);
    }
    form.set("CallerId", req.from);
    form.set("CallType", o.callType);
    const callback = withDialRef(o.statusCallbackUrl, req.dialRef);
    form.set(
      "StatusCallback",
      o.callbackSecret ? signExotelCallbackUrl(callback, o.callbackSecret) : callback,
    );
    for (const [i, event] of o.statusCallbackEvents.entries()) form.set(`StatusCallbackEvents[${i}]`, event);
    if (req.dialRef.length <= CUSTOM_FIELD_MAX) form.set("CustomField", req.dialRef);
    if (o.timeLimitSeconds !== undefined) form.set("TimeLimit", String(o.timeLimitSeconds));
    if (o.ringTimeoutSeconds !== undefined) form.set("TimeOut", String(o.ringTimeoutSeconds));
    return postDial(
      {
        provider: this.name,
        url: apiUrl(o.baseUrl, `/v1/Accounts/${encodeURIComponent(o.accountSid)}/Calls/connect.json`),
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
    const sid = encodeURIComponent(o.accountSid);
    const body = await getCall({
      provider: this.name,
      url: apiUrl(o.baseUrl, `/v1/Accounts/${sid}/Calls/${encodeURIComponent(callId)}.json`),
      headers: { authorization: this.#auth, accept: "application/json" },
      signal,
    });
    return statusOf(stringAt(body, "Call", "Status"), OUTCOMES, LIVE);
  }
}
