import type { Logger } from "pino";
import type { Alert, AlertSink } from "../../machines/ports.js";

/** The default sink: one structured log line per alert that passed its throttle. */
export class LogAlertSink implements AlertSink {
  constructor(private readonly logger: Logger) {}

  async send(alert: Alert): Promise<void> {
    const log = alert.severity === "P2" ? this.logger.warn : this.logger.error;
    log.call(
      this.logger,
      { alert: alert.kind, severity: alert.severity, key: alert.key, ...alert.fields },
      alert.message,
    );
  }
}
