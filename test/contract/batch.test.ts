import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/infra/postgres/batch.js";

/** A batcher whose batches the test answers by hand; `batches` is every batch it ran, in order. */
function manual(options: { maxInFlight?: number; maxBatch?: number; key?: (item: string) => string } = {}) {
  const batches: string[][] = [];
  const answers: { items: string[]; ok(): void; fail(error: Error): void }[] = [];
  const batcher = new Batcher<string, string>({
    ...options,
    run: (items) => {
      batches.push(items);
      return new Promise((resolve, reject) => {
        answers.push({ items, ok: () => resolve(items.map((i) => `${i}!`)), fail: reject });
      });
    },
  });
  return { batcher, batches, answers };
}

/** Past the batcher's setImmediate, and the continuations it resolved. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("Batcher", () => {
  it("sends the calls of one macrotask, continuations included, as one batch", async () => {
    const { batcher, batches, answers } = manual();
    const results = [batcher.add("a"), batcher.add("b")];
    // A continuation in the same macrotask joins the same batch.
    results.push(Promise.resolve().then(() => batcher.add("c")));
    await tick();
    expect(batches).toEqual([["a", "b", "c"]]);
    answers[0].ok();
    expect(await Promise.all(results)).toEqual(["a!", "b!", "c!"]);
  });

  it("a lone call goes at the next setImmediate, with no timer", async () => {
    const batcher = new Batcher<number, number>({ run: async (items) => items.map((n) => n * 2) });
    expect(await batcher.add(21)).toBe(42);
  });

  it("queues while maxInFlight batches run, then sends the queue as the next batch", async () => {
    const { batcher, batches, answers } = manual({ maxInFlight: 2 });
    const first = batcher.add("a");
    await tick();
    const second = batcher.add("b");
    await tick();
    const waiting = [batcher.add("c"), batcher.add("d")];
    await tick();
    await tick();
    expect(batches).toEqual([["a"], ["b"]]);
    answers[0].ok();
    expect(await first).toBe("a!");
    await tick();
    expect(batches).toEqual([["a"], ["b"], ["c", "d"]]);
    answers[1].ok();
    answers[2].ok();
    expect(await Promise.all([second, ...waiting])).toEqual(["b!", "c!", "d!"]);
  });

  it("caps the batch size and keeps call order", async () => {
    const { batcher, batches, answers } = manual({ maxBatch: 2, maxInFlight: 4 });
    const results = ["a", "b", "c", "d", "e"].map((i) => batcher.add(i));
    await tick();
    expect(batches).toEqual([["a", "b"], ["c", "d"], ["e"]]);
    for (const answer of answers) answer.ok();
    expect(await Promise.all(results)).toEqual(["a!", "b!", "c!", "d!", "e!"]);
  });

  it("a key already in the forming batch or in flight waits for it, in call order", async () => {
    const { batcher, batches, answers } = manual({ maxInFlight: 4, key: (item) => item[0] });
    const results = ["x1", "y1", "x2", "z1", "x3"].map((i) => batcher.add(i));
    await tick();
    // x2 and x3 may not run beside x1, even with free slots.
    expect(batches).toEqual([["x1", "y1", "z1"]]);
    answers[0].ok();
    await results[0];
    await tick();
    expect(batches).toEqual([["x1", "y1", "z1"], ["x2"]]);
    answers[1].ok();
    await results[2];
    await tick();
    expect(batches).toEqual([["x1", "y1", "z1"], ["x2"], ["x3"]]);
    answers[2].ok();
    expect(await Promise.all(results)).toEqual(["x1!", "y1!", "x2!", "z1!", "x3!"]);
  });

  it("a failed batch rejects every item of it, and the next batch still runs", async () => {
    const { batcher, batches, answers } = manual({ maxInFlight: 1 });
    const failing = [batcher.add("a"), batcher.add("b")];
    await tick();
    const later = batcher.add("c");
    answers[0].fail(new Error("connection lost"));
    for (const result of failing) await expect(result).rejects.toThrow("connection lost");
    await tick();
    expect(batches).toEqual([["a", "b"], ["c"]]);
    answers[1].ok();
    expect(await later).toBe("c!");
  });

  it("a run that throws at once rejects its items too", async () => {
    const batcher = new Batcher<string, string>({
      run: () => {
        throw new Error("bad input");
      },
    });
    await expect(Promise.all([batcher.add("a"), batcher.add("b")])).rejects.toThrow("bad input");
    await expect(batcher.add("c")).rejects.toThrow("bad input");
  });
});
