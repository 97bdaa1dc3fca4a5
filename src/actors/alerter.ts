import type { Alert, AlertKind, AlertSink, AlertThrottle, Clock, Severity } from "../machines/ports.js";

export const SEVERITY: Record<AlertKind, Severity> = {
  store_unavailable: "P0",
  no_outbound_number: "P1",
  unknown_dial: "P1",
  orphan_call_end: "P1",
  provider_rejected: "P1",
  rate_limit_blocked: "P2",
};

const THROTTLE_MS: Record<Severity, number> = { P0: 5 * 60_000, P1: 30 * 60_000, P2: 15 * 60_000 };

/**
 * Throttled alerts: one per key per window, shared across processes through the gate store. While
 * that store is down the throttle falls back to this process (design §7.14). A failing sink never
 * fails a dispatch.
 */
export class Alerter {
  #local = new Map<string, number>();
  #deliveries = new Set<Promise<void>>();

  constructor(
    private readonly throttle: AlertThrottle,
    private readonly sinks: AlertSink[],
    private readonly clock: Clock,
    private readonly onSent: (alert: Alert) => void,
    private readonly onError: (error: unknown) => void,
  ) {}

  async raise(kind: AlertKind, key: string, message: string, fields: Alert["fields"] = {}): Promise<boolean> {
    const severity = SEVERITY[kind];
    const now = this.clock.now();
    const throttleKey = `${kind}:${key}`;
    let allowed: boolean;
    try {
      allowed = await this.throttle.allow(throttleKey, THROTTLE_MS[severity], now);
    } catch {
      allowed = this.#allowLocally(throttleKey, THROTTLE_MS[severity], now);
    }
    if (!allowed) return false;
    const alert: Alert = { kind, severity, key: throttleKey, message, fields, at: now };
    this.onSent(alert);
    // Delivery is not awaited: a slow or hung sink must not hold up a call-end or a gate.
    for (const sink of this.sinks) {
      const delivery = sink
        .send(alert)
        .catch((error: unknown) => this.onError(error))
        .finally(() => this.#deliveries.delete(delivery));
      this.#deliveries.add(delivery);
    }
    return true;
  }

  /** Waits for deliveries in flight (on stop). */
  async drain(): Promise<void> {
    await Promise.all([...this.#deliveries]);
  }

  #allowLocally(key: string, windowMs: number, now: number): boolean {
    const until = this.#local.get(key);
    if (until !== undefined && now < until) return false;
    this.#local.set(key, now + windowMs);
    return true;
  }
}
