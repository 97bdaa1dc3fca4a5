import type { VirtualClock } from "../../infra/clock.js";
import { MemoryGateStore } from "../../infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../infra/memory/lead-store.js";
import type { GateStore, LeadStore } from "../../machines/ports.js";
import { inOrderPorts } from "./in-order.js";

/** The stores one simulation runs on, fresh for that run. */
export interface SimBackend {
  leadStore: LeadStore;
  gateStore: GateStore;
  /**
   * Resolves once no port call is outstanding, so the virtual clock may move (design §7.7).
   * A few event-loop turns in memory; a real backend must wait for its round trips.
   */
  settleFn: () => Promise<void>;
  /** Releases connections and drops the run's key prefix / schema. */
  close(): Promise<void>;
}

export interface BackendContext {
  /** Unique per run: a real backend names its key prefix / schema after it. */
  runId: string;
  clock: VirtualClock;
}

export type BackendFactory = (context: BackendContext) => Promise<SimBackend>;

/**
 * The embedded backend: needs nothing. Its calls go through the same in-order queue as a real
 * backend's (see in-order.ts), so both give the same run for one seed.
 */
export const memoryBackend: BackendFactory = async () => {
  const ports = inOrderPorts(new MemoryLeadStore(), new MemoryGateStore());
  return {
    leadStore: ports.leadStore,
    gateStore: ports.gateStore,
    settleFn: () => ports.settle(),
    close: async () => {},
  };
};

interface Registered {
  factory: BackendFactory;
  /** Why the backend cannot run here (e.g. a missing environment variable), or null. */
  unavailable: () => string | null;
}

const registry = new Map<string, Registered>([
  ["memory", { factory: memoryBackend, unavailable: () => null }],
]);

/**
 * The seam for `--backend redis` (and any other): a factory that builds the run's stores, and
 * optionally a check that says why it cannot run here (the command then exits 2 with that message).
 */
export function registerBackend(
  name: string,
  factory: BackendFactory,
  options: { unavailable?: () => string | null } = {},
): void {
  registry.set(name, { factory, unavailable: options.unavailable ?? (() => null) });
}

export function backendFactory(name: string): BackendFactory | undefined {
  return registry.get(name)?.factory;
}

/** Why the registered backend `name` cannot run here, or null when it can (or is unknown). */
export function backendUnavailable(name: string): string | null {
  return registry.get(name)?.unavailable() ?? null;
}
