import pino, { type Logger, type LoggerOptions } from "pino";
import { redactError } from "./mask.js";

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

/** An error as pino's standard serializer writes it, with what it quotes of the data redacted. */
function serializeError(error: unknown): unknown {
  return redactError(pino.stdSerializers.err(error as Error));
}

/** The options of every dialgate logger: redacted paths, and errors (`err`, `error`) redacted. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    name: "dialgate",
    level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: { err: serializeError, error: serializeError },
  };
}

/** Structured logs on stderr (stdout stays clean for --json reports), redaction configured once. */
export function createLogger(level = process.env.DIALGATE_LOG_LEVEL ?? "info"): Logger {
  return pino(loggerOptions(level), pino.destination(2));
}
