import { constants, deflateSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { ChunkAssembler } from '../../src/transport/pulsar/chunk-assembler.js';
import { CommandType, CompressionType, ValidationError, type MessageMetadata } from '../../src/transport/pulsar/commands.js';
import { compress, ensureCodecs, COMPRESSION_NAMES, compressionCode } from '../../src/transport/pulsar/compression.js';
import { bitsOf, decodeEntry, wordsOf, type EntryChunk } from '../../src/transport/pulsar/entry-decoder.js';
import { decodeFrame, encodeBatchPayload, encodePayloadFrame } from '../../src/transport/pulsar/frames.js';
import { PartitionRouter, javaStringHash, murmur3Hash } from '../../src/transport/pulsar/routing.js';

const limits = { maxMessageSize: 5 * 1024 * 1024 };
const meta = (extra: Partial<MessageMetadata> = {}): MessageMetadata => ({ producer_name: 'p', sequence_id: 0, publish_time: 1, ...extra });
const frameOf = (metadata: MessageMetadata, payload: Uint8Array) =>
  decodeFrame(
    encodePayloadFrame(
      { type: CommandType.MESSAGE, message: { consumer_id: 1, message_id: { ledgerId: 1, entryId: 2 } } },
      metadata,
      payload,
    ),
  );
const batchOf = (texts: string[]) =>
  encodeBatchPayload(
    texts.map((t, i) => ({ metadata: { payload_size: 0, partition_key: `k${i}`, sequence_id: i }, payload: Buffer.from(t) })),
  );

describe('entry decoding', () => {
  test.each(COMPRESSION_NAMES)('%s: a batch compressed as one block comes out as its messages', async (name) => {
    await ensureCodecs();
    const plain = batchOf(['a'.repeat(100), 'b'.repeat(100), 'c']);
    const compressed = compress(name, plain);
    const entry = decodeEntry(
      frameOf(meta({ num_messages_in_batch: 3, compression: compressionCode(name), uncompressed_size: plain.length }), compressed),
      undefined,
      limits,
    );
    expect(entry.kind).toBe('messages');
    if (entry.kind !== 'messages') return;
    expect(entry.messages.map((m) => m.payload.toString())).toEqual(['a'.repeat(100), 'b'.repeat(100), 'c']);
    expect(entry.messages.map((m) => m.key)).toEqual(['k0', 'k1', 'k2']);
    expect(entry.permits).toBe(3);
  });

  test('ZLIB as Java writes it (sync flush, no final block) and as a finished stream both inflate', () => {
    const plain = Buffer.from('hello zlib '.repeat(50));
    for (const compressed of [deflateSync(plain, { finishFlush: constants.Z_SYNC_FLUSH }), deflateSync(plain)]) {
      const entry = decodeEntry(
        frameOf(meta({ compression: CompressionType.ZLIB, uncompressed_size: plain.length }), compressed),
        undefined,
        limits,
      );
      expect(entry.kind === 'messages' && entry.messages[0]!.payload.equals(plain)).toBe(true);
    }
  });

  test('ack_set: messages the broker says are acked are skipped, and the broker charged only the rest', () => {
    const plain = batchOf(['m0', 'm1', 'm2', 'm3']);
    // Bits set = not acked yet: 1 and 3.
    const entry = decodeEntry(
      frameOf(meta({ num_messages_in_batch: 4 }), plain),
      wordsOf(4, (i) => i % 2 === 1),
      limits,
    );
    expect(entry.kind === 'messages' && entry.messages.map((m) => [m.batchIndex, m.payload.toString()])).toEqual([
      [1, 'm1'],
      [3, 'm3'],
    ]);
    expect(entry.permits).toBe(2);
  });

  test('bit sets round-trip over several 64-bit words', () => {
    const set = (i: number): boolean => i % 3 === 0 || i === 63 || i === 64 || i === 130;
    const read = bitsOf(wordsOf(140, set));
    expect([...Array(140).keys()].filter(read)).toEqual([...Array(140).keys()].filter(set));
  });

  test.each([
    ['a checksum mismatch', ValidationError.ChecksumMismatch, (f: Buffer) => f.writeUInt8(f[f.length - 1]! ^ 0xff, f.length - 1)],
    ['an encrypted message', ValidationError.DecryptionError, null],
    ['a corrupt ZLIB payload', ValidationError.DecompressionError, null],
    ['an uncompressed size over the limit', ValidationError.UncompressedSizeCorruption, null],
    ['a batch that does not split', ValidationError.BatchDeSerializeError, null],
  ] as const)('%s is undecodable, with its validation error and bytes', (what, validation, mutate) => {
    let metadata = meta();
    const payload = Buffer.from('payload bytes');
    if (validation === ValidationError.DecryptionError)
      metadata = meta({ encryption_keys: [{ key: 'k', value: Buffer.from('v') }], encryption_algo: 'RSA' });
    if (validation === ValidationError.DecompressionError) metadata = meta({ compression: CompressionType.ZLIB, uncompressed_size: 100 });
    if (validation === ValidationError.UncompressedSizeCorruption)
      metadata = meta({ compression: CompressionType.LZ4, uncompressed_size: 10 ** 9 });
    if (validation === ValidationError.BatchDeSerializeError) metadata = meta({ num_messages_in_batch: 3 });
    const raw = encodePayloadFrame(
      { type: CommandType.MESSAGE, message: { consumer_id: 1, message_id: { ledgerId: 1, entryId: 2 } } },
      metadata,
      payload,
    );
    if (mutate) mutate(raw);
    const entry = decodeEntry(decodeFrame(raw), undefined, limits);
    expect(entry.kind, what).toBe('undecodable');
    if (entry.kind !== 'undecodable') return;
    expect(entry.validationError).toBe(validation);
    expect(entry.raw.length).toBeGreaterThan(0);
  });

  test('a SNAPPY stream claiming another length than its metadata is refused before the decoder allocates it', () => {
    // Varint 0xffffffff: a hostile 4 GiB claim.
    const hostile = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    const entry = decodeEntry(frameOf(meta({ compression: CompressionType.SNAPPY, uncompressed_size: 10 }), hostile), undefined, limits);
    expect(entry.kind === 'undecodable' && entry.reason).toMatch(/SNAPPY stream claims 4294967295 bytes, but its metadata says 10/);
  });

  test('metadata that does not decode is undecodable too, not a thrown error', () => {
    const raw = encodePayloadFrame(
      { type: CommandType.MESSAGE, message: { consumer_id: 1, message_id: { ledgerId: 1, entryId: 2 } } },
      meta(),
      Buffer.from('x'),
    );
    // The metadata size field (after the 8-byte prefix, the command, 2-byte magic and 4-byte checksum) now points past the end.
    const commandSize = raw.readUInt32BE(4);
    raw.writeUInt32BE(0xffff, 8 + commandSize + 6);
    const frame = decodeFrame(raw);
    expect(frame.corrupt).toMatch(/truncated/);
    expect(decodeEntry(frame, undefined, limits).kind).toBe('undecodable');
  });
});

describe('chunk reassembly', () => {
  const chunk = (
    uuid: string,
    chunkId: number,
    numChunks: number,
    payload: string,
    totalSize = numChunks * payload.length,
  ): EntryChunk => ({
    uuid,
    chunkId,
    numChunks,
    totalSize,
    metadata: meta({ uuid, partition_key: 'key' }),
    payload: Buffer.from(payload),
  });
  const id = (entryId: number) => ({ ledgerId: 1, entryId });
  const assembler = () => new ChunkAssembler({ maxPendingMessages: 2, expireMs: 1000, maxMessageBytes: 100 });

  test('chunks in order make one message, acked through every part', () => {
    const a = assembler();
    expect(a.add(chunk('u', 0, 3, 'aa'), id(1), 0, 0).kind).toBe('pending');
    expect(a.add(chunk('u', 1, 3, 'bb'), id(2), 0, 0).kind).toBe('pending');
    const done = a.add(chunk('u', 2, 3, 'cc'), id(3), 0, 0);
    expect(done.kind === 'complete' && [done.message.payload.toString(), done.message.parts.map((p) => p.entryId)]).toEqual([
      'aabbcc',
      [1, 2, 3],
    ]);
    expect(a.size).toBe(0);
  });

  test('a chunk out of order gives the message up, with every part seen so far', () => {
    const a = assembler();
    a.add(chunk('u', 0, 3, 'aa'), id(1), 0, 0);
    const out = a.add(chunk('u', 2, 3, 'cc'), id(3), 0, 0);
    expect(out.kind === 'abandoned' && out.messages.map((m) => [m.parts.length, m.reason])).toEqual([
      [2, expect.stringMatching(/chunk 2 arrived where chunk 1/)],
    ]);
    // A chunk whose start was never seen is given up alone.
    const lone = a.add(chunk('v', 1, 2, 'xx'), id(9), 0, 0);
    expect(lone.kind === 'abandoned' && lone.messages[0]!.parts).toEqual([id(9)]);
  });

  test('past maxPendingMessages the oldest incomplete message is given up; old ones expire', () => {
    const a = assembler();
    a.add(chunk('u1', 0, 2, 'aa'), id(1), 0, 0);
    a.add(chunk('u2', 0, 2, 'bb'), id(2), 0, 10);
    const out = a.add(chunk('u3', 0, 2, 'cc'), id(3), 0, 20);
    expect(out.kind === 'abandoned' && out.messages.map((m) => m.uuid)).toEqual(['u1']);
    expect(a.expire(1015).map((m) => m.uuid)).toEqual(['u2']);
    expect(a.expire(1020).map((m) => m.uuid)).toEqual(['u3']);
    expect(a.size).toBe(0);
  });

  test('a message announced over maxMessageBytes, or chunks larger than announced, is given up', () => {
    const a = assembler();
    expect(a.add(chunk('big', 0, 2, 'aa', 1000), id(1), 0, 0).kind).toBe('abandoned');
    a.add(chunk('liar', 0, 2, 'aaaa', 5), id(2), 0, 0);
    expect(a.add(chunk('liar', 1, 2, 'bbbb', 5), id(3), 0, 0).kind).toBe('abandoned');
  });
});

describe('partition routing, as the Java client routes', () => {
  test("javaStringHash is Java's String.hashCode, masked to 31 bits", () => {
    // Values of "...".hashCode() from the JVM.
    expect(javaStringHash('hello')).toBe(99162322);
    expect(javaStringHash('key-0')).toBe(101943362);
    // "polygenelubricants".hashCode() is Integer.MIN_VALUE: the mask makes it 0.
    expect(javaStringHash('polygenelubricants')).toBe(0);
    expect(javaStringHash('ü€')).toBe(16176);
  });

  test('murmur3_32Hash is Murmur3 x86 32-bit, seed 0, over UTF-8, masked', () => {
    expect(murmur3Hash('')).toBe(0);
    expect(murmur3Hash('hello')).toBe(0x248bfa47 & 0x7fffffff);
  });

  test('keys always go to one partition; keyless messages rotate or stay, by mode', () => {
    const rr = new PartitionRouter(4, 'roundRobin', 'javaStringHash', () => 0.5);
    expect([...Array(5)].map(() => rr.choose(undefined))).toEqual([2, 3, 0, 1, 2]);
    expect(rr.choose('hello')).toBe(99162322 % 4);
    const single = new PartitionRouter(4, 'singlePartition', 'javaStringHash', () => 0.3);
    expect(new Set([...Array(10)].map(() => single.choose(undefined)))).toEqual(new Set([1]));
    expect(new PartitionRouter(0, 'roundRobin', 'javaStringHash').choose('x')).toBe(0);
  });
});
