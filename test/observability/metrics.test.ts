import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { DispatcherStats } from "../../src/dispatcher.js";
import {
  createMetricsHandler,
  escapeLabelValue,
  METRICS_CONTENT_TYPE,
  prometheusText,
} from "../../src/infra/metrics.js";
import { SimulatedProvider } from "../../src/infra/providers/simulated.js";
import { createHarness, MINUTE, NUMBER, PHONES, TEMPLATE } from "../support/harness.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Parsed {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: Sample[];
}

/**
 * A strict reader of the text format 0.0.4 as Prometheus parses it: HELP and TYPE once per family
 * and before its samples, metric and label names valid, label values with only \\, \" and \n escapes.
 */
function parseExposition(text: string): Parsed {
  expect(text.endsWith("\n")).toBe(true);
  const parsed: Parsed = { help: new Map(), type: new Map(), samples: [] };
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const seen = new Set<string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (meta) {
      const [, what, name, rest] = meta;
      const map = what === "HELP" ? parsed.help : parsed.type;
      expect(map.has(name), `${what} ${name} given twice`).toBe(false);
      expect(seen.has(name), `${what} ${name} after its samples`).toBe(false);
      if (what === "TYPE") expect(["counter", "gauge"]).toContain(rest);
      else expect(rest).not.toMatch(/\\(?![\\n])/);
      map.set(name, rest);
      continue;
    }
    const sample = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    expect(sample, `not a sample line: ${JSON.stringify(line)}`).not.toBeNull();
    const [, name, rawLabels = "", value] = sample as RegExpExecArray;
    expect(parsed.type.get(name), `${name} has no TYPE before it`).toBeDefined();
    expect(parsed.help.get(name), `${name} has no HELP before it`).toBeDefined();
    seen.add(name);
    const labels: Record<string, string> = {};
    const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
    let at = 0;
    while (at < rawLabels.length) {
      LABEL.lastIndex = at;
      const m = LABEL.exec(rawLabels);
      expect(m, `bad labels: ${rawLabels}`).not.toBeNull();
      const [whole, key, escaped] = m as RegExpExecArray;
      labels[key] = escaped.replace(/\\([\\"n])/g, (_, c: string) => (c === "n" ? "\n" : c));
      at += whole.length;
    }
    expect(Number.isNaN(Number(value))).toBe(false);
    parsed.samples.push({ name, labels, value: Number(value) });
  }
  return parsed;
}

function sampleValue(parsed: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  return parsed.samples.find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

const ODD_OUTCOME = 'SAID "NO" \\ hung up\nearly';

/** A small run: placed, notPlaced then placed, blocked, no number, an odd outcome, a rate-limit block. */
async function smallRun() {
  const h = await createHarness({
    config: { rateLimit: { rules: [{ maxCalls: 1, windowSeconds: 3600 }] } },
    numbers: [NUMBER],
    templates: [TEMPLATE, { id: "tpl-none", resellerId: "res-1", provider: "nobody" }],
    blockedPhones: [PHONES[2]],
    provider: (clock, dispatcher) =>
      new SimulatedProvider({
        clock,
        default: { result: "placed", callSeconds: 30 },
        perLead: {
          "lead-b": [{ result: "notPlaced" }],
          "lead-e": [{ result: "placed", callSeconds: 10, outcome: ODD_OUTCOME }],
        },
        onCallEnd: (end) => void dispatcher().callEnded(end),
      }),
  });
  await h.dispatcher.submit([
    { id: "lead-a", phone: PHONES[0], templateId: TEMPLATE.id },
    { id: "lead-b", phone: PHONES[1], templateId: TEMPLATE.id },
    { id: "lead-c", phone: PHONES[2], templateId: TEMPLATE.id },
    { id: "lead-d", phone: PHONES[3], templateId: "tpl-none" },
    { id: "lead-e", phone: PHONES[4], templateId: TEMPLATE.id },
  ]);
  await h.advance(2 * MINUTE);
  // A second call to lead-a's phone inside the hour: blocked by the rate limit, deferred.
  await h.dispatcher.submit({ id: "lead-f", phone: PHONES[0], templateId: TEMPLATE.id });
  await h.advance(MINUTE);
  return h;
}

describe("prometheusText", () => {
  it("exports every counter and gauge of a dispatch run, each with HELP and TYPE", async () => {
    const h = await smallRun();
    const stats: DispatcherStats = h.dispatcher.stats();
    const parsed = parseExposition(prometheusText(h.dispatcher));

    expect(stats.finished).toMatchObject({ BLACKLISTED: 1, NUMBER_UNAVAILABLE: 1, ANSWERED: 2 });
    expect(stats.deferred).toMatchObject({ notPlaced: 1, rateLimit: 1 });
    const expected: [string, Record<string, string>, number][] = [
      ["dialgate_leads_claimed_total", {}, 7], // a, b twice, c, d, e, f
      ["dialgate_gate_peeks_total", {}, 6], // all but the blocked lead-c
      ["dialgate_gate_records_total", {}, 4], // a, b twice, e
      ["dialgate_gate_record_rejections_total", {}, 0],
      ["dialgate_gate_channel_exhausted_total", {}, 0],
      ["dialgate_gate_fail_open_total", {}, 0],
      ["dialgate_dials_total", {}, 4],
      ["dialgate_calls_placed_total", {}, 3],
      ["dialgate_dials_held_unknown_total", {}, 0],
      ["dialgate_leads_deferred_total", { reason: "notPlaced" }, 1],
      ["dialgate_leads_deferred_total", { reason: "rateLimit" }, 1],
      ["dialgate_leads_deferred_total", { reason: "channel" }, 0],
      ["dialgate_leads_finished_total", { outcome: "ANSWERED" }, 2],
      ["dialgate_leads_finished_total", { outcome: "BLACKLISTED" }, 1],
      ["dialgate_leads_finished_total", { outcome: "NUMBER_UNAVAILABLE" }, 1],
      ["dialgate_leads_finished_total", { outcome: "EXPIRED" }, 0],
      ["dialgate_leads_finished_total", { outcome: ODD_OUTCOME }, 1],
      ["dialgate_alerts_total", {}, 2], // no_outbound_number + rate_limit_blocked
      ["dialgate_lead_actors_in_flight", {}, 0],
      ["dialgate_outbox_pending", {}, 0],
    ];
    for (const [name, labels, value] of expected) {
      expect(sampleValue(parsed, name, labels), `${name} ${JSON.stringify(labels)}`).toBe(value);
    }

    expect(parsed.type.get("dialgate_dials_total")).toBe("counter");
    expect(parsed.type.get("dialgate_lead_actors_in_flight")).toBe("gauge");
    expect(parsed.type.get("dialgate_outbox_pending")).toBe("gauge");
    for (const [name, type] of parsed.type) {
      if (type === "counter") expect(name).toMatch(/_total$/);
    }
    await h.dispatcher.stop();
  });

  it("escapes label values: backslash, double quote and line feed", async () => {
    const h = await smallRun();
    const text = prometheusText(h.dispatcher);
    expect(text).toContain('dialgate_leads_finished_total{outcome="SAID \\"NO\\" \\\\ hung up\\nearly"} 1\n');
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    await h.dispatcher.stop();
  });

  it("gives the exact lines of a family", () => {
    const stats: DispatcherStats = {
      inFlight: 3,
      outbox: 1,
      claimed: 9,
      dials: 8,
      placed: 7,
      heldUnknown: 1,
      deferred: { channel: 4 },
      waiting: 6,
      finished: { ANSWERED: 5 },
      gates: { peek: 9, record: 8, recordRejected: 1, channelExhausted: 4, failOpen: 2 },
      alerts: 2,
      clock: { offsetMs: -4998, syncedAt: 1 },
    };
    const text = prometheusText({ stats: () => stats });
    expect(text).toContain(
      [
        "# HELP dialgate_gate_fail_open_total Peeks or records decided without the gate store (failed open).",
        "# TYPE dialgate_gate_fail_open_total counter",
        "dialgate_gate_fail_open_total 2",
        "",
      ].join("\n"),
    );
    expect(text).toContain(
      [
        "# HELP dialgate_lead_actors_in_flight Lead actors running in this process.",
        "# TYPE dialgate_lead_actors_in_flight gauge",
        "dialgate_lead_actors_in_flight 3",
        "",
      ].join("\n"),
    );
    expect(text).toContain("# TYPE dialgate_clock_offset_ms gauge\ndialgate_clock_offset_ms -4998\n");
    expect(text).toContain("dialgate_leads_waiting_for_line 6\n");
    expect(text).toContain('dialgate_leads_deferred_total{reason="channel"} 4\n');
    expect(text).toContain('dialgate_leads_deferred_total{reason="window"} 0\n');
    parseExposition(text);
  });
});

describe("createMetricsHandler", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it("serves GET /metrics as text/plain; version=0.0.4, and nothing else", async () => {
    const h = await smallRun();
    server = createServer(createMetricsHandler(h.dispatcher));
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const ok = await fetch(`${base}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe(METRICS_CONTENT_TYPE);
    expect(METRICS_CONTENT_TYPE).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await ok.text();
    expect(body).toBe(prometheusText(h.dispatcher));
    expect(sampleValue(parseExposition(body), "dialgate_dials_total")).toBe(4);

    const withQuery = await fetch(`${base}/metrics?x=1`);
    expect(withQuery.status).toBe(200);
    await withQuery.text();

    const head = await fetch(`${base}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");

    const post = await fetch(`${base}/metrics`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    await post.text();

    const other = await fetch(`${base}/`);
    expect(other.status).toBe(404);
    await other.text();
    await h.dispatcher.stop();
  });
});
