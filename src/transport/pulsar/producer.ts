/**
 * Producers. `PartitionProducer` publishes to one topic (or one partition):
 * it keeps every message it sent until the broker's SEND_RECEIPT, bounds how
 * many may wait (`maxPendingMessages`; `send` waits for room rather than
 * fail), and after a reconnect sends the unreceipted ones again, in order.
 * With batching on, messages without a delivery time are grouped into Pulsar
 * batch entries (`batchingMaxMessages`, `batchingMaxDelayMs`).
 *
 * `PulsarProducer` spans every partition of a partitioned topic: keyed
 * messages go to `crc32c(key) mod partitions`, the rest round robin.
 */
import crc32c from 'crc-32/crc32c.js';
import { TransportClosedError } from '../../errors.js';
import { Fifo } from '../../util/fifo.js';
import type { OutgoingMessage, Producer } from '../transport.js';
import { deferred, type Deferred } from '../../util/deferred.js';
import { Backoff } from './backoff.js';
import type { PulsarClient } from './client.js';
import { CommandType, ServerError, num, type KeyValue, type MessageMetadata } from './commands.js';
import type { Connection, ConnectionHandler } from './connection.js';
import { isRetriable, serverError } from './errors.js';
import { encodeBatchPayload, type DecodedFrame } from './frames.js';
import { formatMessageId, partitionTopic } from './message-id.js';

export interface ProducerSettings {
  readonly maxPendingMessages: number;
  /** 1 disables batching. */
  readonly batchingMaxMessages: number;
  readonly batchingMaxDelayMs: number;
}

interface QueuedMessage {
  readonly message: OutgoingMessage;
  readonly done: Deferred<string>;
}

/** One SEND: a single message, or a batch entry of several. */
interface InFlightSend {
  readonly sequenceId: number;
  readonly metadata: MessageMetadata;
  readonly payload: Uint8Array;
  readonly messages: QueuedMessage[];
  readonly batched: boolean;
}

type ProducerState = 'connecting' | 'ready' | 'closing' | 'closed';

export class PartitionProducer implements ConnectionHandler {
  private state: ProducerState = 'connecting';
  private connection: Connection | null = null;
  private readonly producerId: number;
  private producerName = '';
  private nextSequenceId = 0;
  private readonly inFlight = new Map<number, InFlightSend>();
  private pendingCount = 0;
  /** Sends waiting for room; a Fifo, since a burst can queue hundreds of thousands. */
  private readonly roomWaiters = new Fifo<() => void>();
  private batch: QueuedMessage[] = [];
  private batchTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly backoff = new Backoff();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private drained: Deferred<void> | null = null;

  private constructor(
    private readonly client: PulsarClient,
    readonly topic: string,
    private readonly partition: number,
    private readonly settings: ProducerSettings,
  ) {
    this.producerId = client.newId();
  }

  static async create(client: PulsarClient, topic: string, partition: number, settings: ProducerSettings): Promise<PartitionProducer> {
    const producer = new PartitionProducer(client, topic, partition, settings);
    await producer.connect();
    return producer;
  }

  async send(message: OutgoingMessage): Promise<string> {
    if (this.state === 'closing' || this.state === 'closed') throw new TransportClosedError(`producer for ${this.topic} is closed`);
    while (this.pendingCount >= this.settings.maxPendingMessages) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
      if ((this.state as ProducerState) === 'closed') throw new TransportClosedError(`producer for ${this.topic} is closed`);
    }
    this.pendingCount += 1;
    const queued: QueuedMessage = { message, done: deferred<string>() };
    if (this.settings.batchingMaxMessages > 1 && message.deliverAt === undefined) {
      this.batch.push(queued);
      if (this.batch.length >= this.settings.batchingMaxMessages) this.flushBatch();
      else this.batchTimer ??= setTimeout(() => this.flushBatch(), this.settings.batchingMaxDelayMs);
    } else {
      this.flushBatch(); // keep order: what was batched before goes first
      this.enqueue([queued], false);
    }
    return queued.done.promise;
  }

  /** Waits for every message under way to be receipted, then closes on the broker. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.flushBatch();
    if (this.inFlight.size > 0) {
      this.drained = deferred<void>();
      await this.drained.promise;
    }
    this.state = 'closing';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const connection = this.connection;
    if (connection?.isOpen) {
      const requestId = connection.newRequestId();
      await connection
        .request({ type: CommandType.CLOSE_PRODUCER, close_producer: { producer_id: this.producerId, request_id: requestId } }, requestId)
        .catch(() => undefined);
      connection.unregisterProducer(this.producerId);
    }
    this.state = 'closed';
    for (const wake of this.roomWaiters.drain()) wake();
  }

  onFrame(frame: DecodedFrame): void {
    const c = frame.command;
    if (c.type === CommandType.SEND_RECEIPT) {
      const r = c.send_receipt!;
      const send = this.inFlight.get(num(r.sequence_id));
      if (!send) return;
      this.inFlight.delete(send.sequenceId);
      send.messages.forEach((m, i) => {
        m.done.resolve(formatMessageId(r.message_id ?? { ledgerId: 0, entryId: 0 }, this.partition, send.batched ? i : -1));
      });
      this.released(send.messages.length);
    } else if (c.type === CommandType.SEND_ERROR) {
      const e = c.send_error!;
      const name = ServerError[e.error] ?? String(e.error);
      const send = this.inFlight.get(num(e.sequence_id));
      if (send && !isRetriable(serverError(name, e.message)) && name !== 'ChecksumError') {
        this.inFlight.delete(send.sequenceId);
        for (const m of send.messages) m.done.reject(serverError(name, e.message));
        this.released(send.messages.length);
        return;
      }
      // Anything else: reconnect, and everything unreceipted is sent again.
      this.client.logger.warn({ topic: this.topic, error: name, message: e.message }, 'send failed; reconnecting the producer');
      this.connection?.unregisterProducer(this.producerId);
      this.scheduleReconnect();
    } else if (c.type === CommandType.CLOSE_PRODUCER) {
      this.client.logger.info({ topic: this.topic }, 'the broker closed the producer (topic moved or unloaded); reconnecting');
      this.connection?.unregisterProducer(this.producerId);
      this.scheduleReconnect();
    }
  }

  onConnectionClosed(error: Error): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.client.logger.warn({ topic: this.topic, err: error.message }, 'producer lost its connection; reconnecting');
    this.scheduleReconnect();
  }

  private released(count: number): void {
    this.pendingCount -= count;
    for (let i = 0; i < count && this.roomWaiters.length > 0; i++) this.roomWaiters.shift()!();
    if (this.drained && this.inFlight.size === 0) this.drained.resolve();
  }

  private flushBatch(): void {
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    if (this.batch.length === 0) return;
    const messages = this.batch;
    this.batch = [];
    this.enqueue(messages, true);
  }

  private enqueue(messages: QueuedMessage[], batched: boolean): void {
    const sequenceId = this.nextSequenceId;
    this.nextSequenceId += messages.length;
    const first = messages[0]!.message;
    let metadata: MessageMetadata;
    let payload: Uint8Array;
    if (batched) {
      metadata = {
        producer_name: this.producerName,
        sequence_id: sequenceId,
        publish_time: Date.now(),
        num_messages_in_batch: messages.length,
        highest_sequence_id: sequenceId + messages.length - 1,
      };
      payload = encodeBatchPayload(
        messages.map(({ message }) => ({
          metadata: {
            properties: toKeyValues(message.properties),
            payload_size: message.payload.length,
            ...(message.key !== undefined ? { partition_key: message.key } : {}),
            ...(message.orderingKey !== undefined ? { ordering_key: Buffer.from(message.orderingKey) } : {}),
          },
          payload: message.payload,
        })),
      );
    } else {
      metadata = {
        producer_name: this.producerName,
        sequence_id: sequenceId,
        publish_time: Date.now(),
        properties: toKeyValues(first.properties),
        ...(first.key !== undefined ? { partition_key: first.key } : {}),
        ...(first.orderingKey !== undefined ? { ordering_key: Buffer.from(first.orderingKey) } : {}),
        ...(first.deliverAt !== undefined ? { deliver_at_time: first.deliverAt } : {}),
      };
      payload = first.payload;
    }
    const send: InFlightSend = { sequenceId, metadata, payload, messages, batched };
    this.inFlight.set(sequenceId, send);
    if (this.state === 'ready') this.write(send);
  }

  private write(send: InFlightSend): void {
    // The producer name may have changed with a reconnect; the broker checks it against the producer.
    send.metadata.producer_name = this.producerName;
    try {
      this.connection!.sendPayload(
        {
          type: CommandType.SEND,
          send: {
            producer_id: this.producerId,
            sequence_id: send.sequenceId,
            num_messages: send.messages.length,
            ...(send.batched ? { highest_sequence_id: send.sequenceId + send.messages.length - 1 } : {}),
          },
        },
        send.metadata,
        send.payload,
      );
    } catch {
      // The connection just closed: the reconnect sends it again.
    }
  }

  private async connect(): Promise<void> {
    const connection = await this.client.lookup(this.topic);
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
            ...(this.producerName ? { producer_name: this.producerName, user_provided_producer_name: false } : {}),
          },
        },
        requestId,
      );
      this.producerName = response.producer_success!.producer_name;
    } catch (error) {
      connection.unregisterProducer(this.producerId);
      throw error;
    }
    this.connection = connection;
    this.state = 'ready';
    this.backoff.reset();
    // Everything not receipted goes again, in sequence order (Map keeps insertion order).
    for (const send of this.inFlight.values()) this.write(send);
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed' || this.state === 'closing' || this.reconnectTimer) return;
    this.state = 'connecting';
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.client.isClosed) return;
      this.connect().catch((error: unknown) => {
        this.client.logger.warn({ topic: this.topic, err: (error as Error).message }, 'producer reconnect failed; retrying');
        this.scheduleReconnect();
      });
    }, delay);
  }
}

/** A producer over every partition of a topic (one, when it is not partitioned). */
export class PulsarProducer implements Producer {
  private next = 0;

  private constructor(
    readonly topic: string,
    private readonly parts: PartitionProducer[],
  ) {}

  static async create(client: PulsarClient, topic: string, settings: ProducerSettings): Promise<PulsarProducer> {
    const partitions = await client.partitions(topic);
    const parts =
      partitions === 0
        ? [await PartitionProducer.create(client, topic, -1, settings)]
        : await Promise.all(
            [...Array(partitions).keys()].map((i) => PartitionProducer.create(client, partitionTopic(topic, i), i, settings)),
          );
    return new PulsarProducer(topic, parts);
  }

  send(message: OutgoingMessage): Promise<string> {
    const n = this.parts.length;
    const index = n === 1 ? 0 : message.key !== undefined ? (crc32c.str(message.key) >>> 0) % n : this.next++ % n;
    return this.parts[index]!.send(message);
  }

  async close(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.close()));
  }
}

function toKeyValues(properties: Readonly<Record<string, string>> | undefined): KeyValue[] {
  return properties ? Object.entries(properties).map(([key, value]) => ({ key, value })) : [];
}
