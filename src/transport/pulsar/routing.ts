/**
 * Which partition of a partitioned topic a message goes to, as the Java
 * client (the reference) chooses it, so that one key lands on one partition
 * whichever client produced it:
 *
 * - a message with a key: `hash(key) mod partitions`, where `hash` is
 *   `javaStringHash` (Java's `String.hashCode()`, the Java client's default)
 *   or `murmur3_32Hash` (Murmur3 x86 32-bit, seed 0, over the UTF-8 bytes),
 *   both masked to 31 bits;
 * - a message without a key: `roundRobin` (the default: the next partition
 *   each time) or `singlePartition` (one partition, chosen at random per
 *   producer).
 *
 * Java's round robin with batching switches partition on a clock instead of
 * per message (so batches fill); Sheaf rotates per message. Keys, the part
 * other clients can observe, match exactly.
 */
import murmur from 'murmurhash3js-revisited';

export type HashingScheme = 'javaStringHash' | 'murmur3_32Hash';
export type RoutingMode = 'roundRobin' | 'singlePartition';

/** Java's `String.hashCode()` (over UTF-16 code units, 32-bit overflow), masked as the Java client masks it. */
export function javaStringHash(key: string): number {
  let hash = 0;
  for (let i = 0; i < key.length; i++) hash = (Math.imul(hash, 31) + key.charCodeAt(i)) | 0;
  return hash & 0x7fffffff;
}

/** Murmur3 x86 32-bit with seed 0 over the key's UTF-8 bytes, masked to 31 bits (Pulsar's Murmur3_32Hash). */
export function murmur3Hash(key: string): number {
  return murmur.x86.hash32(Buffer.from(key, 'utf8'), 0) & 0x7fffffff;
}

/** Chooses partitions for one producer. */
export class PartitionRouter {
  private next = 0;
  private readonly single: number;
  private readonly hash: (key: string) => number;

  constructor(
    private readonly partitions: number,
    private readonly mode: RoutingMode,
    scheme: HashingScheme,
    random: () => number = Math.random,
  ) {
    this.hash = scheme === 'murmur3_32Hash' ? murmur3Hash : javaStringHash;
    this.single = Math.floor(random() * partitions);
    this.next = this.single;
  }

  choose(key: string | undefined): number {
    if (this.partitions <= 1) return 0;
    if (key !== undefined) return this.hash(key) % this.partitions;
    if (this.mode === 'singlePartition') return this.single;
    const index = this.next % this.partitions;
    this.next = (this.next + 1) % this.partitions;
    return index;
  }
}
