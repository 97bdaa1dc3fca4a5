import type { IncomingMessage, ServerResponse } from "node:http";
import type { DispatcherEvents } from "../events.js";
import type { DispatcherOutcome } from "../machines/ports.js";
import type { DispatcherStats, StatsSource } from "../machines/stats-ports.js";

/** The Prometheus text exposition format, version 0.0.4. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type DeferredReason = DispatcherEvents["lead:deferred"]["reason"];

/** Every defer reason, exported at 0 before it first happens so that `rate()` sees it start. */
const DEFER_REASONS = Object.keys({
  window: 1,
  precheck: 1,
  rateLimit: 1,
  channel: 1,
  notPlaced: 1,
  throttled: 1,
  store: 1,
  shutdown: 1,
  retry: 1,
  unknownExpired: 1,
} satisfies Record<DeferredReason, 1>);

/** The dispatcher's own outcomes, exported at 0; call outcomes (template words) appear once seen. */
const DISPATCHER_OUTCOMES = Object.keys({
  NO_CONFIG: 1,
  INVALID_PHONE: 1,
  BLACKLISTED: 1,
  NUMBER_UNAVAILABLE: 1,
  PROVIDER_REJECTED: 1,
  PRECHECK_FAILED: 1,
  CANCELLED: 1,
  EXPIRED: 1,
  UNKNOWN: 1,
} satisfies Record<DispatcherOutcome, 1>);

interface Family {
  name: string;
  type: "counter" | "gauge";
  help: string;
  samples: { labels?: Record<string, string>; value: number }[];
}

/** The dispatcher's counters and gauges (from `stats()`) in the Prometheus text format. */
export function prometheusText(source: StatsSource): string {
  return families(source.stats()).map(render).join("");
}

/**
 * A node:http request handler serving GET/HEAD /metrics; anything else is 404 (or 405 for another
 * method on /metrics). Mount it on its own server or call it from a router.
 */
export function createMetricsHandler(
  source: StatsSource,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res
        .writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" })
        .end("method not allowed\n");
      return;
    }
    const body = prometheusText(source);
    res.writeHead(200, {
      "content-type": METRICS_CONTENT_TYPE,
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
    });
    res.end(req.method === "HEAD" ? undefined : body);
  };
}

function families(s: DispatcherStats): Family[] {
  const one = (value: number) => [{ value }];
  const by = (label: string, counts: Record<string, number>, known: string[]) => {
    const all = { ...Object.fromEntries(known.map((k) => [k, 0])), ...counts };
    return Object.keys(all)
      .sort()
      .map((key) => ({ labels: { [label]: key }, value: all[key] ?? 0 }));
  };
  const counter = (name: string, help: string, samples: Family["samples"]): Family => ({
    name: `dialgate_${name}`,
    type: "counter",
    help,
    samples,
  });
  const gauge = (name: string, help: string, value: number): Family => ({
    name: `dialgate_${name}`,
    type: "gauge",
    help,
    samples: one(value),
  });
  return [
    counter("leads_claimed_total", "Leads claimed; one lead actor started for each.", one(s.claimed)),
    counter("gate_peeks_total", "Read-only rate-limit checks (peek).", one(s.gates.peek)),
    counter("gate_records_total", "Rate-limit attempts recorded (the atomic record).", one(s.gates.record)),
    counter(
      "gate_record_rejections_total",
      "Records refused: another worker filled the phone's window after our peek.",
      one(s.gates.recordRejected),
    ),
    counter(
      "gate_channel_exhausted_total",
      "Channel gate found no free line on the number.",
      one(s.gates.channelExhausted),
    ),
    counter(
      "gate_fail_open_total",
      "Peeks or records decided without the gate store (failed open).",
      one(s.gates.failOpen),
    ),
    counter("dials_total", "makeCall invocations, whatever their result.", one(s.dials)),
    counter("calls_placed_total", "Dials the provider placed (a call id came back).", one(s.placed)),
    counter(
      "dials_held_unknown_total",
      "Dials sent without a usable reply: line and record held until reconciled.",
      one(s.heldUnknown),
    ),
    counter(
      "leads_deferred_total",
      "Leads sent back to the schedule, by reason.",
      by("reason", s.deferred, DEFER_REASONS),
    ),
    counter(
      "leads_finished_total",
      "Leads that reached FINISHED, by outcome.",
      by("outcome", s.finished, DISPATCHER_OUTCOMES),
    ),
    counter("alerts_total", "Alerts that passed their throttle and went to the sinks.", one(s.alerts)),
    gauge("lead_actors_in_flight", "Lead actors running in this process.", s.inFlight),
    gauge("outbox_pending", "Releases, undos and records waiting in the outbox for a retry.", s.outbox),
    gauge(
      "clock_offset_ms",
      "Gate store clock (Redis TIME) minus this process's clock, as last measured; 0 without a sync.",
      s.clock.offsetMs,
    ),
    gauge("leads_waiting_for_line", "Leads parked for a line now (in the lead store).", s.waiting),
  ];
}

function render(family: Family): string {
  const lines = [`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`];
  for (const { labels, value } of family.samples) {
    const pairs = Object.entries(labels ?? {}).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
    lines.push(`${family.name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatValue(value)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Label values: backslash, double quote and line feed escaped. */
export function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}
