import type pg from "pg";
import { ChannelListener } from "./channel-listener.js";

/** Notified by the triggers of 004_config_notify.sql; the payload is the schema. */
const CONFIG_CHANNEL = "dialgate_config";

/**
 * An exact cache of one store's templates and numbers. It serves entries only while the pool's config
 * listener (ConfigWatch) is LISTENing, and it is emptied by every notification for its schema, by the
 * listener's loss and by the store's own upserts. An entry is the read's promise, stored when the read
 * starts (after LISTEN): whatever empties the cache also drops the reads in flight, which may have
 * read the row before the change.
 */
export class ConfigCache {
  readonly schema: string;
  readonly #entries = new Map<string, Promise<unknown>>();
  /** The entries whose read has come back, by the same key; emptied with them. */
  readonly #values = new Map<string, unknown>();
  #live = false;
  #closed = false;
  #waiting: ((live: boolean) => void)[] = [];

  constructor(schema: string) {
    this.schema = schema;
  }

  /** Live: the watch LISTENs (a change of state drops the entries either way). */
  setLive(live: boolean): void {
    this.#live = live && !this.#closed;
    this.clear();
    if (this.#live || this.#closed) for (const wake of this.#waiting.splice(0)) wake(this.#live);
  }

  clear(): void {
    this.#entries.clear();
    this.#values.clear();
  }

  close(): void {
    this.#closed = true;
    this.setLive(false);
  }

  /** True once live, false once closed. */
  whenLive(): Promise<boolean> {
    if (this.#live || this.#closed) return Promise.resolve(this.#live);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** A copy of the cached value, or of what `load` reads (cached when live). */
  async read<T>(key: string, load: () => Promise<T>): Promise<T> {
    if (!this.#live) return load();
    let entry = this.#entries.get(key) as Promise<T> | undefined;
    if (entry === undefined) {
      const loading = load();
      entry = loading;
      this.#entries.set(key, loading);
      loading.then(
        (value) => {
          if (this.#entries.get(key) === loading) this.#values.set(key, deepFreeze(value));
        },
        () => {
          if (this.#entries.get(key) === loading) this.#entries.delete(key);
        },
      );
    }
    // Callers may change what they get; the entry stays as read.
    return structuredClone(await entry);
  }

  /**
   * The cached value itself (frozen: a caller that tries to change it throws) when its read has come
   * back and the cache is live, else undefined. No copy: the check gate peeks once per lead.
   */
  peek<T>(key: string): T | undefined {
    if (!this.#live) return undefined;
    return this.#values.get(key) as T | undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * One connection per pool LISTENing on CONFIG_CHANNEL for the caches of every store on the pool, so a
 * store that is never closed costs no connection of its own. It ends with its last cache, or with the
 * pool (pg-pool emits 'remove' for each client it ends).
 */
export class ConfigWatch {
  static readonly #byPool = new WeakMap<pg.Pool, ConfigWatch>();

  static join(pool: pg.Pool, cache: ConfigCache): void {
    let watch = ConfigWatch.#byPool.get(pool);
    if (watch === undefined) {
      watch = new ConfigWatch(pool);
      ConfigWatch.#byPool.set(pool, watch);
    }
    watch.#caches.add(cache);
    cache.setLive(watch.#live);
  }

  /** Closes the cache; the watch stops with its last one. */
  static async leave(pool: pg.Pool, cache: ConfigCache): Promise<void> {
    cache.close();
    const watch = ConfigWatch.#byPool.get(pool);
    if (watch === undefined || !watch.#caches.delete(cache)) return;
    if (watch.#caches.size === 0) await watch.#stop();
  }

  readonly #pool: pg.Pool;
  readonly #caches = new Set<ConfigCache>();
  readonly #listener: ChannelListener;
  #live = false;
  readonly #removed = () => {
    if (this.#pool.ending) this.#stop().catch(() => {});
  };

  private constructor(pool: pg.Pool) {
    this.#pool = pool;
    const changed = (schema: string) => {
      for (const cache of this.#caches) if (cache.schema === schema) cache.clear();
    };
    this.#listener = new ChannelListener(pool.options, CONFIG_CHANNEL, changed, {
      unref: true,
      live: (live) => {
        this.#live = live;
        for (const cache of this.#caches) cache.setLive(live);
      },
    });
    pool.on("remove", this.#removed);
    this.#listener.keep();
  }

  async #stop(): Promise<void> {
    if (ConfigWatch.#byPool.get(this.#pool) === this) ConfigWatch.#byPool.delete(this.#pool);
    this.#pool.off("remove", this.#removed);
    await this.#listener.stop();
  }
}
