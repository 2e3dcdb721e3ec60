/**
 * Fuzzing the bytes a broker sends: random and mutated frames through the
 * frame reader and the entry decoder. The reader may refuse a stream only
 * with `ProtocolError` (the connection then closes and reconnects); the entry
 * decoder never throws at all.
 */
import { describe, expect, test } from 'vitest';
import { CommandType, CompressionType, type MessageMetadata } from '../../src/transport/pulsar/commands.js';
import { compress } from '../../src/transport/pulsar/compression.js';
import { decodeEntry } from '../../src/transport/pulsar/entry-decoder.js';
import { FrameReader, ProtocolError, encodeBatchPayload, encodePayloadFrame } from '../../src/transport/pulsar/frames.js';

/** A small deterministic generator, so a failure can be replayed. */
function generator(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
}

const meta = (extra: Partial<MessageMetadata> = {}): MessageMetadata => ({ producer_name: 'p', sequence_id: 0, publish_time: 1, ...extra });
const plain = encodeBatchPayload(
  [0, 1, 2, 3].map((k) => ({ metadata: { payload_size: 0, partition_key: `k${k}` }, payload: Buffer.from(`m${k}`.repeat(30)) })),
);
const seeds: Buffer[] = [
  encodePayloadFrame(
    { type: CommandType.MESSAGE, message: { consumer_id: 1, message_id: { ledgerId: 1, entryId: 2 } } },
    meta({ num_messages_in_batch: 4 }),
    plain,
  ),
  ...(['lz4', 'zlib', 'snappy'] as const).map((name, i) =>
    encodePayloadFrame(
      { type: CommandType.MESSAGE, message: { consumer_id: 1, message_id: { ledgerId: 1, entryId: 3 } } },
      meta({
        num_messages_in_batch: 4,
        compression: [CompressionType.LZ4, CompressionType.ZLIB, CompressionType.SNAPPY][i],
        uncompressed_size: plain.length,
      }),
      compress(name, plain),
    ),
  ),
];

describe('fuzz', () => {
  test('random byte streams: the frame reader throws nothing but ProtocolError', () => {
    const random = generator(7);
    for (let round = 0; round < 2000; round++) {
      const reader = new FrameReader(64 * 1024);
      const bytes = Buffer.alloc(1 + random(300));
      for (let i = 0; i < bytes.length; i++) bytes[i] = random(256);
      // Sizes small enough to complete a frame now and then.
      if (bytes.length >= 4 && random(2) === 0) bytes.writeUInt32BE(Math.min(bytes.length - 4, random(64)), 0);
      try {
        for (let at = 0; at < bytes.length; at += 1 + random(40)) reader.push(bytes.subarray(at, at + 1 + random(40)));
      } catch (error) {
        expect(error, `round ${round}`).toBeInstanceOf(ProtocolError);
      }
    }
  });

  test('mutated MESSAGE frames: every one decodes to messages or to undecodable, none throws', () => {
    const random = generator(11);
    const kinds = new Map<string, number>();
    for (let round = 0; round < 5000; round++) {
      const frame = Buffer.from(seeds[round % seeds.length]!);
      const commandEnd = 8 + frame.readUInt32BE(4);
      for (let k = 0, n = 1 + random(6); k < n; k++) {
        const at = commandEnd + random(frame.length - commandEnd);
        frame[at] = random(256);
      }
      let bytes = frame;
      if (random(5) === 0) {
        bytes = frame.subarray(0, commandEnd + random(frame.length - commandEnd));
        bytes.writeUInt32BE(bytes.length - 4, 0);
      }
      const [decoded] = new FrameReader().push(bytes);
      const entry = decodeEntry(decoded!, random(3) === 0 ? [random(2 ** 31)] : undefined, { maxMessageSize: 1024 * 1024 });
      kinds.set(entry.kind, (kinds.get(entry.kind) ?? 0) + 1);
      expect(entry.permits).toBeGreaterThanOrEqual(0);
    }
    // Both outcomes were exercised.
    expect(kinds.get('messages')).toBeGreaterThan(0);
    expect(kinds.get('undecodable')).toBeGreaterThan(0);
  });
});
