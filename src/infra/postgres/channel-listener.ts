import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";

const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5_000;

export interface ChannelOptions {
  /** Told true once the connection listens, false when it is lost or stopped. */
  live?(live: boolean): void;
  /** Neither the connection nor its reconnect timer keeps the process alive. */
  unref?: boolean;
}

/**
 * One dedicated connection LISTENing on a channel. When the server drops it, it reconnects with
 * backoff and then calls the listener once: notifications sent while it was away are lost, and a
 * supervisor that missed one would otherwise sleep until its next timer.
 */
export class ChannelListener {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #listener: (payload: string) => void;
  readonly #options: ChannelOptions;
  #client: pg.Client | null = null;
  readonly #stopped = new AbortController();

  constructor(
    config: pg.ClientConfig,
    channel: string,
    listener: (payload: string) => void,
    options: ChannelOptions = {},
  ) {
    this.#config = { ...config, application_name: "dialgate-listen" };
    this.#channel = channel;
    this.#listener = listener;
    this.#options = options;
  }

  async start(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on("notification", (msg) => {
      if (msg.channel === this.#channel) this.#listener(msg.payload ?? "");
    });
    // An 'error' (server gone) is followed by 'end'; the listener is required, or Node throws.
    client.on("error", () => this.#lost(client));
    client.on("end", () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.#stopped.signal.aborted) {
      await client.end();
      return;
    }
    // pg's types lack unref(); it unrefs the socket, as pg-pool's allowExitOnIdle does.
    if (this.#options.unref) (client as unknown as { unref(): void }).unref();
    this.#client = client;
    this.#options.live?.(true);
  }

  /** Starts in the background, retrying with backoff until stop(). */
  keep(): void {
    void this.#reconnect();
  }

  async stop(): Promise<void> {
    this.#stopped.abort();
    const client = this.#client;
    this.#client = null;
    if (client) this.#options.live?.(false);
    await client?.end();
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    this.#options.live?.(false);
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    for (
      let wait = RECONNECT_FIRST_MS;
      !this.#stopped.signal.aborted;
      wait = Math.min(2 * wait, RECONNECT_MAX_MS)
    ) {
      try {
        await this.start();
        if (!this.#stopped.signal.aborted) this.#listener("");
        return;
      } catch {
        // Real time on purpose: this paces network retries, it is not a domain timer of the clock.
        const ref = !this.#options.unref;
        await delay(wait, undefined, { signal: this.#stopped.signal, ref }).catch(() => {});
      }
    }
  }
}
