/**
 * Sheaf's Pulsar client alone: produce and consume rates for the same
 * payloads pulsar-perf uses, with producer batching on (as pulsar-perf's
 * default) and off.
 */
import { pino } from 'pino';
import { PulsarTransport } from '../src/transport/pulsar/pulsar-transport.js';

export interface ClientRates {
  readonly produce: number;
  readonly consume: number;
}

export async function sheafClientRates(
  serviceUrl: string,
  namespace: string,
  topic: string,
  size: number,
  messages: number,
  batching: boolean,
): Promise<ClientRates> {
  const transport = new PulsarTransport({
    brokerServiceUrl: serviceUrl,
    namespace,
    logger: pino({ level: 'warn' }),
    producer: batching ? { batchingMaxMessages: 1000, batchingMaxDelayMs: 1, maxPendingMessages: 5000 } : { maxPendingMessages: 5000 },
  });
  try {
    await transport.ensureSubscription(topic, 'bench');
    const producer = await transport.createProducer(topic);
    const payload = new Uint8Array(size).fill(120);
    let started = performance.now();
    const sends: Promise<string>[] = [];
    for (let i = 0; i < messages; i++) sends.push(producer.send({ payload }));
    await Promise.all(sends);
    const produce = messages / ((performance.now() - started) / 1000);
    await producer.close();

    const consumer = await transport.subscribe({ topic, subscription: 'bench', maxUnacked: 5000 });
    started = performance.now();
    for (let i = 0; i < messages; i++) await consumer.ack(await consumer.receive());
    const consume = messages / ((performance.now() - started) / 1000);
    await consumer.close();
    return { produce, consume };
  } finally {
    await transport.close();
  }
}
