/** Phones never leave the process whole: logs, alerts and errors show the last four digits. */
export function maskPhone(phone: string): string {
  const digits = phone.replace(/\D/g, "");
  return `***${digits.slice(-4)}`;
}

/**
 * Runs of 7–15 digits, optionally with a leading + or ( and short separators (`+1 (415) 555-0123`),
 * that stand alone: not glued to a word, an id (`lead-123…`, a UUID segment) or a mask (`***1234`).
 */
const PHONE_LIKE = /(?<![\w*@-])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?!\w)/g;
/** A calendar date looks like a phone to PHONE_LIKE and is left alone. */
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Every phone-like run in free text masked (`***1234`); dates and ids stay as they are. */
export function maskPhoneLike(text: string): string {
  return text.replace(PHONE_LIKE, (match) => (DATE.test(match) ? match : maskPhone(match)));
}

/**
 * A value with every phone in it masked: fields named `phone` (a string or a number), and phone-like
 * text anywhere. A number elsewhere is left alone: a timestamp or a count is no phone.
 */
export function maskPhones(value: unknown, isPhone = false): unknown {
  if (isPhone && (typeof value === "string" || typeof value === "number")) return maskPhone(String(value));
  if (typeof value === "string") return maskPhoneLike(value);
  if (Array.isArray(value)) return value.map((v) => maskPhones(v));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskPhones(v, k === "phone")]));
  }
  return value;
}

/** Fields of a driver error (pg's DatabaseError) that quote the statement's data: dropped whole. */
const DRIVER_DATA_FIELDS = ["where", "parameters", "params", "values"] as const;
/** Free text of an error that may quote a value: its phone-like runs masked. */
const ERROR_TEXT_FIELDS = ["message", "stack", "detail", "hint", "internalQuery"] as const;

/**
 * The error (and its causes, aggregated and nested errors) with what it quotes of the data redacted,
 * in place: Postgres puts the rows it choked on in `where` ("JSON data, line 1: …"phone":"+91…"), and
 * a driver may attach the statement's parameters. The code, class and stack frames stay for debugging.
 * Only errors are touched (an Error, or pino's serialised copy of one), never other objects they carry.
 */
export function redactError<T>(error: T, seen = new Set<object>()): T {
  if (!isErrorLike(error) || seen.has(error)) return error;
  seen.add(error);
  const fields = error as Record<string, unknown>;
  for (const key of DRIVER_DATA_FIELDS) if (fields[key] !== undefined) fields[key] = "[redacted]";
  for (const key of ERROR_TEXT_FIELDS) {
    const text = fields[key];
    if (typeof text === "string") fields[key] = maskPhoneLike(text);
  }
  const nested = [...Object.values(fields), Object.hasOwn(fields, "cause") ? fields.cause : undefined];
  for (const value of nested) {
    if (Array.isArray(value)) for (const item of value) redactError(item, seen);
    else redactError(value, seen);
  }
  return error;
}

function isErrorLike(value: unknown): value is object {
  return (
    value instanceof Error ||
    (typeof value === "object" && value !== null && typeof (value as { stack?: unknown }).stack === "string")
  );
}
