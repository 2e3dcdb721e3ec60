/**
 * Pulsar's framing.
 *
 *   simple frame:   [totalSize u32][commandSize u32][BaseCommand]
 *   payload frame:  [totalSize u32][commandSize u32][BaseCommand]
 *                   [magic 0x0e01 u16][crc32c u32][metadataSize u32][MessageMetadata][payload]
 *
 * Big-endian throughout; totalSize counts everything after itself. The
 * checksum (CRC32C) covers metadataSize, metadata and payload. A batched
 * entry's payload is a sequence of [size u32][SingleMessageMetadata][bytes].
 * A broker may put [magic 0x0e02][size u32][BrokerEntryMetadata] before the
 * checksum magic; Sheaf never asks for it but skips it if present.
 */
import crc32c from 'crc-32/crc32c.js';
import {
  decodeBaseCommand,
  decodeMessageMetadata,
  decodeSingleMessageMetadata,
  encodeBaseCommand,
  encodeMessageMetadata,
  encodeSingleMessageMetadata,
  type BaseCommand,
  type MessageMetadata,
  type SingleMessageMetadata,
} from './commands.js';

const MAGIC_CHECKSUM = 0x0e01;
/** "HTTP" read as a frame size: what an HTTP port answers a CONNECT with. */
const HTTP_AS_SIZE = 0x48545450;
const MAGIC_BROKER_ENTRY_METADATA = 0x0e02;
/** The protocol's default maximum frame size; a broker may announce its own in CONNECTED. */
export const DEFAULT_MAX_FRAME_SIZE = 5 * 1024 * 1024;

/** Bytes from the broker that do not follow the protocol. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export function encodeSimpleFrame(command: BaseCommand): Buffer {
  const cmd = encodeBaseCommand(command);
  const frame = Buffer.allocUnsafe(8 + cmd.length);
  frame.writeUInt32BE(4 + cmd.length, 0);
  frame.writeUInt32BE(cmd.length, 4);
  frame.set(cmd, 8);
  return frame;
}

export function encodePayloadFrame(command: BaseCommand, metadata: MessageMetadata, payload: Uint8Array): Buffer {
  const cmd = encodeBaseCommand(command);
  const meta = encodeMessageMetadata(metadata);
  const checksummedLength = 4 + meta.length + payload.length;
  const frame = Buffer.allocUnsafe(8 + cmd.length + 6 + checksummedLength);
  let o = 0;
  frame.writeUInt32BE(frame.length - 4, o);
  o += 4;
  frame.writeUInt32BE(cmd.length, o);
  o += 4;
  frame.set(cmd, o);
  o += cmd.length;
  frame.writeUInt16BE(MAGIC_CHECKSUM, o);
  o += 2;
  const checksumAt = o;
  o += 4;
  const checksummedStart = o;
  frame.writeUInt32BE(meta.length, o);
  o += 4;
  frame.set(meta, o);
  o += meta.length;
  frame.set(payload, o);
  frame.writeUInt32BE(crc32c.buf(frame.subarray(checksummedStart)) >>> 0, checksumAt);
  return frame;
}

export interface DecodedFrame {
  /** The frame's bytes as received, size prefix included. */
  readonly raw: Buffer;
  readonly command: BaseCommand;
  /** Present on payload frames (MESSAGE) whose metadata could be read. */
  readonly metadata?: MessageMetadata;
  readonly payload?: Buffer;
  /** False when the payload's CRC32C did not match. */
  readonly checksumValid?: boolean;
  /**
   * Set when the command was readable but what follows it was not (no
   * checksum magic, truncated, metadata that does not decode). The command is
   * still delivered, so a consumer can settle the entry instead of the
   * connection failing on it over and over.
   */
  readonly corrupt?: string;
  /** The bytes after the command: what a dead letter keeps of a corrupt entry. */
  readonly body?: Buffer;
}

/**
 * Reassembles frames from a byte stream: push chunks as they arrive, take
 * whole frames out. Throws `ProtocolError` on a frame larger than allowed.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private maxFrameSize = DEFAULT_MAX_FRAME_SIZE) {}

  setMaxFrameSize(size: number): void {
    this.maxFrameSize = size;
  }

  push(chunk: Buffer): DecodedFrame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: DecodedFrame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const totalSize = head.readUInt32BE(0);
      if (totalSize === HTTP_AS_SIZE) {
        throw new ProtocolError(
          'not a Pulsar binary-protocol port: it answered with HTTP; use the broker port (pulsar://host:6650, or pulsar+ssl://host:6651), not the admin/HTTP port',
        );
      }
      // Allow room for the command and metadata around a maximum-size payload.
      if (totalSize > this.maxFrameSize + 64 * 1024) {
        throw new ProtocolError(`frame of ${totalSize} bytes exceeds the maximum of ${this.maxFrameSize}`);
      }
      if (this.buffered < 4 + totalSize) break;
      const frame = this.take(4 + totalSize);
      frames.push(decodeFrame(frame));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const frame = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered -= n;
    return frame;
  }
}

/**
 * Decodes one whole frame. Throws `ProtocolError` only when the command
 * itself is unreadable (nothing can be routed then); a bad payload section
 * comes back as `corrupt`.
 */
export function decodeFrame(frame: Buffer): DecodedFrame {
  if (frame.length < 8) throw new ProtocolError(`frame of ${frame.length} bytes is too short`);
  const totalSize = frame.readUInt32BE(0);
  const commandSize = frame.readUInt32BE(4);
  if (8 + commandSize > frame.length) throw new ProtocolError(`command size ${commandSize} exceeds frame size ${totalSize}`);
  let command: BaseCommand;
  try {
    command = decodeBaseCommand(frame.subarray(8, 8 + commandSize));
  } catch (error) {
    throw new ProtocolError(`unreadable command: ${(error as Error).message}`, { cause: error });
  }
  const start = 8 + commandSize;
  if (start >= frame.length) return { raw: frame, command };
  const body = frame.subarray(start);
  try {
    return decodePayloadSection(frame, command, start);
  } catch (error) {
    return { raw: frame, command, body, corrupt: (error as Error).message };
  }
}

function decodePayloadSection(frame: Buffer, command: BaseCommand, start: number): DecodedFrame {
  let o = start;
  const need = (n: number, what: string): void => {
    if (o + n > frame.length) throw new ProtocolError(`payload frame truncated in its ${what}`);
  };
  need(2, 'magic number');
  if (frame.readUInt16BE(o) === MAGIC_BROKER_ENTRY_METADATA) {
    need(6, 'broker entry metadata');
    const size = frame.readUInt32BE(o + 2);
    o += 6;
    need(size, 'broker entry metadata');
    o += size;
    need(2, 'magic number');
  }
  if (frame.readUInt16BE(o) !== MAGIC_CHECKSUM) throw new ProtocolError('payload frame without the checksum magic number');
  need(10, 'checksum and metadata size');
  const expected = frame.readUInt32BE(o + 2);
  o += 6;
  const checksumValid = crc32c.buf(frame.subarray(o)) >>> 0 === expected;
  const metadataSize = frame.readUInt32BE(o);
  o += 4;
  need(metadataSize, 'metadata');
  const metadata = decodeMessageMetadata(frame.subarray(o, o + metadataSize));
  o += metadataSize;
  return { raw: frame, command, metadata, payload: frame.subarray(o), checksumValid, body: frame.subarray(start) };
}

export interface BatchEntry {
  readonly metadata: SingleMessageMetadata;
  readonly payload: Buffer;
}

export function encodeBatchPayload(entries: ReadonlyArray<{ metadata: SingleMessageMetadata; payload: Uint8Array }>): Buffer {
  // One buffer, sized up front: this runs for every batch a producer sends.
  const metas = entries.map(({ metadata, payload }) => encodeSingleMessageMetadata({ ...metadata, payload_size: payload.length }));
  let size = 0;
  entries.forEach((entry, i) => (size += 4 + metas[i]!.length + entry.payload.length));
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  entries.forEach((entry, i) => {
    const meta = metas[i]!;
    out.writeUInt32BE(meta.length, o);
    out.set(meta, o + 4);
    out.set(entry.payload, o + 4 + meta.length);
    o += 4 + meta.length + entry.payload.length;
  });
  return out;
}

/** Splits a batch entry's payload. Throws `ProtocolError` (or protobufjs's error) on bad bytes. */
export function decodeBatchPayload(payload: Buffer, count: number): BatchEntry[] {
  if (!Number.isSafeInteger(count) || count < 1 || count > payload.length / 4) {
    throw new ProtocolError(`a batch of ${count} messages cannot fit in ${payload.length} bytes`);
  }
  const entries: BatchEntry[] = [];
  let o = 0;
  for (let i = 0; i < count; i++) {
    if (o + 4 > payload.length) throw new ProtocolError(`batch entry ${i} of ${count} is truncated`);
    const metaSize = payload.readUInt32BE(o);
    o += 4;
    if (o + metaSize > payload.length) throw new ProtocolError(`batch entry ${i} of ${count} is truncated`);
    const metadata = decodeSingleMessageMetadata(payload.subarray(o, o + metaSize));
    o += metaSize;
    const size = metadata.payload_size;
    if (!(size >= 0) || o + size > payload.length) throw new ProtocolError(`batch entry ${i} of ${count} is truncated`);
    entries.push({ metadata, payload: payload.subarray(o, o + size) });
    o += size;
  }
  return entries;
}
