import pino, { type Logger } from "pino";

/** Fields that may carry a phone number or a credential, wherever they nest. */
export const REDACT_PATHS = [
  "phone",
  "to",
  "from",
  "authToken",
  "apiKey",
  "password",
  "*.phone",
  "*.to",
  "*.authToken",
  "*.apiKey",
  "*.password",
  "lead.phone",
  "req.headers.authorization",
];

/** Structured logs on stderr (stdout stays clean for --json reports), redaction configured once. */
export function createLogger(level = process.env.DIALGATE_LOG_LEVEL ?? "info"): Logger {
  return pino(
    { name: "dialgate", level, redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
    pino.destination(2),
  );
}
