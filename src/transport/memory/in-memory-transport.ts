/**
 * The embedded transport: topics, durable subscriptions and competing
 * consumers inside one process, with the same semantics as the Pulsar
 * transport (see the contract in `../transport.ts`). The default for tests,
 * the demo and single-process deployments. Nothing survives the process.
 *
 * Payloads are bytes here too, so that encoding, `maxBytes` and decoding
 * failures behave exactly as they do on a real broker.
 */
import { MessageTooLargeError, ProducerBusyError, ProducerFencedError, TransportClosedError } from '../../errors.js';
import { deferred } from '../../util/deferred.js';
import { Fifo } from '../../util/fifo.js';
import { ReceiveQueue } from '../receive-queue.js';
import {
  DEDUPLICATED,
  type Consumer,
  type OutgoingMessage,
  type Producer,
  type ProducerOptions,
  type ReceivedMessage,
  type SubscribeOptions,
  type Transport,
} from '../transport.js';

export interface InMemoryTransportOptions {
  /** Delay before a nacked message is redelivered, when `nack` names none. Default 1000 ms (Pulsar's default is 60 s). */
  readonly nackRedeliveryDelayMs?: number;
  /** Largest payload `send` accepts, as a Pulsar broker's maxMessageSize. Default 5 MiB (Pulsar's default). */
  readonly maxMessageSize?: number;
}

/** One message as one subscription holds it: each subscription counts its own redeliveries. */
interface Entry {
  readonly id: string;
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly key: string | undefined;
  readonly properties: Readonly<Record<string, string>>;
  readonly publishTime: number;
  redeliveryCount: number;
}

export class InMemoryTransport implements Transport {
  readonly kind = 'inMemory';
  /** Sends complete at once: nothing here waits on a broker. */
  readonly sendsBounded = true;
  private readonly topics = new Map<string, MemoryTopic>();
  private readonly consumers = new Set<MemoryConsumer>();
  private closed = false;
  readonly nackRedeliveryDelayMs: number;
  readonly maxMessageSize: number;

  constructor(options: InMemoryTransportOptions = {}) {
    this.nackRedeliveryDelayMs = options.nackRedeliveryDelayMs ?? 1000;
    this.maxMessageSize = options.maxMessageSize ?? 5 * 1024 * 1024;
  }

  /** A named producer gets deduplication, as on a Pulsar namespace with it on (which `sheaf setup` makes). */
  async createProducer(topic: string, options: ProducerOptions = {}): Promise<Producer> {
    this.assertOpen();
    const target = this.topic(topic);
    const lastSequenceId = options.name === undefined ? -1 : target.lastSequenceId(options.name);
    const exclusive = options.access === 'exclusive';
    // As Pulsar: an exclusive producer is refused while any other is attached, a shared one while an exclusive is.
    if (target.exclusive || (exclusive && target.sharedProducers > 0)) throw new ProducerBusyError(topic);
    const producer = new MemoryProducer(this, target, options.name, lastSequenceId, exclusive ? ++target.epoch : undefined);
    if (exclusive) target.exclusive = producer;
    else target.sharedProducers += 1;
    return producer;
  }

  /**
   * For tests: what Pulsar does to an exclusive producer whose connection was
   * lost while another took its topic over. The producer is fenced (its sends
   * fail with `ProducerFencedError`, its `fenced` settles) and the topic is
   * free for another exclusive producer, which gets a higher epoch.
   */
  fenceExclusiveProducer(topic: string): void {
    this.topics.get(topic)?.exclusive?.fence();
  }

  async subscribe(options: SubscribeOptions): Promise<Consumer> {
    this.assertOpen();
    if (!Number.isInteger(options.maxUnacked) || options.maxUnacked < 1) {
      throw new RangeError(`subscribe: maxUnacked must be a positive integer (got ${options.maxUnacked})`);
    }
    if (options.subscriptionType === 'keyShared') {
      throw new RangeError(
        'subscribe: the in-memory transport has shared and failover subscriptions only; use the Pulsar transport for keyShared',
      );
    }
    const subscription = this.topic(options.topic).subscription(options.subscription);
    subscription.adoptType(options.subscriptionType ?? 'shared', options);
    const consumer = new MemoryConsumer(this, subscription, options, () =>
      this.topic(options.topic).removeSubscription(options.subscription),
    );
    this.consumers.add(consumer);
    subscription.attach(consumer);
    return consumer;
  }

  /** Consumers attached to a topic's subscriptions now (0: nothing in this process reads it). */
  consumerCount(topic: string): number {
    let count = 0;
    for (const consumer of this.consumers) if (consumer.topic === topic) count += 1;
    return count;
  }

  async ensureSubscription(
    topic: string,
    subscription: string,
    subscriptionType: SubscribeOptions['subscriptionType'] = 'shared',
  ): Promise<void> {
    this.assertOpen();
    if (subscriptionType === 'keyShared') return; // refused when a consumer subscribes; nothing to keep here
    this.topic(topic).subscription(subscription).adoptType(subscriptionType, { topic, subscription, maxUnacked: 1 });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.consumers].map((c) => c.close()));
    for (const topic of this.topics.values()) topic.dispose();
    this.topics.clear();
  }

  /** @internal */
  publish(topic: string, message: OutgoingMessage, producerName?: string): string {
    this.assertOpen();
    const target = this.topic(topic);
    if (producerName !== undefined && message.sequenceId !== undefined && !target.record(producerName, message.sequenceId)) {
      return DEDUPLICATED;
    }
    return target.publish(message);
  }

  /** @internal */
  forget(consumer: MemoryConsumer): void {
    this.consumers.delete(consumer);
  }

  /** @internal */
  assertOpen(): void {
    if (this.closed) throw new TransportClosedError('the in-memory transport is closed');
  }

  private topic(name: string): MemoryTopic {
    let topic = this.topics.get(name);
    if (!topic) {
      topic = new MemoryTopic(name);
      this.topics.set(name, topic);
    }
    return topic;
  }
}

class MemoryTopic {
  private readonly subscriptions = new Map<string, MemorySubscription>();
  private sequence = 0;
  /** The exclusive producer holding the topic, if one does. */
  exclusive: MemoryProducer | null = null;
  /** Bumped for every exclusive producer that takes the topic: Pulsar's topic epoch. */
  epoch = 0;
  /** Shared producers open on the topic (an exclusive one is refused while there are any). */
  sharedProducers = 0;
  /** The highest sequence id stored per producer name (deduplication). */
  private readonly lastSequenceIds = new Map<string, number>();

  constructor(readonly name: string) {}

  lastSequenceId(producerName: string): number {
    return this.lastSequenceIds.get(producerName) ?? -1;
  }

  /** Records a named producer's sequence id; false when it is a repeat (at or below the last stored). */
  record(producerName: string, sequenceId: number): boolean {
    if (sequenceId <= this.lastSequenceId(producerName)) return false;
    this.lastSequenceIds.set(producerName, sequenceId);
    return true;
  }

  removeSubscription(name: string): void {
    this.subscriptions.delete(name);
  }

  subscription(name: string): MemorySubscription {
    let sub = this.subscriptions.get(name);
    if (!sub) {
      sub = new MemorySubscription();
      this.subscriptions.set(name, sub);
    }
    return sub;
  }

  publish(message: OutgoingMessage): string {
    this.sequence += 1;
    const id = `${this.sequence}`;
    const publishTime = Date.now();
    const properties = Object.freeze({ ...(message.properties ?? {}) });
    for (const sub of this.subscriptions.values()) {
      sub.enqueue(
        { id, topic: this.name, payload: message.payload, key: message.key, properties, publishTime, redeliveryCount: 0 },
        message.deliverAt,
      );
    }
    return id;
  }

  dispose(): void {
    for (const sub of this.subscriptions.values()) sub.dispose();
  }
}

class MemorySubscription {
  private readonly backlog = new Fifo<Entry>();
  /** Attached consumers, oldest first: with `failover`, the first is the active one. */
  private readonly consumers: MemoryConsumer[] = [];
  private nextConsumer = 0;
  private type: 'shared' | 'failover' = 'shared';
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  /** Takes the type of a new consumer; one of another type while consumers are attached is refused, as Pulsar does. */
  adoptType(type: 'shared' | 'failover', options: SubscribeOptions): void {
    if (this.consumers.length > 0 && type !== this.type) {
      throw new RangeError(
        `subscribe: subscription ${options.subscription} of ${options.topic} is ${this.type} while its consumers are attached; subscribe as ${this.type}`,
      );
    }
    this.type = type;
  }

  enqueue(entry: Entry, deliverAt: number | undefined): void {
    const delay = deliverAt === undefined ? 0 : deliverAt - Date.now();
    if (delay > 0) {
      this.later(delay, () => this.backlog.push(entry));
      return;
    }
    this.backlog.push(entry);
    this.dispatch();
  }

  /** A message given back: delivered again; a nack counts, a closed consumer does not (as on Pulsar). */
  redeliver(entry: Entry, delayMs: number, counted: boolean): void {
    if (counted) entry.redeliveryCount += 1;
    if (delayMs > 0) {
      this.later(delayMs, () => this.backlog.unshift(entry));
    } else {
      this.backlog.unshift(entry);
    }
  }

  attach(consumer: MemoryConsumer): void {
    this.consumers.push(consumer);
    this.dispatch();
  }

  detach(consumer: MemoryConsumer): void {
    const index = this.consumers.indexOf(consumer);
    if (index >= 0) this.consumers.splice(index, 1);
  }

  /** Hands backlog messages to consumers with room: round robin, or to the active consumer alone (failover). */
  dispatch(): void {
    while (this.backlog.length > 0) {
      const consumer = this.nextWithRoom();
      if (!consumer) return;
      consumer.deliver(this.backlog.shift()!);
    }
  }

  dispose(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private nextWithRoom(): MemoryConsumer | undefined {
    if (this.type === 'failover') {
      const active = this.consumers[0];
      return active && active.room > 0 ? active : undefined;
    }
    const n = this.consumers.length;
    for (let i = 0; i < n; i++) {
      const consumer = this.consumers[(this.nextConsumer + i) % n]!;
      if (consumer.room > 0) {
        this.nextConsumer = (this.nextConsumer + i + 1) % n;
        return consumer;
      }
    }
    return undefined;
  }

  private later(delayMs: number, enqueue: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      enqueue();
      this.dispatch();
    }, delayMs);
    this.timers.add(timer);
  }
}

class MemoryProducer implements Producer {
  private closed = false;
  /** The highest sequence id this producer used (named producers). */
  private lastUsed: number;
  readonly topic: string;
  private fencedBy: ProducerFencedError | null = null;
  private readonly fencing = deferred<Error>();
  readonly fenced: Promise<Error> | undefined;

  constructor(
    private readonly transport: InMemoryTransport,
    private readonly target: MemoryTopic,
    private readonly name: string | undefined,
    readonly lastSequenceId: number,
    /** Set for an exclusive producer: the topic's epoch it holds. */
    readonly epoch: number | undefined,
  ) {
    this.topic = target.name;
    this.lastUsed = lastSequenceId;
    this.fenced = epoch === undefined ? undefined : this.fencing.promise;
  }

  /** @internal The topic was taken over (`InMemoryTransport.fenceExclusiveProducer`). */
  fence(): void {
    if (this.fencedBy || this.closed) return;
    this.fencedBy = new ProducerFencedError(this.topic);
    this.release();
    this.fencing.resolve(this.fencedBy);
  }

  async send(message: OutgoingMessage): Promise<string> {
    if (this.fencedBy) throw this.fencedBy;
    if (this.closed) throw new TransportClosedError(`producer for ${this.topic} is closed`);
    if (message.sequenceId !== undefined) {
      if (this.name === undefined) {
        throw new RangeError(`${this.topic}: a message's sequenceId needs a named producer (createProducer(topic, { name }))`);
      }
      // Stored before this producer opened (a dispatcher that resumes): a repeat.
      if (message.sequenceId >= 0 && message.sequenceId <= this.lastSequenceId) return DEDUPLICATED;
      if (!Number.isSafeInteger(message.sequenceId) || message.sequenceId <= this.lastUsed) {
        throw new RangeError(
          `${this.topic}: sequence id ${message.sequenceId} is not above the last one this producer used (${this.lastUsed}); ` +
            'the broker would drop it as a repeat',
        );
      }
      this.lastUsed = message.sequenceId;
    }
    if (message.payload.length > this.transport.maxMessageSize) {
      throw new MessageTooLargeError(this.topic, message.payload.length, this.transport.maxMessageSize);
    }
    return this.transport.publish(this.topic, message, this.name);
  }

  async close(): Promise<void> {
    if (!this.closed && !this.fencedBy) this.release();
    this.closed = true;
  }

  private release(): void {
    if (this.epoch === undefined) this.target.sharedProducers -= 1;
    else if (this.target.exclusive === this) this.target.exclusive = null;
  }
}

class MemoryConsumer implements Consumer {
  readonly topic: string;
  readonly subscription: string;
  private readonly maxUnacked: number;
  /** False: the subscription goes when this consumer closes (`SubscribeOptions.durable`). */
  private readonly durable: boolean;
  /** Delivered to this consumer and not yet returned by `receive()`. */
  private readonly prefetched = new ReceiveQueue<ReceivedMessage>();
  /** Delivered and not yet acked or nacked (includes `prefetched`). */
  private readonly held = new Map<string, Entry>();
  private closed = false;
  /** Set by `pause()`: no more messages are delivered to this consumer. */
  private paused = false;

  constructor(
    private readonly transport: InMemoryTransport,
    private readonly sub: MemorySubscription,
    options: SubscribeOptions,
    private readonly removeSubscription: () => void,
  ) {
    this.topic = options.topic;
    this.subscription = options.subscription;
    this.maxUnacked = options.maxUnacked;
    this.durable = options.durable !== false;
  }

  get room(): number {
    return this.closed || this.paused ? 0 : this.maxUnacked - this.held.size;
  }

  deliver(entry: Entry): void {
    this.held.set(entry.id, entry);
    this.prefetched.push(snapshot(entry));
  }

  receive(signal?: AbortSignal): Promise<ReceivedMessage> {
    return this.prefetched.receive(signal);
  }

  receiveMany(max: number, signal?: AbortSignal): Promise<ReceivedMessage[]> {
    return this.prefetched.receiveMany(max, signal);
  }

  takeDelivered(max: number): ReceivedMessage[] {
    return this.prefetched.take(max);
  }

  pause(): void {
    this.paused = true;
  }

  /** No connections here: a delivery goes stale only when its consumer closes (what it held went back). */
  isStale(_message: ReceivedMessage): boolean {
    return this.closed;
  }

  async ack(message: ReceivedMessage): Promise<void> {
    if (this.closed) throw this.closedError();
    if (this.held.delete(message.id)) this.sub.dispatch();
  }

  async ackAll(messages: readonly ReceivedMessage[]): Promise<void> {
    if (this.closed) throw this.closedError();
    let freed = false;
    for (const message of messages) if (this.held.delete(message.id)) freed = true;
    if (freed) this.sub.dispatch();
  }

  nack(message: ReceivedMessage, delayMs?: number): void {
    if (this.closed) return; // closing already gave every held message back
    const entry = this.held.get(message.id);
    if (!entry) return;
    this.held.delete(message.id);
    this.sub.redeliver(entry, delayMs ?? this.transport.nackRedeliveryDelayMs, true);
    this.sub.dispatch();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sub.detach(this);
    this.transport.forget(this);
    this.prefetched.close(() => this.closedError());
    // Give back everything not acked, oldest at the front.
    const held = [...this.held.values()].reverse();
    this.held.clear();
    for (const entry of held) this.sub.redeliver(entry, 0, false);
    this.sub.dispatch();
    if (!this.durable) this.removeSubscription();
  }

  async unsubscribe(): Promise<void> {
    await this.close();
    this.removeSubscription();
  }

  private closedError(): TransportClosedError {
    return new TransportClosedError(`consumer of ${this.topic} (subscription ${this.subscription}) is closed`);
  }
}

function snapshot(entry: Entry): ReceivedMessage {
  return {
    id: entry.id,
    topic: entry.topic,
    payload: entry.payload,
    key: entry.key,
    properties: entry.properties,
    redeliveryCount: entry.redeliveryCount,
    publishTime: entry.publishTime,
  };
}
