import { describe, expect, test } from 'vitest';
import { CommandType, decodeBaseCommand } from '../../src/transport/pulsar/commands.js';
import {
  FrameReader,
  ProtocolError,
  decodeBatchPayload,
  encodeBatchPayload,
  encodePayloadFrame,
  encodeSimpleFrame,
} from '../../src/transport/pulsar/frames.js';

const send = () =>
  encodePayloadFrame(
    { type: CommandType.SEND, send: { producer_id: 1, sequence_id: 7 } },
    { producer_name: 'p', sequence_id: 7, publish_time: 1, properties: [{ key: 'a', value: 'b' }], partition_key: 'k' },
    Buffer.from('payload'),
  );

describe('Pulsar framing', () => {
  test('frames survive arbitrary chunking', () => {
    const stream = Buffer.concat([
      encodeSimpleFrame({ type: CommandType.PING, ping: {} }),
      send(),
      encodeSimpleFrame({ type: CommandType.PONG, pong: {} }),
    ]);
    for (const size of [1, 3, 7, 64, stream.length]) {
      const reader = new FrameReader();
      const frames = [];
      for (let i = 0; i < stream.length; i += size) frames.push(...reader.push(stream.subarray(i, i + size)));
      expect(frames.map((f) => f.command.type)).toEqual([CommandType.PING, CommandType.SEND, CommandType.PONG]);
      const payloadFrame = frames[1]!;
      expect(payloadFrame.checksumValid).toBe(true);
      expect(payloadFrame.payload!.toString()).toBe('payload');
      expect(payloadFrame.metadata!.partition_key).toBe('k');
    }
  });

  test('a corrupted payload fails its CRC32C check', () => {
    const frame = send();
    const last = frame.length - 1;
    frame.writeUInt8(frame.readUInt8(last) ^ 0xff, last);
    const [decoded] = new FrameReader().push(frame);
    expect(decoded!.checksumValid).toBe(false);
  });

  test('a frame larger than the maximum is a protocol error', () => {
    const reader = new FrameReader(1024);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(10 * 1024 * 1024, 0);
    expect(() => reader.push(header)).toThrow(ProtocolError);
  });

  test('required fields are enforced when decoding (proto2)', () => {
    // A SEND command without its required sequence_id.
    const bytes = Buffer.from([0x08, 0x06, 0x32, 0x02, 0x08, 0x01]);
    expect(() => decodeBaseCommand(bytes)).toThrow(/sequence_id/);
  });

  test('batch payloads round-trip with per-message keys and properties', () => {
    const encoded = encodeBatchPayload([
      { metadata: { payload_size: 0, partition_key: 'a', properties: [{ key: 'x', value: '1' }] }, payload: Buffer.from('one') },
      { metadata: { payload_size: 0 }, payload: Buffer.from('two') },
    ]);
    const entries = decodeBatchPayload(encoded, 2);
    expect(entries.map((e) => e.payload.toString())).toEqual(['one', 'two']);
    expect(entries[0]!.metadata.partition_key).toBe('a');
    expect(entries[0]!.metadata.properties).toEqual([{ key: 'x', value: '1' }]);
    expect(() => decodeBatchPayload(encoded, 3)).toThrow(/truncated/);
  });
});
