/**
 * Consumers. `PartitionConsumer` holds one subscription on one topic (or one
 * partition); `PulsarConsumer` merges the partitions of a topic into the
 * transport's `Consumer`.
 *
 * Flow control: the consumer grants the broker permits (FLOW) so that the
 * messages it holds (received, not yet acked or nacked) plus the permits
 * outstanding never pass `maxUnacked`; permits are given back as messages are
 * acked or nacked, in steps of half the window to keep FLOW traffic low. A
 * broker may deliver a whole batch entry on the last permit, so with producer
 * batching a consumer can briefly hold one entry more than `maxUnacked`.
 *
 * Batched entries: the broker tracks whole entries, so an entry is acked once
 * every message in it is acked, and redelivered whole if any was nacked.
 *
 * Reconnects: after a lost connection or a broker-initiated CLOSE_CONSUMER the
 * consumer looks its topic up again and resubscribes. The broker redelivers
 * everything that was not acked, including what the application still holds;
 * acks for those still count, and the copies arrive again (at-least-once).
 */
import { inflateSync } from 'node:zlib';
import { TransportClosedError } from '../../errors.js';
import { ReceiveQueue } from '../receive-queue.js';
import type { Consumer, ReceivedMessage } from '../transport.js';
import { Backoff } from './backoff.js';
import type { PulsarClient } from './client.js';
import { CommandType, CompressionType, SubType, has, num, type KeyValue, type MessageIdData } from './commands.js';
import type { Connection, ConnectionHandler } from './connection.js';
import { decodeBatchPayload, type DecodedFrame } from './frames.js';
import { entryIdData, formatMessageId, parseMessageId, partitionTopic } from './message-id.js';

export type SubscriptionType = 'shared' | 'keyShared';

export interface ConsumerSettings {
  readonly subscription: string;
  readonly subscriptionType: SubscriptionType;
  readonly maxUnacked: number;
  readonly nackRedeliveryDelayMs: number;
  /** False: subscribe without asking for messages (creates the durable subscription only). */
  readonly flow?: boolean;
}

interface EntryTracker {
  readonly key: string;
  readonly idData: MessageIdData;
  readonly count: number;
  readonly resolved: Set<number>;
  nacked: boolean;
}

type ConsumerState = 'connecting' | 'ready' | 'closing' | 'closed';

/**
 * What an ack needs about a message it delivered, kept beside the message
 * instead of parsed back out of its id on every ack (the consume hot path).
 */
interface Delivery {
  readonly part: PartitionConsumer;
  readonly tracker: EntryTracker;
  readonly index: number;
}
const deliveries = new WeakMap<ReceivedMessage, Delivery>();

export class PartitionConsumer implements ConnectionHandler {
  private state: ConsumerState = 'connecting';
  private connection: Connection | null = null;
  private readonly consumerId: number;
  private readonly entries = new Map<string, EntryTracker>();
  private held = 0;
  private outstanding = 0;
  private pendingAcks: MessageIdData[] = [];
  private ackScheduled = false;
  private readonly nackTimers = new Set<ReturnType<typeof setTimeout>>();
  private readonly backoff = new Backoff();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly client: PulsarClient,
    readonly topic: string,
    private readonly partition: number,
    private readonly maxUnacked: number,
    private readonly settings: ConsumerSettings,
    private readonly sink: {
      deliver(message: ReceivedMessage): void;
      dropQueued(topic: string): number;
    },
  ) {
    this.consumerId = client.newId();
  }

  async connect(): Promise<void> {
    const connection = await this.client.lookup(this.topic);
    connection.registerConsumer(this.consumerId, this);
    const requestId = connection.newRequestId();
    try {
      await connection.request(
        {
          type: CommandType.SUBSCRIBE,
          subscribe: {
            topic: this.topic,
            subscription: this.settings.subscription,
            subType: this.settings.subscriptionType === 'keyShared' ? SubType.Key_Shared : SubType.Shared,
            consumer_id: this.consumerId,
            request_id: requestId,
            consumer_name: `sheaf-${this.consumerId}`,
            durable: true,
            initialPosition: 1, // Earliest: a new subscription sees what the topic still holds
            force_topic_creation: true,
            ...(this.settings.subscriptionType === 'keyShared' ? { keySharedMeta: { keySharedMode: 0 /* AUTO_SPLIT */ } } : {}),
          },
        },
        requestId,
      );
    } catch (error) {
      connection.unregisterConsumer(this.consumerId);
      throw error;
    }
    this.connection = connection;
    this.state = 'ready';
    this.backoff.reset();
    // Whatever was delivered on an earlier connection comes again from the broker.
    this.entries.clear();
    this.held = 0;
    this.outstanding = 0;
    this.sink.dropQueued(this.topic);
    this.flushAcks();
    if (this.settings.flow !== false) this.refill(true);
  }

  /** Settles one message: `nack` hands it (its whole entry) back for redelivery. */
  resolve(message: ReceivedMessage, nack: boolean): void {
    const delivery = deliveries.get(message);
    const tracker = delivery ? delivery.tracker : this.entries.get(entryKeyOf(message.id));
    if (!tracker || this.entries.get(tracker.key) !== tracker) {
      // Delivered before a reconnect: the broker redelivers it anyway; an ack still saves the work.
      if (!nack) this.queueAck(tracker?.idData ?? entryIdData(parseMessageId(message.id)));
      return;
    }
    const index = delivery ? delivery.index : Math.max(0, parseMessageId(message.id).batchIndex);
    if (tracker.resolved.has(index)) return;
    tracker.resolved.add(index);
    if (nack) tracker.nacked = true;
    this.held -= 1;
    if (tracker.resolved.size === tracker.count) {
      this.entries.delete(tracker.key);
      if (tracker.nacked) this.redeliver([tracker.idData]);
      else this.queueAck(tracker.idData);
    }
    this.refill(false);
  }

  nackLater(message: ReceivedMessage, delayMs: number): void {
    const timer = setTimeout(() => {
      this.nackTimers.delete(timer);
      if (this.state !== 'closed') this.resolve(message, true);
    }, delayMs);
    this.nackTimers.add(timer);
  }

  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const timer of this.nackTimers) clearTimeout(timer);
    this.nackTimers.clear();
    const connection = this.connection;
    if (connection?.isOpen) {
      this.flushAcks(true);
      const requestId = connection.newRequestId();
      await connection
        .request({ type: CommandType.CLOSE_CONSUMER, close_consumer: { consumer_id: this.consumerId, request_id: requestId } }, requestId)
        .catch(() => undefined);
      connection.unregisterConsumer(this.consumerId);
    }
    this.state = 'closed';
  }

  onFrame(frame: DecodedFrame): void {
    const c = frame.command;
    if (c.type === CommandType.MESSAGE) {
      this.onMessage(frame);
    } else if (c.type === CommandType.CLOSE_CONSUMER) {
      this.client.logger.info({ topic: this.topic }, 'the broker closed the consumer (topic moved or unloaded); resubscribing');
      this.connection?.unregisterConsumer(this.consumerId);
      this.scheduleReconnect();
    } else if (c.type === CommandType.REACHED_END_OF_TOPIC) {
      this.client.logger.warn({ topic: this.topic }, 'the topic was terminated: no more messages will arrive');
    }
  }

  onConnectionClosed(error: Error): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.client.logger.warn({ topic: this.topic, err: error.message }, 'consumer lost its connection; resubscribing');
    this.scheduleReconnect();
  }

  private onMessage(frame: DecodedFrame): void {
    const m = frame.command.message!;
    const idData: MessageIdData = { ledgerId: num(m.message_id.ledgerId), entryId: num(m.message_id.entryId), partition: this.partition };
    const redeliveryCount = m.redelivery_count ?? 0;
    const metadata = frame.metadata!;
    if (frame.checksumValid === false) {
      this.client.logger.warn(
        { topic: this.topic, entry: `${idData.ledgerId}:${idData.entryId}` },
        'checksum mismatch; asking for redelivery',
      );
      this.outstanding = Math.max(0, this.outstanding - 1);
      this.redeliver([idData]);
      this.refill(false);
      return;
    }
    let payload = frame.payload!;
    const properties: Record<string, string> = {};
    const compression = metadata.compression ?? CompressionType.NONE;
    if (compression === CompressionType.ZLIB) {
      payload = inflateSync(payload);
    } else if (compression !== CompressionType.NONE) {
      // Not decodable here: handed over as it is, marked, so the application can dead-letter it.
      properties['sheaf-unsupported-compression'] = String(compression);
    }
    const publishTime = num(metadata.publish_time);
    const messages: Array<{ payload: Buffer; key: string | undefined; properties: KeyValue[] | undefined; batchIndex: number }> = [];
    if (has(metadata, 'num_messages_in_batch') && (compression === CompressionType.NONE || compression === CompressionType.ZLIB)) {
      decodeBatchPayload(payload, metadata.num_messages_in_batch ?? 1).forEach((entry, i) => {
        messages.push({ payload: entry.payload, key: entry.metadata.partition_key, properties: entry.metadata.properties, batchIndex: i });
      });
    } else {
      messages.push({ payload, key: metadata.partition_key, properties: metadata.properties, batchIndex: -1 });
    }
    const batched = messages[0]!.batchIndex >= 0;
    const key = `${idData.ledgerId}:${idData.entryId}`;
    const tracker: EntryTracker = { key, idData, count: messages.length, resolved: new Set(), nacked: false };
    this.entries.set(key, tracker);
    this.outstanding = Math.max(0, this.outstanding - messages.length);
    this.held += messages.length;
    for (const message of messages) {
      const props: Record<string, string> = { ...properties };
      for (const kv of message.properties ?? []) props[kv.key] = kv.value;
      const received: ReceivedMessage = {
        id: formatMessageId(idData, this.partition, batched ? message.batchIndex : -1),
        topic: this.topic,
        payload: new Uint8Array(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength),
        key: message.key,
        properties: props,
        redeliveryCount,
        publishTime,
      };
      deliveries.set(received, { part: this, tracker, index: Math.max(0, message.batchIndex) });
      this.sink.deliver(received);
    }
  }

  private refill(initial: boolean): void {
    if (this.state !== 'ready') return;
    const available = this.maxUnacked - this.held - this.outstanding;
    const threshold = initial ? 1 : Math.max(1, Math.floor(this.maxUnacked / 2));
    if (available < threshold) return;
    this.outstanding += available;
    this.send({ type: CommandType.FLOW, flow: { consumer_id: this.consumerId, messagePermits: available } });
  }

  private queueAck(idData: MessageIdData): void {
    this.pendingAcks.push(idData);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    // Acks of one turn of the event loop travel in one ACK command.
    setImmediate(() => this.flushAcks());
  }

  private flushAcks(force = false): void {
    this.ackScheduled = false;
    if (this.pendingAcks.length === 0) return;
    if (this.state !== 'ready' && !(force && this.state === 'closing')) return; // sent after the reconnect
    const ids = this.pendingAcks;
    this.pendingAcks = [];
    if (!this.send({ type: CommandType.ACK, ack: { consumer_id: this.consumerId, ack_type: 0, message_id: ids } })) {
      this.pendingAcks.unshift(...ids);
    }
  }

  private redeliver(ids: MessageIdData[]): void {
    this.send({
      type: CommandType.REDELIVER_UNACKNOWLEDGED_MESSAGES,
      redeliverUnacknowledgedMessages: { consumer_id: this.consumerId, message_ids: ids },
    });
  }

  private send(command: Parameters<Connection['send']>[0]): boolean {
    try {
      this.connection?.send(command);
      return this.connection !== null;
    } catch {
      return false; // the connection is closing: the reconnect takes over
    }
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed' || this.state === 'closing' || this.reconnectTimer) return;
    this.state = 'connecting';
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.client.isClosed) return;
      this.connect().catch((error: unknown) => {
        this.client.logger.warn({ topic: this.topic, err: (error as Error).message }, 'consumer resubscribe failed; retrying');
        this.scheduleReconnect();
      });
    }, this.backoff.next());
  }
}

/** `ledger:entry` of a message id: the broker's unit of acknowledgement. */
function entryKeyOf(id: string): string {
  return id.slice(0, id.indexOf(':', id.indexOf(':') + 1));
}

/** The transport's consumer over every partition of a topic. */
export class PulsarConsumer implements Consumer {
  private readonly queue = new ReceiveQueue<ReceivedMessage>();
  private parts: PartitionConsumer[] = [];
  private closed = false;

  private constructor(
    readonly topic: string,
    readonly subscription: string,
    private readonly settings: ConsumerSettings,
  ) {}

  static async create(client: PulsarClient, topic: string, settings: ConsumerSettings): Promise<PulsarConsumer> {
    const consumer = new PulsarConsumer(topic, settings.subscription, settings);
    const partitions = await client.partitions(topic);
    // The window is split across partitions, so the whole consumer keeps to maxUnacked (at least one each).
    const perPartition = Math.max(1, Math.floor(settings.maxUnacked / Math.max(1, partitions)));
    consumer.parts =
      partitions === 0
        ? [new PartitionConsumer(client, topic, -1, settings.maxUnacked, settings, consumer)]
        : [...Array(partitions).keys()].map(
            (i) => new PartitionConsumer(client, partitionTopic(topic, i), i, perPartition, settings, consumer),
          );
    try {
      await Promise.all(consumer.parts.map((p) => p.connect()));
    } catch (error) {
      await consumer.close();
      throw error;
    }
    return consumer;
  }

  /** @internal called by the partition consumers */
  deliver(message: ReceivedMessage): void {
    if (!this.closed) this.queue.push(message);
  }

  /** @internal */
  dropQueued(topic: string): number {
    return this.queue.removeWhere((m) => m.topic === topic);
  }

  receive(signal?: AbortSignal): Promise<ReceivedMessage> {
    return this.queue.receive(signal);
  }

  async ack(message: ReceivedMessage): Promise<void> {
    if (this.closed) throw this.closedError();
    this.partFor(message).resolve(message, false);
  }

  nack(message: ReceivedMessage, delayMs?: number): void {
    if (this.closed) return;
    this.partFor(message).nackLater(message, delayMs ?? this.settings.nackRedeliveryDelayMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.close(() => this.closedError());
    await Promise.all(this.parts.map((p) => p.close()));
  }

  private partFor(message: ReceivedMessage): PartitionConsumer {
    const delivery = deliveries.get(message);
    if (delivery) return delivery.part;
    const { partition } = parseMessageId(message.id);
    return this.parts[partition < 0 ? 0 : partition] ?? this.parts[0]!;
  }

  private closedError(): TransportClosedError {
    return new TransportClosedError(`consumer of ${this.topic} (subscription ${this.subscription}) is closed`);
  }
}
