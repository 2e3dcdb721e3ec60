/**
 * Turns one MESSAGE frame (one broker entry) into what the consumer hands to
 * the application. A pure function of its inputs, so it is unit-tested and
 * fuzzed without a broker.
 *
 * Nothing here throws: an entry that cannot be trusted or read (checksum
 * mismatch, corrupt metadata, encryption, bad compression, a batch that does
 * not split) comes back as `undecodable`, with the protocol's validation
 * error and the bytes as received, so the consumer can hand it over for a
 * dead letter instead of crashing or asking for it again forever.
 *
 * Permits: the broker charges a consumer one permit per message of an entry
 * (`num_messages_in_batch`), less the batch indexes it already knows are
 * acked; `permits` reports that charge whatever the outcome, so the
 * consumer's count of outstanding permits stays equal to the broker's.
 */
import Long from 'long';
import { CompressionType, ValidationError, has, num, type KeyValue, type MessageMetadata, type Uint64 } from './commands.js';
import { decompress, DecompressionError } from './compression.js';
import { decodeBatchPayload, type DecodedFrame } from './frames.js';

/** One message of an entry, decoded. */
export interface EntryMessage {
  readonly payload: Buffer;
  readonly key: string | undefined;
  readonly orderingKey: string | undefined;
  readonly properties: readonly KeyValue[];
  /** Index within a batch entry; -1 for an entry that is not a batch. */
  readonly batchIndex: number;
  /** Epoch milliseconds the producer set as the event time (0: none). */
  readonly eventTime: number;
}

/** One chunk of a chunked message: still compressed, reassembled by the consumer. */
export interface EntryChunk {
  readonly uuid: string;
  readonly chunkId: number;
  readonly numChunks: number;
  readonly totalSize: number;
  readonly metadata: MessageMetadata;
  readonly payload: Buffer;
}

export type DecodedEntry =
  | { readonly kind: 'messages'; readonly permits: number; readonly batchSize: number; readonly messages: EntryMessage[] }
  | { readonly kind: 'chunk'; readonly permits: 1; readonly chunk: EntryChunk }
  | {
      readonly kind: 'undecodable';
      readonly permits: number;
      readonly reason: string;
      /** CommandAck.ValidationError to send when the entry is acked. */
      readonly validationError: number;
      readonly raw: Buffer;
      readonly key: string | undefined;
    };

export interface EntryLimits {
  /** The broker's maximum message size: the bound on any uncompressed payload. */
  readonly maxMessageSize: number;
}

/** Decodes one MESSAGE frame. Never throws. */
export function decodeEntry(frame: DecodedFrame, ackSet: readonly Uint64[] | undefined, limits: EntryLimits): DecodedEntry {
  const metadata = frame.metadata;
  const permits = brokerCharge(metadata, ackSet);
  if (!metadata || frame.corrupt !== undefined) {
    const raw = frame.body ?? frame.raw;
    return undecodable(
      permits,
      `the entry is corrupt: ${frame.corrupt ?? 'no metadata'}`,
      ValidationError.BatchDeSerializeError,
      raw,
      undefined,
    );
  }
  const key = metadata.partition_key;
  if (frame.checksumValid === false) {
    return undecodable(permits, 'checksum mismatch (CRC32C)', ValidationError.ChecksumMismatch, frame.payload!, key);
  }
  const numChunks = metadata.num_chunks_from_msg ?? 0;
  if (numChunks > 1 && metadata.uuid !== undefined) {
    return {
      kind: 'chunk',
      permits: 1,
      chunk: {
        uuid: metadata.uuid,
        chunkId: metadata.chunk_id ?? 0,
        numChunks,
        totalSize: metadata.total_chunk_msg_size ?? 0,
        metadata,
        payload: frame.payload!,
      },
    };
  }
  return decodePayload(metadata, frame.payload!, ackSet, permits, limits);
}

/**
 * Decodes a whole payload (an entry's, or a reassembled chunked message's):
 * refuses encryption, decompresses, splits batches, skips acked indexes.
 */
export function decodePayload(
  metadata: MessageMetadata,
  payload: Buffer,
  ackSet: readonly Uint64[] | undefined,
  permits: number,
  limits: EntryLimits,
): DecodedEntry {
  const key = metadata.partition_key;
  if ((metadata.encryption_keys?.length ?? 0) > 0) {
    return undecodable(
      permits,
      `the message is encrypted (${metadata.encryption_algo ?? 'unknown algorithm'}); Sheaf does not decrypt messages`,
      ValidationError.DecryptionError,
      payload,
      key,
    );
  }
  let plain: Buffer;
  try {
    plain = decompress(metadata.compression ?? CompressionType.NONE, payload, metadata.uncompressed_size ?? 0, limits.maxMessageSize);
  } catch (error) {
    const validation =
      error instanceof DecompressionError && /claims/.test(error.message)
        ? ValidationError.UncompressedSizeCorruption
        : ValidationError.DecompressionError;
    return undecodable(permits, (error as Error).message, validation, payload, key);
  }
  const base = {
    key: metadata.null_partition_key ? undefined : key,
    orderingKey: orderingKeyOf(metadata.ordering_key),
    eventTime: num(metadata.event_time),
  };
  if (!has(metadata, 'num_messages_in_batch')) {
    return {
      kind: 'messages',
      permits,
      batchSize: 1,
      messages: [{ ...base, payload: plain, properties: metadata.properties ?? [], batchIndex: -1 }],
    };
  }
  const count = metadata.num_messages_in_batch ?? 1;
  let entries;
  try {
    entries = decodeBatchPayload(plain, count);
  } catch (error) {
    return undecodable(
      permits,
      `the batch does not split: ${(error as Error).message}`,
      ValidationError.BatchDeSerializeError,
      payload,
      key,
    );
  }
  const unacked = ackSet && ackSet.length > 0 ? bitsOf(ackSet) : null;
  const messages: EntryMessage[] = [];
  entries.forEach((entry, i) => {
    if (unacked && !unacked(i)) return; // acked before a redelivery: the broker says so with ack_set
    if (entry.metadata.compacted_out) return;
    messages.push({
      payload: entry.payload,
      key: entry.metadata.partition_key,
      orderingKey: orderingKeyOf(entry.metadata.ordering_key),
      properties: entry.metadata.properties ?? [],
      batchIndex: i,
      eventTime: num(entry.metadata.event_time),
    });
  });
  return { kind: 'messages', permits, batchSize: count, messages };
}

/** What the broker charged for this entry: its messages, less those `ack_set` marks acked. */
function brokerCharge(metadata: MessageMetadata | undefined, ackSet: readonly Uint64[] | undefined): number {
  const count = metadata && has(metadata, 'num_messages_in_batch') ? Math.max(1, metadata.num_messages_in_batch ?? 1) : 1;
  if (!ackSet || ackSet.length === 0) return count;
  const unacked = bitsOf(ackSet);
  let n = 0;
  for (let i = 0; i < count; i++) if (unacked(i)) n += 1;
  return n;
}

/** Reads a bit set sent as 64-bit words (`java.util.BitSet.toLongArray()`). */
export function bitsOf(words: readonly Uint64[]): (index: number) => boolean {
  const halves = words.map(toHalves);
  return (index) => {
    const word = halves[index >>> 6];
    if (!word) return false;
    const bit = index & 63;
    return bit < 32 ? ((word.low >>> bit) & 1) === 1 : ((word.high >>> (bit - 32)) & 1) === 1;
  };
}

/** Writes a bit set of `size` bits with the given ones set, as the protocol's 64-bit words. */
export function wordsOf(size: number, isSet: (index: number) => boolean): Uint64[] {
  const words: Uint64[] = [];
  for (let w = 0; w * 64 < size; w++) {
    let low = 0;
    let high = 0;
    for (let bit = 0; bit < 64 && w * 64 + bit < size; bit++) {
      if (!isSet(w * 64 + bit)) continue;
      if (bit < 32) low |= 1 << bit;
      else high |= 1 << (bit - 32);
    }
    words.push(Long.fromBits(low, high, false));
  }
  return words;
}

function toHalves(word: Uint64): { low: number; high: number } {
  if (typeof word === 'number') return { low: word >>> 0, high: Math.floor(word / 2 ** 32) >>> 0 };
  const long = word as unknown as { low: number; high: number };
  return { low: long.low >>> 0, high: long.high >>> 0 };
}

function orderingKeyOf(bytes: Uint8Array | undefined): string | undefined {
  return bytes && bytes.length > 0 ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') : undefined;
}

function undecodable(permits: number, reason: string, validationError: number, raw: Buffer, key: string | undefined): DecodedEntry {
  return { kind: 'undecodable', permits, reason, validationError, raw, key };
}
