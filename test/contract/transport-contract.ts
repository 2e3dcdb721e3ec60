/**
 * The transport contract suite. Every transport runs it: the in-memory one in
 * `memory.test.ts`, the Pulsar one against a real broker. Each test uses its
 * own topics, so the suite can share one broker and run against leftovers.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DEDUPLICATED, type Consumer, type ReceivedMessage, type Transport } from '../../src/transport/transport.js';
import { ProducerBusyError, TransportClosedError } from '../../src/errors.js';

export interface ContractTarget {
  readonly name: string;
  /** Skip the suite (no broker for this transport). */
  readonly skip?: boolean;
  create(): Promise<Transport>;
}

const text = (m: ReceivedMessage): string => new TextDecoder().decode(m.payload);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export function describeTransportContract(target: ContractTarget): void {
  describe.skipIf(target.skip ?? false)(`transport contract: ${target.name}`, () => {
    let transport: Transport;
    let topic: string;

    beforeEach(async () => {
      transport = await target.create();
      topic = `contract-${randomUUID().slice(0, 8)}`;
    });
    afterEach(async () => {
      await transport.close();
    });

    async function consumer(subscription = 'sub', maxUnacked = 100): Promise<Consumer> {
      return transport.subscribe({ topic, subscription, maxUnacked });
    }

    test('a message arrives with its payload, key, properties and publish time', async () => {
      const c = await consumer();
      const producer = await transport.createProducer(topic);
      const before = Date.now();
      const id = await producer.send({ payload: bytes('hello'), key: 'k1', properties: { a: '1', b: 'two' } });
      const m = await c.receive();
      expect(text(m)).toBe('hello');
      expect(m.id).toBe(id);
      expect(m.key).toBe('k1');
      expect(m.properties).toEqual({ a: '1', b: 'two' });
      expect(m.redeliveryCount).toBe(0);
      expect(m.topic).toContain(topic);
      expect(m.publishTime).toBeGreaterThanOrEqual(before - 1000);
      await c.ack(m);
    });

    test('every subscription sees every message; consumers of one subscription share them', async () => {
      const a1 = await consumer('a', 3);
      const a2 = await consumer('a', 3);
      const b = await consumer('b', 10);
      const producer = await transport.createProducer(topic);
      for (let i = 0; i < 6; i++) await producer.send({ payload: bytes(`m${i}`) });
      // Each consumer of `a` holds at most 3, so six messages are split between the two.
      const fromA = await Promise.all([...Array(3)].flatMap(() => [a1.receive(), a2.receive()]));
      expect(fromA.map(text).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
      const fromB = [];
      for (let i = 0; i < 6; i++) fromB.push(text(await b.receive()));
      expect(fromB.sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
    });

    test('ensureSubscription keeps messages published before any consumer connects', async () => {
      await transport.ensureSubscription(topic, 'durable');
      const producer = await transport.createProducer(topic);
      await producer.send({ payload: bytes('kept') });
      const c = await consumer('durable');
      expect(text(await c.receive())).toBe('kept');
    });

    test('a non-durable subscription sees only what is published while its consumer lives', async () => {
      // A durable subscription keeps 'before' on the topic, so a reader that saw it would have started too early.
      await transport.ensureSubscription(topic, 'keeper');
      const producer = await transport.createProducer(topic);
      await producer.send({ payload: bytes('before') });
      const options = { topic, subscription: 'reader', maxUnacked: 10, durable: false };
      const reader = await transport.subscribe(options);
      await producer.send({ payload: bytes('during') });
      const during = await reader.receive();
      expect(text(during)).toBe('during');
      await reader.ack(during);
      await reader.close();
      await producer.send({ payload: bytes('between') });
      // Same name again: a new subscription, not the old one kept.
      const again = await transport.subscribe(options);
      await producer.send({ payload: bytes('after') });
      expect(text(await again.receive())).toBe('after');
      await again.close();
      const keeper = await consumer('keeper');
      expect((await keeper.receiveMany(10)).map(text)).toEqual(['before', 'during', 'between', 'after']);
    });

    test('failover: one consumer at a time gets every message; when it closes, another takes over with what it held', async () => {
      const options = { topic, subscription: 'owner', maxUnacked: 100, subscriptionType: 'failover' as const };
      const consumers = [await transport.subscribe(options), await transport.subscribe(options)];
      const producer = await transport.createProducer(topic);
      for (let i = 0; i < 6; i++) await producer.send({ payload: bytes(`m${i}`) });
      // Which one the broker makes active is its choice; the other gets nothing.
      const stop = new AbortController();
      const first = await Promise.race(consumers.map((c) => c.receive(stop.signal).then((m) => ({ active: c, m }))));
      stop.abort();
      const { active } = first;
      const standby = consumers.find((c) => c !== active)!;
      const received = [first.m];
      while (received.length < 6) received.push(...(await active.receiveMany(6 - received.length)));
      expect(received.map(text)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
      expect(standby.takeDelivered(10)).toEqual([]);
      await active.ackAll(received.slice(0, 3));
      await active.close();
      await producer.send({ payload: bytes('m6') });
      const taken: ReceivedMessage[] = [];
      while (taken.length < 4) taken.push(...(await standby.receiveMany(4 - taken.length)));
      expect(taken.map(text)).toEqual(['m3', 'm4', 'm5', 'm6']);
    });

    test('an acked message is never delivered again; an unacked one is when its consumer closes', async () => {
      const first = await consumer('s', 10);
      const producer = await transport.createProducer(topic);
      await producer.send({ payload: bytes('acked') });
      await producer.send({ payload: bytes('unacked') });
      const m1 = await first.receive();
      const m2 = await first.receive();
      expect([text(m1), text(m2)]).toEqual(['acked', 'unacked']);
      await first.ack(m1);
      await first.close();
      const second = await consumer('s', 10);
      const again = await second.receive();
      expect(text(again)).toBe('unacked');
      expect(again.id).toBe(m2.id);
      expect(again.redeliveryCount).toBe(0); // only nacks count
      await producer.send({ payload: bytes('next') });
      expect(text(await second.receive())).toBe('next');
    });

    test('nack hands a message back for redelivery with its count one higher', async () => {
      const c = await consumer('s', 10);
      const producer = await transport.createProducer(topic);
      await producer.send({ payload: bytes('retry me') });
      const m = await c.receive();
      c.nack(m, 50);
      const again = await c.receive();
      expect(text(again)).toBe('retry me');
      expect(again.redeliveryCount).toBe(1);
      c.nack(again, 50);
      expect((await c.receive()).redeliveryCount).toBe(2);
    });

    test('flow control: a consumer holds at most maxUnacked; the rest go to other consumers', async () => {
      const small = await consumer('s', 2);
      const producer = await transport.createProducer(topic);
      for (let i = 0; i < 3; i++) await producer.send({ payload: bytes(`m${i}`) });
      const held = [await small.receive(), await small.receive()];
      // `small` is full: the third message can only go to a consumer with room.
      const other = await consumer('s', 10);
      const third = await other.receive();
      expect([...held.map(text), text(third)].sort()).toEqual(['m0', 'm1', 'm2']);
      // Acking makes room again.
      await small.ack(held[0]!);
      await other.close();
      const redelivered = await small.receive();
      expect(text(redelivered)).toBe(text(third));
    });

    test('a delayed message is not delivered before its time, and does not hold back others', async () => {
      const c = await consumer('s', 10);
      const producer = await transport.createProducer(topic);
      const deliverAt = Date.now() + 1500;
      await producer.send({ payload: bytes('later'), deliverAt });
      await producer.send({ payload: bytes('now') });
      const m1 = await c.receive();
      expect(text(m1)).toBe('now');
      const m2 = await c.receive();
      expect(text(m2)).toBe('later');
      // 50 ms of slack for the broker's and this process's clocks.
      expect(Date.now()).toBeGreaterThanOrEqual(deliverAt - 50);
    });

    test('receive(signal) rejects with AbortError on abort, and the next message still arrives', async () => {
      const c = await consumer('s', 10);
      const controller = new AbortController();
      const pending = c.receive(controller.signal);
      controller.abort();
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
      const producer = await transport.createProducer(topic);
      await producer.send({ payload: bytes('after abort') });
      expect(text(await c.receive())).toBe('after abort');
    });

    test('receiveMany gives 1 to max messages at a time, in order, and waits for the next when none is there', async () => {
      const c = await consumer('s', 20);
      const producer = await transport.createProducer(topic);
      await Promise.all([...Array(7).keys()].map((i) => producer.send({ payload: bytes(`m${i}`) })));
      const got: string[] = [];
      while (got.length < 7) {
        const many = await c.receiveMany(3);
        expect(many.length).toBeGreaterThanOrEqual(1);
        expect(many.length).toBeLessThanOrEqual(3);
        got.push(...many.map(text));
      }
      expect(got.sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
      const waiting = c.receiveMany(10);
      await producer.send({ payload: bytes('late') });
      expect((await waiting).map(text)).toEqual(['late']);
      const controller = new AbortController();
      const aborted = c.receiveMany(10, controller.signal);
      controller.abort();
      await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    });

    test('ackAll settles every message it names, and only those', async () => {
      const first = await consumer('s', 10);
      const producer = await transport.createProducer(topic);
      for (const name of ['a', 'b', 'c']) await producer.send({ payload: bytes(name) });
      const held = [await first.receive(), await first.receive(), await first.receive()];
      await first.ackAll(held.filter((m) => text(m) !== 'b'));
      await first.close();
      const second = await consumer('s', 10);
      const again = await second.receive();
      expect(text(again)).toBe('b');
      await second.ackAll([again]);
      await producer.send({ payload: bytes('next') });
      // Had anything else come back, it would arrive before 'next'.
      expect(text(await second.receive())).toBe('next');
    });

    test('pause: a consumer is given nothing more, even once it acks; takeDelivered never waits', async () => {
      const c = await consumer('s', 10);
      expect(c.takeDelivered(10)).toEqual([]);
      const producer = await transport.createProducer(topic);
      // One at a time: a batching producer would put them in one entry, which the broker delivers whole.
      for (let i = 0; i < 20; i++) await producer.send({ payload: bytes(`m${i}`) });
      const window: ReceivedMessage[] = [];
      while (window.length < 10) window.push(...(await c.receiveMany(10 - window.length)));
      c.pause();
      await c.ackAll(window);
      // Its window is used up and no new one is granted: the other ten go to another consumer.
      const other = await consumer('s', 20);
      const rest: ReceivedMessage[] = [];
      while (rest.length < 10) rest.push(...(await other.receiveMany(10)));
      expect([...window, ...rest].map(text).sort()).toEqual([...Array(20).keys()].map((i) => `m${i}`).sort());
      expect(c.takeDelivered(10)).toEqual([]);
    });

    test('a named producer resumes after the last sequence id stored for its name; repeats are dropped, never delivered', async () => {
      const c = await consumer('s', 100);
      const name = `dispatcher-${randomUUID().slice(0, 8)}`;
      const first = await transport.createProducer(topic, { name });
      expect(first.lastSequenceId).toBe(-1);
      for (let i = 0; i < 5; i++) await first.send({ payload: bytes(`m${i}`), sequenceId: i });
      // A sequence id at or below one this producer used would be dropped by the broker: refused instead.
      await expect(first.send({ payload: bytes('again'), sequenceId: 4 })).rejects.toBeInstanceOf(RangeError);
      await first.close();

      const second = await transport.createProducer(topic, { name });
      expect(second.lastSequenceId).toBe(4);
      const resent = await Promise.all([3, 4, 5, 6].map((i) => second.send({ payload: bytes(`m${i}`), sequenceId: i })));
      expect(resent.slice(0, 2)).toEqual([DEDUPLICATED, DEDUPLICATED]);
      expect(resent.slice(2)).not.toContain(DEDUPLICATED);
      await second.close();

      const received: string[] = [];
      while (received.length < 7) {
        const batch = await c.receiveMany(10);
        received.push(...batch.map(text));
        await c.ackAll(batch);
      }
      expect(received).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
      // Nothing more: the repeats were never stored. A marker sent last arrives next.
      const marker = await transport.createProducer(topic);
      await marker.send({ payload: bytes('end') });
      expect(text(await c.receive())).toBe('end');
    });

    test("an exclusive producer is the topic's only writer; each producer that takes the topic after it holds a higher epoch", async () => {
      const c = await consumer('s', 10);
      const first = await transport.createProducer(topic, { access: 'exclusive' });
      expect(first.epoch).toEqual(expect.any(Number));
      expect(first.fenced).toBeInstanceOf(Promise);
      await expect(transport.createProducer(topic, { access: 'exclusive' })).rejects.toBeInstanceOf(ProducerBusyError);
      await expect(transport.createProducer(topic)).rejects.toBeInstanceOf(ProducerBusyError);
      await first.send({ payload: bytes('from first') });
      expect(text(await c.receive())).toBe('from first');
      await first.close();

      const second = await transport.createProducer(topic, { access: 'exclusive' });
      expect(second.epoch).toBeGreaterThan(first.epoch!);
      await second.send({ payload: bytes('from second') });
      expect(text(await c.receive())).toBe('from second');
      await second.close();
      // Free again for anyone; a shared producer has no epoch.
      const shared = await transport.createProducer(topic);
      expect(shared.epoch).toBeUndefined();
      await expect(transport.createProducer(topic, { access: 'exclusive' })).rejects.toBeInstanceOf(ProducerBusyError);
      await shared.close();
    });

    test('a closed consumer rejects receive, and so do waiting receives', async () => {
      const c = await consumer('s', 10);
      const waiting = c.receive();
      waiting.catch(() => undefined); // asserted below, after the close
      await c.close();
      await expect(waiting).rejects.toBeInstanceOf(TransportClosedError);
      await expect(c.receive()).rejects.toBeInstanceOf(TransportClosedError);
    });
  });
}
