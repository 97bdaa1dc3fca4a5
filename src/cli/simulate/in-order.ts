import { AsyncLocalStorage } from "node:async_hooks";
import type { GateStore, LeadStore } from "../../machines/ports.js";

/** Methods that are not port calls of one command: passed straight through, never queued. */
const PASS_THROUGH: ReadonlySet<PropertyKey> = new Set([
  "close",
  "rebuildFrom",
  "ensureReady",
  "onLeadsAdded",
]);

/**
 * Not offered through the queue: a cache peek answers without a port call, so a simulated run on
 * Postgres would take fewer port calls than on memory. Without it the check reads as on memory.
 */
const HIDDEN: ReadonlySet<PropertyKey> = new Set(["cachedTemplate"]);

/**
 * Lead-store methods that only read: consecutive ones in a batch may run side by side (on several
 * connections), since reads commute. Any other method is taken to write and runs alone.
 */
const LEAD_READS: ReadonlySet<PropertyKey> = new Set([
  "get",
  "nextDueAt",
  "findByDial",
  "expiredUnknownDials",
  "overdueCalls",
  "list",
  "gateRebuildRows",
  "template",
  "templateWindowMs",
  "templateCooldowns",
  "number",
  "poolNumbers",
  "isBlocked",
  "pauses",
]);

/** The stores behind an InOrderPorts, and how to wait until none of their calls is outstanding. */
export interface InOrderPorts<L extends LeadStore, G extends GateStore> {
  readonly leadStore: L;
  readonly gateStore: G;
  /**
   * `inner` with every method queued like a gate-store call: for reads of the gate store's servers
   * that are not port calls (a test's inspection), so they count as outstanding too.
   */
  alongside<S extends object>(inner: S): S;
  /** Port calls queued or running right now. */
  readonly outstanding: number;
  /**
   * Resolves once no port call has been queued or running for `quietTurns` event-loop turns in a row:
   * nothing can happen any more before the virtual clock moves (design §7.7).
   */
  settle(quietTurns?: number): Promise<void>;
}

interface Queued {
  /** The gate store, or the lead store by whether the method only reads. */
  lane: "gate" | "read" | "write";
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Runs the port calls of a virtual-clock run in an order that does not depend on the backend, so the
 * memory and the Redis + Postgres backend give the same run for one seed (simulate.md).
 *
 * The calls issued while the event loop settles form one batch. A batch runs as if its calls ran one
 * at a time in the order they were issued: the lead-store writes one after another (a Postgres method
 * may take several statements), each run of consecutive lead-store reads side by side, and the
 * gate-store calls all sent at once (one Redis connection answers in order; each script is atomic).
 * The two stores share no data, so running the two lanes side by side keeps that order. Only when
 * the whole batch is done are the callers answered, in issue order, so what runs next never depends
 * on which server answered first or on how many microtasks an adapter takes. Calls an adapter makes
 * while serving a call (the Redis rebuild reads the lead store) run at once.
 */
export function inOrderPorts<L extends LeadStore, G extends GateStore>(
  leadStore: L,
  gateStore: G,
): InOrderPorts<L, G> {
  const serving = new AsyncLocalStorage<true>();
  let queue: Queued[] = [];
  let flushing = false;
  let running = 0;
  let scheduled = false;
  let waiters: (() => void)[] = [];

  const busy = () => flushing || scheduled || queue.length > 0;

  const flush = async () => {
    scheduled = false;
    flushing = true;
    const batch = queue;
    queue = [];
    running = batch.length;
    const results = new Map<Queued, PromiseSettledResult<unknown>>();
    const attempt = async (call: Queued) => {
      try {
        results.set(call, { status: "fulfilled", value: await serving.run(true, call.run) });
      } catch (reason) {
        results.set(call, { status: "rejected", reason });
      }
    };
    const gateCalls = batch.filter((call) => call.lane === "gate").map(attempt);
    const leadLane = (async () => {
      let reads: Promise<void>[] = [];
      for (const call of batch) {
        if (call.lane === "read") reads.push(attempt(call));
        else if (call.lane === "write") {
          await Promise.all(reads);
          reads = [];
          await attempt(call);
        }
      }
      await Promise.all(reads);
    })();
    await Promise.all([...gateCalls, leadLane]);
    for (const call of batch) {
      const result = results.get(call) as PromiseSettledResult<unknown>;
      if (result.status === "fulfilled") call.resolve(result.value);
      else call.reject(result.reason);
    }
    flushing = false;
    running = 0;
    if (queue.length > 0) schedule();
    else {
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    }
  };

  // After the current microtasks: every call their continuations issue joins the same batch.
  const schedule = () => {
    if (scheduled || flushing) return;
    scheduled = true;
    setImmediate(() => void flush());
  };

  const enqueue = (lane: Queued["lane"], run: () => Promise<unknown>): Promise<unknown> => {
    if (serving.getStore()) return run();
    return new Promise((resolve, reject) => {
      queue.push({ lane, run, resolve, reject });
      schedule();
    });
  };

  const wrap = <S extends object>(inner: S, store: "lead" | "gate"): S =>
    new Proxy(inner, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (HIDDEN.has(property)) return undefined;
        if (typeof value !== "function") return value;
        const method = value as (...args: unknown[]) => unknown;
        if (PASS_THROUGH.has(property)) return method.bind(target);
        const lane = store === "gate" ? "gate" : LEAD_READS.has(property) ? "read" : "write";
        return (...args: unknown[]) => enqueue(lane, async () => method.apply(target, args));
      },
    });

  const drained = () => (busy() ? new Promise<void>((resolve) => waiters.push(resolve)) : Promise.resolve());

  return {
    leadStore: wrap(leadStore, "lead"),
    gateStore: wrap(gateStore, "gate"),
    alongside: (inner) => wrap(inner, "gate"),
    get outstanding() {
      return queue.length + running;
    },
    async settle(quietTurns = 3) {
      let quiet = 0;
      while (quiet < quietTurns) {
        if (busy()) {
          quiet = 0;
          await drained();
          continue;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
        quiet = busy() ? 0 : quiet + 1;
      }
    },
  };
}
