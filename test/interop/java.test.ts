/**
 * Sheaf's Pulsar client against the official Java client (the reference), on
 * one broker: every payload, key, ordering key, property and event time is
 * checked by hash in both directions, for each compression codec, batching,
 * chunking, partition routing, a mixed Key_Shared subscription and
 * batch-index acknowledgement.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Consumer, ReceivedMessage } from '../../src/transport/transport.js';
import type { PulsarTransport, PulsarTransportOptions } from '../../src/transport/pulsar/pulsar-transport.js';
import { admin, freshNamespace, noPulsar, pulsarTransport, pulsarUrl } from '../support/pulsar.js';
import { java, javaClasspath, payload, sha, type JavaLine } from './java-client.js';

/** Receives `count` messages, failing after `timeoutMs` with how many came. */
async function receiveAll(consumer: Consumer, count: number, timeoutMs = 30_000): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    while (out.length < count) out.push(await consumer.receive(signal));
  } catch (error) {
    throw new Error(`received ${out.length} of ${count} messages: ${(error as Error).message}`);
  }
  return out;
}

/** Receives until nothing has come for `idleMs`. */
async function receiveUntilIdle(consumer: Consumer, idleMs: number): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  for (;;) {
    try {
      out.push(await consumer.receive(AbortSignal.timeout(idleMs)));
    } catch {
      return out;
    }
  }
}

describe.skipIf(noPulsar())('interop with the official Java client', () => {
  let namespace: string;
  const transports: PulsarTransport[] = [];
  const topic = (name: string): string => `persistent://public/${namespace}/${name}`;
  async function sheaf(options: Partial<PulsarTransportOptions> = {}): Promise<PulsarTransport> {
    const t = await pulsarTransport({ namespace, ...options });
    transports.push(t);
    return t;
  }
  const url = (): string => pulsarUrl();

  beforeAll(async () => {
    await javaClasspath(); // compile once, before the first test's clock starts
    namespace = await freshNamespace();
  }, 600_000);
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
  });

  function expectSameAsJava(received: ReceivedMessage[], sent: JavaLine[], size: number): void {
    const byIndex = new Map(received.map((m) => [Number(m.properties.i), m]));
    expect(byIndex.size).toBe(sent.length);
    for (const line of sent) {
      const i = line.i as number;
      const m = byIndex.get(i)!;
      expect(sha(m.payload)).toBe(line.sha);
      expect(sha(m.payload)).toBe(sha(payload(i, size)));
      expect(m.undecodable).toBeUndefined();
      expect(m.key ?? null).toBe(line.key);
      expect(m.orderingKey ?? null).toBe(line.orderingKey);
      expect(m.eventTime ?? 0).toBe(line.eventTime);
      // Java prints a message outside a batch as ledger:entry:partition; Sheaf adds batch index -1.
      const javaId = line.id as string;
      expect(m.id).toBe(javaId.split(':').length === 3 ? `${javaId}:-1` : javaId);
    }
  }

  describe.each([false, true])('Java producer (batching %s) to a Sheaf consumer', (batching) => {
    test.each(['NONE', 'LZ4', 'ZLIB', 'ZSTD', 'SNAPPY'])('%s: every payload, key, ordering key and event time', async (compression) => {
      const name = `java-to-sheaf-${batching}-${compression}`;
      const t = await sheaf();
      const consumer = await t.subscribe({ topic: topic(name), subscription: 's', maxUnacked: 1000 });
      const producer = await java('produce', {
        url: url(),
        topic: topic(name),
        count: 60,
        size: 300,
        keys: 4,
        orderingKeys: true,
        eventTime: true,
        batching,
        keyBased: true,
        compression,
      });
      const { lines } = await producer.finished;
      const received = await receiveAll(consumer, 60);
      expectSameAsJava(received, lines, 300);
      // With batching the Java client really did batch: several messages share an entry.
      const entries = new Set(received.map((m) => m.id.split(':').slice(0, 2).join(':')));
      if (batching) expect(entries.size).toBeLessThan(60);
      else expect(entries.size).toBe(60);
      for (const m of received) await consumer.ack(m);
    });
  });

  test('Java chunked messages are reassembled; acking one acks every chunk', async () => {
    const t = await sheaf();
    const consumer = await t.subscribe({ topic: topic('java-chunks'), subscription: 's', maxUnacked: 100 });
    const size = 350_000;
    const producer = await java('produce', {
      url: url(),
      topic: topic('java-chunks'),
      count: 3,
      size,
      keys: 1,
      chunking: true,
      chunkMaxMessageSize: 100_000,
    });
    const { lines } = await producer.finished;
    const received = await receiveAll(consumer, 3);
    const byIndex = new Map(received.map((m) => [Number(m.properties.i), m]));
    for (const line of lines) expect(sha(byIndex.get(line.i as number)!.payload)).toBe(line.sha);
    for (const m of received) await consumer.ack(m);
    // Acking the whole message acked every chunk: nothing comes back to a new consumer.
    await consumer.close();
    const again = await t.subscribe({ topic: topic('java-chunks'), subscription: 's', maxUnacked: 100 });
    expect(await receiveUntilIdle(again, 1500)).toEqual([]);
  });

  describe('Sheaf producer to a Java consumer', () => {
    test.each([
      ['none', 1],
      ['none', 10],
      ['lz4', 10],
      ['zlib', 10],
      ['zstd', 10],
      ['snappy', 10],
    ] as const)('%s, batchingMaxMessages %d: payloads, keys, ordering keys, properties, event times', async (compression, batch) => {
      const name = `sheaf-to-java-${compression}-${batch}`;
      const t = await sheaf({ producer: { compression, batchingMaxMessages: batch, batchingMaxDelayMs: 20 } });
      const consumer = await java('consume', { url: url(), topic: topic(name), subscription: 's', count: 40, idleMs: 15_000 });
      await consumer.whenReady();
      const producer = await t.createProducer(topic(name));
      await Promise.all(
        [...Array(40).keys()].map((i) =>
          producer.send({
            payload: payload(i, 500),
            key: `key-${i % 4}`,
            orderingKey: `ok-${i % 4}`,
            eventTime: 1_700_000_000_000 + i,
            properties: { i: String(i), note: 'ü/é' },
          }),
        ),
      );
      const { lines } = await consumer.finished;
      expect(lines).toHaveLength(40);
      for (const line of lines) {
        const props = line.properties as Record<string, string>;
        const i = Number(props.i);
        expect(line.sha).toBe(sha(payload(i, 500)));
        expect(line.key).toBe(`key-${i % 4}`);
        expect(line.orderingKey).toBe(`ok-${i % 4}`);
        expect(line.eventTime).toBe(1_700_000_000_000 + i);
        expect(props.note).toBe('ü/é');
      }
      await producer.close();
    });

    test('a delayed message reaches the Java consumer no earlier than its time', async () => {
      const t = await sheaf();
      const consumer = await java('consume', { url: url(), topic: topic('sheaf-delayed'), subscription: 's', count: 1, idleMs: 15_000 });
      await consumer.whenReady();
      const producer = await t.createProducer(topic('sheaf-delayed'));
      const deliverAt = Date.now() + 1500;
      await producer.send({ payload: payload(0, 10), deliverAt, properties: { i: '0' } });
      const { lines } = await consumer.finished;
      expect(lines[0]!.receivedAt as number).toBeGreaterThanOrEqual(deliverAt);
      await producer.close();
    });

    test('a chunked message from Sheaf is reassembled by the Java client', async () => {
      const t = await sheaf({ producer: { chunking: true, chunkMaxMessageSize: 100_000 } });
      const consumer = await java('consume', { url: url(), topic: topic('sheaf-chunks'), subscription: 's', count: 2, idleMs: 15_000 });
      await consumer.whenReady();
      const producer = await t.createProducer(topic('sheaf-chunks'));
      await Promise.all([0, 1].map((i) => producer.send({ payload: payload(i, 350_000), properties: { i: String(i) } })));
      const { lines } = await consumer.finished;
      expect(lines.map((l) => [Number((l.properties as Record<string, string>).i), l.sha])).toEqual([
        [0, sha(payload(0, 350_000))],
        [1, sha(payload(1, 350_000))],
      ]);
      await producer.close();
    });
  });

  test.each(['javaStringHash', 'murmur3_32Hash'] as const)('%s: a key lands on the same partition from either client', async (scheme) => {
    const name = `routing-${scheme}`;
    await admin('PUT', `persistent/public/${namespace}/${name}/partitions`, 4);
    const t = await sheaf({ producer: { hashingScheme: scheme } });
    const consumer = await t.subscribe({ topic: topic(name), subscription: 's', maxUnacked: 1000 });
    const javaScheme = scheme === 'javaStringHash' ? 'JavaStringHash' : 'Murmur3_32Hash';
    const producer = await java('produce', { url: url(), topic: topic(name), count: 40, keys: 20, hashing: javaScheme, from: 'java' });
    const sheafProducer = await t.createProducer(topic(name));
    await Promise.all(
      [...Array(40).keys()].map((i) =>
        sheafProducer.send({ payload: payload(i, 10), key: `key-${i % 20}`, properties: { from: 'sheaf' } }),
      ),
    );
    await producer.finished;
    const received = await receiveAll(consumer, 80);
    const partitions = new Map<string, Set<string>>();
    const sources = new Map<string, Set<string>>();
    for (const m of received) {
      partitions.set(m.key!, (partitions.get(m.key!) ?? new Set()).add(m.id.split(':')[2]!));
      sources.set(m.key!, (sources.get(m.key!) ?? new Set()).add(m.properties.from!));
    }
    expect(partitions.size).toBe(20);
    for (const [, set] of partitions) expect(set.size).toBe(1);
    for (const [, set] of sources) expect([...set].sort()).toEqual(['java', 'sheaf']);
    // The keys spread over more than one partition, so the check above means something.
    expect(new Set([...partitions.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    for (const m of received) await consumer.ack(m);
    await sheafProducer.close();
  });

  test('a mixed Key_Shared subscription: batched entries from Sheaf route by key, no key reaches both consumers', async () => {
    const name = 'key-shared-mixed';
    const t = await sheaf({ producer: { batchingMaxMessages: 50, batchingMaxDelayMs: 20 } });
    const javaConsumer = await java('consume', { url: url(), topic: topic(name), subscription: 'ks', type: 'Key_Shared', idleMs: 4000 });
    await javaConsumer.whenReady();
    const sheafConsumer = await t.subscribe({ topic: topic(name), subscription: 'ks', maxUnacked: 1000, subscriptionType: 'keyShared' });
    const producer = await t.createProducer(topic(name));
    await Promise.all(
      [...Array(400).keys()].map((i) => producer.send({ payload: payload(i, 20), key: `key-${i % 40}`, properties: { i: String(i) } })),
    );
    const mine = await receiveUntilIdle(sheafConsumer, 4000);
    for (const m of mine) await sheafConsumer.ack(m);
    const { lines } = await javaConsumer.finished;
    const javaKeys = new Set(lines.map((l) => l.key as string));
    const sheafKeys = new Set(mine.map((m) => m.key!));
    expect(lines.length + mine.length).toBe(400);
    expect([...javaKeys].filter((k) => sheafKeys.has(k))).toEqual([]);
    expect(javaKeys.size).toBeGreaterThan(0);
    expect(sheafKeys.size).toBeGreaterThan(0);
    await producer.close();
  });

  describe('batch-index acknowledgement (the broker runs with acknowledgmentAtBatchIndexLevelEnabled)', () => {
    async function sendBatch(t: PulsarTransport, name: string): Promise<void> {
      const producer = await t.createProducer(topic(name));
      await Promise.all(
        [...Array(10).keys()].map((i) => producer.send({ payload: payload(i, 20), key: 'k', properties: { i: String(i) } })),
      );
      await producer.close();
    }

    test('what the Java consumer acked of a batch does not come back to a Sheaf consumer', async () => {
      const name = 'bia-java-then-sheaf';
      const t = await sheaf({ producer: { batchingMaxMessages: 10, batchingMaxDelayMs: 50 }, consumer: { batchIndexAck: true } });
      await t.ensureSubscription(topic(name), 's');
      await sendBatch(t, name);
      const javaConsumer = await java('consume', {
        url: url(),
        topic: topic(name),
        subscription: 's',
        count: 10,
        batchIndexAck: true,
        ack: 'even',
      });
      await javaConsumer.finished;
      const consumer = await t.subscribe({ topic: topic(name), subscription: 's', maxUnacked: 100 });
      const rest = await receiveUntilIdle(consumer, 2000);
      expect(rest.map((m) => Number(m.properties.i)).sort((a, b) => a - b)).toEqual([1, 3, 5, 7, 9]);
      for (const m of rest) await consumer.ack(m);
    });

    test('what a Sheaf consumer acked of a batch does not come back to the Java consumer', async () => {
      const name = 'bia-sheaf-then-java';
      const t = await sheaf({ producer: { batchingMaxMessages: 10, batchingMaxDelayMs: 50 }, consumer: { batchIndexAck: true } });
      const consumer = await t.subscribe({ topic: topic(name), subscription: 's', maxUnacked: 100 });
      await sendBatch(t, name);
      const first = await receiveAll(consumer, 10);
      for (const m of first) if (Number(m.properties.i) % 2 === 0) await consumer.ack(m);
      await consumer.close(); // the odd ones go back to the subscription
      const javaConsumer = await java('consume', { url: url(), topic: topic(name), subscription: 's', idleMs: 3000, batchIndexAck: true });
      const { lines } = await javaConsumer.finished;
      expect(lines.map((l) => Number((l.properties as Record<string, string>).i)).sort((a, b) => a - b)).toEqual([1, 3, 5, 7, 9]);
    });
  });
});
