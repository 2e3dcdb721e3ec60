/**
 * The transport contract: everything Sheaf needs from a message broker, and
 * nothing more. Every implementation passes the shared contract suite in
 * `test/contract/transport-contract.ts`.
 *
 * What a transport promises:
 * - **Topics and subscriptions.** A topic has named subscriptions; every
 *   subscription sees every message published after it was created. A message
 *   published while a topic has no subscription at all may be dropped (as
 *   Pulsar does), so a publisher that needs its messages kept first calls
 *   `ensureSubscription`, which creates a durable subscription that retains
 *   messages while no consumer is connected.
 * - **Competing consumers.** Consumers attached to one subscription share its
 *   messages: each message is delivered to one consumer at a time.
 * - **Individual acknowledgement.** `ack` settles one message for good. A
 *   message that is not acked is never lost: when its consumer closes or its
 *   connection drops, it is delivered again (to any consumer of the
 *   subscription). Such a redelivery does not raise `redeliveryCount`
 *   (Pulsar counts only negative acknowledgements).
 * - **Negative acknowledgement.** `nack` gives a message back for redelivery
 *   after a delay, with `redeliveryCount` one higher.
 * - **Flow control.** A consumer never holds more than `maxUnacked` messages
 *   that it has been delivered and not yet acked or nacked. Messages it is not
 *   given stay available to the other consumers of the subscription.
 * - **Delayed delivery.** A message with `deliverAt` is not delivered before
 *   that time (epoch milliseconds). On Pulsar this needs the broker setting
 *   `isDelayedDeliveryDeliverAtTimeStrict=true`; by default a broker may
 *   deliver up to `delayedDeliveryTickTimeMillis` (1 s) early.
 * - **At-least-once.** Delivery may repeat; it is never silently skipped.
 *   Order is not promised across redeliveries.
 * - **Nothing undecodable is dropped or thrown.** A message the transport
 *   cannot decode (corrupt, encrypted, bad compression, an incomplete chunked
 *   message) is delivered with `undecodable` set and its bytes as received;
 *   the application acks it (Sheaf's worker dead-letters it) and it is gone.
 *   No bytes from the network make `receive()` or the process fail.
 * - **Size.** `send` rejects a message larger than the broker accepts with
 *   `MessageTooLargeError` (unless the transport was told to split it), before
 *   anything is sent.
 *
 * Ownership: the transport owns its connections. Producers and consumers are
 * owned by whoever created them and must be closed by them; `close()` on the
 * transport closes whatever is still open. Sheaf's client and worker never
 * close a transport they were given; they close the ones they create
 * themselves (from a config file).
 */

export interface OutgoingMessage {
  readonly payload: Uint8Array;
  /** Routing key (Pulsar's partition key). Sheaf sets it to the task's batch key. */
  readonly key?: string | undefined;
  /** Key_Shared routes by this instead of `key` when set (Pulsar's ordering key). */
  readonly orderingKey?: string | undefined;
  readonly properties?: Readonly<Record<string, string>> | undefined;
  /** Epoch milliseconds before which the message must not be delivered. */
  readonly deliverAt?: number | undefined;
  /** Epoch milliseconds of the event the message describes (Pulsar's event time). */
  readonly eventTime?: number | undefined;
  /**
   * For a named producer (`ProducerOptions.name`) only: the message's
   * sequence id, higher than every one this producer sent before (a lower
   * one is refused with a `RangeError`, never sent). With deduplication on,
   * the broker stores a message whose id is at or below the last it stored
   * for the producer's name as nothing, and `send` resolves with
   * `DEDUPLICATED`.
   */
  readonly sequenceId?: number | undefined;
}

/**
 * What `send` resolves with when the broker dropped the message as a
 * repeat: a message of the same producer name with this or a higher
 * sequence id was stored before (Pulsar's producer deduplication).
 */
export const DEDUPLICATED = 'deduplicated';

/** What `createProducer` takes besides the topic. */
export interface ProducerOptions {
  /**
   * The name the broker knows the producer by, unique among the topic's
   * connected producers. With the namespace's deduplication on (`sheaf
   * setup`), the broker remembers the highest sequence id it stored for a
   * name, across restarts of the producer (`Producer.lastSequenceId`), and
   * drops repeats: how a dispatcher that died resumes without sending
   * anything twice. Named producers send each message as its own entry (no
   * batching, no chunking), so that each sequence id is checked alone.
   */
  readonly name?: string;
  /**
   * `shared` (default): any number of producers write to the topic.
   * `exclusive`: this producer is the topic's only writer, or it is not
   * made (`ProducerBusyError`, also while shared producers are attached):
   * how Sheaf elects one writer, such as the job tracker. A producer that
   * loses its connection and finds on its return that another exclusive
   * producer took the topic over is fenced for good: its sends fail with
   * `ProducerFencedError` and nothing of it is stored (Pulsar's exclusive
   * producers and topic epoch). Not for partitioned topics.
   */
  readonly access?: 'shared' | 'exclusive';
}

export interface ReceivedMessage {
  /** Opaque, unique within the subscription; stable across redeliveries. */
  readonly id: string;
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly key: string | undefined;
  readonly properties: Readonly<Record<string, string>>;
  /** How many times this message was negatively acknowledged before this delivery. */
  readonly redeliveryCount: number;
  /** Epoch milliseconds at which the broker accepted the message. */
  readonly publishTime: number;
  /** Key_Shared's routing key when the producer set one apart from `key` (Pulsar's ordering key). */
  readonly orderingKey?: string | undefined;
  /** Epoch milliseconds the producer gave as the event's time, when it gave one. */
  readonly eventTime?: number | undefined;
  /**
   * Set when the transport could not decode the message: why. `payload` then
   * holds the bytes as received. Ack it once it is dealt with (dead-lettered);
   * redelivery would only bring the same bytes back.
   */
  readonly undecodable?: string | undefined;
}

export interface Producer {
  readonly topic: string;
  /**
   * For a named producer: the highest sequence id the broker had stored for
   * its name on the topic (any partition) when the producer opened, or -1
   * (none, or deduplication is off). Unnamed producers: -1.
   */
  readonly lastSequenceId: number;
  /**
   * For an exclusive producer: the topic's epoch it holds, higher for every
   * producer that took the topic over after another (a fencing token:
   * what it writes elsewhere can carry it, so that readers can tell an
   * old writer's word from a newer one's). Undefined for shared producers.
   */
  readonly epoch?: number | undefined;
  /**
   * For an exclusive producer: settles with the `ProducerFencedError` once
   * it is fenced (never for a producer that is just closed). Undefined for
   * shared producers.
   */
  readonly fenced?: Promise<Error> | undefined;
  /** Resolves once the broker has the message durably; returns its id (`DEDUPLICATED` for a repeat it dropped). */
  send(message: OutgoingMessage): Promise<string>;
  /** Lets sends already under way finish, then refuses new ones. */
  close(): Promise<void>;
}

export interface SubscribeOptions {
  readonly topic: string;
  readonly subscription: string;
  /** The most messages this consumer holds unacknowledged at once (its permits). */
  readonly maxUnacked: number;
  /**
   * `shared` (default): any consumer may get any message. `keyShared`: messages
   * with the same key go to the same consumer while it is connected (Pulsar only).
   * `failover`: one consumer of the subscription at a time gets every message;
   * when it goes, another takes over and gets what it held unacked (the job
   * tracker's subscription; the tracker itself is elected by an exclusive
   * producer, which also fences a writer that lost its turn). A subscription keeps
   * one type while consumers are attached: subscribing with another fails.
   */
  readonly subscriptionType?: 'shared' | 'keyShared' | 'failover';
  /**
   * `true` (default): the subscription outlives its consumers and keeps
   * messages for them. `false`: it lives only as long as this consumer, sees
   * only messages published after it was made, and is gone when the consumer
   * closes (Pulsar's non-durable subscription, as a reader uses). For
   * messages that are worth having but not worth keeping: a consumer that
   * reconnects resumes after the last message it was given, but messages
   * may be missed (a broker that restarted without them) or seen twice.
   */
  readonly durable?: boolean;
}

export interface Consumer {
  readonly topic: string;
  readonly subscription: string;
  /**
   * The next message. Rejects with an `AbortError` when `signal` aborts (the
   * message it would have returned stays with the consumer for a later call),
   * and with `TransportClosedError` once the consumer is closed.
   */
  receive(signal?: AbortSignal): Promise<ReceivedMessage>;
  /**
   * Between 1 and `max` messages: those already delivered to this consumer,
   * or else the next one and any that arrived with it. It never waits to fill
   * up. Rejects as `receive` does (an abort loses nothing). For consume loops:
   * one promise for many messages.
   */
  receiveMany(max: number, signal?: AbortSignal): Promise<ReceivedMessage[]>;
  /**
   * Up to `max` messages already delivered to this consumer and not yet
   * received, without waiting: none when there are none (or it is closed).
   */
  takeDelivered(max: number): ReceivedMessage[];
  /**
   * Stops delivery of more messages to this consumer (Pulsar: no more
   * permits, also after a reconnect); those already delivered can still be
   * received. For a graceful drain: a worker finishes what it was given, so
   * that no partly settled batch entry goes back to the broker whole.
   */
  pause(): void;
  /**
   * True when the broker will deliver this message again whatever is done
   * with it here: the connection it came on is gone (Pulsar redelivers what
   * a lost consumer held, to any consumer). An ack still counts. A worker
   * does not start such a message: it would run here and wherever its copy
   * goes. False while the delivery is current. Asked of messages this
   * consumer delivered and that are not settled yet.
   */
  isStale(message: ReceivedMessage): boolean;
  /** Settles the message for good. Acking twice is harmless. */
  ack(message: ReceivedMessage): Promise<void>;
  /**
   * Settles many messages for good, as one command where the broker allows
   * (Pulsar's ACK carries many message ids). Same rules as `ack`.
   */
  ackAll(messages: readonly ReceivedMessage[]): Promise<void>;
  /** Hands the message back for redelivery after `delayMs` (default: the transport's). */
  nack(message: ReceivedMessage, delayMs?: number): void;
  /** Stops delivery; everything not acked is redelivered to other consumers. */
  close(): Promise<void>;
  /**
   * Closes the consumer and deletes its subscription, with every message it
   * still held: for a subscription that must not outlive its only consumer
   * (a client's results). Fails if other consumers share the subscription.
   */
  unsubscribe(): Promise<void>;
}

export interface Transport {
  /** `inMemory`, `pulsar`, ...: for logs and error messages. */
  readonly kind: string;
  /**
   * True when every `send` settles within a bound of the transport's own (a
   * send timeout, or sends that never wait). The client then adds no timeout
   * of its own unless asked to (`sendTimeoutSeconds`).
   */
  readonly sendsBounded?: boolean;
  createProducer(topic: string, options?: ProducerOptions): Promise<Producer>;
  subscribe(options: SubscribeOptions): Promise<Consumer>;
  /**
   * Creates the durable subscription if it does not exist, so messages are
   * kept for it. `subscriptionType` (default `shared`) must be the type its
   * consumers use: a subscription keeps one type while consumers are attached.
   */
  ensureSubscription(topic: string, subscription: string, subscriptionType?: SubscribeOptions['subscriptionType']): Promise<void>;
  /**
   * Why the transport cannot reach its broker right now: the last failure to
   * connect (a refused token, a broker that is down) while no connection has
   * succeeded since; null when connected. Optional (a transport without a
   * broker has none). `/readyz` reports it.
   */
  connectionProblem?(): string | null;
  close(): Promise<void>;
}

/** The error `receive(signal)` rejects with when its signal aborts. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const error = new Error('receive aborted', { cause: reason });
  error.name = 'AbortError';
  return error;
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}
