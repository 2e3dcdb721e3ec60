/**
 * Reassembles chunked messages (a producer with chunking splits a message
 * over the broker's size limit into entries that share a `uuid`).
 *
 * Memory is bounded: at most `maxPendingMessages` incomplete messages are
 * kept, each for at most `expireMs`, and none larger than `maxMessageBytes`.
 * A message that breaks a bound (or whose chunks arrive out of order, or
 * disagree with each other) is given up: its parts come back as
 * `abandoned`, for the consumer to hand over as undecodable, so they are
 * acked and dead-lettered rather than silently dropped or asked for forever.
 *
 * The assembler owns no timers: the consumer calls `expire(now)` when chunks
 * arrive and from its own periodic check.
 */
import type { MessageIdData, MessageMetadata } from './commands.js';
import type { EntryChunk } from './entry-decoder.js';

export interface ChunkLimits {
  readonly maxPendingMessages: number;
  readonly expireMs: number;
  readonly maxMessageBytes: number;
}

/** A message whose chunks all arrived, in order. */
export interface AssembledMessage {
  readonly uuid: string;
  readonly metadata: MessageMetadata;
  readonly payload: Buffer;
  /** Every chunk's entry: all are acked (or redelivered) with the message. */
  readonly parts: MessageIdData[];
  readonly redeliveryCount: number;
}

/** Parts of a message that cannot be completed, and why. */
export interface AbandonedMessage {
  readonly uuid: string;
  readonly reason: string;
  readonly payload: Buffer;
  readonly parts: MessageIdData[];
  readonly key: string | undefined;
}

interface Pending {
  readonly uuid: string;
  readonly numChunks: number;
  readonly totalSize: number;
  readonly metadata: MessageMetadata;
  readonly startedAt: number;
  readonly buffers: Buffer[];
  readonly parts: MessageIdData[];
  received: number;
}

export type ChunkOutcome =
  | { readonly kind: 'pending' }
  | { readonly kind: 'complete'; readonly message: AssembledMessage }
  | { readonly kind: 'abandoned'; readonly messages: AbandonedMessage[] };

export class ChunkAssembler {
  /** Map order is arrival order: the first entry is the oldest. */
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly limits: ChunkLimits) {}

  get size(): number {
    return this.pending.size;
  }

  /** Adds one chunk; says whether it completed its message, or what had to be given up. */
  add(chunk: EntryChunk, id: MessageIdData, redeliveryCount: number, now: number): ChunkOutcome {
    const abandoned: AbandonedMessage[] = [];
    let entry = this.pending.get(chunk.uuid);
    if (!entry) {
      if (chunk.chunkId !== 0) {
        // The start of this message went elsewhere (another consumer, or an earlier, given-up attempt).
        return { kind: 'abandoned', messages: [lone(chunk, id, `chunk ${chunk.chunkId} of ${chunk.numChunks} arrived without chunk 0`)] };
      }
      if (chunk.totalSize > this.limits.maxMessageBytes || chunk.totalSize < 0) {
        return {
          kind: 'abandoned',
          messages: [lone(chunk, id, `chunked message of ${chunk.totalSize} bytes is over the limit of ${this.limits.maxMessageBytes}`)],
        };
      }
      while (this.pending.size >= this.limits.maxPendingMessages) {
        const oldest = this.pending.values().next().value as Pending;
        abandoned.push(this.giveUp(oldest, `more than ${this.limits.maxPendingMessages} chunked messages were incomplete at once`));
      }
      entry = {
        uuid: chunk.uuid,
        numChunks: chunk.numChunks,
        totalSize: chunk.totalSize,
        metadata: chunk.metadata,
        startedAt: now,
        buffers: [],
        parts: [],
        received: 0,
      };
      this.pending.set(chunk.uuid, entry);
    } else if (chunk.chunkId !== entry.received || chunk.numChunks !== entry.numChunks) {
      entry.parts.push(id);
      entry.buffers.push(chunk.payload);
      abandoned.push(this.giveUp(entry, `chunk ${chunk.chunkId} arrived where chunk ${entry.received} of ${entry.numChunks} was expected`));
      return { kind: 'abandoned', messages: abandoned };
    }
    entry.buffers.push(chunk.payload);
    entry.parts.push(id);
    entry.received += 1;
    const bytes = entry.buffers.reduce((n, b) => n + b.length, 0);
    if (bytes > entry.totalSize) {
      abandoned.push(this.giveUp(entry, `chunks hold ${bytes} bytes, more than the ${entry.totalSize} announced`));
      return { kind: 'abandoned', messages: abandoned };
    }
    if (entry.received < entry.numChunks) return abandoned.length > 0 ? { kind: 'abandoned', messages: abandoned } : { kind: 'pending' };
    this.pending.delete(entry.uuid);
    if (bytes !== entry.totalSize) {
      abandoned.push(toAbandoned(entry, `chunks hold ${bytes} bytes, not the ${entry.totalSize} announced`));
      return { kind: 'abandoned', messages: abandoned };
    }
    const message: AssembledMessage = {
      uuid: entry.uuid,
      metadata: entry.metadata,
      payload: Buffer.concat(entry.buffers, bytes),
      parts: entry.parts,
      redeliveryCount,
    };
    // Room is only made for a new message (chunk 0 of several), which never completes here: nothing else to report.
    return { kind: 'complete', message };
  }

  /** Gives up every incomplete message older than `expireMs`. */
  expire(now: number): AbandonedMessage[] {
    const out: AbandonedMessage[] = [];
    for (const entry of this.pending.values()) {
      if (now - entry.startedAt < this.limits.expireMs) break; // arrival order: the rest are younger
      out.push(this.giveUp(entry, `incomplete after ${this.limits.expireMs} ms (${entry.received} of ${entry.numChunks} chunks)`));
    }
    return out;
  }

  /** Forgets everything (a reconnect: the broker sends every unacked chunk again). */
  clear(): void {
    this.pending.clear();
  }

  private giveUp(entry: Pending, reason: string): AbandonedMessage {
    this.pending.delete(entry.uuid);
    return toAbandoned(entry, reason);
  }
}

function toAbandoned(entry: Pending, reason: string): AbandonedMessage {
  return { uuid: entry.uuid, reason, payload: Buffer.concat(entry.buffers), parts: entry.parts, key: entry.metadata.partition_key };
}

function lone(chunk: EntryChunk, id: MessageIdData, reason: string): AbandonedMessage {
  return { uuid: chunk.uuid, reason, payload: chunk.payload, parts: [id], key: chunk.metadata.partition_key };
}
