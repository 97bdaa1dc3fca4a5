/**
 * Counter-based randomness: every draw is a pure function of (seed, stream, draw), so adding, removing
 * or reordering draws elsewhere never shifts another one (simulate.md: "drawn from the seed per
 * (lead, draw)"). Streams ≥ 1 are generated lead numbers; the negative ones below are reserved.
 */

/** The dispatcher's `random` option (jitter): one sequential stream. */
export const DISPATCHER_STREAM = -1;
/** The per-seed offset of generated phone numbers. */
export const PHONE_STREAM = -2;

const GOLDEN = 0x9e3779b9;
const TWO_32 = 2 ** 32;

/** Uniform in [0, 1), determined by (seed, stream, draw) alone. */
export function uniform(seed: number, stream: number, draw: number): number {
  let h = fmix32((seed >>> 0) ^ GOLDEN);
  h = absorb(h, Math.floor(seed / TWO_32));
  h = absorb(h, stream);
  h = absorb(h, draw);
  return h / TWO_32;
}

/** A sequential uniform [0, 1) source over one stream of the seed (for APIs that take `() => number`). */
export function randomStream(seed: number, stream: number): () => number {
  let draw = 0;
  return () => uniform(seed, stream, draw++);
}

function absorb(h: number, value: number): number {
  return fmix32((h ^ fmix32((value + GOLDEN) >>> 0)) >>> 0);
}

/** MurmurHash3's finaliser: a bijective avalanche over 32 bits. */
function fmix32(input: number): number {
  let h = input >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
