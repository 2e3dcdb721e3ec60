/**
 * Payload compression as Pulsar's clients write it: every codec works on the
 * whole entry payload (a batch is compressed as one block), and the metadata
 * carries `compression` and `uncompressed_size`.
 *
 * The formats are the Java client's (the reference):
 * - LZ4: one raw LZ4 block, no frame and no size prefix (the size is
 *   `uncompressed_size`). lz4-napi reads and writes blocks with a 4-byte
 *   little-endian size in front, so we add or strip that prefix.
 * - ZLIB: a zlib stream. Java's codec ends it with a sync flush rather than a
 *   final block, so inflating must accept a stream without its end.
 * - ZSTD: one zstd frame. Decoded by fzstd (pure JavaScript) into a buffer of
 *   exactly `uncompressed_size`, so a frame header cannot make it allocate
 *   more; encoded by the WebAssembly build of zstd, initialised once.
 * - SNAPPY: raw snappy (not the framing format).
 *
 * Every decoder checks the output length against `uncompressed_size`, so a
 * corrupt or hostile entry fails with `DecompressionError` instead of
 * allocating without bound or delivering garbage.
 */
import { constants as zlibConstants, deflateSync, inflateSync } from 'node:zlib';
import { init as initZstd, compress as zstdCompress } from '@bokuweb/zstd-wasm';
import { decompress as zstdDecompress } from 'fzstd';
import { createRequire } from 'node:module';
import { SheafError } from '../../errors.js';
import { CompressionType } from './commands.js';

// The native codecs load on first use: a platform without their prebuilt
// binary can still import Sheaf, and only that codec fails (as undecodable).
const requireCodec = createRequire(import.meta.url);
let lz4Module: typeof import('lz4-napi') | undefined;
let snappyModule: typeof import('snappy') | undefined;
const lz4 = (): typeof import('lz4-napi') => (lz4Module ??= requireCodec('lz4-napi') as typeof import('lz4-napi'));
const snappy = (): typeof import('snappy') => (snappyModule ??= requireCodec('snappy') as typeof import('snappy'));

/** The codecs a Sheaf producer can be asked to use (`producer.compression`). */
export type CompressionName = 'none' | 'lz4' | 'zlib' | 'zstd' | 'snappy';

export const COMPRESSION_NAMES: readonly CompressionName[] = ['none', 'lz4', 'zlib', 'zstd', 'snappy'];

const CODE_OF: Record<CompressionName, number> = {
  none: CompressionType.NONE,
  lz4: CompressionType.LZ4,
  zlib: CompressionType.ZLIB,
  zstd: CompressionType.ZSTD,
  snappy: CompressionType.SNAPPY,
};

/** The protocol's number for a codec name. */
export const compressionCode = (name: CompressionName): number => CODE_OF[name];

/** A payload that could not be decompressed: bad bytes, a wrong size, or a codec Sheaf does not know. */
export class DecompressionError extends SheafError {
  override name = 'DecompressionError';
  constructor(
    readonly compression: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

let zstdReady: Promise<void> | null = null;
let zstdInitialised = false;

/**
 * Loads the ZSTD WebAssembly encoder. Producers await it when they are
 * created, so `compress` stays synchronous.
 */
export function ensureCodecs(): Promise<void> {
  zstdReady ??= initZstd().then(() => {
    zstdInitialised = true;
  });
  return zstdReady;
}

/**
 * Decompresses one entry payload. Throws `DecompressionError` on anything it
 * cannot trust. `maxSize` is the broker's maximum message size: as in the
 * Java client, a larger `uncompressed_size` is refused before any allocation.
 */
export function decompress(compression: number, payload: Buffer, uncompressedSize: number, maxSize: number): Buffer {
  if (compression === CompressionType.NONE) return payload;
  if (!Number.isSafeInteger(uncompressedSize) || uncompressedSize < 0 || uncompressedSize > maxSize) {
    throw new DecompressionError(
      compression,
      `${codecName(compression)} payload claims ${uncompressedSize} bytes uncompressed, over the maximum message size of ${maxSize}`,
    );
  }
  let out: Buffer;
  try {
    out = decode(compression, payload, uncompressedSize);
  } catch (error) {
    if (error instanceof DecompressionError) throw error;
    throw new DecompressionError(compression, `${codecName(compression)} payload could not be decompressed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (out.length !== uncompressedSize) {
    throw new DecompressionError(
      compression,
      `${codecName(compression)} payload decompressed to ${out.length} bytes, but its metadata says ${uncompressedSize}`,
    );
  }
  return out;
}

function decode(compression: number, payload: Buffer, uncompressedSize: number): Buffer {
  switch (compression) {
    case CompressionType.ZLIB:
      // Sync flush, as Java's codec ends its stream; maxOutputLength bounds a hostile stream.
      return inflateSync(payload, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: Math.max(1, uncompressedSize) });
    case CompressionType.LZ4: {
      const framed = Buffer.allocUnsafe(4 + payload.length);
      framed.writeUInt32LE(uncompressedSize, 0);
      framed.set(payload, 4);
      return lz4().uncompressSync(framed);
    }
    case CompressionType.ZSTD: {
      const out = zstdDecompress(payload, new Uint8Array(uncompressedSize));
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    case CompressionType.SNAPPY: {
      // Raw snappy starts with the uncompressed length (a varint), which the decoder allocates:
      // refuse a stream that claims more than its metadata before any allocation.
      const claimed = snappyLength(payload);
      if (claimed !== uncompressedSize) {
        throw new DecompressionError(
          compression,
          `SNAPPY stream claims ${claimed ?? 'no'} bytes, but its metadata says ${uncompressedSize}`,
        );
      }
      return snappy().uncompressSync(payload, { asBuffer: true }) as Buffer;
    }
    default:
      throw new DecompressionError(compression, `unknown compression type ${compression}`);
  }
}

/** Compresses one entry payload with the named codec. */
export function compress(name: CompressionName, payload: Uint8Array): Uint8Array {
  const input = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (name) {
    case 'none':
      return payload;
    case 'zlib':
      return deflateSync(input);
    case 'lz4':
      // lz4-napi puts the size in front of the block; Pulsar carries it in the metadata instead.
      return lz4().compressSync(input).subarray(4);
    case 'zstd':
      if (!zstdInitialised) throw new Error('the ZSTD codec is not initialised (ensureCodecs() was not awaited)');
      return zstdCompress(input, 3);
    case 'snappy':
      return snappy().compressSync(input);
  }
}

/** The uncompressed length at the head of a raw snappy stream (a little-endian base-128 varint, at most 5 bytes). */
function snappyLength(payload: Buffer): number | null {
  let length = 0;
  for (let i = 0; i < 5 && i < payload.length; i++) {
    const byte = payload[i]!;
    length += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return length;
  }
  return null;
}

function codecName(compression: number): string {
  return Object.entries(CompressionType).find(([, code]) => code === compression)?.[0] ?? `compression ${compression}`;
}
