/**
 * Consumers. `PartitionConsumer` holds one subscription on one topic (or one
 * partition); `PulsarConsumer` merges the partitions of a topic into the
 * transport's `Consumer`.
 *
 * Flow control, counted as the broker counts it (as the Java client does):
 * `outstanding` is the broker's own figure of this consumer's permits. FLOW
 * adds to it; every entry takes what the broker charged for it (one per
 * message of a batch, less the indexes it knows are acked, one per chunk),
 * even when that drives it below zero, as a whole batch delivered on the
 * last permits does. At the end of every turn in which messages were
 * settled, the consumer grants whatever of the window (`maxUnacked`) the
 * messages it holds plus `outstanding` leave free, in one FLOW. The Java
 * client waits until half its receiver queue is free; here permits come back
 * only when messages are settled, and messages that settle slowly (a hung
 * batch key) would keep up to half the window from every other key. Never
 * clamping `outstanding` is what keeps the two counts equal: a clamped count
 * drifts above the broker's until FLOW is never sent again.
 *
 * Batched entries: the broker tracks whole entries, so an entry is acked once
 * every message in it is acked, and redelivered whole if any was nacked. With
 * `batchIndexAck` (the broker's acknowledgmentAtBatchIndexLevelEnabled) each
 * message is acked at once with the entry's `ack_set`, and the broker leaves
 * acked messages out of a redelivery; either way, an `ack_set` on a MESSAGE
 * is honoured.
 *
 * Chunked messages are reassembled (`ChunkAssembler`, bounded) and acked or
 * redelivered as one message. An entry that cannot be decoded is delivered as
 * `undecodable` (see `entry-decoder.ts`) and acked with its validation error.
 *
 * Reconnects: after a lost connection or a broker-initiated CLOSE_CONSUMER the
 * consumer looks its topic up again and resubscribes. The broker redelivers
 * everything that was not acked, including what the application still holds;
 * acks for those still count, and the copies arrive again (at-least-once).
 */
import { TransportClosedError } from '../../errors.js';
import { ReceiveQueue } from '../receive-queue.js';
import type { Consumer, ReceivedMessage } from '../transport.js';
import { Backoff } from './backoff.js';
import { ChunkAssembler, type AbandonedMessage } from './chunk-assembler.js';
import type { PulsarClient } from './client.js';
import { CommandType, SubType, ValidationError, num, type KeyValue, type MessageIdData } from './commands.js';
import type { Connection, ConnectionHandler } from './connection.js';
import { EndpointLifecycle } from './lifecycle.js';
import { countReconnect } from '../../telemetry/metrics.js';
import { decodeEntry, decodePayload, wordsOf, type DecodedEntry } from './entry-decoder.js';
import type { DecodedFrame } from './frames.js';
import { entryIdData, formatMessageId, parseMessageId, partitionTopic } from './message-id.js';

export type SubscriptionType = 'shared' | 'keyShared' | 'failover';

const SUB_TYPES: Record<SubscriptionType, number> = { shared: SubType.Shared, keyShared: SubType.Key_Shared, failover: SubType.Failover };

export interface ConsumerSettings {
  readonly subscription: string;
  readonly subscriptionType: SubscriptionType;
  readonly maxUnacked: number;
  readonly nackRedeliveryDelayMs: number;
  /** False: subscribe without asking for messages (creates the durable subscription only). */
  readonly flow?: boolean;
  /** False: a non-durable subscription (see `SubscribeOptions.durable`). Default true. */
  readonly durable?: boolean;
  /** Ack batch indexes one by one (needs the broker's acknowledgmentAtBatchIndexLevelEnabled). */
  readonly batchIndexAck?: boolean;
  /** Bounds on chunked messages being reassembled. */
  readonly maxPendingChunkedMessages?: number;
  readonly chunkExpireMs?: number;
  /** The largest chunked message reassembled (bytes, before decompression and after). */
  readonly maxChunkedMessageBytes?: number;
}

/** What the consumer delivered of one broker entry (or one chunked message), until it is settled. */
interface EntryTracker {
  readonly key: string;
  /** Entries to ack or redeliver together: one, or every chunk of a chunked message. */
  readonly ids: MessageIdData[];
  readonly count: number;
  /** Messages in the entry as produced (for `ack_set`); 1 when it is not a batch. */
  readonly batchSize: number;
  readonly acked: Set<number>;
  readonly resolved: Set<number>;
  readonly validationError: number | undefined;
  nacked: boolean;
  /** The longest delay a nack of one of its messages asked for before the entry is redelivered. */
  redeliverAfterMs: number;
}

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

const DEFAULT_MAX_PENDING_CHUNKED = 10;
const DEFAULT_CHUNK_EXPIRE_MS = 60_000;
const DEFAULT_MAX_CHUNKED_MESSAGE_BYTES = 64 * 1024 * 1024;

export class PartitionConsumer implements ConnectionHandler {
  private readonly lifecycle = new EndpointLifecycle();
  private readonly consumerId: number;
  private readonly entries = new Map<string, EntryTracker>();
  private readonly chunks: ChunkAssembler;
  private held = 0;
  /** Set by `pause()`: no more permits are granted, even after a reconnect. */
  private paused = false;
  /** The broker's count of this consumer's permits; below zero after a batch overshoots them. */
  private outstanding = 0;
  private pendingAcks: MessageIdData[] = [];
  private pendingInvalid: Array<{ id: MessageIdData; validationError: number }> = [];
  private ackScheduled = false;
  private flowScheduled = false;
  private readonly nackTimers = new Set<ReturnType<typeof setTimeout>>();
  private chunkTimer: ReturnType<typeof setInterval> | null = null;
  private readonly backoff = new Backoff();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private closing: Promise<void> | null = null;
  /** Non-durable only: the last entry delivered, where a resubscription starts again (the broker forgot the cursor). */
  private lastEntry: MessageIdData | null = null;

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
    this.chunks = new ChunkAssembler({
      maxPendingMessages: settings.maxPendingChunkedMessages ?? DEFAULT_MAX_PENDING_CHUNKED,
      expireMs: settings.chunkExpireMs ?? DEFAULT_CHUNK_EXPIRE_MS,
      maxMessageBytes: this.maxChunkedBytes,
    });
  }

  private get maxChunkedBytes(): number {
    return this.settings.maxChunkedMessageBytes ?? DEFAULT_MAX_CHUNKED_MESSAGE_BYTES;
  }

  /** Permits the broker holds for this consumer, as far as the consumer can tell (tests and diagnostics). */
  get permits(): number {
    return this.outstanding;
  }

  async connect(): Promise<void> {
    const connection = await this.client.lookup(this.topic);
    if (this.lifecycle.isClosingOrClosed) return;
    connection.registerConsumer(this.consumerId, this);
    const requestId = connection.newRequestId();
    try {
      await connection.request(
        {
          type: CommandType.SUBSCRIBE,
          subscribe: {
            topic: this.topic,
            subscription: this.settings.subscription,
            subType: SUB_TYPES[this.settings.subscriptionType],
            consumer_id: this.consumerId,
            request_id: requestId,
            consumer_name: `sheaf-${this.consumerId}`,
            ...(this.settings.durable === false
              ? // A reader's subscription: from now on, or from where it stopped (the broker sends that entry again).
                { durable: false, initialPosition: 0, ...(this.lastEntry ? { startMessageId: this.lastEntry } : {}) }
              : // Earliest: a new subscription sees what the topic still holds.
                { durable: true, initialPosition: 1 }),
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
    if (!this.lifecycle.to({ kind: 'ready', connection })) {
      // close() ran while we subscribed: undo what we just made on the broker instead of becoming ready.
      await this.closeOnBroker(connection);
      return;
    }
    this.backoff.reset();
    this.forgetDeliveries();
    this.outstanding = 0;
    this.sink.dropQueued(this.topic);
    this.flushAcks();
    if (this.settings.flow !== false) this.refill(true);
    this.chunkTimer ??= setInterval(
      () => this.expireChunks(),
      Math.max(1000, (this.settings.chunkExpireMs ?? DEFAULT_CHUNK_EXPIRE_MS) / 4),
    );
    this.chunkTimer.unref();
  }

  /**
   * Settles one message: `nack` hands it (its whole entry) back for redelivery.
   *
   * An entry delivered before a reconnect (or delivered again since) is
   * stale: the broker redelivers it whoever settles it here. Its messages are
   * still counted on its own tracker, and the entry is acked only once every
   * one of them was acked, as the Java client's batch acker does: acking it
   * on the first would drop on the broker the messages of the entry that
   * never ran here (they were still queued at the reconnect, and are gone
   * from this consumer).
   */
  resolve(message: ReceivedMessage, nack: boolean, redeliverAfterMs = 0): void {
    const delivery = deliveries.get(message);
    const tracker = delivery ? delivery.tracker : this.entries.get(entryKeyOf(message.id));
    if (!tracker) {
      // Not delivered by this consumer: only a lone message's entry is known to hold nothing else.
      const id = parseMessageId(message.id);
      if (!nack && id.batchIndex < 0) this.queueAck(entryIdData(id));
      return;
    }
    const current = this.entries.get(tracker.key) === tracker;
    const index = delivery ? delivery.index : Math.max(0, parseMessageId(message.id).batchIndex);
    if (tracker.resolved.has(index)) return;
    tracker.resolved.add(index);
    if (current) this.held -= 1;
    if (nack) {
      tracker.nacked = true;
      tracker.redeliverAfterMs = Math.max(tracker.redeliverAfterMs, redeliverAfterMs);
    } else tracker.acked.add(index);
    if (tracker.resolved.size === tracker.count) {
      if (current) this.entries.delete(tracker.key);
      // A stale entry that was nacked comes back anyway: no redelivery request for it.
      if (tracker.nacked) {
        if (current) this.redeliverLater(tracker.ids, tracker.redeliverAfterMs);
      } else if (tracker.validationError !== undefined) for (const id of tracker.ids) this.queueInvalid(id, tracker.validationError);
      else for (const id of tracker.ids) this.queueAck(id);
    } else if (!nack && this.settings.batchIndexAck && tracker.batchSize > 1) {
      // The broker keeps what is acked of a partly acked entry: bits still set are the messages not acked.
      const [id] = tracker.ids;
      this.queueAck({ ...id!, ack_set: wordsOf(tracker.batchSize, (i) => !tracker.acked.has(i)) });
    }
    if (current) this.refill(false);
  }

  /**
   * Whatever was delivered on a connection that is gone comes again from the
   * broker: from now on those deliveries are stale (see `resolve`, `isStale`).
   */
  private forgetDeliveries(): void {
    this.entries.clear();
    this.chunks.clear();
    this.held = 0;
  }

  /** Whether `tracker` is an entry delivered on the current connection (and not settled). */
  holds(tracker: EntryTracker): boolean {
    return this.entries.get(tracker.key) === tracker;
  }

  /** Grants the broker no more permits from now on; what was granted still arrives. */
  pause(): void {
    this.paused = true;
  }

  /**
   * A nack: the message stops counting against the window at once (the
   * application gave it back), and its entry is redelivered `delayMs` later,
   * once all of its messages are settled.
   */
  nackLater(message: ReceivedMessage, delayMs: number): void {
    this.resolve(message, true, delayMs);
  }

  /** Idempotent: every caller waits for the same close. */
  close(): Promise<void> {
    this.closing ??= this.doClose(false);
    return this.closing;
  }

  /** Closes and deletes the subscription on the broker (UNSUBSCRIBE). */
  unsubscribe(): Promise<void> {
    this.closing ??= this.doClose(true);
    return this.closing;
  }

  private async doClose(unsubscribe: boolean): Promise<void> {
    const connection = this.lifecycle.connection;
    this.lifecycle.to({ kind: 'closing' });
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.chunkTimer) clearInterval(this.chunkTimer);
    for (const timer of this.nackTimers) clearTimeout(timer);
    this.nackTimers.clear();
    if (connection?.isOpen) {
      this.flushAcks(connection);
      if (unsubscribe) await this.unsubscribeOnBroker(connection);
      else await this.closeOnBroker(connection);
    }
    this.lifecycle.to({ kind: 'closed' });
  }

  private async unsubscribeOnBroker(connection: Connection): Promise<void> {
    const requestId = connection.newRequestId();
    try {
      await connection.request(
        { type: CommandType.UNSUBSCRIBE, unsubscribe: { consumer_id: this.consumerId, request_id: requestId } },
        requestId,
      );
    } finally {
      connection.unregisterConsumer(this.consumerId);
    }
  }

  private async closeOnBroker(connection: Connection): Promise<void> {
    const requestId = connection.newRequestId();
    await connection
      .request({ type: CommandType.CLOSE_CONSUMER, close_consumer: { consumer_id: this.consumerId, request_id: requestId } }, requestId)
      .catch(() => undefined);
    connection.unregisterConsumer(this.consumerId);
  }

  onFrame(frame: DecodedFrame): void {
    const c = frame.command;
    if (c.type === CommandType.MESSAGE) {
      this.onMessage(frame);
    } else if (c.type === CommandType.CLOSE_CONSUMER) {
      this.client.logger.info({ topic: this.topic }, 'the broker closed the consumer (topic moved or unloaded); resubscribing');
      if (this.lifecycle.state.kind === 'ready') this.lifecycle.connection!.unregisterConsumer(this.consumerId);
      this.forgetDeliveries();
      this.scheduleReconnect();
    } else if (c.type === CommandType.REACHED_END_OF_TOPIC) {
      this.client.logger.warn({ topic: this.topic }, 'the topic was terminated: no more messages will arrive');
    }
  }

  onConnectionClosed(error: Error): void {
    if (this.lifecycle.isClosingOrClosed) return;
    this.client.logger.warn({ topic: this.topic, err: error.message }, 'consumer lost its connection; resubscribing');
    this.forgetDeliveries();
    this.scheduleReconnect();
  }

  private onMessage(frame: DecodedFrame): void {
    if (this.lifecycle.state.kind !== 'ready') return; // a late frame for a consumer that is going away
    const maxMessageSize = this.lifecycle.connection!.maxMessageSize;
    const m = frame.command.message!;
    const idData: MessageIdData = { ledgerId: num(m.message_id.ledgerId), entryId: num(m.message_id.entryId), partition: this.partition };
    const redeliveryCount = m.redelivery_count ?? 0;
    if (this.settings.durable === false) this.lastEntry = { ledgerId: idData.ledgerId, entryId: idData.entryId };
    const decoded = decodeEntry(frame, m.ack_set, { maxMessageSize });
    this.outstanding -= decoded.permits;
    if (decoded.kind === 'chunk') {
      const outcome = this.chunks.add(decoded.chunk, idData, redeliveryCount, Date.now());
      if (outcome.kind === 'abandoned') for (const lost of outcome.messages) this.deliverAbandoned(lost, redeliveryCount);
      else if (outcome.kind === 'complete') {
        const { message } = outcome;
        // Reassembled: decoded as one message, from the first chunk's metadata.
        const whole = decodePayload(message.metadata, message.payload, undefined, 1, { maxMessageSize: this.maxChunkedBytes });
        this.deliverEntry(whole, message.parts, redeliveryCount, num(message.metadata.publish_time));
      }
      this.refill(false);
      return;
    }
    this.deliverEntry(decoded, [idData], redeliveryCount, num(frame.metadata?.publish_time));
    this.refill(false);
  }

  private deliverEntry(decoded: DecodedEntry, ids: MessageIdData[], redeliveryCount: number, publishTime: number): void {
    const first = ids[0]!;
    const key = `${num(first.ledgerId)}:${num(first.entryId)}`;
    if (decoded.kind === 'undecodable') {
      this.logUndecodable(key, decoded.reason);
      const tracker = this.track(key, ids, 1, 1, decoded.validationError);
      this.hand(
        {
          id: formatMessageId(first, this.partition, -1),
          topic: this.topic,
          payload: toBytes(decoded.raw),
          key: decoded.key,
          properties: {},
          redeliveryCount,
          publishTime,
          undecodable: decoded.reason,
        },
        tracker,
        0,
      );
      return;
    }
    if (decoded.kind !== 'messages') return;
    if (decoded.messages.length === 0) {
      // Everything in it was acked already (batch-index ack) or compacted out.
      for (const id of ids) this.queueAck(id);
      return;
    }
    const batched = decoded.messages[0]!.batchIndex >= 0;
    const tracker = this.track(key, ids, decoded.messages.length, decoded.batchSize, undefined);
    for (const message of decoded.messages) {
      this.hand(
        {
          id: formatMessageId(first, this.partition, batched ? message.batchIndex : -1),
          topic: this.topic,
          payload: toBytes(message.payload),
          key: message.key,
          properties: toRecord(message.properties),
          redeliveryCount,
          publishTime,
          ...(message.orderingKey !== undefined ? { orderingKey: message.orderingKey } : {}),
          ...(message.eventTime > 0 ? { eventTime: message.eventTime } : {}),
        },
        tracker,
        Math.max(0, message.batchIndex),
      );
    }
  }

  private deliverAbandoned(lost: AbandonedMessage, redeliveryCount: number): void {
    const reason = `chunked message ${lost.uuid} given up: ${lost.reason}`;
    this.deliverEntry(
      { kind: 'undecodable', permits: 0, reason, validationError: ValidationError.BatchDeSerializeError, raw: lost.payload, key: lost.key },
      lost.parts,
      redeliveryCount,
      0,
    );
  }

  private expireChunks(): void {
    if (this.lifecycle.state.kind !== 'ready') return;
    for (const lost of this.chunks.expire(Date.now())) this.deliverAbandoned(lost, 0);
  }

  private track(key: string, ids: MessageIdData[], count: number, batchSize: number, validationError: number | undefined): EntryTracker {
    const tracker: EntryTracker = {
      key,
      ids,
      count,
      batchSize,
      acked: new Set(),
      resolved: new Set(),
      validationError,
      nacked: false,
      redeliverAfterMs: 0,
    };
    this.entries.set(key, tracker);
    this.held += count;
    return tracker;
  }

  private hand(received: ReceivedMessage, tracker: EntryTracker, index: number): void {
    deliveries.set(received, { part: this, tracker, index });
    this.sink.deliver(received);
  }

  private logUndecodable(entry: string, reason: string): void {
    // Once per delivery of the entry: it is acked (and dead-lettered) after this, so it does not come back.
    this.client.logger.warn({ topic: this.topic, entry }, `undecodable message handed over for a dead letter: ${reason}`);
  }

  private refill(initial: boolean): void {
    if (initial) {
      this.grant();
      return;
    }
    if (this.flowScheduled) return;
    this.flowScheduled = true;
    // Everything settled in this turn of the event loop comes back in one FLOW.
    setImmediate(() => {
      this.flowScheduled = false;
      this.grant();
    });
  }

  private grant(): void {
    if (this.lifecycle.state.kind !== 'ready' || this.settings.flow === false || this.paused) return;
    const available = this.maxUnacked - this.held - this.outstanding;
    if (available < 1) return;
    // messagePermits is a uint32; a count driven far below zero by a hostile batch size is granted in steps.
    const grant = Math.min(available, 0x7fffffff);
    this.outstanding += grant;
    this.send({ type: CommandType.FLOW, flow: { consumer_id: this.consumerId, messagePermits: grant } });
  }

  private queueAck(idData: MessageIdData): void {
    this.pendingAcks.push(idData);
    this.scheduleFlush();
  }

  private queueInvalid(id: MessageIdData, validationError: number): void {
    this.pendingInvalid.push({ id, validationError });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    // Acks of one turn of the event loop travel in one ACK command.
    setImmediate(() => this.flushAcks());
  }

  /** Sends queued acks on `connection` (closing) or the ready one; otherwise they wait for the reconnect. */
  private flushAcks(connection?: Connection): void {
    this.ackScheduled = false;
    const target = connection ?? this.lifecycle.connection;
    if (!target) return;
    if (this.pendingAcks.length > 0) {
      const ids = this.pendingAcks;
      this.pendingAcks = [];
      if (!this.sendOn(target, { type: CommandType.ACK, ack: { consumer_id: this.consumerId, ack_type: 0, message_id: ids } })) {
        this.pendingAcks.unshift(...ids);
      }
    }
    // An ACK carries one validation error, so discarded entries go one command each (they are rare).
    for (const { id, validationError } of this.pendingInvalid.splice(0)) {
      const ack = { consumer_id: this.consumerId, ack_type: 0, message_id: [id], validation_error: validationError };
      if (!this.sendOn(target, { type: CommandType.ACK, ack })) this.pendingInvalid.push({ id, validationError });
    }
  }

  private redeliverLater(ids: MessageIdData[], delayMs: number): void {
    if (delayMs <= 0) {
      this.redeliver(ids);
      return;
    }
    const timer = setTimeout(() => {
      this.nackTimers.delete(timer);
      // After a reconnect the broker has redelivered the entry already; asking again is harmless.
      this.redeliver(ids);
    }, delayMs);
    this.nackTimers.add(timer);
  }

  private redeliver(ids: MessageIdData[]): void {
    this.send({
      type: CommandType.REDELIVER_UNACKNOWLEDGED_MESSAGES,
      redeliverUnacknowledgedMessages: { consumer_id: this.consumerId, message_ids: ids },
    });
  }

  private send(command: Parameters<Connection['send']>[0]): boolean {
    return this.lifecycle.state.kind === 'ready' && this.sendOn(this.lifecycle.connection!, command);
  }

  private sendOn(connection: Connection, command: Parameters<Connection['send']>[0]): boolean {
    try {
      connection.send(command);
      return true;
    } catch {
      return false; // the connection is closing: the reconnect takes over
    }
  }

  private scheduleReconnect(): void {
    if (this.lifecycle.isClosingOrClosed || this.reconnectTimer) return;
    this.lifecycle.to({ kind: 'reconnecting' });
    countReconnect('consumer');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.client.isClosed || this.lifecycle.isClosingOrClosed) return;
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

function toBytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function toRecord(properties: readonly KeyValue[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (const kv of properties) record[kv.key] = kv.value;
  return record;
}

/** The transport's consumer over every partition of a topic. */
export class PulsarConsumer implements Consumer {
  private readonly queue = new ReceiveQueue<ReceivedMessage>();
  private parts: PartitionConsumer[] = [];
  private closing: Promise<void> | null = null;

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
    const results = await Promise.allSettled(consumer.parts.map((p) => client.whileBrokerBusy(() => p.connect())));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Partitions that did subscribe are closed again: nothing is left holding permits.
      await consumer.close();
      throw failed.reason;
    }
    return consumer;
  }

  /** The broker's permit count per partition, as the consumer tracks it. */
  get permits(): number[] {
    return this.parts.map((p) => p.permits);
  }

  /** @internal called by the partition consumers */
  deliver(message: ReceivedMessage): void {
    if (!this.closing) this.queue.push(message);
  }

  /** @internal */
  dropQueued(topic: string): number {
    return this.queue.removeWhere((m) => m.topic === topic);
  }

  receive(signal?: AbortSignal): Promise<ReceivedMessage> {
    return this.queue.receive(signal);
  }

  receiveMany(max: number, signal?: AbortSignal): Promise<ReceivedMessage[]> {
    return this.queue.receiveMany(max, signal);
  }

  takeDelivered(max: number): ReceivedMessage[] {
    return this.queue.take(max);
  }

  pause(): void {
    for (const part of this.parts) part.pause();
  }

  /** True once the partition consumer that delivered the message lost that connection (or the broker closed it). */
  isStale(message: ReceivedMessage): boolean {
    const delivery = deliveries.get(message);
    return delivery !== undefined && !delivery.part.holds(delivery.tracker);
  }

  /** Queued acks of one event-loop turn leave as one ACK command per partition. */
  async ack(message: ReceivedMessage): Promise<void> {
    if (this.closing) throw this.closedError();
    this.partFor(message).resolve(message, false);
  }

  async ackAll(messages: readonly ReceivedMessage[]): Promise<void> {
    if (this.closing) throw this.closedError();
    for (const message of messages) this.partFor(message).resolve(message, false);
  }

  nack(message: ReceivedMessage, delayMs?: number): void {
    if (this.closing) return;
    this.partFor(message).nackLater(message, delayMs ?? this.settings.nackRedeliveryDelayMs);
  }

  /** Idempotent: concurrent callers share one close. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.queue.close(() => this.closedError());
      await Promise.all(this.parts.map((p) => p.close()));
    })();
    return this.closing;
  }

  /** Closes and deletes the subscription on every partition. */
  unsubscribe(): Promise<void> {
    this.closing ??= (async () => {
      this.queue.close(() => this.closedError());
      await Promise.all(this.parts.map((p) => p.unsubscribe()));
    })();
    return this.closing;
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
