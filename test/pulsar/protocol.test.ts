/**
 * What the Pulsar client does beyond the transport contract, against the real
 * broker: batched entries, Key_Shared routing, partitioned topics, and
 * surviving broker-initiated closes. Each test has a namespace of its own.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test } from 'vitest';
import type { PulsarTransport } from '../../src/transport/pulsar/pulsar-transport.js';
import type { Consumer, ReceivedMessage } from '../../src/transport/transport.js';
import { admin, noPulsar, pulsarTransport } from '../support/pulsar.js';
import { DEDUPLICATED } from '../../src/transport/transport.js';

const text = (m: ReceivedMessage): string => new TextDecoder().decode(m.payload);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

async function receiveN(consumer: Consumer, n: number): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  for (let i = 0; i < n; i++) out.push(await consumer.receive());
  return out;
}

/** Receives and acks `total` messages across the consumers; per group, which consumers got its messages. */
async function ownersByGroup(
  consumers: Consumer[],
  total: number,
  groupOf: (m: ReceivedMessage) => string,
): Promise<Map<string, Set<number>>> {
  const owners = new Map<string, Set<number>>();
  let received = 0;
  const allIn = new AbortController();
  await Promise.all(
    consumers.map(async (consumer, index) => {
      for (;;) {
        const m = await consumer.receive(allIn.signal).catch(() => null);
        if (!m) return;
        const group = groupOf(m);
        if (!owners.has(group)) owners.set(group, new Set());
        owners.get(group)!.add(index);
        await consumer.ack(m);
        received += 1;
        if (received === total) allIn.abort();
      }
    }),
  );
  return owners;
}

describe.skipIf(noPulsar())('Pulsar client against a real broker', () => {
  const opened: PulsarTransport[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.close()));
  });
  async function transport(options: Parameters<typeof pulsarTransport>[0] = {}): Promise<PulsarTransport> {
    const t = await pulsarTransport(options);
    opened.push(t);
    return t;
  }

  test('batched entries: messages travel in one entry and come out one by one; the entry is acked once all are', async () => {
    const t = await transport({ producer: { batchingMaxMessages: 5, batchingMaxDelayMs: 50 } });
    const consumer = await t.subscribe({ topic: 'batched', subscription: 's', maxUnacked: 100 });
    const producer = await t.createProducer('batched');
    const ids = await Promise.all(
      [...Array(5)].map((_, i) => producer.send({ payload: bytes(`m${i}`), key: 'k', properties: { i: String(i) } })),
    );
    // One entry: the ids share ledger and entry, and differ by batch index.
    expect(new Set(ids.map((id) => id.split(':').slice(0, 2).join(':'))).size).toBe(1);
    expect(ids.map((id) => id.split(':')[3])).toEqual(['0', '1', '2', '3', '4']);
    const received = await receiveN(consumer, 5);
    expect(received.map(text)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(received.map((m) => m.id)).toEqual(ids);
    expect(received.map((m) => [m.key, m.properties.i])).toEqual(ids.map((_, i) => ['k', String(i)]));
    for (const m of received) await consumer.ack(m);
    // Acked entries do not come back to a new consumer of the subscription; the next message does.
    await consumer.close();
    const again = await t.subscribe({ topic: 'batched', subscription: 's', maxUnacked: 100 });
    await producer.send({ payload: bytes('after') });
    expect(text(await again.receive())).toBe('after');
  });

  test('a named producer keeps each message its own sequence id while sends wait for room; the broker stores every one once', async () => {
    const t = await transport({ producer: { maxPendingMessages: 10 } });
    const consumer = await t.subscribe({ topic: 'named', subscription: 's', maxUnacked: 500 });
    const producer = await t.createProducer('named', { name: 'dispatcher-1' });
    // 300 sends at once through room for 10: most wait, and later ones claim their ids meanwhile.
    const ids = await Promise.all([...Array(300).keys()].map((i) => producer.send({ payload: bytes(`m${i}`), sequenceId: 1000 + i })));
    expect(ids).not.toContain(DEDUPLICATED);
    const received = await receiveN(consumer, 300);
    expect(received.map(text)).toEqual([...Array(300).keys()].map((i) => `m${i}`));
    await producer.close();
    // The broker stored them under their own ids: the last is 1299.
    const again = await t.createProducer('named', { name: 'dispatcher-1' });
    expect(again.lastSequenceId).toBe(1299);
    await again.close();
  });

  test('a message sent while nothing is in flight leaves at the end of the turn, not after batchingMaxDelayMs; a burst shares an entry', async () => {
    // A delay longer than the test's timeout: a send that waited for it would fail the test.
    const t = await transport({ producer: { batchingMaxMessages: 100, batchingMaxDelayMs: 600_000 } });
    const producer = await t.createProducer('idle-flush');
    const lone = await producer.send({ payload: bytes('lone'), key: 'k' });
    expect(lone.split(':')[3]).toBe('0');
    const burst = await Promise.all([...Array(5)].map((_, i) => producer.send({ payload: bytes(`b${i}`), key: 'k' })));
    expect(new Set(burst.map((id) => id.split(':').slice(0, 2).join(':'))).size).toBe(1);
    expect(burst.map((id) => id.split(':')[3])).toEqual(['0', '1', '2', '3', '4']);
  }, 20_000);

  test("key-based batching: one entry per key, in each key's order", async () => {
    const t = await transport({ producer: { batchingMaxMessages: 6, batchingMaxDelayMs: 50 } });
    const consumer = await t.subscribe({ topic: 'by-key', subscription: 's', maxUnacked: 100 });
    const producer = await t.createProducer('by-key');
    const keys = ['a', 'b', 'a', 'b', 'a', 'b'];
    const ids = await Promise.all(keys.map((key, i) => producer.send({ payload: bytes(`m${i}`), key })));
    const entryOf = (id: string): string => id.split(':').slice(0, 2).join(':');
    const entries = new Map<string, Set<string>>();
    ids.forEach((id, i) => entries.set(entryOf(id), (entries.get(entryOf(id)) ?? new Set()).add(keys[i]!)));
    expect([...entries.values()].map((k) => [...k])).toEqual([['a'], ['b']]);
    const received = await receiveN(consumer, 6);
    expect(received.filter((m) => m.key === 'a').map(text)).toEqual(['m0', 'm2', 'm4']);
    expect(received.filter((m) => m.key === 'b').map(text)).toEqual(['m1', 'm3', 'm5']);
    for (const m of received) await consumer.ack(m);
  });

  test('batched entries: nacking one message redelivers its entry, counted', async () => {
    const t = await transport({ producer: { batchingMaxMessages: 3, batchingMaxDelayMs: 50 } });
    const consumer = await t.subscribe({ topic: 'batched-nack', subscription: 's', maxUnacked: 100 });
    const producer = await t.createProducer('batched-nack');
    await Promise.all(['a', 'b', 'c'].map((x) => producer.send({ payload: bytes(x) })));
    const [a, b, c] = await receiveN(consumer, 3);
    await consumer.ack(a!);
    consumer.nack(b!, 10);
    await consumer.ack(c!);
    const redelivered = await receiveN(consumer, 3);
    expect(redelivered.map(text)).toEqual(['a', 'b', 'c']);
    expect(redelivered.every((m) => m.redeliveryCount === 1)).toBe(true);
  });

  test('Key_Shared: all messages with one key go to one consumer', async () => {
    const t = await transport();
    const topic = 'key-shared';
    const consumers = await Promise.all(
      [0, 1].map(() => t.subscribe({ topic, subscription: 'ks', maxUnacked: 1000, subscriptionType: 'keyShared' })),
    );
    const producer = await t.createProducer(topic);
    const keys = [...Array(20)].map((_, i) => `key-${i}`);
    const total = 200;
    await Promise.all([...Array(total)].map((_, i) => producer.send({ payload: bytes(`${i}`), key: keys[i % keys.length] })));
    const seenBy = await ownersByGroup(consumers, total, (m) => m.key!);
    expect(seenBy.size).toBe(keys.length);
    for (const owners of seenBy.values()) expect(owners.size).toBe(1);
    // Both consumers got some keys: routing spread the key space.
    expect(new Set([...seenBy.values()].map((s) => [...s][0])).size).toBe(2);
  });

  test('Key_Shared routes by the ordering key when one is set', async () => {
    const t = await transport();
    const topic = 'ordering-key';
    const consumers = await Promise.all(
      [0, 1].map(() => t.subscribe({ topic, subscription: 'ks', maxUnacked: 1000, subscriptionType: 'keyShared' })),
    );
    const producer = await t.createProducer(topic);
    const total = 120;
    // Every message has its own key; the ordering keys name 6 groups.
    await Promise.all(
      [...Array(total)].map((_, i) => producer.send({ payload: bytes(`${i}`), key: `unique-${i}`, orderingKey: `group-${i % 6}` })),
    );
    const ownerOfGroup = await ownersByGroup(consumers, total, (m) => `group-${Number(text(m)) % 6}`);
    expect(ownerOfGroup.size).toBe(6);
    for (const owners of ownerOfGroup.values()) expect(owners.size).toBe(1);
  });

  test('partitioned topics: producers and consumers span every partition; a key keeps to one partition', async () => {
    const t = await transport();
    const topic = `parted-${randomUUID().slice(0, 6)}`;
    await admin('PUT', `persistent/${t.topicName(topic).slice('persistent://'.length)}/partitions`, 3);
    const consumer = await t.subscribe({ topic, subscription: 's', maxUnacked: 300 });
    const producer = await t.createProducer(topic);
    const ids = await Promise.all([...Array(60)].map((_, i) => producer.send({ payload: bytes(`${i}`), key: `k${i % 6}` })));
    const partitionsUsed = new Set(ids.map((id) => id.split(':')[2]));
    expect(partitionsUsed).toEqual(new Set(['0', '1', '2']));
    const received = await receiveN(consumer, 60);
    expect(received.map(text).sort()).toEqual([...Array(60)].map((_, i) => `${i}`).sort());
    const partitionOfKey = new Map<string, Set<string>>();
    for (const m of received) {
      if (!partitionOfKey.has(m.key!)) partitionOfKey.set(m.key!, new Set());
      partitionOfKey.get(m.key!)!.add(m.id.split(':')[2]!);
      expect(m.topic).toMatch(/-partition-[0-2]$/);
      await consumer.ack(m);
    }
    for (const partitions of partitionOfKey.values()) expect(partitions.size).toBe(1);
  });

  test('a topic unloaded by the broker: producer and consumer are closed by it, come back, and nothing is lost', async () => {
    const t = await transport();
    const topic = 'unloaded';
    const consumer = await t.subscribe({ topic, subscription: 's', maxUnacked: 100 });
    const producer = await t.createProducer(topic);
    await producer.send({ payload: bytes('before') });
    expect(text(await consumer.receive())).toBe('before');
    // The unloaded-and-held message comes again after the consumer resubscribes.
    await admin('PUT', `persistent/${t.topicName(topic).slice('persistent://'.length)}/unload`);
    await producer.send({ payload: bytes('after') });
    const seen: string[] = [];
    while (!seen.includes('after')) {
      const m = await consumer.receive();
      seen.push(text(m));
      await consumer.ack(m);
    }
    expect(seen).toContain('after');
  });
});
