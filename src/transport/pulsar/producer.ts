/**
 * Producers. `PartitionProducer` publishes to one topic (or one partition):
 * it keeps every message it sent until the broker's SEND_RECEIPT, bounds how
 * many may wait (`maxPendingMessages`; `send` waits for room rather than
 * fail), and after a reconnect sends the unreceipted ones again, in order.
 *
 * What the Java client does and Sheaf does too:
 * - Size: a payload (after compression) over the broker's `maxMessageSize`
 *   is refused with `MessageTooLargeError` before anything is sent, or split
 *   into chunks when `chunking` is on (each chunk its own entry, one `uuid`).
 * - Batching: messages without a delivery time are grouped into batch
 *   entries, one entry per key (key-based batching), with the key on the
 *   entry, so Key_Shared routes a batch as it routes its messages. Each
 *   message in a batch keeps its own sequence id. An entry is closed at
 *   `batchingMaxMessages`, `batchingMaxBytes` or after `batchingMaxDelayMs`;
 *   when nothing awaits a receipt, at the end of the current turn instead of
 *   after the delay (a lone message at low load is not held back).
 * - Send timeout: a message not confirmed within `sendTimeoutMs` (default
 *   60 s, above the broker's 30 s metadata session timeout, so that a send
 *   to a broker that died waits for its topic to move instead of failing;
 *   0 waits for ever) fails with `SendTimeoutError`; so does a wait for room
 *   that long.
 * - Back-pressure: when the socket's buffer is full, sends stay queued here
 *   (bounded by `maxPendingMessages`) until it drains.
 *
 * `PulsarProducer` spans every partition of a partitioned topic and routes
 * with `PartitionRouter` (Java's hashing and routing modes).
 */
import {
  ConfigError,
  MessageTooLargeError,
  ProducerBusyError,
  ProducerFencedError,
  SendTimeoutError,
  TransportClosedError,
} from '../../errors.js';
import { DEDUPLICATED } from '../transport.js';
import { Fifo } from '../../util/fifo.js';
import type { OutgoingMessage, Producer } from '../transport.js';
import { deferred, type Deferred } from '../../util/deferred.js';
import { Backoff } from './backoff.js';
import type { PulsarClient } from './client.js';
import { CommandType, ServerError, num, type KeyValue, type MessageIdData, type MessageMetadata } from './commands.js';
import { compress, compressionCode, ensureCodecs, type CompressionName } from './compression.js';
import type { Connection, ConnectionHandler } from './connection.js';
import { EndpointLifecycle } from './lifecycle.js';
import { countReconnect } from '../../telemetry/metrics.js';
import { isRetriable, PulsarServerError, serverError } from './errors.js';
import { encodeBatchPayload, type DecodedFrame } from './frames.js';
import { formatMessageId, partitionTopic } from './message-id.js';
import { PartitionRouter, type HashingScheme, type RoutingMode } from './routing.js';

export interface ProducerSettings {
  readonly maxPendingMessages: number;
  /** 1 disables batching. */
  readonly batchingMaxMessages: number;
  readonly batchingMaxDelayMs: number;
  /** Default 128 KiB, as in the Java client. */
  readonly batchingMaxBytes?: number;
  /** Default `none`. */
  readonly compression?: CompressionName;
  /** Split messages over the broker's limit instead of refusing them. */
  readonly chunking?: boolean;
  /** Largest chunk payload (default: the broker's maxMessageSize). */
  readonly chunkMaxMessageSize?: number;
  /** 0 disables the send timeout. Default 30 000. */
  readonly sendTimeoutMs?: number;
  readonly routingMode?: RoutingMode;
  readonly hashingScheme?: HashingScheme;
  /**
   * A name of the user's (`ProducerOptions.name`): asked of the broker as
   * given, its last stored sequence id read back, and every message sent
   * alone with the sequence id it carries (no batching, no chunking).
   */
  readonly name?: string;
  /**
   * `exclusive`: the topic's only producer (Pulsar's `Exclusive` access
   * mode). Refused with `ProducerBusyError` while another holds the topic;
   * fenced for good (`ProducerFencedError`) when it comes back from a lost
   * connection to find the topic taken over.
   */
  readonly access?: 'shared' | 'exclusive';
}

const DEFAULT_BATCHING_MAX_BYTES = 128 * 1024;
const DEFAULT_SEND_TIMEOUT_MS = 60_000;

interface QueuedMessage {
  readonly message: OutgoingMessage;
  readonly done: Deferred<string>;
  readonly queuedAt: number;
}

/** The chunks of one chunked message, which settles once its last chunk is confirmed. */
interface ChunkGroup {
  firstId: string | null;
  readonly sends: InFlightSend[];
}

/** One SEND: a single message, a batch entry of several, or one chunk of a large message. */
interface InFlightSend {
  readonly sequenceId: number;
  readonly metadata: MessageMetadata;
  readonly payload: Uint8Array;
  /** The messages this SEND settles: none for a chunk other than the last. */
  readonly messages: QueuedMessage[];
  readonly batched: boolean;
  readonly chunk: { readonly group: ChunkGroup; readonly id: number } | null;
  readonly queuedAt: number;
  failed: boolean;
}

export class PartitionProducer implements ConnectionHandler {
  private readonly lifecycle = new EndpointLifecycle();
  private readonly producerId: number;
  private producerName = '';
  /** The highest sequence id the broker had stored for a named producer when it first opened; -1 otherwise. */
  lastSequenceId = -1;
  private maxMessageSize = 5 * 1024 * 1024;
  private nextSequenceId = 0;
  /** The highest sequence id a message of its own claimed (named producers): claimed at `send`, used when it is enqueued, after any wait for room. */
  private highestClaimed = -1;
  private readonly inFlight = new Map<number, InFlightSend>();
  /** Sends not yet written to the socket (after a reconnect, or while it drains). */
  private readonly unwritten = new Fifo<InFlightSend>();
  private pendingCount = 0;
  /** Sends waiting for room; a Fifo, since a burst can queue hundreds of thousands. */
  private readonly roomWaiters = new Fifo<{ wake: () => void; fail: (error: Error) => void; since: number }>();
  /** Open batches by key (key-based batching), in the order they were opened. */
  private batches = new Map<string, QueuedMessage[]>();
  private batchCount = 0;
  private batchBytes = 0;
  private batchTimer: ReturnType<typeof setTimeout> | null = null;
  /** A partial batch sent at the end of this turn: set instead of `batchTimer` while nothing is in flight. */
  private batchImmediate: ReturnType<typeof setImmediate> | null = null;
  private timeoutTimer: ReturnType<typeof setInterval> | null = null;
  private readonly backoff = new Backoff();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private drained: Deferred<void> | null = null;
  private closing: Promise<void> | null = null;
  private readonly sendTimeoutMs: number;
  private opened = false;
  /** Exclusive producers: the topic epoch the broker gave at the first open, sent again on every reconnect. */
  epoch: number | undefined;
  /** Exclusive producers: set once fenced; every send from then on fails with it. */
  private fencedBy: ProducerFencedError | null = null;
  /** Exclusive producers: settles with the error once fenced. */
  readonly fenced = deferred<Error>();

  private constructor(
    private readonly client: PulsarClient,
    readonly topic: string,
    private readonly partition: number,
    private readonly settings: ProducerSettings,
  ) {
    this.producerId = client.newId();
    this.producerName = settings.name ?? '';
    this.sendTimeoutMs = settings.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
  }

  static async create(client: PulsarClient, topic: string, partition: number, settings: ProducerSettings): Promise<PartitionProducer> {
    if (settings.compression === 'zstd') await ensureCodecs();
    if (settings.compression && settings.compression !== 'none') {
      try {
        compress(settings.compression, Buffer.from('probe'));
      } catch (cause) {
        throw new ConfigError(
          [
            {
              path: 'producer.compression',
              message: `${settings.compression} cannot be used here (${(cause as Error).message}); choose another codec or none`,
            },
          ],
          { source: 'pulsar transport options', cause },
        );
      }
    }
    const producer = new PartitionProducer(client, topic, partition, settings);
    await client.whileBrokerBusy(() => producer.connect());
    return producer;
  }

  async send(message: OutgoingMessage): Promise<string> {
    this.assertOpen();
    // Known to be stored already (the broker said so when this producer opened): the broker would drop it.
    if (message.sequenceId !== undefined && this.claimSequenceId(message.sequenceId) === 'stored') return DEDUPLICATED;
    // Without compression the size is known now: refuse before waiting for room.
    if ((this.settings.compression ?? 'none') === 'none' && !this.settings.chunking && message.payload.length > this.maxMessageSize) {
      throw new MessageTooLargeError(this.topic, message.payload.length, this.maxMessageSize);
    }
    while (this.pendingCount >= this.settings.maxPendingMessages) {
      await new Promise<void>((wake, fail) => this.roomWaiters.push({ wake, fail, since: Date.now() }));
      this.assertOpen();
    }
    this.pendingCount += 1;
    const queued: QueuedMessage = { message, done: deferred<string>(), queuedAt: Date.now() };
    this.ensureTimeoutCheck();
    const size = message.payload.length;
    const batchLimit = Math.min(this.settings.batchingMaxBytes ?? DEFAULT_BATCHING_MAX_BYTES, this.maxMessageSize);
    if (
      this.settings.batchingMaxMessages > 1 &&
      this.settings.name === undefined &&
      message.deliverAt === undefined &&
      size <= batchLimit
    ) {
      if (this.batchBytes + size > batchLimit) this.flushBatches();
      const group = message.orderingKey ?? message.key ?? '';
      const batch = this.batches.get(group);
      if (batch) batch.push(queued);
      else this.batches.set(group, [queued]);
      this.batchCount += 1;
      this.batchBytes += size;
      if (this.batchCount >= this.settings.batchingMaxMessages) this.flushBatches();
      else if (!this.batchTimer && !this.batchImmediate) {
        // Nothing awaiting a receipt: the broker is idle, and waiting for more would only add latency at low
        // load. What is sent in this same turn still goes together; under load, the delay groups the rest.
        if (this.inFlight.size === 0) this.batchImmediate = setImmediate(() => this.flushBatches());
        else this.batchTimer = setTimeout(() => this.flushBatches(), this.settings.batchingMaxDelayMs);
      }
    } else {
      this.flushBatches(); // keep order: what was batched before goes first
      this.enqueueSingle(queued);
    }
    return queued.done.promise;
  }

  /**
   * A message's own sequence id (named producers). At or below what the
   * broker had stored for the name when this producer opened: `stored`, a
   * repeat. Otherwise refused unless above every id this producer used,
   * since the broker would take a lower one for a repeat and drop it without
   * a word. Claimed at once, so that a second send with the same id fails.
   */
  private claimSequenceId(sequenceId: number): 'stored' | 'claimed' {
    if (this.settings.name === undefined) {
      throw new RangeError(`${this.topic}: a message's sequenceId needs a named producer (createProducer(topic, { name }))`);
    }
    if (Number.isSafeInteger(sequenceId) && sequenceId >= 0 && sequenceId <= this.lastSequenceId) return 'stored';
    const lastUsed = Math.max(this.highestClaimed, this.nextSequenceId - 1);
    if (!Number.isSafeInteger(sequenceId) || sequenceId <= lastUsed) {
      throw new RangeError(
        `${this.topic}: sequence id ${sequenceId} is not above the last one this producer used (${lastUsed}); ` +
          'the broker would drop it as a repeat',
      );
    }
    this.highestClaimed = sequenceId;
    return 'claimed';
  }

  /** Waits (at most the send timeout) for messages under way, then closes on the broker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.flushBatches();
    if (this.inFlight.size > 0) {
      this.drained = deferred<void>();
      // The send timeout check keeps running, so the wait ends by then at the latest.
      await this.drained.promise;
    }
    const connection = this.lifecycle.connection;
    this.lifecycle.to({ kind: 'closing' });
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.batchTimer) clearTimeout(this.batchTimer);
    if (this.batchImmediate) clearImmediate(this.batchImmediate);
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    if (connection?.isOpen) await this.closeOnBroker(connection);
    this.lifecycle.to({ kind: 'closed' });
    for (const waiter of this.roomWaiters.drain()) waiter.fail(this.closedError());
  }

  private async closeOnBroker(connection: Connection): Promise<void> {
    const requestId = connection.newRequestId();
    await connection
      .request({ type: CommandType.CLOSE_PRODUCER, close_producer: { producer_id: this.producerId, request_id: requestId } }, requestId)
      .catch(() => undefined);
    connection.unregisterProducer(this.producerId);
  }

  onFrame(frame: DecodedFrame): void {
    const c = frame.command;
    if (c.type === CommandType.SEND_RECEIPT) {
      const r = c.send_receipt!;
      const send = this.inFlight.get(num(r.sequence_id));
      if (!send) return;
      this.inFlight.delete(send.sequenceId);
      const id = r.message_id ?? { ledgerId: 0, entryId: 0 };
      if (isDuplicateReceipt(id)) {
        // Deduplication: the broker already stored this sequence id for this producer name.
        for (const m of send.messages) m.done.resolve(DEDUPLICATED);
      } else if (send.chunk) {
        send.chunk.group.firstId ??= formatMessageId(id, this.partition, -1);
        // A chunked message is known by its first chunk's id, as the consumer delivers it.
        for (const m of send.messages) m.done.resolve(send.chunk.group.firstId);
      } else {
        send.messages.forEach((m, i) => m.done.resolve(formatMessageId(id, this.partition, send.batched ? i : -1)));
      }
      this.released(send.messages.length);
    } else if (c.type === CommandType.SEND_ERROR) {
      const e = c.send_error!;
      const name = ServerError[e.error] ?? String(e.error);
      const send = this.inFlight.get(num(e.sequence_id));
      if (name === 'ProducerFenced' && this.settings.access === 'exclusive') {
        this.fence(new ProducerFencedError(this.topic, { cause: serverError(name, e.message) }));
        return;
      }
      if (send && !isRetriable(serverError(name, e.message)) && name !== 'ChecksumError') {
        this.fail(send.chunk ? send.chunk.group.sends : [send], serverError(name, e.message));
        return;
      }
      // Anything else: reconnect, and everything unreceipted is sent again.
      this.client.logger.warn({ topic: this.topic, error: name, message: e.message }, 'send failed; reconnecting the producer');
      if (this.lifecycle.state.kind === 'ready') this.lifecycle.connection!.unregisterProducer(this.producerId);
      this.scheduleReconnect();
    } else if (c.type === CommandType.CLOSE_PRODUCER) {
      this.client.logger.info({ topic: this.topic }, 'the broker closed the producer (topic moved or unloaded); reconnecting');
      if (this.lifecycle.state.kind === 'ready') this.lifecycle.connection!.unregisterProducer(this.producerId);
      this.scheduleReconnect();
    }
  }

  onConnectionClosed(error: Error): void {
    if (this.lifecycle.isClosingOrClosed) return;
    this.client.logger.warn({ topic: this.topic, err: error.message }, 'producer lost its connection; reconnecting');
    this.scheduleReconnect();
  }

  /** The socket drained: write what waited. */
  onWritable(): void {
    this.pump();
  }

  private released(count: number): void {
    this.pendingCount -= count;
    for (let i = 0; i < count && this.roomWaiters.length > 0; i++) this.roomWaiters.shift()!.wake();
    if (this.drained && this.inFlight.size === 0) this.drained.resolve();
  }

  /** Fails sends for good (every message they carry), and forgets them. */
  private fail(sends: InFlightSend[], error: Error): void {
    let count = 0;
    for (const send of sends) {
      if (send.failed) continue;
      send.failed = true;
      this.inFlight.delete(send.sequenceId);
      for (const m of send.messages) m.done.reject(error);
      count += send.messages.length;
    }
    this.released(count);
  }

  private flushBatches(): void {
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    if (this.batchImmediate) {
      clearImmediate(this.batchImmediate);
      this.batchImmediate = null;
    }
    if (this.batchCount === 0) return;
    const batches = this.batches;
    this.batches = new Map();
    this.batchCount = 0;
    this.batchBytes = 0;
    for (const messages of batches.values()) this.enqueueBatch(messages);
  }

  private enqueueBatch(messages: QueuedMessage[]): void {
    const sequenceId = this.nextSequenceId;
    this.nextSequenceId += messages.length;
    const first = messages[0]!.message;
    const plain = encodeBatchPayload(
      messages.map(({ message }, i) => ({
        metadata: {
          properties: toKeyValues(message.properties),
          payload_size: message.payload.length,
          sequence_id: sequenceId + i,
          ...(message.key !== undefined ? { partition_key: message.key } : {}),
          ...(message.orderingKey !== undefined ? { ordering_key: Buffer.from(message.orderingKey) } : {}),
          ...(message.eventTime !== undefined ? { event_time: message.eventTime } : {}),
        },
        payload: message.payload,
      })),
    );
    const payload = this.compressOrFail(messages, plain);
    if (!payload) return;
    const metadata: MessageMetadata = {
      producer_name: this.producerName,
      sequence_id: sequenceId,
      publish_time: Date.now(),
      num_messages_in_batch: messages.length,
      highest_sequence_id: sequenceId + messages.length - 1,
      // Every message of the entry shares its key (key-based batching): the entry carries it for Key_Shared.
      ...(first.key !== undefined ? { partition_key: first.key } : {}),
      ...(first.orderingKey !== undefined ? { ordering_key: Buffer.from(first.orderingKey) } : {}),
      ...this.compressionFields(plain.length),
    };
    this.enqueue({ sequenceId, metadata, payload, messages, batched: true, chunk: null, queuedAt: messages[0]!.queuedAt, failed: false });
  }

  private enqueueSingle(queued: QueuedMessage): void {
    const { message } = queued;
    const payload = this.compressOrFail([queued], message.payload);
    if (!payload) return;
    const base: MessageMetadata = {
      producer_name: this.producerName,
      sequence_id: 0,
      publish_time: Date.now(),
      properties: toKeyValues(message.properties),
      ...(message.key !== undefined ? { partition_key: message.key } : {}),
      ...(message.orderingKey !== undefined ? { ordering_key: Buffer.from(message.orderingKey) } : {}),
      ...(message.deliverAt !== undefined ? { deliver_at_time: message.deliverAt } : {}),
      ...(message.eventTime !== undefined ? { event_time: message.eventTime } : {}),
      ...this.compressionFields(message.payload.length),
    };
    if (payload.length <= this.maxMessageSize) {
      // A message's own id (claimed when it was sent; other sends may have claimed theirs while it waited for room).
      const sequenceId = message.sequenceId ?? Math.max(this.nextSequenceId, this.highestClaimed + 1);
      this.nextSequenceId = sequenceId + 1;
      const metadata = { ...base, sequence_id: sequenceId };
      this.enqueue({
        sequenceId,
        metadata,
        payload,
        messages: [queued],
        batched: false,
        chunk: null,
        queuedAt: queued.queuedAt,
        failed: false,
      });
      return;
    }
    if (!this.settings.chunking || this.settings.name !== undefined) {
      this.released(1);
      queued.done.reject(new MessageTooLargeError(this.topic, payload.length, this.maxMessageSize));
      return;
    }
    // Chunks: each its own entry and sequence id, all with the message's uuid and total size.
    const chunkSize = Math.min(this.settings.chunkMaxMessageSize ?? this.maxMessageSize, this.maxMessageSize);
    const numChunks = Math.ceil(payload.length / chunkSize);
    const group: ChunkGroup = { firstId: null, sends: [] };
    const uuid = `${this.producerName}-${this.nextSequenceId}`;
    for (let chunkId = 0; chunkId < numChunks; chunkId++) {
      const sequenceId = this.nextSequenceId++;
      const send: InFlightSend = {
        sequenceId,
        metadata: {
          ...base,
          sequence_id: sequenceId,
          uuid,
          chunk_id: chunkId,
          num_chunks_from_msg: numChunks,
          total_chunk_msg_size: payload.length,
        },
        payload: payload.subarray(chunkId * chunkSize, (chunkId + 1) * chunkSize),
        messages: chunkId === numChunks - 1 ? [queued] : [],
        batched: false,
        chunk: { group, id: chunkId },
        queuedAt: queued.queuedAt,
        failed: false,
      };
      group.sends.push(send);
      this.enqueue(send);
    }
  }

  private compressOrFail(messages: QueuedMessage[], plain: Uint8Array): Uint8Array | null {
    try {
      return compress(this.settings.compression ?? 'none', plain);
    } catch (error) {
      for (const m of messages) m.done.reject(error);
      this.released(messages.length);
      return null;
    }
  }

  private compressionFields(uncompressedSize: number): Partial<MessageMetadata> {
    const name = this.settings.compression ?? 'none';
    return name === 'none' ? {} : { compression: compressionCode(name), uncompressed_size: uncompressedSize };
  }

  private enqueue(send: InFlightSend): void {
    this.inFlight.set(send.sequenceId, send);
    this.unwritten.push(send);
    this.pump();
  }

  /** Writes queued sends in order while the socket takes them. */
  private pump(): void {
    if (this.lifecycle.state.kind !== 'ready') return;
    const connection = this.lifecycle.connection!;
    while (this.unwritten.length > 0 && !connection.congested) {
      const send = this.unwritten.shift()!;
      if (!send.failed) this.write(connection, send);
    }
  }

  private write(connection: Connection, send: InFlightSend): void {
    // The producer name may have changed with a reconnect; the broker checks it against the producer.
    send.metadata.producer_name = this.producerName;
    const count = send.chunk ? 1 : send.messages.length;
    try {
      connection.sendPayload(
        {
          type: CommandType.SEND,
          send: {
            producer_id: this.producerId,
            sequence_id: send.sequenceId,
            num_messages: count,
            ...(send.batched ? { highest_sequence_id: send.sequenceId + count - 1 } : {}),
          },
        },
        send.metadata,
        send.payload,
      );
    } catch {
      // The connection just closed: the reconnect sends it again.
    }
  }

  /** Fails what waited longer than the send timeout: unconfirmed sends, batches, waits for room. */
  private checkTimeouts(): void {
    if (this.sendTimeoutMs <= 0) return;
    const cutoff = Date.now() - this.sendTimeoutMs;
    // A Set: the chunks of one message share a group, which must be counted (and failed) once.
    const expired = new Set<InFlightSend>();
    for (const send of this.inFlight.values()) {
      if (send.queuedAt > cutoff) break; // insertion order is queue order: the rest are younger
      for (const s of send.chunk ? send.chunk.group.sends : [send]) expired.add(s);
    }
    if (expired.size > 0) {
      this.client.logger.warn({ topic: this.topic, sends: expired.size }, 'sends not confirmed within the send timeout; failing them');
      this.fail([...expired], new SendTimeoutError(this.topic, this.sendTimeoutMs));
    }
    while (this.roomWaiters.length > 0 && this.roomWaiters.peek()!.since <= cutoff) {
      this.roomWaiters.shift()!.fail(new SendTimeoutError(this.topic, this.sendTimeoutMs));
    }
  }

  private ensureTimeoutCheck(): void {
    if (this.timeoutTimer || this.sendTimeoutMs <= 0) return;
    this.timeoutTimer = setInterval(() => this.checkTimeouts(), Math.min(1000, this.sendTimeoutMs));
    this.timeoutTimer.unref();
  }

  private async connect(): Promise<void> {
    const connection = await this.client.lookup(this.topic);
    if (this.lifecycle.isClosingOrClosed) return;
    const requestId = connection.newRequestId();
    connection.registerProducer(this.producerId, this);
    try {
      const response = await connection.request(
        {
          type: CommandType.PRODUCER,
          producer: {
            topic: this.topic,
            producer_id: this.producerId,
            request_id: requestId,
            ...(this.producerName
              ? { producer_name: this.producerName, user_provided_producer_name: this.settings.name !== undefined }
              : {}),
            ...(this.settings.access === 'exclusive'
              ? { producer_access_mode: 1, ...(this.epoch !== undefined ? { topic_epoch: this.epoch } : {}) }
              : {}),
          },
        },
        requestId,
      );
      const success = response.producer_success!;
      this.producerName = success.producer_name;
      if (this.settings.access === 'exclusive' && this.epoch === undefined) this.epoch = num(success.topic_epoch ?? 0);
      if (this.settings.name !== undefined && !this.opened) {
        // Read once, at the first open: later sends follow on from it.
        this.lastSequenceId = num(success.last_sequence_id ?? -1);
        this.nextSequenceId = Math.max(this.nextSequenceId, this.lastSequenceId + 1);
      }
      this.opened = true;
    } catch (error) {
      connection.unregisterProducer(this.producerId);
      throw this.exclusiveRefusal(error) ?? error;
    }
    if (!this.lifecycle.to({ kind: 'ready', connection })) {
      // close() ran while we subscribed: undo what we just made on the broker instead of becoming ready.
      await this.closeOnBroker(connection);
      return;
    }
    this.maxMessageSize = connection.maxMessageSize;
    this.backoff.reset();
    // Everything not receipted goes again, in sequence order (Map keeps insertion order).
    this.unwritten.drain();
    for (const send of this.inFlight.values()) this.unwritten.push(send);
    this.pump();
  }

  /**
   * What a refused exclusive open means (or a shared open of a topic an
   * exclusive producer holds): at the first open another producer
   * holds the topic (`ProducerBusyError`, not retried); on a reconnect,
   * another took it over while this one was away, so it is fenced for good
   * (the broker says `ProducerFenced` when the epoch moved on, `ProducerBusy`
   * while the new holder is connected: either way this one lost the topic).
   */
  private exclusiveRefusal(error: unknown): Error | null {
    if (!(error instanceof PulsarServerError)) return null;
    if (this.settings.access !== 'exclusive') {
      // A shared producer on a topic an exclusive one holds: not a name still held by a dead connection, which
      // is worth waiting for; the broker says which (the Java client does not retry either).
      const held = error.serverError === 'ProducerBusy' && /existing exclusive producer/i.test(error.message);
      return held && !this.opened ? new ProducerBusyError(this.topic, { cause: error }) : null;
    }
    if (error.serverError !== 'ProducerBusy' && error.serverError !== 'ProducerFenced') return null;
    if (!this.opened) return new ProducerBusyError(this.topic, { cause: error });
    this.fence(new ProducerFencedError(this.topic, { cause: error }));
    return this.fencedBy;
  }

  /** Fenced: nothing more is sent; every message under way or waiting fails with the error. Final. */
  private fence(error: ProducerFencedError): void {
    if (this.fencedBy) return;
    this.fencedBy = error;
    this.client.logger.warn({ topic: this.topic, epoch: this.epoch }, 'exclusive producer fenced: another producer took the topic over');
    this.lifecycle.to({ kind: 'closing' });
    this.lifecycle.to({ kind: 'closed' });
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.batchTimer) clearTimeout(this.batchTimer);
    if (this.batchImmediate) clearImmediate(this.batchImmediate);
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    this.unwritten.drain();
    this.fail([...this.inFlight.values()], error);
    for (const batch of this.batches.values()) for (const m of batch) m.done.reject(error);
    this.batches.clear();
    this.batchCount = 0;
    this.batchBytes = 0;
    for (const waiter of this.roomWaiters.drain()) waiter.fail(error);
    this.drained?.resolve();
    this.fenced.resolve(error);
  }

  private assertOpen(): void {
    if (this.fencedBy) throw this.fencedBy;
    if (this.closing || this.lifecycle.isClosingOrClosed) throw this.closedError();
  }

  private closedError(): TransportClosedError {
    return new TransportClosedError(`producer for ${this.topic} is closed`);
  }

  private scheduleReconnect(): void {
    if (this.lifecycle.isClosingOrClosed || this.reconnectTimer) return;
    this.lifecycle.to({ kind: 'reconnecting' });
    countReconnect('producer');
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.client.isClosed || this.lifecycle.isClosingOrClosed) return;
      this.connect().catch((error: unknown) => {
        if (this.fencedBy) return; // final: nothing to reconnect
        this.client.logger.warn({ topic: this.topic, err: (error as Error).message }, 'producer reconnect failed; retrying');
        this.scheduleReconnect();
      });
    }, delay);
  }
}

/** A producer over every partition of a topic (one, when it is not partitioned). */
export class PulsarProducer implements Producer {
  private closing: Promise<void> | null = null;

  private constructor(
    readonly topic: string,
    private readonly parts: PartitionProducer[],
    private readonly router: PartitionRouter,
  ) {}

  static async create(client: PulsarClient, topic: string, settings: ProducerSettings): Promise<PulsarProducer> {
    const partitions = await client.partitions(topic);
    const router = new PartitionRouter(partitions, settings.routingMode ?? 'roundRobin', settings.hashingScheme ?? 'javaStringHash');
    if (partitions === 0) return new PulsarProducer(topic, [await PartitionProducer.create(client, topic, -1, settings)], router);
    if (settings.access === 'exclusive') {
      throw new RangeError(`${topic} has ${partitions} partitions: an exclusive producer needs an unpartitioned topic`);
    }
    const created = await Promise.allSettled(
      [...Array(partitions).keys()].map((i) => PartitionProducer.create(client, partitionTopic(topic, i), i, settings)),
    );
    const failed = created.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Close the partitions that did open: a failed create leaves nothing behind.
      await Promise.allSettled(created.map((r) => (r.status === 'fulfilled' ? r.value.close() : undefined)));
      throw failed.reason;
    }
    return new PulsarProducer(
      topic,
      created.map((r) => (r as PromiseFulfilledResult<PartitionProducer>).value),
      router,
    );
  }

  /** An exclusive producer's topic epoch (one partition: exclusive producers need an unpartitioned topic). */
  get epoch(): number | undefined {
    return this.parts[0]!.epoch;
  }

  /** An exclusive producer's fencing, once it comes. */
  get fenced(): Promise<Error> {
    return this.parts[0]!.fenced.promise;
  }

  /** The highest of the partitions' (a name's messages may be on any of them). */
  get lastSequenceId(): number {
    return Math.max(...this.parts.map((p) => p.lastSequenceId));
  }

  send(message: OutgoingMessage): Promise<string> {
    return this.parts[this.router.choose(message.key)]!.send(message);
  }

  /** Idempotent: concurrent callers share one close. */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.parts.map((p) => p.close())).then(() => undefined);
    return this.closing;
  }
}

function toKeyValues(properties: Readonly<Record<string, string>> | undefined): KeyValue[] {
  return properties ? Object.entries(properties).map(([key, value]) => ({ key, value })) : [];
}

/** The broker answers a message it dropped as a repeat with the message id -1:-1 (all ones, read unsigned). */
function isDuplicateReceipt(id: MessageIdData): boolean {
  const allOnes = (value: MessageIdData['ledgerId']): boolean => {
    const n = num(value);
    return n === -1 || n === 2 ** 64;
  };
  return allOnes(id.ledgerId) && allOnes(id.entryId);
}
