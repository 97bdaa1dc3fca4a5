import type { Alert, AlertSink, Severity } from "../../machines/ports.js";
import { maskPhone, maskPhoneLike } from "../mask.js";

export interface SlackAlertSinkOptions {
  /** The incoming-webhook URL. It is a credential: it never appears in an error or a log line. */
  webhookUrl: string;
  /** Longest wait for Slack's answer, in ms (default 5000): a hung Slack must not pile up requests. */
  timeoutMs?: number;
}

/** Slack refused or never answered the alert. The Alerter absorbs it (a failing sink never fails a dispatch). */
export class SlackWebhookError extends Error {
  override readonly name = "SlackWebhookError";
  constructor(
    message: string,
    /** HTTP status, or null when no answer came (timeout, refused connection). */
    readonly status: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const DEFAULT_TIMEOUT_MS = 5000;
const PREFIX: Record<Severity, string> = {
  P0: ":rotating_light: *P0*",
  P1: ":red_circle: *P1*",
  P2: ":warning: *P2*",
};
/** Slack's limits: 10 fields per section, 2000 characters per field, 3000 per section text. */
const FIELDS_PER_SECTION = 10;
const MAX_FIELD_CHARS = 2000;
const MAX_TEXT_CHARS = 3000;

/**
 * Alerts to a Slack incoming webhook: one POST of `{ text, blocks }` per alert that passed its
 * throttle. Alert fields arrive masked already; phone-like text is masked again here, because a
 * phone in an on-call channel cannot be taken back.
 */
export class SlackAlertSink implements AlertSink {
  readonly #url: string;
  readonly #timeoutMs: number;

  constructor(options: SlackAlertSinkOptions) {
    let url: URL;
    try {
      url = new URL(options.webhookUrl);
    } catch {
      throw new TypeError("SlackAlertSinkOptions.webhookUrl must be an http(s) URL");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new TypeError(`SlackAlertSinkOptions.webhookUrl must be an http(s) URL, got ${url.protocol}`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new TypeError(`SlackAlertSinkOptions.timeoutMs must be an integer ≥ 1, got ${timeoutMs}`);
    }
    this.#url = url.href;
    this.#timeoutMs = timeoutMs;
  }

  async send(alert: Alert): Promise<void> {
    let response: Response;
    try {
      // Wall-clock on purpose: this bounds real network I/O, not a dispatch decision.
      response = await fetch(this.#url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(slackMessage(alert)),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      const timedOut = error instanceof Error && error.name === "TimeoutError";
      throw new SlackWebhookError(
        timedOut
          ? `Slack webhook did not answer within ${this.#timeoutMs} ms`
          : `Slack webhook unreachable: ${causeOf(error)}`,
        null,
        { cause: error },
      );
    }
    // Read the body either way: it frees the connection, and Slack explains a refusal there.
    const body = await response.text().catch(() => "");
    if (!response.ok) {
      throw new SlackWebhookError(
        `Slack webhook answered ${response.status}: ${body.slice(0, 200)}`,
        response.status,
      );
    }
  }
}

export interface SlackMessage {
  /** The fallback shown in notifications. */
  text: string;
  blocks: unknown[];
}

/** The webhook body of an alert: every piece of alert text escaped and phone-masked. */
export function slackMessage(alert: Alert): SlackMessage {
  const prefix = PREFIX[alert.severity];
  const kind = clean(alert.kind);
  const message = clean(alert.message);
  const fields = Object.entries(alert.fields).map(([name, value]) =>
    truncate(`*${clean(name)}*\n${cleanField(name, value)}`, MAX_FIELD_CHARS),
  );
  const blocks: unknown[] = [
    { type: "section", text: { type: "mrkdwn", text: truncate(`${prefix} \`${kind}\`\n${message}`) } },
  ];
  for (let i = 0; i < fields.length; i += FIELDS_PER_SECTION) {
    blocks.push({
      type: "section",
      fields: fields.slice(i, i + FIELDS_PER_SECTION).map((text) => ({ type: "mrkdwn", text })),
    });
  }
  blocks.push({
    type: "context",
    elements: [{ type: "mrkdwn", text: `key \`${clean(alert.key)}\` · ${new Date(alert.at).toISOString()}` }],
  });
  return { text: truncate(`${prefix} ${kind}: ${message}`), blocks };
}

const PHONE_FIELD = /phone|msisdn|^(to|from)$/i;
const MASKED = /^\*\*\*\d{0,4}$/;

/** Phone-like runs masked, then escaped for Slack mrkdwn. */
function clean(text: string): string {
  return escapeMrkdwn(maskPhoneLike(text));
}

function cleanField(name: string, value: string | number): string {
  const text = String(value);
  if (PHONE_FIELD.test(name) && !MASKED.test(text)) return escapeMrkdwn(maskPhone(text));
  return clean(text);
}

/** Slack reads `<…>` as links and mentions (`<!channel>`) and `&` as an entity: only these three are escaped. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function truncate(text: string, max = MAX_TEXT_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** fetch's "fetch failed" says nothing: the cause (ECONNREFUSED 127.0.0.1:…) does, without the URL's path. */
function causeOf(error: unknown): string {
  const cause = (error as { cause?: unknown })?.cause;
  const describe = (e: unknown) => (e instanceof Error ? e.message : String(e));
  return cause === undefined ? describe(error) : describe(cause);
}
