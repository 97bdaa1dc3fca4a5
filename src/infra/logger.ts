import pino, { type Logger } from "pino";
import type { Clock } from "../machines/ports.js";

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

/** The level asked for in the environment (DIALGATE_LOG_LEVEL, else LOG_LEVEL), else `fallback`. */
export function envLogLevel(fallback: string): string {
  return process.env.DIALGATE_LOG_LEVEL || process.env.LOG_LEVEL || fallback;
}

/**
 * Structured logs on stderr (stdout stays clean for --json reports), redaction configured once.
 * With `clock`, lines carry its time: a simulation's trace reads in virtual time.
 */
export function createLogger(level = envLogLevel("info"), clock?: Clock): Logger {
  return pino(
    {
      name: "dialgate",
      level,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      ...(clock && { timestamp: () => `,"time":${clock.now()}` }),
    },
    pino.destination(2),
  );
}
