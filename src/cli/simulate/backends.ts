import { settle, type VirtualClock } from "../../infra/clock.js";
import { MemoryGateStore } from "../../infra/memory/gate-store.js";
import { MemoryLeadStore } from "../../infra/memory/lead-store.js";
import type { GateStore, LeadStore } from "../../machines/ports.js";

/** The stores one simulation runs on, fresh for that run. */
export interface SimBackend {
  leadStore: LeadStore;
  gateStore: GateStore;
  /**
   * Resolves once no port call is outstanding, so the virtual clock may move (dispatcher.md §7.7).
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

/** The embedded backend: needs nothing, every port call finishes in microtasks. */
export const memoryBackend: BackendFactory = async () => ({
  leadStore: new MemoryLeadStore(),
  gateStore: new MemoryGateStore(),
  settleFn: () => settle(),
  close: async () => {},
});

const factories = new Map<string, BackendFactory>([["memory", memoryBackend]]);

/**
 * The seam for `--backend redis` (and any other): its module registers a factory that builds a
 * RedisGateStore + PostgresLeadStore from REDIS_URL / DATABASE_URL with a fresh prefix and schema.
 */
export function registerBackend(name: string, factory: BackendFactory): void {
  factories.set(name, factory);
}

export function backendFactory(name: string): BackendFactory | undefined {
  return factories.get(name);
}
