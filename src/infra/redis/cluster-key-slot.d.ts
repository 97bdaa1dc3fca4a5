// cluster-key-slot ships no types: the one function dialgate uses.
declare module "cluster-key-slot" {
  /** The Redis Cluster hash slot of `key` (its `{hash tag}` when it has one). */
  export default function calculateSlot(key: string | Buffer): number;
}
