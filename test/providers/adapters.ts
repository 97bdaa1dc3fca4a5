/** The three REST adapters, configured against a fake provider, with what each one's success looks like. */

import { ExotelProvider } from "../../src/infra/providers/exotel.js";
import { PlivoProvider } from "../../src/infra/providers/plivo.js";
import { TwilioProvider } from "../../src/infra/providers/twilio.js";
import type { DialRequest, Provider } from "../../src/machines/ports.js";
import { json, type Play } from "./fake-provider.js";

export const TWILIO_SID = `AC${"0123456789abcdef".repeat(2)}`;
export const TWILIO_TOKEN = "twilio-secret-token-7f3a";
export const PLIVO_ID = "MAXXXXXXXXXXXXXXXXXX";
export const PLIVO_TOKEN = "plivo-secret-token-91bc";
export const EXOTEL_SID = "acme1";
export const EXOTEL_KEY = "exo-key";
export const EXOTEL_TOKEN = "exotel-secret-token-44d0";

export interface AdapterCase {
  name: string;
  make(baseUrl: string): Provider;
  /** The provider's success reply naming `callId`. */
  placed(callId: string): Play;
  /** Its success status, for a reply that lacks the id. */
  successStatus: number;
}

export const ADAPTERS: AdapterCase[] = [
  {
    name: "twilio",
    make: (baseUrl) =>
      new TwilioProvider({
        accountSid: TWILIO_SID,
        authToken: TWILIO_TOKEN,
        baseUrl,
        answerUrl: "https://app.example.com/twiml/reminder",
        statusCallbackUrl: "https://hooks.example.com/twilio/status",
      }),
    placed: (callId) => json(201, { sid: callId, status: "queued", direction: "outbound-api" }),
    successStatus: 201,
  },
  {
    name: "plivo",
    make: (baseUrl) =>
      new PlivoProvider({
        authId: PLIVO_ID,
        authToken: PLIVO_TOKEN,
        baseUrl,
        answerUrl: "https://app.example.com/plivo/answer",
        hangupUrl: "https://hooks.example.com/plivo/hangup",
      }),
    placed: (callId) => json(201, { message: "call fired", request_uuid: callId, api_id: "97ceeb52" }),
    successStatus: 201,
  },
  {
    name: "exotel",
    make: (baseUrl) =>
      new ExotelProvider({
        accountSid: EXOTEL_SID,
        apiKey: EXOTEL_KEY,
        apiToken: EXOTEL_TOKEN,
        baseUrl,
        flowUrl: "http://my.exotel.com/acme1/exoml/start_voice/123456",
        statusCallbackUrl: "https://hooks.example.com/exotel/status",
      }),
    placed: (callId) => json(200, { Call: { Sid: callId, Status: "in-progress" } }),
    successStatus: 200,
  },
];

/** A dial as the dispatcher makes it; the dialRef has characters a query must encode. */
export function dialRequest(signal: AbortSignal = AbortSignal.timeout(5000)): DialRequest {
  return {
    leadId: "lead 1/α",
    attempt: 0,
    to: "+14155550123",
    from: "+15005550006",
    numberId: "n1",
    dialRef: "lead 1/α:3:1767225600000&x=1",
    signal,
  };
}
