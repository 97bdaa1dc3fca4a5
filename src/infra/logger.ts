import pino, { type Logger, type LoggerOptions } from "pino";
import type { Clock } from "../machines/ports.js";
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

/** The level asked for in the environment (DIALGATE_LOG_LEVEL, else LOG_LEVEL), else `fallback`. */
export function envLogLevel(fallback: string): string {
  return process.env.DIALGATE_LOG_LEVEL || process.env.LOG_LEVEL || fallback;
}

/**
 * Structured logs on stderr (stdout stays clean for --json reports), redaction configured once.
 * With `clock`, lines carry its time: a simulation's trace reads in virtual time.
 */
export function createLogger(level = envLogLevel("info"), clock?: Clock): Logger {
  const options = loggerOptions(level);
  if (clock) options.timestamp = () => `,"time":${clock.now()}`;
  return pino(options, pino.destination(2));
}
