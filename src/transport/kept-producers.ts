/**
 * Producers opened once per topic, each after the durable subscription that
 * keeps its messages: a broker may drop what is published to a topic that
 * has no subscription yet. A producer that failed to open is forgotten, so
 * the next call tries again. For the client's task producers, the worker's
 * job-event producer and the job tracker's callback producers.
 */
import type { Producer, ProducerOptions, SubscribeOptions, Transport } from './transport.js';

/** What keeps a topic's messages until they are read: its subscription and that subscription's type. */
export interface KeptBy {
  readonly subscription: string;
  readonly subscriptionType?: SubscribeOptions['subscriptionType'];
}

/** One producer per topic, opened on first use after `keptBy` exists; `close()` closes those that opened. */
export class KeptProducers {
  private readonly producers = new Map<string, Promise<Producer>>();

  constructor(
    private readonly transport: Transport,
    private readonly keptBy: KeptBy,
    /** How every producer opens (a job's resumable dispatch names them after the job). */
    private readonly producerOptions: ProducerOptions = {},
  ) {}

  /** The producer of `topic`, opening it (and the subscription) the first time. */
  get(topic: string): Promise<Producer> {
    let producer = this.producers.get(topic);
    if (!producer) {
      producer = this.transport
        .ensureSubscription(topic, this.keptBy.subscription, this.keptBy.subscriptionType)
        .then(() => this.transport.createProducer(topic, this.producerOptions));
      producer.catch(() => this.producers.delete(topic));
      this.producers.set(topic, producer);
    }
    return producer;
  }

  /** Closes every producer that opened (one that failed to open has nothing to close). */
  async close(): Promise<void> {
    const opened = await Promise.all([...this.producers.values()].map((p) => p.catch(() => null)));
    this.producers.clear();
    await Promise.all(opened.map((p) => p?.close()));
  }
}
