import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { createDispatcher, type Dispatcher } from "../../src/dispatcher.js";
import { SlackAlertSink, SlackWebhookError, slackMessage } from "../../src/infra/alerts/slack.js";
import { runVirtual, VirtualClock } from "../../src/infra/clock.js";
import { SimulatedProvider } from "../../src/infra/providers/simulated.js";
import type { Alert } from "../../src/machines/ports.js";
import { HMAC_SECRET, MINUTE, PHONES, seededRandom, silentLogger, T0 } from "../support/harness.js";
import {
  deadWebhookUrl,
  eventually,
  SECRET_PATH,
  startWebhookServer,
  type WebhookServer,
} from "./webhook-server.js";

const servers: WebhookServer[] = [];
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(...args: Parameters<typeof startWebhookServer>): Promise<WebhookServer> {
  const s = await startWebhookServer(...args);
  servers.push(s);
  return s;
}

const ALERT: Alert = {
  kind: "no_outbound_number",
  severity: "P1",
  key: "no_outbound_number:res-1:tpl-1",
  message: "No AVAILABLE outbound number for the template: leads finish NUMBER_UNAVAILABLE",
  fields: { resellerId: "res-1", templateId: "tpl-1", leads: 3 },
  at: T0,
};

/** Every string inside a JSON value, for "nowhere in the payload" assertions. */
function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}

describe("SlackAlertSink", () => {
  it("posts one JSON { text, blocks } with severity, kind, key, message and fields", async () => {
    const slack = await server();
    await new SlackAlertSink({ webhookUrl: slack.url }).send(ALERT);

    expect(slack.received).toHaveLength(1);
    const [request] = slack.received;
    expect(request.method).toBe("POST");
    expect(request.path).toBe(SECRET_PATH);
    expect(request.contentType).toBe("application/json");
    const payload = request.json as { text: string; blocks: Record<string, unknown>[] };
    expect(Object.keys(payload).sort()).toEqual(["blocks", "text"]);
    expect(payload.text).toBe(
      ":red_circle: *P1* no_outbound_number: No AVAILABLE outbound number for the template: leads finish NUMBER_UNAVAILABLE",
    );
    expect(payload.blocks).toEqual([
      {
        type: "section",
        text: {
          type: "mrkdwn",
          text: ":red_circle: *P1* `no_outbound_number`\nNo AVAILABLE outbound number for the template: leads finish NUMBER_UNAVAILABLE",
        },
      },
      {
        type: "section",
        fields: [
          { type: "mrkdwn", text: "*resellerId*\nres-1" },
          { type: "mrkdwn", text: "*templateId*\ntpl-1" },
          { type: "mrkdwn", text: "*leads*\n3" },
        ],
      },
      {
        type: "context",
        elements: [
          { type: "mrkdwn", text: "key `no_outbound_number:res-1:tpl-1` · 2031-01-06T06:00:00.000Z" },
        ],
      },
    ]);
  });

  it("marks each severity with its own emoji", () => {
    const text = (severity: Alert["severity"]) => slackMessage({ ...ALERT, severity }).text;
    expect(text("P0")).toMatch(/^:rotating_light: \*P0\* /);
    expect(text("P1")).toMatch(/^:red_circle: \*P1\* /);
    expect(text("P2")).toMatch(/^:warning: \*P2\* /);
  });

  it("splits more than ten fields over several sections (Slack's limit per section)", () => {
    const fields = Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`f${i}`, i]));
    const { blocks } = slackMessage({ ...ALERT, fields }) as { blocks: { fields?: unknown[] }[] };
    expect(blocks.filter((b) => b.fields).map((b) => b.fields?.length)).toEqual([10, 3]);
  });

  it("neutralises mentions and links in user text: <!channel> in a template name never pings", async () => {
    const slack = await server();
    const templateId = "promo <!channel> & <https://evil.example|click here> <@U123>";
    await new SlackAlertSink({ webhookUrl: slack.url }).send({
      ...ALERT,
      key: `no_outbound_number:res-1:${templateId}`,
      message: `Template ${templateId} has no number`,
      fields: { templateId, "<!here>": "x" },
    });

    const texts = strings(slack.received[0].json);
    for (const text of texts) {
      expect(text).not.toMatch(/[<>]/);
      expect(text).not.toMatch(/&(?!amp;|lt;|gt;)/);
    }
    const all = texts.join("\n");
    expect(all).toContain(
      "promo &lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt; &lt;@U123&gt;",
    );
    expect(all).toContain("*&lt;!here&gt;*\nx");
  });

  it("masks phone-like values again, whatever field or text they hide in", async () => {
    const slack = await server();
    await new SlackAlertSink({ webhookUrl: slack.url }).send({
      ...ALERT,
      kind: "rate_limit_blocked",
      severity: "P2",
      message: "Blocked a call to +1 415-555-0123 (customer 14155550123)",
      fields: {
        phone: "+14155550123", // a caller forgot to mask
        to: "4155550123",
        msisdn: 14155550123,
        note: "callback on (415) 555-0123 please",
        masked: "***0123",
        leadId: "lead-1234567",
        dialRef: "lead-1:2@1925013600000",
        uuid: "550e8400-e29b-41d4-a716-446655440000",
        count: 7,
        day: "2031-01-06",
      },
    });

    const body = slack.received[0].body;
    for (const form of ["14155550123", "4155550123", "415-555-0123", "555-0123", "(415) 555"]) {
      expect(body).not.toContain(form);
    }
    const fields = (slack.received[0].json as { blocks: { fields?: { text: string }[] }[] }).blocks[1]
      .fields as { text: string }[];
    expect(fields.map((f) => f.text)).toEqual([
      "*phone*\n***0123",
      "*to*\n***0123",
      "*msisdn*\n***0123",
      "*note*\ncallback on ***0123 please",
      "*masked*\n***0123",
      // ids are not phones: left alone
      "*leadId*\nlead-1234567",
      "*dialRef*\nlead-1:2@1925013600000",
      "*uuid*\n550e8400-e29b-41d4-a716-446655440000",
      "*count*\n7",
      "*day*\n2031-01-06",
    ]);
    expect(body).toContain("Blocked a call to ***0123 (customer ***0123)");
  });

  it("gives up after its timeout when Slack never answers", async () => {
    const slack = await server("hang");
    const sink = new SlackAlertSink({ webhookUrl: slack.url, timeoutMs: 200 });
    const started = performance.now();
    const error = await sink.send(ALERT).catch((e: unknown) => e);
    const elapsed = performance.now() - started;

    expect(error).toBeInstanceOf(SlackWebhookError);
    expect((error as SlackWebhookError).message).toBe("Slack webhook did not answer within 200 ms");
    expect((error as SlackWebhookError).status).toBeNull();
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(2000);
    expect(slack.received).toHaveLength(1);
  });

  it("waits 5 s by default before giving up", async () => {
    const slack = await server("hang");
    const started = performance.now();
    const error = await new SlackAlertSink({ webhookUrl: slack.url }).send(ALERT).catch((e: unknown) => e);
    expect((error as Error).message).toBe("Slack webhook did not answer within 5000 ms");
    expect(performance.now() - started).toBeGreaterThanOrEqual(4900);
  }, 10_000);

  it("rejects on a non-2xx answer, with the status and Slack's reason but never the webhook secret", async () => {
    const slack = await server({ status: 500, body: "invalid_payload" });
    const error = await new SlackAlertSink({ webhookUrl: slack.url }).send(ALERT).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(SlackWebhookError);
    expect((error as SlackWebhookError).status).toBe(500);
    expect((error as Error).message).toBe("Slack webhook answered 500: invalid_payload");
    expect(String((error as Error).stack)).not.toContain("s3cr3t");
  });

  it("rejects when nothing listens, without the webhook secret in the error", async () => {
    const url = await deadWebhookUrl();
    const error = await new SlackAlertSink({ webhookUrl: url }).send(ALERT).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(SlackWebhookError);
    expect((error as Error).message).toMatch(/^Slack webhook unreachable: .*ECONNREFUSED/);
    expect((error as Error).message).not.toContain("s3cr3t");
  });

  it("refuses a webhook URL that is not http(s), and a bad timeout", () => {
    expect(() => new SlackAlertSink({ webhookUrl: "not a url" })).toThrow(
      new TypeError("SlackAlertSinkOptions.webhookUrl must be an http(s) URL"),
    );
    expect(() => new SlackAlertSink({ webhookUrl: "ftp://hooks.example/x" })).toThrow(
      "SlackAlertSinkOptions.webhookUrl must be an http(s) URL, got ftp:",
    );
    expect(() => new SlackAlertSink({ webhookUrl: "https://hooks.example/x", timeoutMs: 0 })).toThrow(
      "SlackAlertSinkOptions.timeoutMs must be an integer ≥ 1, got 0",
    );
  });
});

describe("a dispatcher alerting to Slack", () => {
  const TEMPLATE_ID = "promo <!channel>";
  const LEADS = 5;

  /** A template pinned to a DISABLED number, no pool: every lead finishes NUMBER_UNAVAILABLE. */
  async function runNoNumberCampaign(webhookUrl: string) {
    const clock = new VirtualClock(T0);
    const sinkErrors: unknown[] = [];
    const d = createDispatcher({
      clock,
      logger: silentLogger,
      hmacSecret: HMAC_SECRET,
      random: seededRandom(),
      providers: [new SimulatedProvider({ clock, onCallEnd: (end) => void d.callEnded(end) })],
      numbers: [{ id: "num-off", e164: "+15550000009", provider: "sim", maxChannels: 5, status: "DISABLED" }],
      templates: [{ id: TEMPLATE_ID, resellerId: "res-1", numberId: "num-off" }],
      alertSinks: [new SlackAlertSink({ webhookUrl, timeoutMs: 300 })],
    });
    dispatchers.push(d);
    d.on("error", ({ where, error }) => where === "alert sink" && sinkErrors.push(error));
    await d.start();
    await d.submit(
      PHONES.slice(0, LEADS).map((phone, i) => ({ id: `lead-${i}`, phone, templateId: TEMPLATE_ID })),
    );
    const finished = () => (d.stats().finished.NUMBER_UNAVAILABLE ?? 0) === LEADS;
    await runVirtual(clock, { until: T0 + 10 * MINUTE, isDone: finished });
    return { d, sinkErrors, finished: finished() };
  }

  it.each([
    ["refuses connections", async () => deadWebhookUrl()],
    ["answers 500", async () => (await server({ status: 500, body: "boom" })).url],
    ["never answers", async () => (await server("hang")).url],
  ])("finishes every lead when Slack %s: a failing sink never fails a dispatch", async (_, url) => {
    const { d, sinkErrors, finished } = await runNoNumberCampaign(await url());

    expect(finished).toBe(true);
    expect(d.stats().finished).toEqual({ NUMBER_UNAVAILABLE: LEADS });
    expect(d.stats().dials).toBe(0);
    // The sink's failure surfaces as an `error` event, once (the alert was throttled to one).
    expect(await eventually(() => sinkErrors.length > 0)).toBe(true);
    expect(sinkErrors).toHaveLength(1);
    expect(sinkErrors[0]).toBeInstanceOf(SlackWebhookError);
    expect(d.stats().alerts).toBe(1);
  });

  it("sends exactly one no_outbound_number alert for several leads, with the template name defused", async () => {
    const slack = await server();
    const { d, sinkErrors, finished } = await runNoNumberCampaign(slack.url);

    expect(finished).toBe(true);
    expect(await eventually(() => slack.received.length > 0)).toBe(true);
    await delay(100); // a second alert would be on its way by now
    expect(slack.received).toHaveLength(1);
    expect(sinkErrors).toEqual([]);
    expect(d.stats().alerts).toBe(1);

    const payload = slack.received[0].json as { text: string };
    expect(payload.text).toMatch(/^:red_circle: \*P1\* no_outbound_number: /);
    const body = slack.received[0].body;
    expect(body).toContain("promo &lt;!channel&gt;");
    expect(body).toContain("no_outbound_number:res-1:promo &lt;!channel&gt;");
    expect(body).not.toContain("<!channel>");
  });
});
