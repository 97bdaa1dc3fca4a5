/**
 * The telephony provider of the chaos tests: it lives in the test process, outside every dispatcher,
 * as a real one lives outside ours. A dispatcher that dies or gives up waiting does not take its
 * calls with it: a request that reached the provider may still ring, and its end signal is sent to a
 * dispatcher that is alive (design §2 step 8: an end is received by any process). Every request is
 * recorded in the shape of test/multiprocess/sim-log.ts, so the invariants are measured with the same
 * helpers, on what the provider saw.
 *
 * In-process dispatchers call `adapter()`; a dispatcher in another process reaches it over HTTP
 * (`listen()`, then test/chaos/support/dispatcher-process.ts).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { DialRequest, DialResult, Provider } from "../../../src/machines/ports.js";
import type { Dial } from "../../multiprocess/sim-log.js";

/** How the provider treats a request that arrives at a given moment. */
export type Behaviour =
  /** Answers after the latency; the call rings for callMs. */
  | "normal"
  /** Never answers and never places the call (the dispatcher's timeout ends the wait). */
  | "blackHole"
  /** Places the call, but answers only after `lateByMs`: the dispatcher has given up by then. */
  | "late";

export interface ProviderOptions {
  latencyMs: number;
  /** Call length, by the request's sequence number (vary it to shuffle the ends). */
  callMs: (seq: number) => number;
  /** Behaviour for a request arriving at `now`; "normal" by default. */
  behaviour?: (now: number, seq: number) => Behaviour;
  lateByMs?: number;
}

export type EndSignal = { callId: string; dialRef: string; outcome: string };
/** Where an end signal goes; undefined when no dispatcher can take it right now. */
export type EndReceiver = () => ((end: EndSignal) => Promise<unknown>) | undefined;

const END_RETRY_MS = 250;
const END_TRIES = 40;

export class ChaosProvider {
  /** Every request, in arrival order. `pid` is the number of the dispatcher that sent it. */
  readonly dials: Dial[] = [];
  /** End signals that could not be delivered after every retry. */
  undelivered = 0;
  #seq = 0;
  #pendingEnds = 0;
  #server: Server | null = null;
  readonly #o: Required<Omit<ProviderOptions, "behaviour">> & Pick<ProviderOptions, "behaviour">;

  constructor(
    options: ProviderOptions,
    private readonly receiver: EndReceiver,
  ) {
    this.#o = { lateByMs: 0, ...options };
  }

  /** Ends not delivered yet (calls still ringing or retrying their signal). */
  get pendingEnds(): number {
    return this.#pendingEnds;
  }

  /** The provider as an in-process adapter for dispatcher number `source`. */
  adapter(source: number): Provider {
    return { name: "sim", makeCall: (req) => this.request(req, source, req.signal) };
  }

  /**
   * One request. `signal` is the caller's patience: when it aborts the caller learns nothing
   * (unknown), but what the provider does with the request does not change.
   */
  async request(
    req: Omit<DialRequest, "signal">,
    source: number,
    signal: AbortSignal | null,
  ): Promise<DialResult> {
    const seq = ++this.#seq;
    const now = Date.now();
    const dial: Dial = {
      pid: source,
      leadId: req.leadId,
      attempt: req.attempt,
      dialRef: req.dialRef,
      numberId: req.numberId,
      phoneKey: req.to,
      at: now,
      resultAt: null,
      result: null,
      callId: null,
      endsAt: null,
      outcome: null,
    };
    this.dials.push(dial);
    const behaviour = this.#o.behaviour?.(now, seq) ?? "normal";
    const answer: Promise<DialResult> =
      behaviour === "blackHole"
        ? // Never answered and never placed: not a ring, so not a line in use either.
          new Promise<DialResult>(() => {})
        : delay(behaviour === "late" ? this.#o.lateByMs : this.#o.latencyMs).then(() =>
            this.#place(dial, seq),
          );
    if (behaviour === "blackHole") dial.result = "notPlaced";
    if (!signal) return answer;
    return Promise.race([answer, aborted(signal)]);
  }

  #place(dial: Dial, seq: number): DialResult {
    const callId = `chaos-${seq}`;
    dial.result = "placed";
    dial.resultAt = Date.now();
    dial.callId = callId;
    dial.endsAt = Date.now() + this.#o.callMs(seq);
    dial.outcome = "ANSWERED";
    this.#pendingEnds += 1;
    setTimeout(
      () => void this.#deliverEnd({ callId, dialRef: dial.dialRef, outcome: "ANSWERED" }),
      this.#o.callMs(seq),
    );
    return { kind: "placed", callId };
  }

  /** Sends the end to a live dispatcher; retried like a provider retries a failed callback. */
  async #deliverEnd(end: EndSignal): Promise<void> {
    try {
      for (let tries = 0; tries < END_TRIES; tries++) {
        const send = this.receiver();
        try {
          if (send) {
            await send(end);
            return;
          }
        } catch {
          // The receiving dispatcher's store failed (an outage): try again shortly.
        }
        await delay(END_RETRY_MS);
      }
      this.undelivered += 1;
    } finally {
      this.#pendingEnds -= 1;
    }
  }

  /** Serves `POST /calls` for dispatchers in other processes. Resolves with the base URL. */
  async listen(): Promise<string> {
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      req.on("end", () => {
        const { source, ...call } = JSON.parse(body) as Omit<DialRequest, "signal"> & { source: number };
        // A client that went away (killed, timed out) does not cancel the request at the provider.
        this.request(call, source, null).then(
          (result) => res.writableEnded || res.end(JSON.stringify(result)),
          () => res.writableEnded || res.end(JSON.stringify({ kind: "unknown", reason: "provider error" })),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.#server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function aborted(signal: AbortSignal): Promise<DialResult> {
  return new Promise((resolve) => {
    const unknown = () => resolve({ kind: "unknown", reason: "timeout" });
    if (signal.aborted) unknown();
    else signal.addEventListener("abort", unknown, { once: true });
  });
}
