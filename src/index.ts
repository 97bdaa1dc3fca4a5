/**
 * dialgate's public API: the embedded dispatcher, its ports, and the adapters that ship with it. The
 * lead statechart is `dialgate/machine`: its types are XState's, which a host compiling with
 * exactOptionalPropertyTypes and skipLibCheck off cannot load, so the root entry point never pulls
 * them in.
 */
export { PreDialCheckError } from "./actors/pre-dial-checks.js";
export {
  type CallEndResult,
  createDispatcher,
  Dispatcher,
  type DispatcherOptions,
  type DispatcherStats,
  LeadNotDispatchableError,
} from "./dispatcher.js";
export type { DispatcherEventName, DispatcherEvents } from "./events.js";
export { LogAlertSink } from "./infra/alerts/log-sink.js";
export { SlackAlertSink, type SlackAlertSinkOptions, SlackWebhookError } from "./infra/alerts/slack.js";
export { runVirtual, ScaledClock, SystemClock, VirtualClock } from "./infra/clock.js";
export type { DispatcherConfig, DispatcherConfigInput } from "./infra/config.js";
export { ValidationError } from "./infra/config.js";
export { MemoryGateStore } from "./infra/memory/gate-store.js";
export { MemoryLeadStore } from "./infra/memory/lead-store.js";
export { createMetricsHandler, METRICS_CONTENT_TYPE, prometheusText } from "./infra/metrics.js";
export { PostgresLeadStore } from "./infra/postgres/lead-store.js";
export { migrate } from "./infra/postgres/migrate.js";
export {
  type CallbackHandlerOptions,
  createCallbackHandler,
  type ReplayStore,
  signExotelCallbackUrl,
  twilioSignatureAlgorithm,
  verifyExotelCallbackUrl,
  verifyPlivoSignatureV3,
  verifyTwilioSignature,
} from "./infra/providers/callbacks.js";
export { type ExotelOptions, ExotelProvider } from "./infra/providers/exotel.js";
export { PacedProvider, type PacingOptions, type PacingStore } from "./infra/providers/paced.js";
export { type PlivoOptions, PlivoProvider } from "./infra/providers/plivo.js";
export { type SimPlan, SimulatedProvider } from "./infra/providers/simulated.js";
export { type TwilioOptions, TwilioProvider } from "./infra/providers/twilio.js";
export { createRedisClient, RedisGateStore } from "./infra/redis/gate-store.js";
export type * from "./machines/ports.js";
