import { parsePhoneNumberFromString } from "libphonenumber-js";

/**
 * The one place a phone as a caller wrote it becomes the phone dialgate keeps: E.164, whatever the
 * spelling ("+91 98000 00001", "+91-98000-00001", "+91/98000/00001" are all "+919800000001"). Leads,
 * the block list and the scenario go through here once, at the edge; stores, HMAC keys, the block-list
 * lookup and the simulator's invariants see only the result, so one number has one rate window.
 */
export type NormalisedPhone = { e164: string } | { problem: string };

export const INVALID_PHONE = "must be a valid phone number in E.164 form";
/**
 * An extension is refused rather than stripped: the dial would ring the switchboard, not the person
 * the lead names, and a silent strip would hide that from the caller.
 */
export const PHONE_WITH_EXTENSION =
  "must not carry an extension (dialgate dials the number only): submit the number without it";

/** International form only (a leading +): with no default country a national number is ambiguous. */
export function normalisePhone(raw: string): NormalisedPhone {
  const text = raw.trim();
  // extract: false, as isValidPhoneNumber reads it: the whole text must be the number, not contain one.
  const parsed = text.startsWith("+") ? parsePhoneNumberFromString(text, { extract: false }) : undefined;
  if (!parsed?.isValid()) return { problem: INVALID_PHONE };
  if (parsed.ext) return { problem: PHONE_WITH_EXTENSION };
  return { e164: parsed.number };
}

/** The E.164 form of a phone, or the text unchanged when it is no valid phone (for reports). */
export function canonicalPhone(raw: string): string {
  const result = normalisePhone(raw);
  return "e164" in result ? result.e164 : raw;
}
