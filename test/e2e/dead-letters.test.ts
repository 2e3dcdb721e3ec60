import 'reflect-metadata';
import { transportTargets } from '../support/transports.js';
import { afterEach, describe, expect, test } from 'vitest';
import { Batch, Params } from '../../src/service/decorators.js';
import { taskTopic } from '../../src/topics.js';
import { TaskFailedError } from '../../src/errors.js';
import type { TaskEnvelope } from '../../src/wire/envelopes.js';
import type { OutgoingMessage, ProducerOptions } from '../../src/transport/transport.js';
import { rawTask } from '../support/tasks.js';
import { readDeadLetters, startSystem, type System } from '../support/system.js';
import { noPulsar, publishRawEntry, pulsarTransport } from '../support/pulsar.js';
import { CompressionType } from '../../src/transport/pulsar/commands.js';

interface Shop {
  order(sku: string, quantity: number): Promise<string>;
  refund(orderId: string): Promise<string>;
}

class ShopImpl {
  @Params(String, Number)
  order(_sku: string, _quantity: number): void {}
  @Batch('order')
  async orderMany(tasks: Map<string, [string, number]>): Promise<Map<string, string>> {
    return new Map([...tasks].map(([id, [sku, quantity]]) => [id, `${quantity} × ${sku}`]));
  }
}

const encode = (value: unknown) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`tasks that can never run (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    test('a replyTo that is not a client result topic is refused: dead-lettered as badReplyTo, nothing published there', async () => {
      const created: string[] = [];
      const sent: Array<{ topic: string; kind: string }> = [];
      const transport = await target.create();
      // Records every producer the worker opens and what it sends: a refused replyTo gets nothing.
      const recording = Object.assign(Object.create(transport) as typeof transport, {
        createProducer: async (topic: string, options?: ProducerOptions) => {
          created.push(topic);
          const producer = await transport.createProducer(topic, options);
          return Object.assign(Object.create(producer) as typeof producer, {
            send: (message: OutgoingMessage) => {
              sent.push({ topic, kind: (JSON.parse(new TextDecoder().decode(message.payload)) as { kind: string }).kind });
              return producer.send(message);
            },
          });
        },
      });
      const executed: string[] = [];
      class Recording extends ShopImpl {
        override async orderMany(tasks: Map<string, [string, number]>): Promise<Map<string, string>> {
          executed.push(...tasks.keys());
          return super.orderMany(tasks);
        }
      }
      system = await startSystem(
        [{ name: 'Shop', executor: { factory: () => new Recording(), batch: { maxMessages: 10, maxSeconds: 0.02 } } }],
        recording,
      );
      const producer = await transport.createProducer(taskTopic('Shop'));
      const hostile = [
        'persistent://sec/victim/injected', // another namespace, with the worker's credentials
        'sheaf-tasks-Other', // another service's queue
        'sheaf-dead-letters-Shop',
        'sheaf-results-../x',
        'sheaf-results-',
      ];
      for (const [i, replyTo] of hostile.entries()) {
        await producer.send({ payload: encode({ ...rawTask(`bad-${i}`, 'Shop', 'order', ['sku', 1]), replyTo }) });
      }
      await producer.close();
      const letters = await readDeadLetters(transport, 'Shop', hostile.length);
      expect(letters.map((l) => l.reason)).toEqual(hostile.map(() => 'badReplyTo'));
      expect(letters[0]!.error!.name).toBe('BadReplyToError');
      expect(executed).toEqual([]);
      expect(created.filter((topic) => hostile.includes(topic) && topic !== 'sheaf-dead-letters-Shop')).toEqual([]);
      // One dead letter each, and no result anywhere (not even on the dead-letter topic the replyTo named); the
      // worker's job tracker writes its own topics (a marker as it takes over), which no replyTo can name.
      const outsideJobTopics = sent.filter((s) => !s.topic.startsWith('sheaf-job-'));
      expect(outsideJobTopics).toEqual(hostile.map(() => ({ topic: 'sheaf-dead-letters-Shop', kind: 'deadLetter' })));
      // A real client's replyTo still works.
      expect(await system.client.service<Shop>('Shop').order('sku-ok', 2)).toBe('2 × sku-ok');
    });

    test('go to the dead-letter topic with their reason, are never executed, and the worker keeps going', async () => {
      system = await startSystem(
        [{ name: 'Shop', executor: { factory: () => new ShopImpl(), batch: { maxMessages: 10, maxSeconds: 0.02 } } }],
        await target.create(),
      );
      const { client, transport, worker, settlements } = system;
      const shop = client.service<Shop>('Shop');

      // Unknown method and wrong arguments come from a real client, which is told.
      const unknownMethod = shop.refund('o-1').catch((e: unknown) => e);
      const wrongArgs = (shop.order as unknown as (a: unknown, b: unknown) => Promise<string>)('sku-1', 'three').catch((e: unknown) => e);

      // The rest are raw messages no client would send.
      const good: TaskEnvelope = rawTask('raw-1', 'Shop', 'order', ['sku-2', 2]);
      const producer = await transport.createProducer(taskTopic('Shop'));
      const raw: Array<[string, Uint8Array]> = [
        ['not UTF-8', new Uint8Array([0xc3, 0x28, 0xa0])],
        ['not JSON', encode('{"v":1,"kind":')],
        ['future version', encode({ ...good, v: 99, taskId: 'raw-2' })],
        ['missing fields', encode({ v: 1, kind: 'task', taskId: 'raw-3' })],
        ['other service', encode({ ...good, taskId: 'raw-4', service: 'Elsewhere' })],
      ];
      for (const [, payload] of raw) await producer.send({ payload });

      const unknown = (await unknownMethod) as TaskFailedError;
      expect(unknown).toBeInstanceOf(TaskFailedError);
      expect(unknown.reason).toBe('unknownMethod');
      expect(unknown.lastError.name).toBe('UnknownMethodError');
      expect(unknown.attempts).toBe(0);
      expect(unknown.lastError.message).toMatch(/Shop has no task method 'refund' \(it has: order\)/);

      const wrong = (await wrongArgs) as TaskFailedError;
      expect(wrong.reason).toBe('wrongArguments');
      expect(wrong.lastError.message).toMatch(/Shop\.order argument 1 must be a number, got string "three"/);

      // The worker is still serving.
      expect(await shop.order('sku-9', 9)).toBe('9 × sku-9');
      expect(worker.state.status).toBe('running');

      const dead = await readDeadLetters(transport, 'Shop', 7);
      const byReason = dead.map((d) => d.reason).sort();
      expect(byReason).toEqual(
        ['undecodable', 'undecodable', 'undecodable', 'undecodable', 'unknownMethod', 'unknownService', 'wrongArguments'].sort(),
      );
      const undecodable = dead.filter((d) => d.reason === 'undecodable');
      // Unreadable payloads keep their original bytes, so nothing is lost.
      expect(undecodable.every((d) => d.task === null && d.payloadBase64 !== null)).toBe(true);
      expect(Buffer.from(undecodable.find((d) => d.detail.includes('UTF-8'))!.payloadBase64!, 'base64')).toEqual(
        Buffer.from([0xc3, 0x28, 0xa0]),
      );
      expect(undecodable.some((d) => d.detail.includes('wire version 99'))).toBe(true);
      expect(dead.find((d) => d.reason === 'unknownService')!.detail).toMatch(/for service 'Elsewhere'/);
      // Every one of them was acked: nothing is waiting for redelivery.
      expect(settlements.filter((s) => s.settlement === 'failed')).toHaveLength(7);
      expect(worker.stats().Shop!.inFlight).toBe(0);
    });
  });
}

describe.skipIf(noPulsar())('entries the Pulsar client cannot decode (pulsar)', () => {
  let system: System | undefined;
  afterEach(async () => {
    await system?.stop();
    system = undefined;
  });

  test('are dead-lettered with their bytes and the reason; the worker keeps serving', async () => {
    const transport = await pulsarTransport();
    system = await startSystem(
      [{ name: 'Shop', executor: { factory: () => new ShopImpl(), batch: { maxMessages: 10, maxSeconds: 0.02 } } }],
      transport,
    );
    const topic = transport.topicName(taskTopic('Shop'));
    // Claims ZLIB, holds something else: before, inflating it threw out of the socket handler and took the worker down.
    await publishRawEntry(
      topic,
      { compression: CompressionType.ZLIB, uncompressed_size: 64, partition_key: 'k' },
      Buffer.from('not zlib at all'),
    );
    await publishRawEntry(
      topic,
      { encryption_keys: [{ key: 'app-key', value: Buffer.from('wrapped') }], encryption_algo: 'RSA' },
      Buffer.from('ciphertext'),
    );
    const dead = await readDeadLetters(system.transport, 'Shop', 2);
    expect(dead.map((d) => d.reason)).toEqual(['undecodable', 'undecodable']);
    expect(dead[0]!.detail).toMatch(/ZLIB payload could not be decompressed/);
    expect(Buffer.from(dead[0]!.payloadBase64!, 'base64').toString()).toBe('not zlib at all');
    expect(dead[1]!.detail).toMatch(/encrypted \(RSA\)/);
    expect(await system.client.service<Shop>('Shop').order('sku-1', 1)).toBe('1 × sku-1');
    expect(system.worker.state.status).toBe('running');
  });
});
