/**
 * Natural batching (group commit): the calls made in one turn of the event loop go to the server as
 * one batch, and the calls made while the in-flight limit is reached go as the next batch when one
 * finishes. No timer: an idle batcher sends at the next setImmediate, so a lone call waits for nothing
 * but the macrotask that made it (and the promise continuations it runs).
 */
export interface BatcherOptions<I, R> {
  /** Runs one batch: one result per item, in item order. A throw rejects every item of the batch. */
  run(items: I[]): Promise<R[]>;
  /**
   * Items with the same key never share a batch nor run side by side: the later one goes with a later
   * batch, so each sees what the earlier one did, as if they ran one at a time in call order.
   */
  key?(item: I): string;
  /** Batches in flight at once. Default 2. */
  maxInFlight?: number;
  /** Items per batch at most. Default 500. */
  maxBatch?: number;
}

interface Pending<I, R> {
  item: I;
  key: string | undefined;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export class Batcher<I, R> {
  readonly #run: (items: I[]) => Promise<R[]>;
  readonly #key: ((item: I) => string) | undefined;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #queue: Pending<I, R>[] = [];
  /** Keys of the items in flight. */
  readonly #busy = new Set<string>();
  #inFlight = 0;
  #scheduled = false;

  constructor(options: BatcherOptions<I, R>) {
    this.#run = options.run;
    this.#key = options.key;
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#maxBatch = options.maxBatch ?? 500;
  }

  add(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, key: this.#key?.(item), resolve, reject });
      this.#schedule();
    });
  }

  /** After the current macrotask: every call its continuations make joins the same batch. */
  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      while (this.#inFlight < this.#maxInFlight) {
        const batch = this.#take();
        if (batch.length === 0) return;
        void this.#send(batch);
      }
    });
  }

  /** The next batch, in call order, without the items whose key is taken (they keep their place). */
  #take(): Pending<I, R>[] {
    const batch: Pending<I, R>[] = [];
    const rest: Pending<I, R>[] = [];
    for (const pending of this.#queue) {
      const { key } = pending;
      if (batch.length >= this.#maxBatch || (key !== undefined && this.#busy.has(key))) {
        rest.push(pending);
        continue;
      }
      if (key !== undefined) this.#busy.add(key);
      batch.push(pending);
    }
    this.#queue = rest;
    return batch;
  }

  async #send(batch: Pending<I, R>[]): Promise<void> {
    this.#inFlight += 1;
    let results: R[] | undefined;
    let failure: unknown;
    try {
      results = await this.#run(batch.map((p) => p.item));
    } catch (error) {
      failure = error;
    }
    // Free the slot and the keys first: the callers' continuations may add at once.
    this.#inFlight -= 1;
    for (const { key } of batch) if (key !== undefined) this.#busy.delete(key);
    for (const [i, pending] of batch.entries()) {
      if (results) pending.resolve(results[i] as R);
      else pending.reject(failure);
    }
    this.#schedule();
  }
}
