/**
 * Settling per batch: a batch's results for one client leave as one
 * `resultBatch` message, older clients still get one message per result, and
 * results that do not fit together go one by one.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { Batch } from '../../src/service/decorators.js';
import { resultTopic, taskTopic } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { Consumer, SubscribeOptions, Transport } from '../../src/transport/transport.js';
import { decodeResult, decodeResults, encodeEnvelope } from '../../src/wire/envelopes.js';
import { rawTask } from '../support/tasks.js';
import { startSystem, type System } from '../support/system.js';
import { transportTargets } from '../support/transports.js';

interface Echo {
  echo(text: string): Promise<string>;
}

class EchoImpl {
  echo(_text: string): void {}
  @Batch('echo')
  async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
    return new Map([...tasks].map(([id, text]) => [id, text.length > 100 ? text : `echo ${text}`]));
  }
}

const OBSERVER = 'observer';
const BIG = 1_200_000; // five of them pass Pulsar's 5 MiB limit together, each fits alone

/** Reads `results` results from a topic through its own subscription; returns the messages they came in. */
async function readResults(transport: Transport, topic: string, results: number): Promise<Array<{ kind: string; count: number }>> {
  const consumer = await transport.subscribe({ topic, subscription: OBSERVER, maxUnacked: 100 });
  try {
    const messages: Array<{ kind: string; count: number }> = [];
    let seen = 0;
    while (seen < results) {
      const message = await consumer.receive();
      const kind = (JSON.parse(Buffer.from(message.payload).toString('utf8')) as { kind: string }).kind;
      const count = decodeResults(message.payload).length;
      messages.push({ kind, count });
      seen += count;
      await consumer.ack(message);
    }
    return messages;
  } finally {
    await consumer.close();
  }
}

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`results settled per batch (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    async function start(maxMessages: number): Promise<System> {
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => new EchoImpl(), batch: { maxMessages, maxSeconds: 30 } } }],
        await target.create(),
      );
      return system;
    }

    test("a batch's results for one client arrive as one resultBatch message", async () => {
      const s = await start(10);
      await s.transport.ensureSubscription(resultTopic(s.client.name), OBSERVER);
      const echo = s.client.service<Echo>('Echo', { meta: { batchKey: 'k' } });
      const texts = [...Array(10).keys()].map((i) => `t${i}`);
      expect(await Promise.all(texts.map((t) => echo.echo(t)))).toEqual(texts.map((t) => `echo ${t}`));
      expect((await s.batched(10)).map((b) => b.size)).toEqual([10]);
      expect(await readResults(s.transport, resultTopic(s.client.name), 10)).toEqual([{ kind: 'resultBatch', count: 10 }]);
    });

    test('a client that does not read result batches gets one message per result', async () => {
      const s = await start(5);
      // What a client of an earlier release sends: no `resultBatches` in the envelope.
      const replyTo = resultTopic(`old-client-${randomUUID().slice(0, 8)}`);
      await s.transport.ensureSubscription(replyTo, OBSERVER);
      const producer = await s.transport.createProducer(taskTopic('Echo'));
      const ids = [...Array(5).keys()].map(() => randomUUID());
      for (const [i, taskId] of ids.entries()) {
        const task = { ...rawTask(taskId, 'Echo', 'echo', [`t${i}`]), meta: { batchKey: 'k' }, replyTo };
        await producer.send({ payload: encodeEnvelope(task), key: 'k' });
      }
      await producer.close();
      const consumer = await s.transport.subscribe({ topic: replyTo, subscription: OBSERVER, maxUnacked: 100 });
      const values = new Map<string, unknown>();
      for (let i = 0; i < 5; i++) {
        const message = await consumer.receive();
        const result = decodeResult(message.payload); // a single result, as older clients read
        values.set(result.taskId, result.outcome === 'succeeded' ? result.value : result.error);
        await consumer.ack(message);
      }
      await consumer.unsubscribe();
      expect((await s.batched(5)).map((b) => b.size)).toEqual([5]);
      expect(ids.map((id) => values.get(id))).toEqual(ids.map((_, i) => `echo t${i}`));
    });

    test('results too large to travel together go one message each, and every task succeeds', async () => {
      const s = await start(5);
      await s.transport.ensureSubscription(resultTopic(s.client.name), OBSERVER);
      const echo = s.client.service<Echo>('Echo', { meta: { batchKey: 'k' } });
      const texts = [...Array(5).keys()].map((i) => String(i).repeat(BIG));
      const results = await Promise.all(texts.map((t) => echo.echo(t)));
      expect(results.map((r) => [r.length, r[0]])).toEqual(texts.map((t) => [BIG, t[0]]));
      const messages = await readResults(s.transport, resultTopic(s.client.name), 5);
      expect(messages).toEqual(texts.map(() => ({ kind: 'result', count: 1 })));
    });
  });
}

describe('acks per batch', () => {
  test("a batch's task messages are acked together, with one ackAll", async () => {
    const consumers: Consumer[] = [];
    class SpiedTransport extends InMemoryTransport {
      override async subscribe(options: SubscribeOptions): Promise<Consumer> {
        const consumer = await super.subscribe(options);
        if (options.topic === taskTopic('Echo')) consumers.push(consumer);
        return consumer;
      }
    }
    const s = await startSystem(
      [{ name: 'Echo', executor: { factory: () => new EchoImpl(), batch: { maxMessages: 8, maxSeconds: 30 } } }],
      new SpiedTransport(),
    );
    try {
      const [consumer] = consumers;
      const ackAll = vi.spyOn(consumer!, 'ackAll');
      const ack = vi.spyOn(consumer!, 'ack');
      const echo = s.client.service<Echo>('Echo', { meta: { batchKey: 'k' } });
      await Promise.all([...Array(16).keys()].map((i) => echo.echo(`t${i}`)));
      expect((await s.batched(16)).map((b) => b.size)).toEqual([8, 8]);
      expect(ack).not.toHaveBeenCalled();
      expect(ackAll.mock.calls.map(([messages]) => messages.length)).toEqual([8, 8]);
    } finally {
      await s.stop();
    }
  });
});
