import 'reflect-metadata';
import { transportTargets } from '../support/transports.js';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { SheafClient } from '../../src/client/client.js';
import { Batch } from '../../src/service/decorators.js';
import { resultTopic } from '../../src/topics.js';
import { InMemoryTransport } from '../../src/transport/memory/in-memory-transport.js';
import type { OutgoingMessage, Producer, ProducerOptions, Transport } from '../../src/transport/transport.js';
import { encodeEnvelope } from '../../src/wire/envelopes.js';
import { Task } from '../../src/worker/context.js';
import { SheafWorker } from '../../src/worker/worker.js';
import { LifecycleError } from '../../src/errors.js';
import { testLogger } from '../support/logger.js';
import { Counter, startSystem, type System } from '../support/system.js';

interface Echo {
  echo(value: string): Promise<string>;
}

class EchoImpl {
  readonly flushReasons: string[] = [];
  echo(_v: string): void {}
  @Batch('echo')
  async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
    this.flushReasons.push(Task.batch().flushReason);
    return new Map(tasks);
  }
}

for (const target of transportTargets()) {
  describe.skipIf(target.skip)(`worker lifecycle, bounds and durability (${target.name})`, () => {
    let system: System | undefined;
    afterEach(async () => {
      await system?.stop();
      system = undefined;
    });

    test('close() runs the open aggregates, settles them, and closes', async () => {
      const impl = new EchoImpl();
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => impl, batch: { maxMessages: 100, maxSeconds: 3600 } } }],
        await target.create(),
      );
      const { client, worker } = system;
      const echo = client.service<Echo>('Echo', { meta: { batchKey: 'k' } });
      const results = Promise.all(['a', 'b', 'c'].map((v) => echo.echo(v)));
      await vi.waitFor(() => expect(worker.stats().Echo!.bufferedTasks).toBe(3));
      await worker.close();
      expect(await results).toEqual(['a', 'b', 'c']);
      expect(impl.flushReasons).toEqual(['shutdown']);
      expect(worker.state.status).toBe('closed');
      await worker.close(); // idempotent
    });

    test('10,000 distinct batch keys leave no aggregator state once idle', async () => {
      system = await startSystem(
        [
          {
            name: 'Echo',
            executor: { factory: () => new EchoImpl(), concurrency: 8, maxUnacked: 20_000, batch: { maxMessages: 10, maxSeconds: 0.01 } },
          },
        ],
        await target.create(),
      );
      const { client, worker } = system;
      const calls = [];
      for (let i = 0; i < 10_000; i++) calls.push(client.service<Echo>('Echo', { meta: { batchKey: `key-${i}` } }).echo(`${i}`));
      const results = await Promise.all(calls);
      expect(results[9_999]).toBe('9999');
      await vi.waitFor(() => expect(worker.stats().Echo!.inFlight).toBe(0));
      expect(worker.stats().Echo).toEqual({ inFlight: 0, openAggregates: 0, bufferedTasks: 0, runningExecutions: 0, settledElsewhere: 0 });
    });

    test('tasks received and not settled never exceed maxUnacked', async () => {
      let worker: SheafWorker | undefined;
      let maxInFlight = 0;
      class Watching {
        echo(_v: string): void {}
        @Batch('echo')
        async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
          maxInFlight = Math.max(maxInFlight, worker!.stats().Echo!.inFlight);
          await new Promise((resolve) => setImmediate(resolve));
          return new Map(tasks);
        }
      }
      system = await startSystem(
        [
          {
            name: 'Echo',
            executor: { factory: () => new Watching(), concurrency: 2, maxUnacked: 12, batch: { maxMessages: 5, maxSeconds: 0.01 } },
          },
        ],
        await target.create(),
      );
      worker = system.worker;
      const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
      await Promise.all(
        [...Array(300)].map((_, i) => system!.client.service<Echo>('Echo', { meta: { batchKey: keys[i % 6]! } }).echo(`${i}`)),
      );
      expect(maxInFlight).toBeGreaterThan(0);
      expect(maxInFlight).toBeLessThanOrEqual(12);
    });

    test('a task is acked only once its outcome is durable: a failed result publish means redelivery, not loss', async () => {
      const executions = new Counter();
      const redeliveries: number[] = [];
      class Counting {
        echo(_v: string): void {}
        @Batch('echo')
        async echoMany(tasks: Map<string, string>): Promise<Map<string, string>> {
          for (const [id, value] of tasks) {
            executions.add(value);
            redeliveries.push(Task.contextOf(id).redeliveryCount);
          }
          return new Map(tasks);
        }
      }
      // The first result the worker publishes is refused, as a broker outage would.
      const transport = new FailingResultsTransport(await target.create(), 1);
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => new Counting(), batch: { maxMessages: 1, maxSeconds: 0.01 } } }],
        transport,
      );
      const echo = system.client.service<Echo>('Echo');
      expect(await echo.echo('survivor')).toBe('survivor');
      expect(executions.get('survivor')).toBe(2);
      expect(redeliveries).toEqual([0, 1]);
      // The result reaches the client just before the worker acks; wait for the ack's report.
      await vi.waitFor(() => expect(system!.settlements.map((s) => s.settlement)).toEqual(['redelivered', 'succeeded']));
    });

    test('the client ignores a second result for a task it already settled', async () => {
      const transport = await target.create();
      system = await startSystem(
        [{ name: 'Echo', executor: { factory: () => new EchoImpl(), batch: { maxMessages: 1, maxSeconds: 0.01 } } }],
        transport,
      );
      const { client } = system;
      const echo = client.service<Echo>('Echo');
      const handle = await client.dispatch(echo).echo('first');
      expect(await handle.result()).toBe('first');
      // A duplicate (a redelivered task executed twice) with another value.
      const producer = await transport.createProducer(resultTopic(client.name));
      await producer.send({
        payload: encodeEnvelope({
          v: 1,
          kind: 'result',
          taskId: handle.id,
          service: 'Echo',
          method: 'echo',
          outcome: 'succeeded',
          value: 'second',
          attempts: 1,
        }),
      });
      // Results arrive in order: once the next task's result is in, the duplicate was handled.
      expect(await echo.echo('next')).toBe('next');
      expect(await handle.result()).toBe('first');
      expect(client.pendingTasks).toBe(0);
    });

    test('lifecycle transitions are guarded', async () => {
      const transport = new InMemoryTransport();
      const worker = new SheafWorker({
        transport,
        logger: testLogger,
        services: [{ name: 'Echo', executor: { factory: () => new EchoImpl() } }],
      });
      expect(worker.state.status).toBe('created');
      await worker.start();
      expect(worker.state.status).toBe('running');
      await expect(worker.start()).rejects.toThrow(LifecycleError);
      await worker.close();
      expect(worker.state.status).toBe('closed');
      await expect(worker.start()).rejects.toThrow(/start\(\) needs a new worker; this one is closed/);

      const never = new SheafWorker({
        transport,
        logger: testLogger,
        services: [{ name: 'Echo', executor: { factory: () => new EchoImpl() } }],
      });
      await never.close();
      expect(never.state.status).toBe('closed');
      await transport.close();
    });

    test('a bad service declaration fails start() with the class and method named', async () => {
      class Broken {
        @Batch('missing')
        many(_t: Map<string, unknown>): void {}
      }
      const transport = new InMemoryTransport();
      const worker = new SheafWorker({
        transport,
        logger: testLogger,
        services: [{ name: 'Broken', executor: { factory: () => new Broken() } }],
      });
      await expect(worker.start()).rejects.toThrow(/Broken\.many: @Batch\('missing'\) names a task method that does not exist/);
      expect(worker.state.status).toBe('failed');
      await worker.close();
      expect(worker.state.status).toBe('closed');
      await transport.close();
    });

    test('a client rejects dispatches after close, and waiting tasks learn why', async () => {
      const transport = new InMemoryTransport();
      const client = await SheafClient.connect({ transport, logger: testLogger });
      const echo = client.service<Echo>('Echo');
      const handle = await client.dispatch(echo).echo('nobody is listening');
      await client.close();
      await expect(handle.result()).rejects.toThrow(/closed before the result of task .* arrived/);
      await expect(echo.echo('x')).rejects.toThrow(/is closed; connect a new one/);
      await transport.close();
    });
  });
}

/** Wraps a transport so that the first `failures` sends to result topics reject. */
class FailingResultsTransport implements Transport {
  readonly kind = 'failing-results';
  constructor(
    private readonly inner: Transport,
    private failures: number,
  ) {}
  async createProducer(topic: string, options?: ProducerOptions): Promise<Producer> {
    const producer = await this.inner.createProducer(topic, options);
    if (!topic.startsWith(resultTopic(''))) return producer;
    return {
      topic,
      lastSequenceId: -1,
      send: async (message: OutgoingMessage) => {
        if (this.failures > 0) {
          this.failures -= 1;
          throw new Error('broker unavailable');
        }
        return producer.send(message);
      },
      close: () => producer.close(),
    };
  }
  subscribe: Transport['subscribe'] = (o) => this.inner.subscribe(o);
  ensureSubscription: Transport['ensureSubscription'] = (t, s, type) => this.inner.ensureSubscription(t, s, type);
  close: Transport['close'] = () => this.inner.close();
}
