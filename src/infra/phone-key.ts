import { createHmac } from "node:crypto";

/**
 * The only form in which a phone reaches the gate store: HMAC-SHA256(secret, E.164). Rotating the
 * secret starts every phone's rate window afresh.
 */
export function phoneKey(secret: string, e164: string): string {
  return createHmac("sha256", secret).update(e164).digest("base64url");
}
