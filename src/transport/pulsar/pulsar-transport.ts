/**
 * The Pulsar transport: Sheaf's transport contract over Pulsar's binary
 * protocol, in TypeScript. Logical topic names become
 * `persistent://{tenant}/{namespace}/{name}`. One `PulsarClient` (and its
 * pooled connections) serves every producer and consumer of the transport.
 */
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { strictObject, toConfigIssues } from '../../config/issues.js';
import { pulsarTuningShape } from './options-schema.js';
import { ConfigError, TransportClosedError } from '../../errors.js';
import type { Consumer, Producer, ProducerOptions, SubscribeOptions, Transport } from '../transport.js';
import { PulsarClient } from './client.js';
import { NamespaceNotFoundError, PulsarServerError } from './errors.js';
import type { TlsOptions } from './connection.js';
import { PulsarConsumer } from './consumer.js';
import { PulsarProducer, type ProducerSettings } from './producer.js';
import type { CompressionName } from './compression.js';
import type { HashingScheme, RoutingMode } from './routing.js';
import type { ConsumerSettings } from './consumer.js';
import { parseServiceUrl } from './service-url.js';

export interface PulsarTransportOptions {
  /** `pulsar://host:6650` or `pulsar+ssl://host:6651` (several hosts: `pulsar://a:6650,b:6650`). */
  brokerServiceUrl: string;
  /** Default `public`. */
  tenant?: string;
  /** Default `default`. */
  namespace?: string;
  /** Token authentication: the token, or a function returning the current one. */
  authentication?: { token: string | (() => string | Promise<string>) };
  /** TLS for `pulsar+ssl://`: `ca` (PEM) to trust a private CA, `rejectUnauthorized`, a client `cert`/`key`. */
  tls?: TlsOptions;
  /**
   * Send every connection to `brokerServiceUrl`, even when a lookup names
   * another address (as a Pulsar proxy would have it). For a single broker
   * behind Docker port mapping, whose advertised address is unreachable.
   */
  connectThroughServiceUrl?: boolean;
  /** Default 10. */
  connectTimeoutSeconds?: number;
  /** Bound on each request to the broker (lookup, subscribe, ...). Default 30. */
  operationTimeoutSeconds?: number;
  /** PING interval; a broker silent for two intervals is dropped and reconnected. Default 30. */
  keepAliveIntervalSeconds?: number;
  /** Default delay before a nacked message is redelivered. Default 1000 ms. */
  nackRedeliveryDelayMs?: number;
  producer?: {
    /** Messages sent and not yet confirmed, per partition; `send` waits beyond it. Default 1000. */
    maxPendingMessages?: number;
    /**
     * Messages grouped into one batch entry. Default 1000 (the Java client's);
     * 1 sends each on its own. Batching raises throughput (3.5× end to end
     * across processes in bench/). Entries are formed per key and carry it, so
     * Key_Shared routes them as it routes single messages; without
     * `consumer.batchIndexAck` an entry is acked only whole, and a nack or a
     * crash redelivers the whole entry.
     */
    batchingMaxMessages?: number;
    /** How long a partial batch waits. Default 1 ms. */
    batchingMaxDelayMs?: number;
    /** Bytes per batch entry. Default 128 KiB (never more than the broker's maxMessageSize). */
    batchingMaxBytes?: number;
    /** Payload compression: `none` (default), `lz4`, `zlib`, `zstd` or `snappy`. Consumers read all of them. */
    compression?: CompressionName;
    /**
     * Split a message over the broker's maxMessageSize into chunks (reassembled
     * by consumers). Off: such a send rejects with `MessageTooLargeError`.
     * Chunks of one message must reach one consumer: use it with one consumer
     * per subscription or with Key_Shared.
     */
    chunking?: boolean;
    /** Largest chunk in bytes. Default: the broker's maxMessageSize. */
    chunkMaxMessageSize?: number;
    /** A message the broker has not confirmed by then fails with `SendTimeoutError`. Default 30; 0: wait for ever. */
    sendTimeoutSeconds?: number;
    /** Partition of a message without a key: `roundRobin` (default) or `singlePartition`, as the Java client names them. */
    routingMode?: RoutingMode;
    /** Partition of a keyed message: `javaStringHash` (default, as the Java client) or `murmur3_32Hash`. */
    hashingScheme?: HashingScheme;
  };
  consumer?: {
    /**
     * Ack each message of a batch entry at once (the broker must run with
     * acknowledgmentAtBatchIndexLevelEnabled=true). Off (default): an entry is
     * acked when all its messages are, and a nack redelivers it whole.
     */
    batchIndexAck?: boolean;
    /** Chunked messages reassembled at once; past it the oldest is given up (dead-lettered). Default 10. */
    maxPendingChunkedMessages?: number;
    /** An incomplete chunked message is given up after this long. Default 60. */
    expireIncompleteChunkedMessageSeconds?: number;
    /** The largest chunked message reassembled. Default 64 MiB. */
    maxChunkedMessageBytes?: number;
  };
  logger?: Logger;
}

const topicPart = z.string().regex(/^[A-Za-z0-9_.=-]+$/, { error: 'must hold only letters, digits and _ . = -' });

const optionsSchema = strictObject({
  brokerServiceUrl: z.string({ error: 'must be a URL like pulsar://localhost:6650' }).refine(
    (url) => {
      try {
        parseServiceUrl(url);
        return true;
      } catch {
        return false;
      }
    },
    { error: 'must look like pulsar://host:6650 or pulsar+ssl://host:6651' },
  ),
  tenant: topicPart.optional(),
  namespace: topicPart.optional(),
  authentication: strictObject({
    token: z.union([z.string().min(1, { error: 'must not be empty' }), z.custom<() => string>((v) => typeof v === 'function')], {
      error: 'must be a token string or a function returning one',
    }),
  }).optional(),
  tls: z.record(z.string(), z.unknown()).optional(),
  ...pulsarTuningShape,
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null).optional(),
});

export class PulsarTransport implements Transport {
  readonly kind = 'pulsar';
  /** True unless producer.sendTimeoutSeconds is 0: every send then ends within it. */
  readonly sendsBounded: boolean;
  private readonly client: PulsarClient;
  private readonly prefix: string;
  /** The tenant and namespace of logical topic names. */
  readonly tenant: string;
  readonly namespace: string;
  private readonly producers = new Set<Producer>();
  private readonly consumers = new Set<Consumer>();
  private readonly nackDelayMs: number;
  private readonly producerSettings: ProducerSettings;
  private readonly consumerSettings: Pick<
    ConsumerSettings,
    'nackRedeliveryDelayMs' | 'batchIndexAck' | 'maxPendingChunkedMessages' | 'chunkExpireMs' | 'maxChunkedMessageBytes'
  >;
  private closed = false;

  constructor(options: PulsarTransportOptions) {
    const parsed = optionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: 'pulsar transport options' });
    const o = parsed.data;
    this.tenant = o.tenant ?? 'public';
    this.namespace = o.namespace ?? 'default';
    this.prefix = `persistent://${this.tenant}/${this.namespace}/`;
    this.nackDelayMs = o.nackRedeliveryDelayMs ?? 1000;
    const p = o.producer ?? {};
    this.producerSettings = {
      maxPendingMessages: p.maxPendingMessages ?? 1000,
      batchingMaxMessages: p.batchingMaxMessages ?? 1000,
      batchingMaxDelayMs: p.batchingMaxDelayMs ?? 1,
      ...(p.batchingMaxBytes !== undefined ? { batchingMaxBytes: p.batchingMaxBytes } : {}),
      ...(p.compression !== undefined ? { compression: p.compression } : {}),
      ...(p.chunking !== undefined ? { chunking: p.chunking } : {}),
      ...(p.chunkMaxMessageSize !== undefined ? { chunkMaxMessageSize: p.chunkMaxMessageSize } : {}),
      ...(p.sendTimeoutSeconds !== undefined ? { sendTimeoutMs: p.sendTimeoutSeconds * 1000 } : {}),
      ...(p.routingMode !== undefined ? { routingMode: p.routingMode } : {}),
      ...(p.hashingScheme !== undefined ? { hashingScheme: p.hashingScheme } : {}),
    };
    this.sendsBounded = p.sendTimeoutSeconds !== 0;
    const c = o.consumer ?? {};
    this.consumerSettings = {
      nackRedeliveryDelayMs: this.nackDelayMs,
      ...(c.batchIndexAck !== undefined ? { batchIndexAck: c.batchIndexAck } : {}),
      ...(c.maxPendingChunkedMessages !== undefined ? { maxPendingChunkedMessages: c.maxPendingChunkedMessages } : {}),
      ...(c.expireIncompleteChunkedMessageSeconds !== undefined ? { chunkExpireMs: c.expireIncompleteChunkedMessageSeconds * 1000 } : {}),
      ...(c.maxChunkedMessageBytes !== undefined ? { maxChunkedMessageBytes: c.maxChunkedMessageBytes } : {}),
    };
    this.client = new PulsarClient({
      serviceUrl: o.brokerServiceUrl,
      connectThroughServiceUrl: o.connectThroughServiceUrl ?? false,
      logger: (o.logger ?? pino({ name: 'sheaf', level: 'info' })).child({ transport: 'pulsar' }),
      ...(options.authentication ? { token: options.authentication.token } : {}),
      ...(options.tls ? { tls: options.tls } : {}),
      connectTimeoutMs: (o.connectTimeoutSeconds ?? 10) * 1000,
      operationTimeoutMs: (o.operationTimeoutSeconds ?? 30) * 1000,
      keepAliveIntervalMs: (o.keepAliveIntervalSeconds ?? 30) * 1000,
    });
  }

  /** The full Pulsar topic name of a logical one. */
  topicName(topic: string): string {
    return topic.includes('://') ? topic : `${this.prefix}${topic}`;
  }

  /** The client's last failure to connect, while no connection has opened since (see `Transport.connectionProblem`). */
  connectionProblem(): string | null {
    return this.client.connectionProblem;
  }

  async createProducer(topic: string, options: ProducerOptions = {}): Promise<Producer> {
    this.assertOpen();
    const settings = {
      ...this.producerSettings,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.access === 'exclusive' ? { access: 'exclusive' as const } : {}),
    };
    const producer = await this.explained(PulsarProducer.create(this.client, this.topicName(topic), settings));
    this.producers.add(producer);
    const exclusive = options.access === 'exclusive';
    return {
      topic,
      lastSequenceId: producer.lastSequenceId,
      epoch: exclusive ? producer.epoch : undefined,
      fenced: exclusive ? producer.fenced : undefined,
      send: (message) => producer.send(message),
      close: async () => {
        this.producers.delete(producer);
        await producer.close();
      },
    };
  }

  async subscribe(options: SubscribeOptions): Promise<Consumer> {
    this.assertOpen();
    const consumer = await this.explained(
      PulsarConsumer.create(this.client, this.topicName(options.topic), {
        subscription: options.subscription,
        subscriptionType: options.subscriptionType ?? 'shared',
        maxUnacked: options.maxUnacked,
        ...(options.durable === false ? { durable: false } : {}),
        ...this.consumerSettings,
      }),
    );
    this.consumers.add(consumer);
    const close = consumer.close.bind(consumer);
    const unsubscribe = consumer.unsubscribe.bind(consumer);
    consumer.close = async () => {
      this.consumers.delete(consumer);
      await close();
    };
    consumer.unsubscribe = async () => {
      this.consumers.delete(consumer);
      await unsubscribe();
    };
    return consumer;
  }

  async ensureSubscription(
    topic: string,
    subscription: string,
    subscriptionType: SubscribeOptions['subscriptionType'] = 'shared',
  ): Promise<void> {
    this.assertOpen();
    // Subscribing creates the durable subscription; asking for no messages keeps it from taking any. Of the
    // subscription's own type: the broker refuses another while its consumers are attached.
    const consumer = await this.explained(
      PulsarConsumer.create(this.client, this.topicName(topic), {
        subscription,
        subscriptionType,
        maxUnacked: 1,
        nackRedeliveryDelayMs: this.nackDelayMs,
        flow: false,
      }),
    );
    await consumer.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.consumers].map((c) => c.close()));
    await Promise.allSettled([...this.producers].map((p) => p.close()));
    await this.client.close();
  }

  /** Turns the broker's "TopicNotFound: Namespace not found" into an error that names the namespace and the fix. */
  private async explained<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (error instanceof PulsarServerError && error.serverError === 'TopicNotFound' && /namespace not found/i.test(error.message)) {
        throw new NamespaceNotFoundError(this.tenant, this.namespace, { cause: error });
      }
      throw error;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new TransportClosedError('the Pulsar transport is closed');
  }
}
