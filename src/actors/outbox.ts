import type { Clock } from "../machines/ports.js";

export interface OutboxItem {
  /** What it does, for logs ("release n1 L1:3"). */
  what: string;
  run: () => Promise<unknown>;
}

/**
 * Releases, undos and deferred rate-limit records that failed: retried with capped backoff until they
 * succeed, so `releasing` never blocks on a store that is down (design §7.12, §7.6).
 */
export class Outbox {
  #items: { item: OutboxItem; tries: number }[] = [];
  #timer: { cancel(): void } | null = null;
  #flushing = false;

  constructor(
    private readonly clock: Clock,
    private readonly onError: (what: string, error: unknown) => void = () => {},
  ) {}

  get size(): number {
    return this.#items.length;
  }

  add(item: OutboxItem): void {
    this.#items.push({ item, tries: 0 });
    this.#arm(1000);
  }

  /** Runs every item once; failures stay queued. */
  async flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      const items = this.#items;
      this.#items = [];
      for (const entry of items) {
        try {
          await entry.item.run();
        } catch (error) {
          entry.tries += 1;
          this.#items.push(entry);
          this.onError(entry.item.what, error);
        }
      }
    } finally {
      this.#flushing = false;
    }
    if (this.#items.length > 0) {
      const tries = Math.min(...this.#items.map((e) => e.tries));
      this.#arm(Math.min(30_000, 1000 * 2 ** tries));
    }
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  #arm(delayMs: number): void {
    if (this.#timer) return;
    this.#timer = this.clock.setTimer(this.clock.now() + delayMs, () => {
      this.#timer = null;
      void this.flush();
    });
  }
}
